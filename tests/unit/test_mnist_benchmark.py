"""mnist-benchmark: the pure parts (FLOPs, steady and total time, ratios, goals, data, device plan, report
and CLI with a fake worker) run here; the real Keras training runs are tests/venv/test_training.py, which
`make test` runs in the converged sandbox host's ML virtualenv (TensorFlow and Keras are there)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from gpu_stack_validation import nvml, plotting
from gpu_stack_validation.benchmark import cli, core, data

mb = SimpleNamespace()
for _mod in (core, data, cli):
    mb.__dict__.update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
mb.summarise_samples = nvml.summarise

TOP_KEYS = {
    "tool",
    "schema_version",
    "ok",
    "failures",
    "notes",
    "error",
    "backend",
    "data",
    "data_request",
    "goals",
    "data_label",
    "data_source",
    "host",
    "python",
    "config",
    "devices",
    "runs",
    "speedups",
    "goal",
    "article_reference",
    "plot",
}
RUN_KEYS = {
    "device",
    "mode",
    "batch_size",
    "effective_batch_size",
    "steps_per_epoch",
    "epochs",
    "samples",
    "error",
    "epoch_times_s",
    "epoch_losses",
    "epoch_accuracies",
    "compile_s",
    "jit_compile",
    "data_device",
    "variable_device",
    "final_loss",
    "final_accuracy",
    "eval_samples",
    "eval_loss_before",
    "eval_loss_after",
    "eval_accuracy_after",
    "loss_fell",
    "nvml_reason",
    "nvml_samples",
    "gpu_util_mean_pct",
    "gpu_util_peak_pct",
    "gpu_mem_used_mean_mib",
    "gpu_mem_used_peak_mib",
    "steady_epoch_s",
    "steady_rule",
    "samples_per_s",
    "tflops",
    "pct_of_gemm_peak",
    "total_s",
    "xla_flops_per_sample",
    "xla_flops_ratio",
}


# --- arithmetic -----------------------------------------------------------------------------
def test_flops_per_epoch_is_the_corrected_count():
    """Forward and weight gradients of both layers, the input gradient of the second only."""
    assert mb.FLOPS_PER_SAMPLE == 4 * 784 * 512 + 6 * 512 * 10 == 1_636_352
    assert mb.flops_per_epoch(60000) == pytest.approx(9.818e10, rel=1e-4)
    # XLA's cost analysis of the jitted step (1,639,513 per sample on the H200 anchor) reads as a ratio
    run = mb.finalize_run({"epoch_times_s": [1.0], "xla_flops_per_sample": 1_639_513}, 60000, None)
    assert run["xla_flops_ratio"] == pytest.approx(1.0019, abs=1e-4)


@pytest.mark.parametrize(
    ("times", "value", "rule"),
    [
        ([3.0, 1.2, 1.1, 1.3], 1.1, "best of epochs 2..4"),
        ([0.5, 2.0], 2.0, "best of epochs 2..2"),
        ([2.0], 2.0, "epoch 1 only (includes compilation and warm-up)"),
        ([], None, "no epochs"),
    ],
)
def test_steady_epoch_is_best_of_epochs_2_to_n(times, value, rule):
    assert mb.steady_epoch(times) == (value, rule)


def test_finalize_run_derives_rate_tflops_and_percent_of_peak():
    run = mb.finalize_run({"epoch_times_s": [2.0, 0.5, 0.25]}, 60000, 1.0)
    assert run["steady_epoch_s"] == 0.25
    assert run["samples_per_s"] == pytest.approx(240000)
    assert run["tflops"] == pytest.approx(mb.flops_per_epoch(60000) / 0.25 / 1e12)
    assert run["pct_of_gemm_peak"] == pytest.approx(100 * run["tflops"])
    empty = mb.finalize_run({"epoch_times_s": []}, 60000, 1.0)
    assert empty["tflops"] is None and empty["pct_of_gemm_peak"] is None
    assert mb.finalize_run({"epoch_times_s": [1.0]}, 10, None)["pct_of_gemm_peak"] is None


def _run(device, mode, batch, steady, pct=..., **extra):
    run = mb.new_run(device, mode, batch, 60000, 5)
    run.update(
        epoch_times_s=[steady * 3] + [steady] * 4,
        epoch_losses=[2.0, 1.0],
        epoch_accuracies=[0.5, 0.9],
        final_loss=1.0,
        final_accuracy=0.9,
        eval_loss_before=2.3,
        eval_loss_after=0.5,
        loss_fell=True,
    )
    run.update(extra)
    mb.finalize_run(run, 60000, 100.0)
    if pct is not ...:
        run["pct_of_gemm_peak"] = pct
    return run


def test_new_run_has_every_key():
    run = mb.new_run("gpu", "resident", 30000, 4096, 1)
    assert set(run) == RUN_KEYS
    assert run["effective_batch_size"] == 4096 and run["steps_per_epoch"] == 1


def test_speedups_pair_gpu_with_cpu_per_mode_and_batch():
    runs = [
        _run("gpu", "article", 30000, 0.1),
        _run("cpu", "article", 30000, 0.3),
        _run("gpu", "resident", 30000, 0.004),
        _run("cpu", "resident", 30000, 0.2),
        _run("gpu", "resident", 128, 0.6),
    ]  # no CPU partner: no ratio
    rows = mb.speedups(runs)
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("article", 30000), ("resident", 30000)]
    assert rows[0]["gpu_speedup"] == pytest.approx(3.0)
    assert rows[1]["gpu_speedup"] == pytest.approx(50.0)


def test_total_time_ratio_is_the_articles_measure():
    gpu = _run("gpu", "article", 30000, 0.1, total_s=0.79)
    cpu = _run("cpu", "article", 30000, 0.3, total_s=1.93)
    (row,) = mb.speedups([gpu, cpu])
    assert row["gpu_speedup_total"] == pytest.approx(1.93 / 0.79) and row["gpu_total_s"] == 0.79


@pytest.mark.parametrize(("pct", "met"), [(97.0, True), (50.0, True), (3.0, False), (None, None)])
def test_resident_goal_at_batch_30000(pct, met):
    runs = [_run("gpu", "resident", 30000, 0.004, pct=pct), _run("gpu", "article", 30000, 0.1, pct=99)]
    goal = mb.goal(runs, [128, 30000], "gpu")
    assert goal["batch_size"] == 30000 and goal["target_pct"] == 50.0
    assert goal["met"] is met and goal["value_pct"] == pct


def test_resident_goal_uses_the_largest_batch_when_30000_is_not_swept():
    goal = mb.goal([_run("gpu", "resident", 1024, 0.1, pct=60)], [128, 1024], "gpu")
    assert goal["batch_size"] == 1024 and goal["met"] is True


def test_cpu_goal_is_resident_at_batch_1024_against_60_percent():
    runs = [_run("cpu", "resident", 1024, 0.5, pct=55.0), _run("cpu", "resident", 30000, 0.4, pct=80.0)]
    goal = mb.goal(runs, [128, 1024, 30000], "cpu")
    assert (goal["batch_size"], goal["target_pct"], goal["value_pct"], goal["met"]) == (
        1024,
        60.0,
        55.0,
        False,
    )


def test_parse_batch_sizes():
    assert mb.parse_batch_sizes("128, 1024,30000") == [128, 1024, 30000]
    for bad in ("", "0", "12,-1", "a"):
        with pytest.raises(ValueError):
            mb.parse_batch_sizes(bad)


def test_synthetic_data_is_labelled_as_such():
    assert "SYNTHETIC" in mb.data_label("synthetic", 3) and "seed 3" in mb.data_label("synthetic", 3)
    assert "real MNIST" in mb.data_label("mnist", 0)


# --- MNIST cache ----------------------------------------------------------------------------
def test_keras_datasets_dir(tmp_path):
    assert mb.keras_datasets_dir({"KERAS_HOME": str(tmp_path)}) == tmp_path / "datasets"
    assert mb.keras_datasets_dir({}).parts[-2:] == (".keras", "datasets")


def test_missing_mnist_offline_says_use_synthetic(tmp_path):
    def offline(url, dest, timeout):
        raise OSError("Name or service not known")

    with pytest.raises(mb.EnvProblem, match="--data synthetic") as err:
        mb.resolve_mnist(tmp_path, fetch=offline)
    assert "mnist.npz" in str(err.value) and "Name or service not known" in str(err.value)
    with pytest.raises(mb.EnvProblem, match="--no-download"):
        mb.resolve_mnist(tmp_path, allow_download=False)


def test_mnist_hash_is_checked(tmp_path, monkeypatch):
    (tmp_path / "mnist.npz").write_bytes(b"not mnist")
    with pytest.raises(mb.EnvProblem, match="expected 731c5ac6"):
        mb.resolve_mnist(tmp_path)
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(b"not mnist").hexdigest())
    info = mb.resolve_mnist(tmp_path)
    assert info == {"path": str(tmp_path / "mnist.npz"), "sha256": data.MNIST_SHA256, "downloaded": False}


def test_data_auto_uses_a_cached_mnist_else_synthetic(tmp_path, monkeypatch):
    assert mb.choose_data("auto", tmp_path)[0] == "synthetic"
    assert "no MNIST in Keras' cache" in mb.choose_data("auto", tmp_path)[2]
    (tmp_path / "mnist.npz").write_bytes(b"payload")
    assert "not MNIST's" in mb.choose_data("auto", tmp_path)[2]
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(b"payload").hexdigest())
    chosen, source, note = mb.choose_data("auto", tmp_path)
    assert (chosen, source["downloaded"], note) == ("mnist", False, None)
    assert mb.choose_data("synthetic", tmp_path)[0] == "synthetic"


def test_mnist_download_lands_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(b"payload").hexdigest())

    def fetch(url, dest, timeout):
        assert url == mb.MNIST_URL
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"payload")

    info = mb.resolve_mnist(tmp_path / "datasets", fetch=fetch)
    assert info["downloaded"] is True and Path(info["path"]).read_bytes() == b"payload"


# --- devices and environment -------------------------------------------------------------------
def test_child_env_hides_gpus_from_the_cpu_worker():
    cpu = mb.child_env({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}, "jax", "cpu")
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["JAX_PLATFORMS"] == "cpu"
    assert cpu["KERAS_BACKEND"] == "jax" and cpu["PATH"] == "/bin"
    gpu = mb.child_env({"CUDA_VISIBLE_DEVICES": "1"}, "tensorflow", "gpu")
    assert gpu["CUDA_VISIBLE_DEVICES"] == "1" and "JAX_PLATFORMS" not in gpu
    assert gpu["KERAS_BACKEND"] == "tensorflow" and gpu["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


@pytest.mark.parametrize(
    ("env", "hidden"),
    [
        ({}, False),
        ({"CUDA_VISIBLE_DEVICES": ""}, True),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, True),
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, False),
    ],
)
def test_visible_devices(env, hidden):
    assert mb.hidden_by_env(env) is hidden


def test_gpu_worker_counts_cuda_devices_in_pci_order():
    assert mb.child_env({}, "jax", "gpu")["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_host_gpu_probe():
    assert mb.host_gpu_probe({}, lambda: [], lambda: None)[0] is False
    assert mb.host_gpu_probe({}, lambda: ["/dev/nvidia0"], lambda: None) == (
        True,
        "device nodes present: /dev/nvidia0",
    )
    assert mb.host_gpu_probe({}, lambda: [], lambda: 2) == (True, "NVML reports 2 GPU(s)")
    hidden = mb.host_gpu_probe({"CUDA_VISIBLE_DEVICES": ""}, lambda: ["/dev/nvidia0"], lambda: 1)
    assert hidden == (False, "CUDA_VISIBLE_DEVICES hides every GPU")


def test_plan_devices():
    assert mb.plan_devices("cpu", None) == (["cpu"], [])
    assert mb.plan_devices("gpu", None) == (["gpu"], [])
    assert mb.plan_devices("both", None) == (["gpu", "cpu"], [])
    devices, notes = mb.plan_devices("auto", lambda: (False, "nothing"))
    assert devices == ["cpu"] and "CPU only" in notes[0]
    assert mb.plan_devices("auto", lambda: (True, "NVML"))[0] == ["gpu", "cpu"]


# --- NVML (the sampler itself: tests/unit/test_gpu_doctor_checks.py) ----------------------------
def test_summarise_samples():
    assert mb.summarise_samples([(10, 100), (30, 300)]) == {
        "nvml_samples": 2,
        "gpu_util_mean_pct": 20,
        "gpu_util_peak_pct": 30,
        "gpu_mem_used_mean_mib": 200,
        "gpu_mem_used_peak_mib": 300,
    }


# --- orchestration with a fake worker -----------------------------------------------------------
def _worker(status_by_device=None, loss_fell=True, env_error=False, load=0.5):
    status_by_device = status_by_device or {}
    calls = []

    def runner(config, env, timeout):
        calls.append((config, env))
        dev = config["device"]
        if env_error:
            return {"status": "env_error", "message": "No module named 'keras'", "runs": []}
        status = status_by_device.get(dev, "ok")
        if status == "no_gpu":
            return {"status": "no_gpu", "message": "tf sees no GPU", "device": dev, "runs": []}
        steady = {"gpu": {"article": 0.1, "resident": 0.004}, "cpu": {"article": 0.3, "resident": 0.2}}
        runs = [
            _run(dev, mode, b, steady[dev][mode] * (1 + 1000 / b), loss_fell=loss_fell)
            for mode in config["modes"]
            for b in config["batch_sizes"]
        ]
        return {
            "status": "ok",
            "message": None,
            "device": dev,
            "device_name": f"fake {dev}",
            "backend_version": "9.9",
            "keras_version": "3.15.1",
            "gemm_peak": {"tflops": 44.0 if dev == "gpu" else 1.0},
            "cpu_count": 2,
            "load_average": {"start": [load, load, load], "end": [2.0, 1.0, 0.5]},
            "runs": runs,
        }

    return runner, calls


def test_run_benchmark_gpu_and_cpu(tmp_path):
    runner, calls = _worker()
    report = mb.run_benchmark(
        backend="jax",
        data="synthetic",
        device="auto",
        batch_sizes=[128, 30000],
        runner=runner,
        probe=lambda: (True, "NVML reports 1 GPU(s)"),
    )
    assert set(report) == TOP_KEYS
    assert report["ok"] is True and report["failures"] == []
    assert [c[0]["device"] for c in calls] == ["gpu", "cpu"]  # GPU first, one process each
    assert calls[1][1]["CUDA_VISIBLE_DEVICES"] == "" and calls[0][1]["KERAS_BACKEND"] == "jax"
    assert len(report["runs"]) == 8 and all(set(r) == RUN_KEYS for r in report["runs"])
    assert {(s["mode"], s["batch_size"]) for s in report["speedups"]} == {
        ("article", 128),
        ("article", 30000),
        ("resident", 128),
        ("resident", 30000),
    }
    assert report["goal"]["batch_size"] == 30000 and report["goal"]["value_pct"] is not None
    assert [g["device"] for g in report["goals"]] == ["gpu", "cpu"]
    assert (
        report["config"]["flops_per_sample"] == 1_636_352 and "4*784*512" in report["config"]["flops_formula"]
    )
    assert "SYNTHETIC" in report["data_label"]
    json.dumps(report)
    table = mb.render_table(report)
    assert "SYNTHETIC" in table and "GPU/CPU: steady epoch, and total time" in table and "fake gpu" in table
    assert "4*784*512 + 6*512*10" in table


def test_run_benchmark_gpu_requested_but_not_seen_fails_without_timing_the_cpu():
    runner, calls = _worker({"gpu": "no_gpu"})
    report = mb.run_benchmark(data="synthetic", device="gpu", runner=runner)
    assert report["ok"] is False and "sees none" in report["failures"][0]
    assert report["runs"] == [] and [c[0]["device"] for c in calls] == ["gpu"]


def test_run_benchmark_auto_without_gpu_runs_cpu_with_a_note():
    runner, calls = _worker()
    report = mb.run_benchmark(
        data="synthetic", device="auto", runner=runner, probe=lambda: (False, "no device node")
    )
    assert report["ok"] is True and [c[0]["device"] for c in calls] == ["cpu"]
    assert any("CPU only" in n for n in report["notes"]) and report["speedups"] == []
    assert report["goal"]["met"] is None


def test_a_busy_machine_is_noted_not_failed():
    """Other jobs on the cores when the worker started: the % of peak is unreliable; the report says so."""
    runner, _ = _worker(load=7.08)
    report = mb.run_benchmark(data="synthetic", device="cpu", batch_sizes=[1024], runner=runner)
    assert report["ok"] is True
    (note,) = [n for n in report["notes"] if "busy" in n]
    assert "load average up to 7.08 on 2 CPUs" in note and "unreliable" in note
    # the load at the end counts the worker's own threads: alone it is no reason for the note
    runner, _ = _worker(load=0.4)
    report = mb.run_benchmark(data="synthetic", device="cpu", batch_sizes=[1024], runner=runner)
    assert not [n for n in report["notes"] if "busy" in n]


def test_loss_that_does_not_fall_is_a_failure():
    runner, _ = _worker(loss_fell=False)
    report = mb.run_benchmark(data="synthetic", device="cpu", batch_sizes=[1024], runner=runner)
    assert report["ok"] is False and "did not fall" in report["failures"][0]


def test_main_exit_codes_and_json(monkeypatch, capsys, tmp_path):
    runner, _ = _worker()
    monkeypatch.setattr(cli, "run_worker", runner)
    out = tmp_path / "b.json"
    assert (
        mb.main(
            ["--data", "synthetic", "--device", "cpu", "--quick", "--json", "--quiet", "--output", str(out)]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["config"]["epochs"] == 2 and printed["config"]["samples"] == 6000
    assert printed["config"]["batch_sizes"] == [1024, 30000]

    runner, _ = _worker({"gpu": "no_gpu"})
    monkeypatch.setattr(cli, "run_worker", runner)
    assert mb.main(["--data", "synthetic", "--device", "gpu", "--quiet"]) == 1
    assert "GPU requested" in capsys.readouterr().out

    runner, _ = _worker(env_error=True)
    monkeypatch.setattr(cli, "run_worker", runner)
    assert mb.main(["--data", "synthetic", "--device", "cpu", "--json", "--quiet"]) == 2
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False and printed["error"] == "environment"
    assert "keras" in printed["failures"][0] and set(printed) == TOP_KEYS


def test_main_mnist_missing_offline_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(url, dest, timeout):
        raise OSError("offline")

    monkeypatch.setattr(data, "_download", offline)
    assert mb.main(["--data", "mnist", "--quiet"]) == 2
    assert "--data synthetic" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch-sizes", "0"],
        ["--epochs", "0"],
        ["--subset", "70000"],
        ["--backend", "mxnet"],
        ["--device", "tpu"],
    ],
)
def test_main_usage_errors_exit_2(argv, capsys):
    assert mb.main(argv) == 2


def test_write_plot(tmp_path):
    runner, _ = _worker()
    report = mb.run_benchmark(data="synthetic", device="both", batch_sizes=[128, 30000], runner=runner)
    assert plotting.benchmark_plot(report, str(tmp_path / "b.png")) is None
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_cpu_only_plot_shows_the_share_of_the_peak_not_an_empty_ratio(tmp_path, monkeypatch):
    runner, _ = _worker()
    report = mb.run_benchmark(data="synthetic", device="cpu", batch_sizes=[128, 1024], runner=runner)
    titles = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda self, t, *a, **k: titles.append(t) or real(self, t, *a, **k)
    )
    assert plotting.benchmark_plot(report, str(tmp_path / "c.png")) is None
    assert titles == ["Throughput", "Share of the GEMM peak (no GPU run)"]


def test_unwritable_output_is_exit_2_before_any_run(tmp_path, capsys):
    assert mb.main(["--data", "synthetic", "--output", str(tmp_path / "no" / "b.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert mb.main(["--data", "synthetic", "--plot", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    # root may write almost anywhere, but not create files in /proc: the probe is real
    assert mb.main(["--data", "synthetic", "--output", "/proc/mnist-benchmark.json"]) == 2
    assert "cannot create files in directory /proc" in capsys.readouterr().err

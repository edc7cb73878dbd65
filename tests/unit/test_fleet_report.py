"""The fleet report (gpu-fleet-report) on canned reports shaped like the output of gpu-doctor,
mnist-benchmark and gpu-propagation.

The canned dicts carry the keys the fleet report reads (and a few it ignores); the `*_schema` tests feed
it reports produced by the real commands, so a renamed key in a validator breaks a test here.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from gpu_stack_validation import fleet

# --------------------------------------------------------------------------------------------------
# Canned reports


def doctor_gpu(ok: bool = True) -> dict[str, Any]:
    failures = (
        []
        if ok
        else [
            {
                "check": "libraries",
                "message": "libcudnn.so.9: not installed",
                "fix": "zypper install libcudnn9-cuda-12",
            }
        ]
    )
    return {
        "tool": "gpu_doctor",
        "schema": 1,
        "ok": ok,
        "exit_code": 0 if ok else 1,
        "mode": "gpu",
        "verdict": "OK: 2 GPU (NVIDIA H200)" if ok else "FAIL: ...",
        "checks": {
            "gpu": {
                "status": "ok",
                "found": True,
                "count": 2,
                "gpus": [
                    {"index": 0, "name": "NVIDIA H200", "memory_total_mib": 143771},
                    {"index": 1, "name": "NVIDIA H200", "memory_total_mib": 143771},
                ],
            },
            "cuda_driver": {"status": "ok", "driver_api_version": 12080, "driver_api": "12.8"},
            "driver_version": {"status": "ok", "version": "570.133.20"},
            "cuda_runtime": {"status": "ok", "runtime_version": 12050, "runtime": "12.5"},
            "cudnn": {
                "status": "ok" if ok else "skip",
                "runtime_version": 90300 if ok else None,
                "runtime": "9.3.0" if ok else None,
            },
            "tensorflow": {
                "status": "ok",
                "installed": True,
                "version": "2.20.0",
                "gpus": [{"name": "/physical_device:GPU:0"}, {"name": "/physical_device:GPU:1"}],
                "log_hints": [],
            },
        },
        "failures": failures,
        "warnings": [],
    }


def doctor_cpu_only() -> dict[str, Any]:
    return {
        "tool": "gpu_doctor",
        "schema": 1,
        "ok": True,
        "exit_code": 0,
        "mode": "cpu-only",
        "checks": {
            "gpu": {"status": "ok", "found": False, "count": 0, "gpus": []},
            "cuda_driver": {"status": "warn", "driver_api_version": 12050, "driver_api": "12.5"},
            "driver_version": {"status": "skip", "version": None},
            "cuda_runtime": {"status": "ok", "runtime_version": 12050, "runtime": None},
            "cudnn": {"status": "ok", "runtime_version": 90300, "runtime": None},
            "tensorflow": {"status": "ok", "installed": True, "version": "2.20.0", "gpus": []},
        },
        "failures": [],
        "warnings": [],
    }


def bench_run(device: str, mode: str, batch: int, rate: float | None, error: str | None = None) -> dict:
    return {
        "device": device,
        "mode": mode,
        "batch_size": batch,
        "samples_per_s": rate,
        "steady_epoch_s": 60000 / rate if rate else None,
        "error": error,
    }


def benchmark(gpu: bool = True, ok: bool = True) -> dict[str, Any]:
    runs = []
    for mode, cpu_rate, gpu_rate in (("article", 186000.0, 560000.0), ("resident", 270000.0, 17600000.0)):
        for batch, scale in ((1024, 0.5), (30000, 1.0)):
            runs.append(bench_run("cpu", mode, batch, cpu_rate * scale))
            if gpu:
                runs.append(bench_run("gpu", mode, batch, gpu_rate * scale))
    # a worse repeat of a run must not replace the best one
    runs.append(bench_run("cpu", "article", 30000, 1000.0))
    return {
        "tool": "mnist_benchmark",
        "schema_version": 1,
        "ok": ok,
        "failures": [] if ok else ["gpu resident batch 30000: the loss did not fall (2.3 -> 2.4)"],
        "backend": "tensorflow",
        "data": "synthetic",
        "runs": runs,
        "speedups": [],
    }


def propagation(gpu: bool = True) -> dict[str, Any]:
    def section(backend: str, pcts: list[float]) -> dict:
        rows = [{"batch": b, "batched_pct_of_peak": p} for b, p in zip((64, 8192, 512), pcts, strict=True)]
        return {"backend": backend, "gemm_peak_gflops": 1000.0, "rows": rows}

    return {
        "tool": "propagation",
        "schema_version": 1,
        "ok": True,
        "failures": [],
        "blas": {"blas": "openblas"},
        "numpy": section("numpy", [20.0, 91.5, 60.0]),
        "gpu": section("cupy", [1.0, 71.0, 30.0]) if gpu else None,
        "goal": {"value_pct": 91.5},
    }


def write_host(reports: Path, host: str, **docs: Any) -> Path:
    d = reports / host
    d.mkdir(parents=True, exist_ok=True)
    for tool, doc in docs.items():
        (d / f"{tool}.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return d


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import matplotlib` fail, as in the controller venv."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


# --------------------------------------------------------------------------------------------------
# Pure helpers


@pytest.mark.parametrize(
    ("value", "kind", "want"),
    [
        (12050, "cuda", "12.5"),
        (12080, "cuda", "12.8"),
        (90300, "cudnn", "9.3.0"),
        (8907, "cudnn", "8.9.7"),
        ("12.5", "plain", "12.5"),
        (None, "cuda", None),
        ("", "plain", None),
        (True, "plain", None),
        ({"version": "9.3.0"}, "plain", "9.3.0"),
    ],
)
def test_version_text(value: Any, kind: str, want: str | None) -> None:
    assert fleet._version(value, kind) == want


def test_dig_takes_the_first_path_that_holds_a_value() -> None:
    data = {"a": {"b": [{"c": 1}]}, "x": None}
    assert fleet.dig(data, "x", "a.b.0.c") == 1
    assert fleet.dig(data, "a.b.5.c", "nope") is None


def test_doctor_summary_gpu_host() -> None:
    s = fleet.doctor_summary(doctor_gpu())
    assert s == {
        "verdict": "ok",
        "ok": True,
        "gpu": "2 x NVIDIA H200",
        "driver": "570.133.20",
        "cuda": "12.5",
        "cudnn": "9.3.0",
        "tf_gpus": 2,
        "failures": [],
    }


def test_doctor_summary_cpu_only_falls_back_to_integer_versions() -> None:
    s = fleet.doctor_summary(doctor_cpu_only())
    got = (s["gpu"], s["driver"], s["cuda"], s["cudnn"], s["tf_gpus"])
    assert got == ("CPU-only", "n/a", "12.5", "9.3.0", 0)


def test_doctor_summary_failure_lists_message_and_fix() -> None:
    s = fleet.doctor_summary(doctor_gpu(ok=False))
    assert s["verdict"] == "FAIL (1)"
    assert s["failures"] == ["libcudnn.so.9: not installed (fix: zypper install libcudnn9-cuda-12)"]
    assert s["cudnn"] == "n/a"


def test_doctor_summary_tolerates_an_empty_or_missing_report() -> None:
    assert fleet.doctor_summary({})["gpu"] == "n/a"
    assert fleet.doctor_summary(None)["verdict"] == "n/a"
    tf_missing = {"ok": True, "checks": {"tensorflow": {"installed": False}}}
    assert fleet.doctor_summary(tf_missing)["tf_gpus"] == "no TF"


def test_benchmark_summary_takes_the_best_run_at_the_largest_batch() -> None:
    s = fleet.benchmark_summary(benchmark())
    art, res = s["modes"]["article"], s["modes"]["resident"]
    assert (art["batch"], art["cpu"], art["gpu"]) == (30000, 186000.0, 560000.0)
    assert art["ratio"] == pytest.approx(560000 / 186000)
    assert res["ratio"] == pytest.approx(17600000 / 270000)
    assert s["data"] == "synthetic" and s["backend"] == "tensorflow"


def test_benchmark_summary_cpu_only_has_no_ratio() -> None:
    s = fleet.benchmark_summary(benchmark(gpu=False))
    assert s["modes"]["article"]["gpu"] is None and s["modes"]["article"]["ratio"] is None
    assert s["modes"]["article"]["cpu"] == 186000.0


def test_benchmark_summary_skips_failed_and_malformed_runs() -> None:
    report = {
        "runs": [
            bench_run("gpu", "article", 30000, 5.0, error="OOM"),
            {"mode": "article"},
            "junk",
            bench_run("cpu", "article", 128, 10.0),
            bench_run("tpu", "article", 99999, 1.0),
        ]
    }
    s = fleet.benchmark_summary(report)
    assert s["modes"]["article"] == {
        "batch": 128,
        "cpu": 10.0,
        "gpu": None,
        "ratio": None,
        "cpu_pct": None,
        "gpu_pct": None,
    }
    assert s["modes"]["resident"]["batch"] is None


def test_propagation_summary_uses_the_largest_batch() -> None:
    s = fleet.propagation_summary(propagation())
    assert (s["numpy_pct"], s["gpu_pct"], s["blas"]) == (91.5, 71.0, "openblas")
    assert fleet.propagation_summary({"goal": {"value_pct": 42.0}})["numpy_pct"] == 42.0
    assert fleet.propagation_summary(None)["numpy_pct"] is None


def test_host_row_collects_failures_of_every_tool() -> None:
    row = fleet.host_row(
        "ws1",
        {
            "doctor": doctor_gpu(ok=False),
            "benchmark": benchmark(ok=False),
            "propagation": {"ok": False, "failures": []},
        },
        ["x.json is unreadable"],
    )
    assert not row["ok"]
    assert row["failures"] == [
        "x.json is unreadable",
        "doctor: libcudnn.so.9: not installed (fix: zypper install libcudnn9-cuda-12)",
        "benchmark: gpu resident batch 30000: the loss did not fall (2.3 -> 2.4)",
        "propagation: failed",
    ]
    assert fleet.host_row("empty", {})["failures"] == ["no reports"]


def test_markdown_row_and_failures_section() -> None:
    rows = [
        fleet.host_row(
            "gpu|ws", {"doctor": doctor_gpu(), "benchmark": benchmark(), "propagation": propagation()}
        ),
        fleet.host_row("cpu1", {"doctor": doctor_gpu(ok=False)}),
    ]
    md = fleet.render_markdown(rows)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| host"))
    assert header.count("|") == 19
    gpu_row = next(line for line in lines if line.startswith("| gpu\\|ws"))
    assert gpu_row == (
        "| gpu\\|ws | ok | ok | 2 x NVIDIA H200 | 570.133.20 | 12.5 | 9.3.0 | 2 | SYNTHETIC "
        "| 30000 | 186,000 | 560,000 | 3.0x | 270,000 | 17,600,000 | 65.2x | n/a / n/a | 92% (71% GPU) |"
    )
    cpu_row = next(line for line in lines if line.startswith("| cpu1"))
    assert "| FAIL | FAIL (1) |" in cpu_row
    assert cpu_row.endswith("| n/a | n/a | n/a | n/a | n/a | n/a | n/a / n/a | n/a |")
    assert "## Failures" in md and "- **cpu1**: doctor: libcudnn.so.9: not installed" in md
    assert md == fleet.render_markdown(rows)  # deterministic


# --------------------------------------------------------------------------------------------------
# CLI


def run_main(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = fleet.main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_main_writes_the_summary_once_then_reports_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    write_host(
        tmp_path,
        "b-host",
        doctor=doctor_cpu_only(),
        benchmark=benchmark(gpu=False),
        propagation=propagation(gpu=False),
    )
    write_host(tmp_path, "a-host", doctor=doctor_gpu(), benchmark=benchmark(), propagation=propagation())
    (tmp_path / "not-a-host").mkdir()
    rc, out = run_main("--reports", str(tmp_path), capsys=capsys)
    assert rc == 0 and out["ok"] and out["changed"] and out["failures"] == []
    assert [h["host"] for h in out["hosts"]] == ["a-host", "b-host"]
    assert out["png"] is None and "matplotlib" in out["warnings"][0]
    md = (tmp_path / "fleet.md").read_text()
    assert "| a-host | ok |" in md and "| b-host | ok | ok | CPU-only |" in md
    mtime = (tmp_path / "fleet.md").stat().st_mtime_ns
    rc, out = run_main("--reports", str(tmp_path), capsys=capsys)
    assert rc == 0 and not out["changed"]
    assert (tmp_path / "fleet.md").stat().st_mtime_ns == mtime


def test_main_dry_run_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    write_host(tmp_path, "h1", doctor=doctor_gpu())
    rc, out = run_main("--reports", str(tmp_path), "--dry-run", capsys=capsys)
    assert rc == 0 and out["changed"] and out["dry_run"]
    assert not (tmp_path / "fleet.md").exists()


def test_main_removes_a_png_it_can_no_longer_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    write_host(tmp_path, "h1", doctor=doctor_gpu())
    (tmp_path / "fleet.png").write_bytes(b"old")
    rc, out = run_main("--reports", str(tmp_path), capsys=capsys)
    assert rc == 0 and out["changed"] and not (tmp_path / "fleet.png").exists()


def test_main_exit_1_on_failed_unreadable_or_missing_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    write_host(tmp_path, "bad", doctor=doctor_gpu(ok=False), benchmark="{not json")
    write_host(tmp_path, "good", doctor=doctor_gpu())
    rc, out = run_main("--reports", str(tmp_path), "--hosts", "bad,good,gone", capsys=capsys)
    assert rc == 1 and not out["ok"]
    assert any(f.startswith("bad: benchmark.json is unreadable") for f in out["failures"])
    want = "bad: doctor: libcudnn.so.9: not installed (fix: zypper install libcudnn9-cuda-12)"
    assert want in out["failures"]
    assert "gone: no reports" in out["failures"]
    assert [h["host"] for h in out["hosts"]] == ["bad", "good", "gone"]


@pytest.mark.parametrize("setup", ["missing", "empty", "path-host"])
def test_main_exit_2_on_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str) -> None:
    reports = tmp_path / "reports"
    args = ["--reports", str(reports)]
    if setup != "missing":
        reports.mkdir()
    if setup == "path-host":
        args += ["--hosts", "../etc"]
    rc, out = run_main(*args, capsys=capsys)
    assert rc == 2 and not out["ok"] and out["failures"]


def test_main_prints_the_table_without_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_matplotlib: None
) -> None:
    write_host(tmp_path, "h1", doctor=doctor_gpu())
    assert fleet.main(["--reports", str(tmp_path), "--no-png"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# GPU stack fleet report") and "| h1 |" in captured.out
    assert captured.err == ""


def test_png_is_rendered_and_stable_when_matplotlib_is_there(tmp_path: Path) -> None:
    write_host(tmp_path, "h1", doctor=doctor_gpu(), benchmark=benchmark(), propagation=propagation())
    write_host(tmp_path, "h2", doctor=doctor_cpu_only())
    first = fleet.build_report(tmp_path)["png"]
    assert first is not None and first.startswith(b"\x89PNG")
    assert fleet.build_report(tmp_path)["png"] == first


# --------------------------------------------------------------------------------------------------
# The validators' real output


def test_doctor_schema(doctor_report: dict[str, Any]) -> None:
    """gpu-doctor on this machine: whatever it finds, the fleet row shows its verdict and GPU column."""
    s = fleet.doctor_summary(doctor_report)
    assert s["verdict"] in ("ok", f"FAIL ({len(s['failures'])})")
    assert s["gpu"] != "n/a"


def test_benchmark_schema(benchmark_report: dict[str, Any]) -> None:
    """mnist-benchmark's run_benchmark with a canned worker: the fleet reads its runs."""
    s = fleet.benchmark_summary(benchmark_report)
    assert s["ok"] is True and s["data"] == "synthetic"
    assert s["modes"]["resident"] == {
        "batch": 1024,
        "cpu": 12000.0,
        "gpu": 60000.0,
        "ratio": 5.0,
        "cpu_pct": s["modes"]["resident"]["cpu_pct"],
        "gpu_pct": s["modes"]["resident"]["gpu_pct"],
    }
    # TFLOP/s with the corrected count, against the canned 10 TFLOP/s peak
    assert s["modes"]["resident"]["gpu_pct"] == pytest.approx(100 * 6000 * 1636352 / 0.1 / 1e12 / 10.0)


def test_propagation_schema(propagation_report: dict[str, Any]) -> None:
    """gpu-propagation's run_propagation on a tiny network: the fleet reads its percent of peak."""
    s = fleet.propagation_summary(propagation_report)
    assert s["ok"] is True and s["numpy_pct"] is not None and s["gpu_pct"] is None

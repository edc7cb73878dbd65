"""The package's real Keras runs, in the ML virtualenv (Keras 3 with TensorFlow, numpy, matplotlib).

`make venv-tests` copies this folder into the converged sandbox host and runs it there with the host's ML
virtualenv, where the gpu_validation role installed the package; nothing here is skipped: a missing
TensorFlow or Keras is a failure of that virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras  # noqa: F401  (the virtualenv must have it)
import numpy as np
import tensorflow  # noqa: F401
from gpu_stack_validation.benchmark import cli, core, data

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
    "data_label",
    "data_source",
    "host",
    "python",
    "config",
    "devices",
    "runs",
    "speedups",
    "goal",
    "goals",
    "article_reference",
    "plot",
}
BIN = Path(sys.executable).parent


def test_quick_run_tensorflow_cpu_learns_and_reports_every_field(tmp_path: Path) -> None:
    """Two epochs on a subset, TensorFlow backend, CPU: the loss falls, the accuracy is far above chance."""
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = cli.main(
        [
            "--backend",
            "tensorflow",
            "--data",
            "synthetic",
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--subset",
            "2048",
            "--batch-sizes",
            "256,2048",
            "--json",
            "--quiet",
            "--output",
            str(out),
            "--plot",
            str(png),
        ]
    )
    report = json.loads(out.read_text())
    assert rc == 0, report["failures"]
    assert set(report) == TOP_KEYS and len(report["runs"]) == 4
    assert report["config"]["flops_per_sample"] == 4 * 784 * 512 + 6 * 512 * 10
    for run in report["runs"]:
        assert run["error"] is None and len(run["epoch_times_s"]) == 2
        assert (
            run["steady_rule"] == "best of epochs 2..2" and run["total_s"] >= sum(run["epoch_times_s"]) * 0.99
        )
        assert run["loss_fell"] is True and run["eval_loss_after"] < run["eval_loss_before"]
        assert run["eval_accuracy_after"] > 0.5  # ten classes: chance is 0.1
        assert run["tflops"] > 0 and run["pct_of_gemm_peak"] > 0
        assert "CPU" in run["variable_device"].upper()
    cpu = report["devices"]["cpu"]
    assert cpu["gemm_peak"]["tflops"] > 0 and cpu["gpus_seen_by_backend"] == 0
    assert report["goals"][1]["device"] == "cpu" and report["goals"][1]["value_pct"] is not None
    assert report["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_mnist_path_with_a_stand_in_cache(tmp_path: Path, monkeypatch) -> None:
    """--data auto picks a verified mnist.npz from Keras' cache (a small learnable stand-in here)."""
    rng = np.random.default_rng(0)
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    labels = rng.integers(0, 10, 600).astype("uint8")
    images = (rng.random((600, 28, 28)) * 50).astype("uint8")
    images[np.arange(600), labels, :] = 255  # learnable: the label lights one row
    np.savez(datasets / "mnist.npz", x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    monkeypatch.setattr(data, "MNIST_SHA256", data.sha256_file(datasets / "mnist.npz"))
    report = cli.run_benchmark(
        data="auto",
        device="cpu",
        modes=("resident",),
        batch_sizes=[100],
        epochs=2,
        subset=600,
        datasets_dir=datasets,
    )
    assert report["ok"], report["failures"]
    assert report["data"] == "mnist" and report["data_source"]["sha256"] == data.MNIST_SHA256
    assert report["runs"][0]["loss_fell"] is True


def test_synthetic_data_is_learnable() -> None:
    x, y = data.load_data(np, {"samples": 4000, "data": "synthetic", "seed": 1})
    assert x.shape == (4000, core.INPUT_DIM) and y.shape == (4000, core.CLASSES)
    assert 0.1 < float((x > 0).mean()) < 0.35  # about as many lit pixels as MNIST's digits
    # a nearest-class-mean classifier already separates the classes: the labels follow the pixels
    labels = y.argmax(axis=1)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(core.CLASSES)])
    predicted = ((x[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert float((predicted == labels).mean()) > 0.9


def test_console_scripts_are_installed() -> None:
    for name in ("gpu-doctor", "mnist-benchmark", "gpu-propagation", "gpu-fleet-report"):
        res = subprocess.run(
            [str(BIN / name), "--help"], capture_output=True, text=True, timeout=120, check=False
        )
        assert res.returncode == 0 and "Exit codes" in res.stdout, (name, res.stderr)


def test_the_doctor_probes_this_host_for_real() -> None:
    """gpu-doctor in the sandbox host: the real probes (ctypes on the stub CUDA libraries, ldconfig, rpm,
    TensorFlow's real import and build info) against the role's pins: CPU-only and ok, in the CUDA mode
    the ml_venv role stamped into this virtualenv (system: the stub RPMs' libraries; pip: NVIDIA's wheels)."""
    stamp = json.loads((Path(sys.prefix) / "gpu-stack-venv.json").read_text())
    res = subprocess.run(
        [str(BIN / "gpu-doctor"), "--json", "--require-tensorflow"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"),
    )
    report = json.loads(res.stdout)
    assert res.returncode == 0, report["failures"]
    checks = report["checks"]
    assert report["mode"] == "cpu-only" and report["cuda_mode"] == stamp["cuda_mode"]
    assert checks["cuda_mode"]["source"].startswith("ml_venv stamp ")
    assert report["expected"]["source"] == "tensorflow"  # TensorFlow's own build info, read at run time
    assert checks["tensorflow"]["build_info"]["is_cuda_build"] is True
    # the driver comes from the system in both modes: the stub libcuda has no device; its version is in the
    # file name of the libcuda the nvidia_driver role installed
    driver = os.path.basename(os.path.realpath("/usr/lib64/libcuda.so.1")).removeprefix("libcuda.so.")
    assert checks["cuda_driver"]["cuinit_rc"] == 100 and checks["driver_version"]["version"] == driver
    libs = checks["libraries"]["libraries"]
    assert libs and {r["status"] for r in libs} == {"ok"}
    if stamp["cuda_mode"] == "system":
        assert all(r["resolved"][0]["elf_soname"] == r["soname"] for r in libs)
        assert checks["cuda_runtime"]["runtime_version"] == 12050 and checks["cudnn"]["runtime_version"] == 90300
    assert checks["gpu"]["nvml"]["init_error"] == "Driver Not Loaded"  # nvidia-ml-py on the stub libnvidia-ml

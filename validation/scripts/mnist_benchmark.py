#!/usr/bin/env python3
"""The article's MNIST benchmark on CPU and GPU, article-faithful and device-resident.

Model (as in the article): Dense(512, relu) + Dense(10, softmax), rmsprop,
categorical crossentropy, 5 epochs, batch 30000, on 60,000 samples of 784 floats.
Keras 3 with the TensorFlow backend by default; ``--backend jax|torch`` too.

Every device runs in its own process (this script re-runs itself with
``--worker``): GPUs are hidden from the CPU process, and the GPU process checks
that the backend really sees a GPU, so CPU time is never reported as GPU time.
Both modes are reported for every batch size of the sweep (default 128, 1024,
8192, 30000):

  article   numpy arrays into ``model.fit``, as the article did: this measures
            Keras' input pipeline as much as the device.
  resident  the data placed on the device once and a compiled train step
            (jax: jitted ``stateless_call`` step; tensorflow: ``tf.function``
            with XLA; torch: Keras' own torch train step on device tensors).
            No shuffling between epochs.

Per run: epoch times, the steady epoch time (BEST of epochs 2..N; epoch 1 alone
when N is 1, which then includes compilation), samples/s, achieved TFLOP/s
(6 * N * (784*512 + 512*10) FLOPs per epoch), percent of an fp32 GEMM peak
(30000x784 @ 784x512, timed in the same process on the same device, TF32 off
there and in training), final loss and accuracy, and a numpy evaluation of the
loss before and after training on the first 10,000 samples (``loss_fell``).
GPU/CPU speedup per batch size and mode. While the GPU works, NVML is sampled
every 250 ms (utilisation, memory): mean and peak per run.

Data: real MNIST from Keras' cache ($KERAS_HOME/datasets/mnist.npz, sha256
checked; downloaded there when missing and online), or ``--data synthetic``:
seeded MNIST-shaped random data with learnable labels, labelled SYNTHETIC in
the JSON, the table and the plot.

Output: a table (default) or one JSON object (``--json``) with stable keys,
``ok`` and ``failures``; ``--output FILE`` writes the JSON, ``--plot FILE`` a
PNG (throughput and GPU/CPU speedup against batch size). Progress on stderr.
Performance goal (reported, not enforced): resident mode on a GPU at batch
30000 reaches at least 50% of the same-run fp32 GEMM peak.

Exit codes: 0 ok; 1 a check failed (GPU asked for but not seen, a run failed,
the loss did not fall); 2 usage or environment error (bad arguments, backend
not importable, MNIST missing while offline: use --data synthetic).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOL = "mnist_benchmark"
SCHEMA_VERSION = 1

MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SAMPLES = 60000
INPUT_DIM, HIDDEN_UNITS, CLASSES = 784, 512, 10
MACS_PER_SAMPLE = INPUT_DIM * HIDDEN_UNITS + HIDDEN_UNITS * CLASSES
GEMM_SHAPE = (30000, 784, 512)

BACKENDS = ("tensorflow", "jax", "torch")
MODES = ("article", "resident")
DEFAULT_BATCH_SIZES = (128, 1024, 8192, 30000)
QUICK = {"epochs": 2, "subset": 6000, "batch_sizes": (1024, 30000)}
ARTICLE_EPOCHS = 5
GOAL_BATCH = 30000
GOAL_RESIDENT_PCT = 50.0
EVAL_SAMPLES = 10000
NVML_INTERVAL_S = 0.25
ARTICLE_REFERENCE = {"gpu": "GTX 960", "cpu": "i7-6700K", "gpu_s_5_epochs": 0.79,
                     "cpu_s_5_epochs": 1.93, "speedup": 2.4, "batch_size": 30000}

EXIT_OK, EXIT_FAIL, EXIT_ENV = 0, 1, 2


class EnvProblem(Exception):
    """An environment error: exit 2 with this message."""


# ----------------------------------------------------------------------------
# Pure helpers (stdlib only; unit-tested)
# ----------------------------------------------------------------------------
def flops_per_epoch(samples: int) -> int:
    """Training FLOPs of one epoch: 6 per weight per sample (forward 2, backward 4)."""
    return 6 * samples * MACS_PER_SAMPLE


def gemm_flops(m: int, k: int, n: int) -> int:
    return 2 * m * k * n


def steady_epoch(times: list[float]) -> tuple[float | None, str]:
    """Steady epoch time: the best of epochs 2..N; epoch 1 when it is the only one."""
    if not times:
        return None, "no epochs"
    if len(times) == 1:
        return times[0], "epoch 1 only (includes compilation and warm-up)"
    return min(times[1:]), f"best of epochs 2..{len(times)}"


def finalize_run(run: dict[str, Any], samples: int, peak_tflops: float | None) -> dict[str, Any]:
    """Fill the derived fields of a run from its epoch times."""
    steady, rule = steady_epoch(run.get("epoch_times_s") or [])
    run["steady_epoch_s"] = steady
    run["steady_rule"] = rule
    run["samples_per_s"] = samples / steady if steady else None
    run["tflops"] = flops_per_epoch(samples) / steady / 1e12 if steady else None
    run["pct_of_gemm_peak"] = (100.0 * run["tflops"] / peak_tflops
                               if run["tflops"] is not None and peak_tflops else None)
    return run


def new_run(device: str, mode: str, batch: int, samples: int, epochs: int) -> dict[str, Any]:
    """A run record with every key present (None until measured)."""
    run: dict[str, Any] = {
        "device": device, "mode": mode, "batch_size": batch,
        "effective_batch_size": min(batch, samples), "steps_per_epoch": -(-samples // batch),
        "epochs": epochs, "samples": samples, "error": None, "epoch_times_s": [],
        "epoch_losses": [], "epoch_accuracies": [], "compile_s": None, "jit_compile": None,
        "data_device": None, "variable_device": None, "final_loss": None,
        "final_accuracy": None, "eval_samples": None, "eval_loss_before": None,
        "eval_loss_after": None, "eval_accuracy_after": None, "loss_fell": None,
        "nvml_reason": None}
    run.update(summarise_samples([]))
    return finalize_run(run, samples, None)


def speedups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GPU speedup (CPU steady time / GPU steady time) per mode and batch size."""
    index = {(r["device"], r["mode"], r["batch_size"]): r for r in runs}
    rows = []
    for (device, mode, batch), gpu in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if device != "gpu":
            continue
        cpu = index.get(("cpu", mode, batch))
        if cpu is None:
            continue
        c, g = cpu.get("steady_epoch_s"), gpu.get("steady_epoch_s")
        rows.append({"mode": mode, "batch_size": batch, "cpu_steady_epoch_s": c,
                     "gpu_steady_epoch_s": g,
                     "gpu_speedup": c / g if c and g else None})
    return rows


def resident_goal(runs: list[dict[str, Any]], batch_sizes: list[int]) -> dict[str, Any]:
    """The resident-GPU goal at batch 30000 (or the largest batch of the sweep)."""
    batch = GOAL_BATCH if GOAL_BATCH in batch_sizes else max(batch_sizes)
    goal: dict[str, Any] = {
        "description": f"resident mode on the GPU at batch {batch} >= "
                       f"{GOAL_RESIDENT_PCT:.0f}% of the same-run fp32 GEMM peak",
        "batch_size": batch, "target_pct": GOAL_RESIDENT_PCT, "value_pct": None, "met": None}
    for r in runs:
        if (r["device"], r["mode"], r["batch_size"]) == ("gpu", "resident", batch):
            goal["value_pct"] = r.get("pct_of_gemm_peak")
            if goal["value_pct"] is not None:
                goal["met"] = goal["value_pct"] >= GOAL_RESIDENT_PCT
    return goal


def data_label(data: str, seed: int) -> str:
    if data == "synthetic":
        return f"SYNTHETIC MNIST-shaped random data (seed {seed}), not MNIST"
    return "real MNIST (sha256 verified)"


def parse_batch_sizes(text: str) -> list[int]:
    values = [int(p) for p in text.split(",") if p.strip()]
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--batch-sizes wants positive integers, got {text!r}")
    return values


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keras_datasets_dir(environ: dict[str, str] | None = None) -> Path:
    """Where Keras caches datasets: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    environ = os.environ if environ is None else environ
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _download(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_mnist(datasets_dir: Path, allow_download: bool = True,
                  fetch: Callable[[str, Path, float], None] | None = None,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Find (or fetch, like Keras' load_data does) mnist.npz and verify its sha256.

    Raises EnvProblem with the fix in the message when it is missing or wrong.
    """
    fetch = fetch or _download
    path = datasets_dir / "mnist.npz"
    downloaded = False
    if not path.exists():
        if not allow_download:
            raise EnvProblem(f"MNIST is not in Keras' cache ({path}) and --no-download was given; "
                             "pre-seed that file or use --data synthetic")
        try:
            fetch(MNIST_URL, path, timeout)
            downloaded = True
        except Exception as exc:  # any network/file error is an env problem
            raise EnvProblem(
                f"MNIST is not in Keras' cache ({path}) and the download from {MNIST_URL} "
                f"failed ({type(exc).__name__}: {exc}); offline? copy mnist.npz there "
                "(sha256 " + MNIST_SHA256 + ") or run with --data synthetic") from exc
    digest = sha256_file(path)
    if digest != MNIST_SHA256:
        raise EnvProblem(f"{path} has sha256 {digest}, expected {MNIST_SHA256}: remove the "
                         "file so it is downloaded again, or use --data synthetic")
    return {"path": str(path), "sha256": digest, "downloaded": downloaded}


def hidden_by_env(environ: dict[str, str]) -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1) hides every GPU."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


def nvml_index(environ: dict[str, str]) -> int | str:
    """NVML ignores CUDA_VISIBLE_DEVICES: map its first entry to an index or UUID."""
    first = (environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
    if first.isdigit():
        return int(first)
    return first if first.startswith(("GPU-", "MIG-")) else 0


def child_env(base: dict[str, str], backend: str, device: str) -> dict[str, str]:
    """Environment for a worker: backend chosen before import, GPUs hidden for the CPU."""
    env = dict(base)
    env["KERAS_BACKEND"] = backend
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    else:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # honest memory readings
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


def summarise_samples(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Mean and peak of (utilisation %, memory used MiB) samples."""
    if not samples:
        return {"nvml_samples": 0, "gpu_util_mean_pct": None, "gpu_util_peak_pct": None,
                "gpu_mem_used_mean_mib": None, "gpu_mem_used_peak_mib": None}
    utils = [s[0] for s in samples]
    mems = [s[1] for s in samples]
    return {"nvml_samples": len(samples), "gpu_util_mean_pct": statistics.fmean(utils),
            "gpu_util_peak_pct": max(utils), "gpu_mem_used_mean_mib": statistics.fmean(mems),
            "gpu_mem_used_peak_mib": max(mems)}


# ----------------------------------------------------------------------------
# NVML sampling (ctypes on libnvidia-ml.so.1; no third-party package needed)
# ----------------------------------------------------------------------------
class _Utilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class NvmlSampler:
    """Samples GPU utilisation and memory in a thread; unavailable -> reason set."""

    def __init__(self, index: int | str = 0, interval: float = NVML_INTERVAL_S,
                 loader: Callable[[str], Any] = ctypes.CDLL) -> None:
        self.interval = interval
        self.reason: str | None = None
        self.gpu_name: str | None = None
        self._lib: Any = None
        self._handle = ctypes.c_void_p()
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            lib = loader("libnvidia-ml.so.1")
        except OSError as exc:
            self.reason = f"libnvidia-ml.so.1 not loadable: {exc}"
            return
        try:
            rc = lib.nvmlInit_v2()
            if rc != 0:
                self.reason = f"nvmlInit_v2 failed with NVML error {rc}"
                return
            if isinstance(index, str):
                rc = lib.nvmlDeviceGetHandleByUUID(index.encode(), ctypes.byref(self._handle))
            else:
                rc = lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self._handle))
            if rc != 0:
                self.reason = f"no NVML device {index!r} (NVML error {rc})"
                return
            name = ctypes.create_string_buffer(96)
            if lib.nvmlDeviceGetName(self._handle, name, 96) == 0:
                self.gpu_name = name.value.decode(errors="replace")
        except AttributeError as exc:
            self.reason = f"libnvidia-ml.so.1 lacks an NVML entry point: {exc}"
            return
        self._lib = lib

    @property
    def available(self) -> bool:
        return self._lib is not None

    def read(self) -> tuple[float, float] | None:
        util, mem = _Utilization(), _Memory()
        if self._lib.nvmlDeviceGetUtilizationRates(self._handle, ctypes.byref(util)) != 0:
            return None
        if self._lib.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(mem)) != 0:
            return None
        return float(util.gpu), mem.used / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample = self.read()
            if sample is not None:
                self._samples.append(sample)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._samples = []
        if not self.available:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        result = summarise_samples(self._samples)
        result["nvml_reason"] = None if self.available else self.reason
        return result

    def close(self) -> None:
        if self._lib is not None:
            self._lib.nvmlShutdown()
            self._lib = None


def host_gpu_probe(environ: dict[str, str] | None = None,
                   dev_glob: Callable[[], list[str]] | None = None,
                   nvml_count: Callable[[], int | None] | None = None) -> tuple[bool, str]:
    """Cheap check, without importing a framework, whether an NVIDIA GPU is visible."""
    environ = os.environ if environ is None else environ
    if hidden_by_env(environ):
        return False, "CUDA_VISIBLE_DEVICES hides every GPU"
    nodes = (dev_glob or (lambda: [str(p) for p in Path("/dev").glob("nvidia[0-9]*")]))()
    count = (nvml_count or _nvml_device_count)()
    if count:
        return True, f"NVML reports {count} GPU(s)"
    if nodes:
        return True, f"device nodes present: {', '.join(sorted(nodes))}"
    return False, "no /dev/nvidia[0-9]* device node and NVML reports no GPU"


def _nvml_device_count() -> int | None:
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        if lib.nvmlInit_v2() != 0:
            return None
        count = ctypes.c_uint()
        rc = lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
        lib.nvmlShutdown()
        return count.value if rc == 0 else None
    except (OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------
# Subprocess helper: never raises; timeouts and missing programs become codes
# ----------------------------------------------------------------------------
def run_command(argv: list[str], env: dict[str, str] | None = None,
                timeout: float | None = None, stdout: Any = None) -> int:
    try:
        return subprocess.run(argv, env=env, timeout=timeout, stdout=stdout,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        return 124
    except OSError:
        return 127


def run_worker(config: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one device's worker process; return its result (or a crash record)."""
    with tempfile.TemporaryDirectory(prefix="mnist_benchmark.") as tmp:
        cfg_path = Path(tmp) / "config.json"
        result_path = Path(tmp) / "result.json"
        cfg_path.write_text(json.dumps({**config, "result_path": str(result_path)}))
        # Frameworks print to stdout: send the worker's stdout to our stderr so
        # that --json output stays one clean object.
        try:
            out: Any = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            out = None  # stderr is not a real file (e.g. captured): inherit stdout
        rc = run_command([sys.executable, os.path.abspath(__file__), "--worker", str(cfg_path)],
                         env=env, timeout=timeout, stdout=out)
        if result_path.exists():
            try:
                result = json.loads(result_path.read_text())
                result["returncode"] = rc
                return result
            except ValueError:
                pass
    reason = {124: f"timed out after {timeout:.0f} s", 127: "could not start python"}.get(
        rc, f"exited with code {rc} without a result")
    return {"status": "error", "message": f"{config['device']} worker {reason}",
            "returncode": rc, "device": config["device"], "runs": []}


# ----------------------------------------------------------------------------
# Orchestration (parent process)
# ----------------------------------------------------------------------------
def plan_devices(device: str, probe: Callable[[], tuple[bool, str]]) -> tuple[list[str], list[str]]:
    """Devices to run, GPU first, and notes. 'auto' = both if a GPU is visible, else cpu."""
    if device == "cpu":
        return ["cpu"], []
    if device == "gpu":
        return ["gpu"], []
    if device == "both":
        return ["gpu", "cpu"], []
    present, reason = probe()
    if present:
        return ["gpu", "cpu"], [f"GPU found ({reason}): running GPU and CPU"]
    return ["cpu"], [f"no GPU visible ({reason}): CPU only"]


def empty_report(backend: str, data: str, seed: int) -> dict[str, Any]:
    """The report skeleton: every key present, so consumers can rely on them."""
    return {
        "tool": TOOL, "schema_version": SCHEMA_VERSION, "ok": False, "failures": [], "notes": [],
        "error": None, "backend": backend, "data": data, "data_label": data_label(data, seed),
        "data_source": None, "host": platform.node(), "python": platform.python_version(),
        "config": {}, "devices": {}, "runs": [], "speedups": [], "goal": None,
        "article_reference": ARTICLE_REFERENCE, "plot": None,
    }


def run_benchmark(backend: str = "tensorflow", data: str = "mnist", device: str = "auto",
                  modes: tuple[str, ...] = MODES, batch_sizes: list[int] | None = None,
                  epochs: int = ARTICLE_EPOCHS, subset: int | None = None, seed: int = 0,
                  allow_download: bool = True, timeout: float = 1800.0, quiet: bool = False,
                  progress: Callable[[str], None] | None = None,
                  runner: Callable[[dict, dict, float], dict] | None = None,
                  probe: Callable[[], tuple[bool, str]] | None = None,
                  datasets_dir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark in one worker process per device; return the report dict.

    Raises EnvProblem for environment errors (exit 2).
    """
    progress = progress or (lambda msg: None)
    runner = runner or run_worker
    probe = probe or host_gpu_probe
    batch_sizes = list(batch_sizes or DEFAULT_BATCH_SIZES)
    report = empty_report(backend, data, seed)
    samples = min(subset or MNIST_SAMPLES, MNIST_SAMPLES)
    report["config"] = {
        "epochs": epochs, "batch_sizes": batch_sizes, "modes": list(modes), "subset": subset,
        "samples": samples, "seed": seed, "device_request": device,
        "model": "Dense(512, relu) + Dense(10, softmax), rmsprop, categorical crossentropy",
        "flops_per_epoch": flops_per_epoch(samples), "gemm_peak_shape": list(GEMM_SHAPE),
        "precision": "float32, TF32 disabled",
        "steady_rule": "best of epochs 2..N (epoch 1 alone when N = 1: includes compilation)",
        "timeout_s": timeout,
    }
    if data == "mnist":
        report["data_source"] = resolve_mnist(datasets_dir or keras_datasets_dir(),
                                              allow_download=allow_download)
    else:
        report["data_source"] = {"path": None, "sha256": None, "downloaded": False}
    devices, notes = plan_devices(device, probe)
    report["notes"] += notes
    report["config"]["devices"] = devices
    for dev in devices:
        config = {"backend": backend, "device": dev, "data": data,
                  "mnist_path": report["data_source"]["path"], "modes": list(modes),
                  "batch_sizes": batch_sizes, "epochs": epochs, "samples": samples, "seed": seed,
                  "quiet": quiet}
        progress(f"starting the {dev} worker ({backend} backend, {report['data_label']})")
        result = runner(config, child_env(dict(os.environ), backend, dev), timeout)
        status = result.get("status")
        report["devices"][dev] = {k: v for k, v in result.items() if k != "runs"}
        if status == "env_error":
            raise EnvProblem(result.get("message") or f"{dev} worker: environment error")
        if status == "no_gpu":
            report["failures"].append(
                f"GPU requested but the {backend} backend sees none: {result.get('message')}; "
                "nothing was timed on the CPU under the GPU's name (run gpu_doctor.py)")
            continue
        if status != "ok":
            report["failures"].append(result.get("message") or f"{dev} worker failed")
        for run in result.get("runs", []):
            report["runs"].append(run)
            label = f"{run['device']} {run['mode']} batch {run['batch_size']}"
            if run.get("error"):
                report["failures"].append(f"{label}: {run['error']}")
            elif run.get("loss_fell") is False:
                report["failures"].append(
                    f"{label}: the loss did not fall ({run.get('eval_loss_before')} -> "
                    f"{run.get('eval_loss_after')})")
    report["speedups"] = speedups(report["runs"])
    report["goal"] = resident_goal(report["runs"], batch_sizes)
    if report["goal"]["met"] is False:
        report["notes"].append(f"goal not met: {report['goal']['description']} "
                               f"(got {report['goal']['value_pct']:.1f}%)")
    report["ok"] = not report["failures"]
    return report


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """Readable summary; the data label heads it."""
    lines = [f"MNIST benchmark ({report['backend']} backend) - DATA: {report['data_label']}",
             f"result: {'OK' if report['ok'] else 'FAILED'}"]
    for dev, info in report["devices"].items():
        peak = (info.get("gemm_peak") or {}).get("tflops")
        lines.append(f"{dev}: {info.get('device_name') or '-'}; {report['backend']} "
                     f"{info.get('backend_version') or '-'}, keras {info.get('keras_version') or '-'}"
                     f"; fp32 GEMM peak {_f(peak, '.2f')} TFLOP/s")
    if report["runs"]:
        lines += ["", f"{'device':<6} {'mode':<9} {'batch':>6} {'steady s':>9} {'samples/s':>10} "
                      f"{'TFLOP/s':>8} {'%peak':>6} {'loss':>7} {'acc':>6} {'util% mean/peak':>16}"]
        for r in report["runs"]:
            util = (f"{_f(r.get('gpu_util_mean_pct'), '.0f')}/{_f(r.get('gpu_util_peak_pct'), '.0f')}"
                    if r["device"] == "gpu" else "")
            if r.get("error"):
                lines.append(f"{r['device']:<6} {r['mode']:<9} {r['batch_size']:>6}  ERROR: "
                             f"{r['error']}")
                continue
            lines.append(
                f"{r['device']:<6} {r['mode']:<9} {r['batch_size']:>6} "
                f"{_f(r.get('steady_epoch_s'), '.4f'):>9} {_f(r.get('samples_per_s'), ',.0f'):>10} "
                f"{_f(r.get('tflops'), '.3f'):>8} {_f(r.get('pct_of_gemm_peak'), '.1f'):>6} "
                f"{_f(r.get('final_loss'), '.4f'):>7} {_f(r.get('final_accuracy'), '.3f'):>6} "
                f"{util:>16}")
    shrunk = sorted({(r["batch_size"], r["effective_batch_size"]) for r in report["runs"]
                     if r["effective_batch_size"] != r["batch_size"]})
    for asked, got in shrunk:
        lines.append(f"note: batch {asked} ran as {got} (only {got} samples)")
    if report["speedups"]:
        lines += ["", "GPU speedup (CPU steady epoch / GPU steady epoch); the article: "
                      f"{ARTICLE_REFERENCE['speedup']}x at batch 30000"]
        for s in report["speedups"]:
            lines.append(f"  {s['mode']:<9} batch {s['batch_size']:>6}: "
                         f"{_f(s['gpu_speedup'], '.2f')}x")
    goal = report.get("goal")
    if goal and goal.get("value_pct") is not None:
        lines.append(f"goal: {goal['description']}: {goal['value_pct']:.1f}% -> "
                     f"{'met' if goal['met'] else 'NOT met'}")
    if report["runs"]:
        rules = sorted({r["steady_rule"] for r in report["runs"] if not r.get("error")})
        lines.append(f"steady epoch = {'; '.join(rules) or '-'}; "
                     "TFLOP/s = 6*N*(784*512+512*10) per epoch / steady epoch")
    lines += [f"note: {n}" for n in report["notes"]]
    lines += [f"FAIL: {f}" for f in report["failures"]]
    return "\n".join(lines)


def write_plot(report: dict[str, Any], path: str) -> str | None:
    """Throughput and GPU speedup against batch size, both modes. Returns an error or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib unavailable: {exc}"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {("gpu", "resident"): "o-", ("gpu", "article"): "o--",
              ("cpu", "resident"): "s-", ("cpu", "article"): "s--"}
    for (dev, mode), style in styles.items():
        rows = sorted((r for r in report["runs"] if r["device"] == dev and r["mode"] == mode
                       and r.get("samples_per_s")), key=lambda r: r["batch_size"])
        if rows:
            left.plot([r["effective_batch_size"] for r in rows],
                      [r["samples_per_s"] for r in rows], style, label=f"{dev} {mode}")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("batch size (samples per step)")
    left.set_ylabel("training samples / s (steady epoch)")
    left.set_title("Throughput")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    effective = {r["batch_size"]: r["effective_batch_size"] for r in report["runs"]}
    for mode, style in (("resident", "o-"), ("article", "o--")):
        rows = [s for s in report["speedups"] if s["mode"] == mode and s["gpu_speedup"]]
        if rows:
            right.plot([effective.get(s["batch_size"], s["batch_size"]) for s in rows],
                       [s["gpu_speedup"] for s in rows], style, label=mode)
    if not report["speedups"]:
        right.text(0.5, 0.5, "no GPU run, so no GPU/CPU ratio", ha="center", va="center",
                   transform=right.transAxes)
    right.axhline(ARTICLE_REFERENCE["speedup"], color="grey", linestyle=":",
                  label=f"article: {ARTICLE_REFERENCE['speedup']}x (GTX 960 vs i7-6700K)")
    right.axhline(1.0, color="black", linewidth=0.8)
    if report["speedups"]:
        right.set_xscale("log", base=2)
        right.set_yscale("log")
    right.set_xlabel("batch size")
    right.set_ylabel("GPU speedup over CPU (x)")
    right.set_title("GPU / CPU" if report["speedups"] else "GPU / CPU (no GPU run)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    gpu = report["devices"].get("gpu", {}).get("device_name")
    fig.suptitle(f"MNIST benchmark, Keras {report['backend']}"
                 f"{' on ' + gpu if gpu else ''} - DATA: {report['data_label']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------
# Worker (child process): one backend, one device
# ----------------------------------------------------------------------------
_QUIET = False  # set in a worker started with --quiet


def _log(msg: str) -> None:
    if not _QUIET:
        print(f"mnist_benchmark: {msg}", file=sys.stderr, flush=True)


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or None
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def load_data(np: Any, config: dict[str, Any]) -> tuple[Any, Any]:
    """x (N, 784) float32 in [0, 1], y one-hot (N, 10) float32, as the article prepared them."""
    n = config["samples"]
    if config["data"] == "mnist":
        with np.load(config["mnist_path"]) as archive:
            x, labels = archive["x_train"][:n], archive["y_train"][:n]
        x = x.reshape(len(x), INPUT_DIM).astype("float32") / 255.0
    else:
        # Seeded random pixels shaped like MNIST's (about 19% lit, mean about 0.13)
        # and labels that a fixed random linear map predicts, so the loss can fall.
        rng = np.random.default_rng(config["seed"])
        lit = rng.random((n, INPUT_DIM), dtype=np.float32) < 0.19
        x = lit * rng.uniform(0.4, 1.0, (n, INPUT_DIM)).astype(np.float32)
        projection = rng.standard_normal((INPUT_DIM, CLASSES)).astype(np.float32)
        labels = np.argmax((x - x.mean(axis=0)) @ projection, axis=1)
    y = np.eye(CLASSES, dtype="float32")[labels]
    return np.ascontiguousarray(x), y


def numpy_eval(np: Any, weights: list[Any], x: Any, y: Any) -> tuple[float, float]:
    """Loss (exact log-softmax) and accuracy of the model's weights, in numpy."""
    w1, b1, w2, b2 = (np.asarray(w, dtype="float64") for w in weights)
    logits = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-(y * logp).sum(axis=1).mean())
    acc = float((logits.argmax(axis=1) == y.argmax(axis=1)).mean())
    return loss, acc


class _Backend:
    """What differs between backends: device checks, GEMM timing, the resident step."""

    def __init__(self, name: str, device: str) -> None:
        self.name, self.device = name, device
        import keras

        self.keras = keras
        if keras.backend.backend() != name:
            raise EnvProblem(f"KERAS_BACKEND={name} but keras uses {keras.backend.backend()}")
        self.mod: Any = None
        getattr(self, f"_setup_{name}")()

    # -- tensorflow ----------------------------------------------------------
    def _setup_tensorflow(self) -> None:
        import tensorflow as tf

        self.mod, self.version = tf, tf.__version__
        tf.config.experimental.enable_tensor_float_32_execution(False)
        gpus = tf.config.list_physical_devices("GPU")
        self.gpu_count = len(gpus)
        self.tf_device = "/GPU:0" if self.device == "gpu" else "/CPU:0"
        self.device_name = None
        if gpus and self.device == "gpu":
            details = tf.config.experimental.get_device_details(gpus[0])
            self.device_name = details.get("device_name")
        if self.device == "gpu" and not gpus:
            info = tf.sysconfig.get_build_info()
            self.no_gpu = (f"tf.config.list_physical_devices('GPU') is empty (TensorFlow "
                           f"{tf.__version__}, CUDA build: {info.get('is_cuda_build')}, built for "
                           f"CUDA {info.get('cuda_version')} / cuDNN {info.get('cudnn_version')})")

    def _tf_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        tf = self.mod
        with tf.device(self.tf_device):
            a = tf.random.uniform(GEMM_SHAPE[:2])
            b = tf.random.uniform(GEMM_SHAPE[1:])
        # Both TF's own kernels and XLA: the peak is the better of the two.
        variants = [tf.function(lambda p, q: tf.linalg.matmul(p, q), jit_compile=jit)
                    for jit in (False, True)]
        return [((lambda mm=mm: mm(a, b)), (lambda c: c[0, 0].numpy()), (lambda c: c.device))
                for mm in variants]

    # -- jax -----------------------------------------------------------------
    def _setup_jax(self) -> None:
        import jax

        self.mod, self.version = jax, jax.__version__
        jax.config.update("jax_default_matmul_precision", "highest")  # true fp32, no TF32
        platform_name = jax.default_backend()
        self.gpu_count = len(jax.devices()) if platform_name in ("gpu", "cuda", "rocm") else 0
        self.jax_device = jax.devices()[0]
        self.device_name = self.jax_device.device_kind if self.device == "gpu" else None
        if self.device == "gpu" and not self.gpu_count:
            self.no_gpu = f"jax default backend is {platform_name!r} (jax {jax.__version__})"

    def _jax_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        jax = self.mod
        key = jax.random.PRNGKey(0)
        a = jax.device_put(jax.random.uniform(key, GEMM_SHAPE[:2]), self.jax_device)
        b = jax.device_put(jax.random.uniform(key, GEMM_SHAPE[1:]), self.jax_device)
        mm = jax.jit(lambda p, q: p @ q)
        return [((lambda: mm(a, b)), (lambda c: c.block_until_ready()),
                 (lambda c: str(next(iter(c.devices())))))]

    # -- torch ---------------------------------------------------------------
    def _setup_torch(self) -> None:
        import torch

        self.mod, self.version = torch, torch.__version__
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        self.device_name = torch.cuda.get_device_name(0) if self.gpu_count and \
            self.device == "gpu" else None
        if self.device == "gpu" and not self.gpu_count:
            self.no_gpu = (f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                           f"built for CUDA {torch.version.cuda})")

    def _torch_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        torch = self.mod
        a = torch.rand(GEMM_SHAPE[:2], device=self.torch_device)
        b = torch.rand(GEMM_SHAPE[1:], device=self.torch_device)

        def sync(_: Any) -> None:
            if self.device == "gpu":
                torch.cuda.synchronize()

        return [((lambda: torch.matmul(a, b)), sync, (lambda c: str(c.device)))]

    # -- common --------------------------------------------------------------
    def gemm_peak(self) -> dict[str, Any]:
        """Best fp32 TFLOP/s of the 30000x784 @ 784x512 matmul in this backend and device."""
        variants = getattr(self, f"_{'tf' if self.name == 'tensorflow' else self.name}_gemm")()
        best, device, reps = float("inf"), None, 0
        for call, block, where in variants:
            block(call())
            block(call())  # compile and warm up
            t0 = time.perf_counter()
            block(call())
            one = max(time.perf_counter() - t0, 1e-6)
            reps = max(1, min(200, int(0.25 / one)))
            best = min(best, one)
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(reps):
                    result = call()
                block(result)
                best = min(best, (time.perf_counter() - t0) / reps)
            device = where(result)
        return {"shape": list(GEMM_SHAPE), "seconds": best,
                "tflops": gemm_flops(*GEMM_SHAPE) / best / 1e12, "device": device,
                "repetitions": reps}

    def variable_device(self, model: Any) -> str:
        value = model.trainable_variables[0].value
        if self.name == "jax":
            return str(next(iter(value.devices())))
        return str(value.device)

    def to_device(self, array: Any) -> Any:
        if self.name == "tensorflow":
            with self.mod.device(self.tf_device):
                return self.mod.identity(self.mod.constant(array))
        if self.name == "jax":
            return self.mod.device_put(array, self.jax_device)
        return self.mod.as_tensor(array, device=self.torch_device)

    def data_device(self, array: Any) -> str:
        if self.name == "jax":
            return str(next(iter(array.devices())))
        return str(array.device)


def _snapshot(keras: Any, variables: list[Any]) -> list[Any]:
    return [keras.ops.convert_to_numpy(v.value).copy() for v in variables]


def _restore(variables: list[Any], values: list[Any]) -> None:
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def build_model(keras: Any, seed: int) -> Any:
    keras.utils.set_random_seed(seed)  # every run starts from the same weights
    return keras.Sequential([
        keras.Input(shape=(INPUT_DIM,)),
        keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])


def fit_article(be: _Backend, model: Any, x: Any, y: Any, batch: int, epochs: int,
                tag: str) -> dict[str, Any]:
    """The article's way: numpy arrays into model.fit; epochs timed by a callback."""
    keras = be.keras
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []
    losses: list[float] = []
    accs: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.t0)
            losses.append(float(logs["loss"]))
            accs.append(float(logs.get("accuracy", float("nan"))))
            _log(f"[{tag}] epoch {epoch + 1}/{epochs} {times[-1]:.4f} s loss {losses[-1]:.4f} "
                 f"acc {accs[-1]:.3f}")

    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
    return {"epoch_times_s": times, "epoch_losses": losses, "epoch_accuracies": accs,
            "compile_s": None, "jit_compile": getattr(model, "jit_compile", None)}


def fit_resident(be: _Backend, model: Any, x: Any, y: Any, batch: int, epochs: int,
                 tag: str) -> dict[str, Any]:
    """Data on the device once, a compiled train step, no per-batch host traffic."""
    keras = be.keras
    optimizer = keras.optimizers.RMSprop()
    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer.build(model.trainable_variables)
    xd, yd = be.to_device(x), be.to_device(y)
    n = x.shape[0]
    batches = [(xd[i:i + batch], yd[i:i + batch]) for i in range(0, n, batch)]
    shapes = {}  # one batch per distinct shape, to compile before timing
    for xb, yb in batches:
        shapes.setdefault(int(xb.shape[0]), (xb, yb))
    step, state_out, finish = globals()[f"_resident_{be.name}"](
        be, model, optimizer, loss_fn)
    # Compile/warm up every batch shape, then put the weights back untouched.
    saved = _snapshot(keras, model.variables + optimizer.variables)
    t0 = time.perf_counter()
    for xb, yb in shapes.values():
        state_out(step(xb, yb))
    compile_s = time.perf_counter() - t0
    _restore(model.variables + optimizer.variables, saved)
    step, state_out, finish = globals()[f"_resident_{be.name}"](
        be, model, optimizer, loss_fn, reuse=step)
    times, losses, accs = [], [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        outs = [step(xb, yb) for xb, yb in batches]
        loss_sum, correct = finish(outs, [int(xb.shape[0]) for xb, _ in batches])  # syncs
        times.append(time.perf_counter() - t0)
        losses.append(loss_sum / n)
        accs.append(correct / n)
        _log(f"[{tag}] epoch {epoch + 1}/{epochs} {times[-1]:.4f} s loss {losses[-1]:.4f} "
             f"acc {accs[-1]:.3f}")
    state_out(None)  # write the trained weights back into the Keras variables
    return {"epoch_times_s": times, "epoch_losses": losses, "epoch_accuracies": accs,
            "compile_s": compile_s,
            "jit_compile": be.gpu_count > 0 if be.name == "tensorflow" else be.name == "jax",
            "data_device": be.data_device(xd)}


def _resident_tensorflow(be: _Backend, model: Any, optimizer: Any, loss_fn: Any,
                         reuse: Any = None) -> tuple[Any, Any, Any]:
    tf = be.mod
    if reuse is None:
        # XLA where Keras' jit_compile="auto" uses it: with a GPU, not on CPU-only.
        @tf.function(jit_compile=be.gpu_count > 0, reduce_retracing=True)
        def step(xb: Any, yb: Any) -> Any:
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                loss = loss_fn(yb, pred)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(pred, -1), tf.argmax(yb, -1)),
                                         tf.float32))
            return loss, hits
    else:
        step = reuse

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        loss = tf.add_n([o[0] * s for o, s in zip(outs, sizes, strict=True)])
        hits = tf.add_n([o[1] for o in outs])
        return float(loss.numpy()), float(hits.numpy())

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].numpy()

    return step, state_out, finish


def _resident_torch(be: _Backend, model: Any, optimizer: Any, loss_fn: Any,
                    reuse: Any = None) -> tuple[Any, Any, Any]:
    torch = be.mod
    trainable = model.trainable_variables

    def step(xb: Any, yb: Any) -> Any:  # Keras' own torch train step, minus the data adapter
        pred = model(xb, training=True)
        model.zero_grad()
        loss = loss_fn(yb, pred)
        loss.backward()
        with torch.no_grad():
            optimizer.apply([v.value.grad for v in trainable], trainable)
            hits = (pred.argmax(-1) == yb.argmax(-1)).sum()
        return loss.detach(), hits

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        sizes_t = torch.tensor(sizes, dtype=torch.float32, device=outs[0][0].device)
        loss = (torch.stack([o[0] for o in outs]) * sizes_t).sum()
        hits = torch.stack([o[1] for o in outs]).sum()
        return float(loss.item()), float(hits.item())

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].item()

    return step, state_out, finish


def _resident_jax(be: _Backend, model: Any, optimizer: Any, loss_fn: Any,
                  reuse: Any = None) -> tuple[Any, Any, Any]:
    jax = be.mod
    jnp = jax.numpy
    tv, ntv, ov = model.trainable_variables, model.non_trainable_variables, optimizer.variables
    if reuse is None:
        def loss_and_pred(t: Any, nt: Any, xb: Any, yb: Any) -> Any:
            pred, nt = model.stateless_call(t, nt, xb, training=True)
            return loss_fn(yb, pred), (pred, nt)

        grad_fn = jax.value_and_grad(loss_and_pred, has_aux=True)

        @jax.jit
        def jstep(state: Any, xb: Any, yb: Any) -> Any:
            t, nt, o = state
            (loss, (pred, nt)), grads = grad_fn(t, nt, xb, yb)
            t, o = optimizer.stateless_apply(o, grads, t)
            hits = jnp.sum(jnp.argmax(pred, -1) == jnp.argmax(yb, -1))
            return (t, nt, o), loss, hits
    else:
        jstep = reuse.jstep
    # Committed to the device like the step's outputs, so that the first call and
    # the later ones hit the same compiled executable (no recompilation in epoch 1).
    holder = {"state": jax.device_put(
        ([v.value for v in tv], [v.value for v in ntv], [v.value for v in ov]), be.jax_device)}

    def step(xb: Any, yb: Any) -> Any:
        holder["state"], loss, hits = jstep(holder["state"], xb, yb)
        return loss, hits

    step.jstep = jstep  # type: ignore[attr-defined]

    def finish(outs: list[Any], sizes: list[int]) -> tuple[float, float]:
        loss = jnp.sum(jnp.stack([o[0] for o in outs]) * jnp.asarray(sizes, dtype=jnp.float32))
        hits = jnp.sum(jnp.stack([o[1] for o in outs]))
        return float(loss), float(hits)

    def state_out(out: Any) -> None:
        if out is not None:
            out[0].block_until_ready()
            return
        t, nt, o = holder["state"]
        for var, value in zip([*tv, *ntv, *ov], [*t, *nt, *o], strict=True):
            var.assign(value)

    return step, state_out, finish


def worker_main(config_path: str) -> int:
    """Child process: run every mode and batch size on one device; write the result JSON."""
    global _QUIET
    config = json.loads(Path(config_path).read_text())
    _QUIET = bool(config.get("quiet"))
    result: dict[str, Any] = {
        "status": "error", "message": None, "device": config["device"],
        "backend": config["backend"], "backend_version": None, "keras_version": None,
        "device_name": None, "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "gpus_seen_by_backend": None, "precision": "float32, TF32 disabled",
        "gemm_peak": None, "nvml": None, "samples": config["samples"], "runs": []}

    def write() -> None:
        Path(config["result_path"]).write_text(json.dumps(result))

    try:
        import numpy as np

        be = _Backend(config["backend"], config["device"])
    except (ImportError, EnvProblem) as exc:
        result["status"] = "env_error"
        result["message"] = (f"cannot use Keras with the {config['backend']} backend: "
                             f"{type(exc).__name__}: {exc}; install keras and "
                             f"{config['backend']} in this Python ({sys.executable})")
        write()
        return EXIT_ENV
    result.update(backend_version=be.version, keras_version=be.keras.__version__,
                  gpus_seen_by_backend=be.gpu_count)
    if getattr(be, "no_gpu", None):
        result.update(status="no_gpu", message=be.no_gpu)
        write()
        return EXIT_FAIL
    result["device_name"] = be.device_name or (result["cpu_model"] if be.device == "cpu" else None)
    sampler = None
    if be.device == "gpu":
        sampler = NvmlSampler(nvml_index(dict(os.environ)))
        result["nvml"] = {"available": sampler.available, "reason": sampler.reason,
                          "gpu_name": sampler.gpu_name, "interval_s": NVML_INTERVAL_S}
    else:
        result["nvml"] = {"available": False, "reason": "CPU run: not sampled",
                          "gpu_name": None, "interval_s": NVML_INTERVAL_S}
    try:
        result["gemm_peak"] = be.gemm_peak()
        peak_dev = result["gemm_peak"]["device"].lower()
        if be.device == "gpu" and not any(k in peak_dev for k in ("gpu", "cuda")):
            result.update(status="no_gpu", message=f"the GEMM ran on {peak_dev}, not a GPU")
            write()
            return EXIT_FAIL
        _log(f"[{be.device} {be.name}] fp32 GEMM peak {result['gemm_peak']['tflops']:.2f} TFLOP/s "
             f"on {result['gemm_peak']['device']}")
        x, y = load_data(np, config)
        n_eval = min(EVAL_SAMPLES, len(x))
        for mode in config["modes"]:
            for batch in config["batch_sizes"]:
                tag = f"{be.device} {be.name} {mode} b={batch}"
                run = new_run(be.device, mode, batch, len(x), config["epochs"])
                _log(f"[{tag}] start ({config['epochs']} epochs, {len(x)} samples)")
                try:
                    model = build_model(be.keras, config["seed"])
                    before = numpy_eval(np, model.get_weights(), x[:n_eval], y[:n_eval])
                    if sampler:
                        sampler.start()
                    fit = fit_article if mode == "article" else fit_resident
                    try:
                        run.update(fit(be, model, x, y, batch, config["epochs"], tag))
                    finally:
                        if sampler:
                            run.update(sampler.stop())
                    after = numpy_eval(np, model.get_weights(), x[:n_eval], y[:n_eval])
                    run.update(variable_device=be.variable_device(model),
                               final_loss=run["epoch_losses"][-1],
                               final_accuracy=run["epoch_accuracies"][-1],
                               eval_samples=n_eval, eval_loss_before=before[0],
                               eval_loss_after=after[0], eval_accuracy_after=after[1],
                               loss_fell=after[0] < before[0])
                    if be.device == "gpu" and "cpu" in run["variable_device"].lower():
                        run["error"] = f"weights ended up on {run['variable_device']}, not the GPU"
                except Exception as exc:  # record and go on with the next run
                    run["error"] = f"{type(exc).__name__}: {exc}"
                    _log(f"[{tag}] failed: {run['error']}")
                if be.device != "gpu" or not sampler or not sampler.available:
                    run["nvml_reason"] = result["nvml"]["reason"]
                finalize_run(run, len(x), result["gemm_peak"]["tflops"])
                result["runs"].append(run)
                write()  # keep partial results if a later run kills the process
        # Measure the peak again and keep the better one: a busy machine (or a GPU
        # clocking up) can make either measurement low.
        again = be.gemm_peak()
        result["gemm_peak"]["tflops_before_runs"] = result["gemm_peak"]["tflops"]
        result["gemm_peak"]["tflops_after_runs"] = again["tflops"]
        if again["tflops"] > result["gemm_peak"]["tflops"]:
            result["gemm_peak"].update(seconds=again["seconds"], tflops=again["tflops"])
            for run in result["runs"]:
                finalize_run(run, len(x), again["tflops"])
        result["status"] = "ok"
    except Exception as exc:  # report, never a traceback-only death
        result.update(status="error", message=f"{be.device} worker: {type(exc).__name__}: {exc}")
    finally:
        if sampler:
            sampler.close()
    write()
    return EXIT_OK if result["status"] == "ok" else EXIT_FAIL


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow",
                        help="Keras backend (default tensorflow)")
    parser.add_argument("--data", choices=("mnist", "synthetic"), default="mnist",
                        help="real MNIST from Keras' cache, or seeded synthetic data")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu", "both"), default="auto",
                        help="auto (default): GPU and CPU when a GPU is visible, else CPU")
    parser.add_argument("--mode", choices=("both", *MODES), default="both")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {ARTICLE_EPOCHS})")
    parser.add_argument("--batch-sizes", help="comma-separated sweep (default "
                        f"{','.join(map(str, DEFAULT_BATCH_SIZES))})")
    parser.add_argument("--subset", type=int, help="train on the first N samples only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help=f"quick profile: epochs {QUICK['epochs']}, subset {QUICK['subset']}, "
                             f"batch sizes {','.join(map(str, QUICK['batch_sizes']))} "
                             "(explicit options win)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download MNIST; fail (exit 2) when it is not cached")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds per device worker (default 1800)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def emit(report: dict[str, Any], args: argparse.Namespace) -> None:
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text if args.json else render_table(report))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.worker:
        return worker_main(args.worker)
    epochs = args.epochs if args.epochs is not None else (
        QUICK["epochs"] if args.quick else ARTICLE_EPOCHS)
    subset = args.subset if args.subset is not None else (QUICK["subset"] if args.quick else None)
    try:
        batch_sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else list(
            QUICK["batch_sizes"] if args.quick else DEFAULT_BATCH_SIZES)
    except ValueError as exc:
        print(f"mnist_benchmark: {exc}", file=sys.stderr)
        return EXIT_ENV
    if epochs < 1 or (subset is not None and not 1 <= subset <= MNIST_SAMPLES) or args.timeout <= 0:
        print(f"mnist_benchmark: --epochs must be >= 1, --subset within 1..{MNIST_SAMPLES}, "
              "--timeout > 0", file=sys.stderr)
        return EXIT_ENV
    modes = MODES if args.mode == "both" else (args.mode,)
    progress = (lambda msg: None) if args.quiet else _log
    try:
        report = run_benchmark(backend=args.backend, data=args.data, device=args.device,
                               modes=modes, batch_sizes=batch_sizes, epochs=epochs,
                               subset=subset, seed=args.seed,
                               allow_download=not args.no_download, timeout=args.timeout,
                               quiet=args.quiet, progress=progress)
    except EnvProblem as exc:
        report = empty_report(args.backend, args.data, args.seed)
        report["error"] = "environment"
        report["failures"].append(str(exc))
        print(f"mnist_benchmark: {exc}", file=sys.stderr)
        emit(report, args)
        return EXIT_ENV
    if args.plot:
        error = write_plot(report, args.plot) if report["runs"] else "no runs to plot"
        if error:
            report["notes"].append(f"no plot: {error}")
        else:
            report["plot"] = args.plot
    emit(report, args)
    return EXIT_OK if report["ok"] else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())

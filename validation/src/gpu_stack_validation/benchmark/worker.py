"""The worker process of the benchmark: one backend, one device, every mode and batch size.

Started by the parent as `python -m gpu_stack_validation.benchmark.worker CONFIG.json` with KERAS_BACKEND set
before Keras is imported and, for the CPU, every GPU hidden; it writes its result JSON to the path the config
names (partial results too, after every run).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from .. import nvml
from ..common import EXIT_ENV, EXIT_FAIL, EXIT_OK, load_average
from .backends import Backend
from .core import EVAL_SAMPLES, finalize_run, new_run
from .data import EnvProblem, load_data
from .train import QUIET, build_model, fit_article, fit_resident, log, numpy_eval


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or None
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def worker_main(config_path: str) -> int:
    """Child process: run every mode and batch size on one device; write the result JSON."""
    config = json.loads(Path(config_path).read_text())
    QUIET["on"] = bool(config.get("quiet"))
    result: dict[str, Any] = {
        "status": "error",
        "message": None,
        "device": config["device"],
        "backend": config["backend"],
        "backend_version": None,
        "keras_version": None,
        "device_name": None,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": {"start": load_average(), "end": None},
        "gpus_seen_by_backend": None,
        "precision": "float32, TF32 disabled",
        "gemm_peak": None,
        "nvml": None,
        "samples": config["samples"],
        "runs": [],
    }

    def write() -> None:
        result["load_average"]["end"] = load_average()
        Path(config["result_path"]).write_text(json.dumps(result))

    try:
        import numpy as np

        be = Backend(config["backend"], config["device"])
    except (ImportError, EnvProblem) as exc:
        result["status"] = "env_error"
        result["message"] = (
            f"cannot use Keras with the {config['backend']} backend: "
            f"{type(exc).__name__}: {exc}; install keras and "
            f"{config['backend']} in this Python ({sys.executable})"
        )
        write()
        return EXIT_ENV
    result.update(
        backend_version=be.version, keras_version=be.keras.__version__, gpus_seen_by_backend=be.gpu_count
    )
    if be.no_gpu:
        result.update(status="no_gpu", message=be.no_gpu)
        write()
        return EXIT_FAIL
    result["device_name"] = be.device_name or (result["cpu_model"] if be.device == "cpu" else None)
    sampler = None
    if be.device == "gpu":
        # the GPU being timed: the backend's own PCI bus id, else CUDA device 0 in PCI order
        bus_id, how = be.pci_bus_id, f"{be.name} reports it"
        if not bus_id:
            bus_id, how = nvml.bus_id_of_visible_gpu(nvml.probe()["gpus"], os.environ)
        sampler = nvml.Sampler(bus_id)
        result["nvml"] = {**sampler.info(), "bus_id_source": how}
    else:
        result["nvml"] = {
            "available": False,
            "reason": "CPU run: not sampled",
            "gpu_name": None,
            "pci_bus_id": None,
            "selected_by": None,
            "interval_s": nvml.INTERVAL_S,
        }
    try:
        result["gemm_peak"] = be.gemm_peak()
        peak_dev = result["gemm_peak"]["device"].lower()
        if be.device == "gpu" and not any(k in peak_dev for k in ("gpu", "cuda")):
            result.update(status="no_gpu", message=f"the GEMM ran on {peak_dev}, not a GPU")
            write()
            return EXIT_FAIL
        log(
            f"[{be.device} {be.name}] fp32 GEMM peak {result['gemm_peak']['tflops']:.2f} TFLOP/s "
            f"on {result['gemm_peak']['device']}"
        )
        x, y = load_data(np, config)
        n_eval = min(EVAL_SAMPLES, len(x))
        for mode in config["modes"]:
            for batch in config["batch_sizes"]:
                tag = f"{be.device} {be.name} {mode} b={batch}"
                run = new_run(be.device, mode, batch, len(x), config["epochs"])
                log(f"[{tag}] start ({config['epochs']} epochs, {len(x)} samples)")
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
                    run.update(
                        variable_device=be.variable_device(model),
                        final_loss=run["epoch_losses"][-1],
                        final_accuracy=run["epoch_accuracies"][-1],
                        eval_samples=n_eval,
                        eval_loss_before=before[0],
                        eval_loss_after=after[0],
                        eval_accuracy_after=after[1],
                        loss_fell=after[0] < before[0],
                    )
                    if be.device == "gpu" and "cpu" in run["variable_device"].lower():
                        run["error"] = f"weights ended up on {run['variable_device']}, not the GPU"
                except Exception as exc:  # record and go on with the next run
                    run["error"] = f"{type(exc).__name__}: {exc}"
                    log(f"[{tag}] failed: {run['error']}")
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


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))

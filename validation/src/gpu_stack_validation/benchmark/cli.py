"""mnist-benchmark: the article's MNIST benchmark on CPU and GPU, article-faithful and device-resident.

Model (as in the article): Dense(512, relu) + Dense(10, softmax), rmsprop, categorical crossentropy, 5 epochs,
batch 30000, 60,000 samples of 784 floats. Keras 3, TensorFlow backend by default (--backend jax|torch).
Every device runs in its own worker process, GPU first: GPUs are hidden from the CPU worker, and the GPU
worker checks that the backend really sees a GPU, so CPU time is never reported as GPU time. Both modes for
every batch size of the sweep: `article` (numpy arrays into model.fit) and `resident` (data on the device,
a compiled train step).

Per run: epoch times, the steady epoch (best of epochs 2..N), the total of all epochs (the article's measure,
first epoch included), samples/s, TFLOP/s with 4*784*512 + 6*512*10 FLOP per sample (and, with jax, XLA's
own cost analysis of the step), percent of an fp32 GEMM peak measured in the same worker, the numpy loss
before and after training (`loss_fell`), NVML utilisation and memory of the timed GPU (by PCI bus id).

Output: a table, or one JSON object (--json) with stable keys, "ok" and "failures"; --output FILE (JSON),
--plot FILE (PNG). Exit codes: 0 ok; 1 a check failed (GPU asked for but not seen, a run failed, the loss
did not fall); 2 usage or environment error (bad arguments, unwritable --output, backend not importable,
MNIST missing while offline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import nvml
from ..common import (
    EXIT_ENV,
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    busy_note,
    check_output_path,
    dump_json,
    over_peak_note,
    write_text_file,
)
from .core import (
    ARTICLE_EPOCHS,
    BACKENDS,
    DEFAULT_BATCH_SIZES,
    FLOPS_FORMULA,
    FLOPS_PER_SAMPLE,
    GEMM_SHAPE,
    MNIST_SAMPLES,
    MODES,
    QUICK,
    data_label,
    empty_report,
    flops_per_epoch,
    goal,
    parse_batch_sizes,
    render_table,
    speedups,
)
from .data import DATA_CHOICES, EnvProblem, choose_data, keras_datasets_dir


def hidden_by_env(environ: dict[str, str]) -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing (or -1) hides every GPU."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1")


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
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's device 0 is then NVML's first GPU by bus id
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # honest memory readings
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


def host_gpu_probe(
    environ: dict[str, str] | None = None,
    dev_glob: Callable[[], list[str]] | None = None,
    nvml_count: Callable[[], int | None] | None = None,
) -> tuple[bool, str]:
    """Cheap check, without importing a framework, whether an NVIDIA GPU is visible."""
    environ = dict(os.environ) if environ is None else environ
    if hidden_by_env(environ):
        return False, "CUDA_VISIBLE_DEVICES hides every GPU"
    nodes = (dev_glob or (lambda: [str(p) for p in Path("/dev").glob("nvidia[0-9]*")]))()
    count = (nvml_count or nvml.device_count)()
    if count:
        return True, f"NVML reports {count} GPU(s)"
    if nodes:
        return True, f"device nodes present: {', '.join(sorted(nodes))}"
    return False, "no /dev/nvidia[0-9]* device node and NVML reports no GPU"


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


def run_worker(config: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one device's worker process; return its result (or a crash record). Never raises."""
    with tempfile.TemporaryDirectory(prefix="mnist_benchmark.") as tmp:
        cfg_path = Path(tmp) / "config.json"
        result_path = Path(tmp) / "result.json"
        cfg_path.write_text(json.dumps({**config, "result_path": str(result_path)}))
        # Frameworks print to stdout: the worker's stdout goes to our stderr, so --json stays one object
        try:
            out: Any = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            out = None  # stderr is not a real file (captured): inherit stdout
        argv = [sys.executable, "-m", "gpu_stack_validation.benchmark.worker", str(cfg_path)]
        try:
            rc = subprocess.run(argv, env=env, timeout=timeout, stdout=out, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        except OSError:
            rc = 127
        if result_path.exists():
            try:
                result = json.loads(result_path.read_text())
                result["returncode"] = rc
                return result
            except ValueError:
                pass
    reason = {124: f"timed out after {timeout:.0f} s", 127: "could not start python"}.get(
        rc, f"exited with code {rc} without a result"
    )
    return {
        "status": "error",
        "message": f"{config['device']} worker {reason}",
        "returncode": rc,
        "device": config["device"],
        "runs": [],
    }


def run_benchmark(
    backend: str = "tensorflow",
    data: str = "auto",
    device: str = "auto",
    modes: tuple[str, ...] = MODES,
    batch_sizes: list[int] | None = None,
    epochs: int = ARTICLE_EPOCHS,
    subset: int | None = None,
    seed: int = 0,
    allow_download: bool = True,
    timeout: float = 1800.0,
    quiet: bool = False,
    progress: Callable[[str], None] | None = None,
    runner: Callable[[dict, dict, float], dict] | None = None,
    probe: Callable[[], tuple[bool, str]] | None = None,
    datasets_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark in one worker process per device; return the report. EnvProblem: exit 2."""
    progress = progress or (lambda msg: None)
    runner = runner or run_worker
    probe = probe or host_gpu_probe
    batch_sizes = list(batch_sizes or DEFAULT_BATCH_SIZES)
    chosen, source, note = choose_data(data, datasets_dir or keras_datasets_dir(), allow_download)
    report = empty_report(backend, chosen, seed, platform.node(), platform.python_version())
    report["data_request"] = data
    report["data_source"] = source
    if note:
        report["notes"].append(note)
    samples = min(subset or MNIST_SAMPLES, MNIST_SAMPLES)
    report["config"] = {
        "epochs": epochs,
        "batch_sizes": batch_sizes,
        "modes": list(modes),
        "subset": subset,
        "samples": samples,
        "seed": seed,
        "device_request": device,
        "model": "Dense(512, relu) + Dense(10, softmax), rmsprop, categorical crossentropy",
        "flops_per_sample": FLOPS_PER_SAMPLE,
        "flops_formula": FLOPS_FORMULA,
        "flops_per_epoch": flops_per_epoch(samples),
        "gemm_peak_shape": list(GEMM_SHAPE),
        "precision": "float32, TF32 disabled",
        "steady_rule": "best of epochs 2..N (epoch 1 alone when N = 1: includes compilation)",
        "total_rule": "wall time of all epochs, first epoch (and compilation) included",
        "timeout_s": timeout,
    }
    devices, notes = plan_devices(device, probe)
    report["notes"] += notes
    report["config"]["devices"] = devices
    for dev in devices:
        config = {
            "backend": backend,
            "device": dev,
            "data": chosen,
            "mnist_path": source["path"],
            "modes": list(modes),
            "batch_sizes": batch_sizes,
            "epochs": epochs,
            "samples": samples,
            "seed": seed,
            "quiet": quiet,
        }
        progress(f"starting the {dev} worker ({backend} backend, {data_label(chosen, seed)})")
        result = runner(config, child_env(dict(os.environ), backend, dev), timeout)
        status = result.get("status")
        report["devices"][dev] = {k: v for k, v in result.items() if k != "runs"}
        if status == "env_error":
            raise EnvProblem(result.get("message") or f"{dev} worker: environment error")
        if status == "no_gpu":
            report["failures"].append(
                f"GPU requested but the {backend} backend sees none: {result.get('message')}; "
                "nothing was timed on the CPU under the GPU's name (run gpu-doctor)"
            )
            continue
        if status != "ok":
            report["failures"].append(result.get("message") or f"{dev} worker failed")
        # the load when the worker started: at its end it counts the worker's own threads too
        start = (result.get("load_average") or {}).get("start")
        busy = busy_note([start], result.get("cpu_count"), f"the {dev} worker")
        if busy:
            report["notes"].append(busy)
        for run in result.get("runs", []):
            report["runs"].append(run)
            label = f"{run['device']} {run['mode']} batch {run['batch_size']}"
            if run.get("error"):
                report["failures"].append(f"{label}: {run['error']}")
            elif run.get("loss_fell") is False:
                report["failures"].append(
                    f"{label}: the loss did not fall ({run.get('eval_loss_before')} -> "
                    f"{run.get('eval_loss_after')})"
                )
    for run in report["runs"]:
        over = over_peak_note(
            run.get("pct_of_gemm_peak"), f"{run['device']} {run['mode']} batch {run['batch_size']}"
        )
        if over:
            report["notes"].append(over)
    report["speedups"] = speedups(report["runs"])
    report["goals"] = [goal(report["runs"], batch_sizes, d) for d in ("gpu", "cpu")]
    report["goal"] = report["goals"][0]
    for g in report["goals"]:
        if g["met"] is False:
            report["notes"].append(f"goal not met: {g['description']} (got {g['value_pct']:.1f}%)")
    report["ok"] = not report["failures"]
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-benchmark",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok, 1 a check failed, 2 usage or environment error.",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="tensorflow", help="Keras backend (default tensorflow)"
    )
    parser.add_argument(
        "--data",
        choices=DATA_CHOICES,
        default="auto",
        help="auto (default): real MNIST when Keras' cache holds it, else synthetic; mnist: "
        "real MNIST, downloaded when missing; synthetic: learnable MNIST-shaped data",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu", "both"),
        default="auto",
        help="auto (default): GPU and CPU when a GPU is visible, else CPU",
    )
    parser.add_argument("--mode", choices=("both", *MODES), default="both")
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {ARTICLE_EPOCHS})")
    parser.add_argument(
        "--batch-sizes", help=f"comma-separated sweep (default {','.join(map(str, DEFAULT_BATCH_SIZES))})"
    )
    parser.add_argument("--subset", type=int, help="train on the first N samples only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"quick profile: epochs {QUICK['epochs']}, subset {QUICK['subset']}, batch sizes "
        f"{','.join(map(str, QUICK['batch_sizes']))} (explicit options win)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="never download MNIST; --data mnist fails (exit 2) when it is not cached",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per device worker (default 1800)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (0 ok, 1 a check failed, 2 usage or environment error)."""
    from .. import plotting  # matplotlib is imported only when a plot is written

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    epochs = args.epochs if args.epochs is not None else (QUICK["epochs"] if args.quick else ARTICLE_EPOCHS)
    subset = args.subset if args.subset is not None else (QUICK["subset"] if args.quick else None)
    try:
        batch_sizes = (
            parse_batch_sizes(args.batch_sizes)
            if args.batch_sizes
            else list(QUICK["batch_sizes"] if args.quick else DEFAULT_BATCH_SIZES)
        )
        if epochs < 1 or (subset is not None and not 1 <= subset <= MNIST_SAMPLES) or args.timeout <= 0:
            raise UsageError(f"--epochs must be >= 1, --subset within 1..{MNIST_SAMPLES}, --timeout > 0")
        check_output_path(args.output)
        check_output_path(args.plot, "--plot")
    except (ValueError, UsageError) as exc:
        print(f"mnist-benchmark: error: {exc}", file=sys.stderr)
        return EXIT_ENV
    modes = MODES if args.mode == "both" else (args.mode,)
    progress = (
        (lambda msg: None)
        if args.quiet
        else (lambda msg: print(f"mnist-benchmark: {msg}", file=sys.stderr, flush=True))
    )
    code = EXIT_OK
    try:
        report = run_benchmark(
            backend=args.backend,
            data=args.data,
            device=args.device,
            modes=modes,
            batch_sizes=batch_sizes,
            epochs=epochs,
            subset=subset,
            seed=args.seed,
            allow_download=not args.no_download,
            timeout=args.timeout,
            quiet=args.quiet,
            progress=progress,
        )
        if not report["ok"]:
            code = EXIT_FAIL
    except EnvProblem as exc:
        report = empty_report(args.backend, args.data, args.seed, platform.node(), platform.python_version())
        report["error"] = "environment"
        report["failures"].append(str(exc))
        print(f"mnist-benchmark: error: {exc}", file=sys.stderr)
        code = EXIT_ENV
    if args.plot and report["runs"]:
        error = plotting.benchmark_plot(report, args.plot)
        if error:
            report["notes"].append(f"no plot: {error}")
        else:
            report["plot"] = args.plot
    text = dump_json(report)
    try:
        if args.output:
            write_text_file(args.output, text + "\n")
    except UsageError as exc:
        print(f"mnist-benchmark: error: {exc}", file=sys.stderr)
        return EXIT_ENV
    print(text if args.json else render_table(report))
    return code


if __name__ == "__main__":
    sys.exit(main())

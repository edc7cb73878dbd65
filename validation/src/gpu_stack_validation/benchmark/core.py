"""The benchmark's arithmetic and report (standard library only): FLOPs, steady epoch, ratios, goals, table.

FLOPs of one training step per sample of the article's model (Dense 784->512 relu, Dense 512->10 softmax):
forward 2*(784*512 + 512*10), weight gradients 2*(784*512 + 512*10), and the input gradient of the second
layer only, 2*512*10 (nobody computes the gradient of the input images): 4*784*512 + 6*512*10 = 1,636,352.
XLA's own cost analysis of the jitted jax step (reported beside it) counts 1,639,513 (the elementwise work).
"""

from __future__ import annotations

from typing import Any

from ..common import fmt

TOOL = "mnist_benchmark"
SCHEMA_VERSION = (
    2  # 2: corrected FLOP count, total fit time and its ratio, goals per device, XLA cost analysis
)

MNIST_SAMPLES = 60000
INPUT_DIM, HIDDEN_UNITS, CLASSES = 784, 512, 10
FLOPS_PER_SAMPLE = 4 * INPUT_DIM * HIDDEN_UNITS + 6 * HIDDEN_UNITS * CLASSES
FLOPS_FORMULA = "4*784*512 + 6*512*10 = 1,636,352 FLOP per sample and step"
GEMM_SHAPE = (30000, 784, 512)

BACKENDS = ("tensorflow", "jax", "torch")
MODES = ("article", "resident")
DEFAULT_BATCH_SIZES = (128, 1024, 8192, 30000)
QUICK = {"epochs": 2, "subset": 6000, "batch_sizes": (1024, 30000)}
ARTICLE_EPOCHS = 5
# Performance goals (reported, never enforced): resident mode against the same run's fp32 GEMM peak
GOALS = {"gpu": {"batch_size": 30000, "target_pct": 50.0}, "cpu": {"batch_size": 1024, "target_pct": 60.0}}
EVAL_SAMPLES = 10000
ARTICLE_REFERENCE = {
    "gpu": "GTX 960",
    "cpu": "i7-6700K",
    "gpu_s_5_epochs": 0.79,
    "cpu_s_5_epochs": 1.93,
    "speedup": 2.4,
    "batch_size": 30000,
    "measure": "total model.fit wall time of 5 epochs, first epoch included",
}


def flops_per_epoch(samples: int) -> int:
    """Training FLOPs of one epoch over `samples` samples (see the module docstring)."""
    return FLOPS_PER_SAMPLE * samples


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
    run["pct_of_gemm_peak"] = (
        100.0 * run["tflops"] / peak_tflops if run["tflops"] is not None and peak_tflops else None
    )
    xla = run.get("xla_flops_per_sample")
    run["xla_flops_ratio"] = xla / FLOPS_PER_SAMPLE if xla else None
    return run


def new_run(device: str, mode: str, batch: int, samples: int, epochs: int) -> dict[str, Any]:
    """A run record with every key present (None until measured)."""
    run: dict[str, Any] = {
        "device": device,
        "mode": mode,
        "batch_size": batch,
        "effective_batch_size": min(batch, samples),
        "steps_per_epoch": -(-samples // batch),
        "epochs": epochs,
        "samples": samples,
        "error": None,
        "epoch_times_s": [],
        "epoch_losses": [],
        "epoch_accuracies": [],
        "compile_s": None,
        "total_s": None,
        "jit_compile": None,
        "data_device": None,
        "variable_device": None,
        "final_loss": None,
        "final_accuracy": None,
        "eval_samples": None,
        "eval_loss_before": None,
        "eval_loss_after": None,
        "eval_accuracy_after": None,
        "loss_fell": None,
        "xla_flops_per_sample": None,
        "nvml_reason": None,
        "nvml_samples": 0,
        "gpu_util_mean_pct": None,
        "gpu_util_peak_pct": None,
        "gpu_mem_used_mean_mib": None,
        "gpu_mem_used_peak_mib": None,
    }
    return finalize_run(run, samples, None)


def speedups(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GPU/CPU per mode and batch size: of the steady epoch, and of the total time of all epochs (the
    article's measure: the whole model.fit, first epoch and compilation included)."""
    index = {(r["device"], r["mode"], r["batch_size"]): r for r in runs}
    rows = []
    for (device, mode, batch), gpu in sorted(index.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        cpu = index.get(("cpu", mode, batch))
        if device != "gpu" or cpu is None:
            continue
        c, g = cpu.get("steady_epoch_s"), gpu.get("steady_epoch_s")
        ct, gt = cpu.get("total_s"), gpu.get("total_s")
        rows.append(
            {
                "mode": mode,
                "batch_size": batch,
                "cpu_steady_epoch_s": c,
                "gpu_steady_epoch_s": g,
                "gpu_speedup": c / g if c and g else None,
                "cpu_total_s": ct,
                "gpu_total_s": gt,
                "gpu_speedup_total": ct / gt if ct and gt else None,
            }
        )
    return rows


def goal(runs: list[dict[str, Any]], batch_sizes: list[int], device: str) -> dict[str, Any]:
    """Resident mode on `device` at the goal's batch (or the largest of the sweep) against its GEMM peak."""
    spec = GOALS[device]
    batch = spec["batch_size"] if spec["batch_size"] in batch_sizes else max(batch_sizes)
    out: dict[str, Any] = {
        "device": device,
        "description": f"resident mode on the {device.upper()} at batch {batch} >= "
        f"{spec['target_pct']:.0f}% of the same-run fp32 GEMM peak",
        "batch_size": batch,
        "target_pct": spec["target_pct"],
        "value_pct": None,
        "met": None,
    }
    for r in runs:
        if (r["device"], r["mode"], r["batch_size"]) == (device, "resident", batch) and not r.get("error"):
            out["value_pct"] = r.get("pct_of_gemm_peak")
            if out["value_pct"] is not None:
                out["met"] = out["value_pct"] >= spec["target_pct"]
    return out


def data_label(data: str, seed: int) -> str:
    if data == "synthetic":
        return f"SYNTHETIC MNIST-shaped data (seed {seed}): class patterns plus noise, learnable, not MNIST"
    return "real MNIST (sha256 verified)"


def parse_batch_sizes(text: str) -> list[int]:
    values = [int(p) for p in text.split(",") if p.strip()]
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--batch-sizes wants positive integers, got {text!r}")
    return values


def empty_report(backend: str, data: str, seed: int, host: str, python: str) -> dict[str, Any]:
    """The report skeleton: every key present, so consumers can rely on them."""
    return {
        "tool": TOOL,
        "schema_version": SCHEMA_VERSION,
        "ok": False,
        "failures": [],
        "notes": [],
        "error": None,
        "backend": backend,
        "data": data,
        "data_request": data,
        "data_label": data_label(data, seed),
        "data_source": None,
        "host": host,
        "python": python,
        "config": {},
        "devices": {},
        "runs": [],
        "speedups": [],
        "goal": None,
        "goals": [],
        "article_reference": ARTICLE_REFERENCE,
        "plot": None,
    }


def render_table(report: dict[str, Any]) -> str:
    """Readable summary; the data label heads it."""
    lines = [
        f"MNIST benchmark ({report['backend']} backend) - DATA: {report['data_label']}",
        f"result: {'OK' if report['ok'] else 'FAILED'}",
    ]
    for dev, info in report["devices"].items():
        peak = (info.get("gemm_peak") or {}).get("tflops")
        lines.append(
            f"{dev}: {info.get('device_name') or '-'}; {report['backend']} "
            f"{info.get('backend_version') or '-'}, keras {info.get('keras_version') or '-'}"
            f"; fp32 GEMM peak {fmt(peak, '.3f')} TFLOP/s"
        )
    if report["runs"]:
        lines += [
            "",
            f"{'device':<6} {'mode':<9} {'batch':>6} {'steady s':>9} {'total s':>8} {'samples/s':>10} "
            f"{'TFLOP/s':>8} {'%peak':>6} {'loss':>7} {'acc':>6} {'util% mean/peak':>16}",
        ]
        for r in report["runs"]:
            if r.get("error"):
                lines.append(f"{r['device']:<6} {r['mode']:<9} {r['batch_size']:>6}  ERROR: {r['error']}")
                continue
            util = (
                f"{fmt(r.get('gpu_util_mean_pct'), '.0f')}/{fmt(r.get('gpu_util_peak_pct'), '.0f')}"
                if r["device"] == "gpu"
                else ""
            )
            lines.append(
                f"{r['device']:<6} {r['mode']:<9} {r['batch_size']:>6} "
                f"{fmt(r.get('steady_epoch_s'), '.4f'):>9} "
                f"{fmt(r.get('total_s'), '.2f'):>8} {fmt(r.get('samples_per_s'), ',.0f'):>10} "
                f"{fmt(r.get('tflops'), '.3f'):>8} {fmt(r.get('pct_of_gemm_peak'), '.1f'):>6} "
                f"{fmt(r.get('final_loss'), '.4f'):>7} {fmt(r.get('eval_accuracy_after'), '.3f'):>6} "
                f"{util:>16}"
            )
    for asked, got in sorted(
        {
            (r["batch_size"], r["effective_batch_size"])
            for r in report["runs"]
            if r["effective_batch_size"] != r["batch_size"]
        }
    ):
        lines.append(f"note: batch {asked} ran as {got} (only {got} samples)")
    if report["speedups"]:
        lines += [
            "",
            "GPU/CPU: steady epoch, and total time of all epochs (the article's measure: "
            f"{ARTICLE_REFERENCE['speedup']}x at batch 30000)",
        ]
        for s in report["speedups"]:
            lines.append(
                f"  {s['mode']:<9} batch {s['batch_size']:>6}: steady {fmt(s['gpu_speedup'], '.2f')}x, "
                f"total {fmt(s['gpu_speedup_total'], '.2f')}x"
            )
    for g in report.get("goals") or []:
        if g.get("value_pct") is not None:
            lines.append(
                f"goal: {g['description']}: {g['value_pct']:.1f}% -> {'met' if g['met'] else 'NOT met'}"
            )
    if report["runs"]:
        rules = sorted({r["steady_rule"] for r in report["runs"] if not r.get("error")})
        lines.append(
            f"steady epoch = {'; '.join(rules) or '-'}; TFLOP/s = {FLOPS_FORMULA} x samples / steady "
            "epoch; total = all epochs, compilation included; acc = numpy evaluation after training"
        )
    lines += [f"note: {n}" for n in report["notes"]]
    lines += [f"FAIL: {f}" for f in report["failures"]]
    return "\n".join(lines)

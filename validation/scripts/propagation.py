#!/usr/bin/env python3
"""Batch propagation through a linear feed-forward network, checked and timed.

Reproduces the first article's numpy exercise: weights are shaped (target nodes,
source nodes), a batch of inputs is shaped (samples, features), and the whole
batch propagates at once through the transposed input, ``A2 = W1 . A1^T`` and
``A3 = W2 . A2`` (linear, no activation, as in the article's worked example).

Checks (any failure -> exit 1):
  * the article's worked example: ten input rows [1, 2, 4], 3 -> 5 -> 2 nodes;
    every column of A2 is [39, 50, 18, 40, 41] and every column of A3 is
    [358, 335];
  * batched propagation equals a per-sample loop on random weights;
  * the shape error the article hit when the input is not transposed
    (``np.dot(W1, A1)``) is raised and shown.

The article's printed W1 and W2 were not available when this was written:
ARTICLE_W1 and ARTICLE_W2 below are RECONSTRUCTED small-integer matrices that
reproduce exactly the article's printed outputs (39, 50, 18, 40, 41 and
358, 335), not the article's own entries.

Then it times batched against per-sample propagation for growing batch sizes
with numpy (and on a GPU with CuPy or PyTorch when present) and reports GFLOP/s,
the speedup, the percent of a GEMM peak measured in the same run on the same
device (a square matmul), and which BLAS numpy uses. Performance goal (reported,
not enforced): batched propagation at the largest batch reaches at least 80% of
numpy's GEMM peak.

Output: a readable report, or one JSON object with ``--json`` (stable keys,
including ``ok`` and ``failures``); ``--output FILE`` also writes the JSON,
``--plot FILE`` a PNG (needs matplotlib).

Exit codes: 0 correctness checks passed, 1 a correctness check failed,
2 usage or environment error (bad arguments, numpy missing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

TOOL = "propagation"
SCHEMA_VERSION = 1
GOAL_PCT_OF_PEAK = 80.0

# The article's worked example: ten identical input rows [1, 2, 4].
ARTICLE_INPUT_ROW = (1.0, 2.0, 4.0)
ARTICLE_SAMPLES = 10
# RECONSTRUCTED (see module docstring): W1 . [1, 2, 4] = [39, 50, 18, 40, 41].
ARTICLE_W1 = ((3, 6, 6), (6, 6, 8), (2, 2, 3), (4, 6, 6), (5, 6, 6))
# RECONSTRUCTED: W2 . [39, 50, 18, 40, 41] = [358, 335].
ARTICLE_W2 = ((2, 2, 1, 2, 2), (2, 2, 2, 2, 1))
ARTICLE_A2_COLUMN = (39, 50, 18, 40, 41)
ARTICLE_A3_COLUMN = (358, 335)

# Environment variables the common BLAS builds read for their thread count.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

DEFAULT_NODES = (1024, 1024, 1024)
DEFAULT_BATCHES = (1, 8, 64, 512, 2048, 8192)
QUICK_NODES = (256, 256, 256)
QUICK_BATCHES = (1, 16, 256, 2048)


# ----------------------------------------------------------------------------
# Pure helpers (no numpy needed; unit-tested)
# ----------------------------------------------------------------------------
def propagation_flops(batch: int, nodes: tuple[int, ...] | list[int]) -> int:
    """Multiply-add FLOPs (2 per MAC) of one propagation of `batch` samples."""
    return 2 * batch * sum(nodes[i] * nodes[i + 1] for i in range(len(nodes) - 1))


def gemm_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m x k) @ (k x n) matrix product."""
    return 2 * m * k * n


def rate_gflops(flops: float, seconds: float | None) -> float | None:
    """GFLOP/s, or None when the time is missing or not positive."""
    if seconds is None or seconds <= 0:
        return None
    return flops / seconds / 1e9


def percent_of(value: float | None, peak: float | None) -> float | None:
    """Percent of `peak`, or None when either is missing."""
    if value is None or not peak:
        return None
    return 100.0 * value / peak


def parse_int_list(text: str) -> list[int]:
    """Parse '1,8,64' into [1, 8, 64]; raise ValueError on junk or values < 1."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected a comma-separated list of positive integers, got {text!r}")
    return values


def blas_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Extract BLAS/LAPACK names from numpy.show_config(mode='dicts') output."""
    deps = config.get("Build Dependencies", {}) if isinstance(config, dict) else {}
    result: dict[str, Any] = {"source": "numpy.show_config(mode='dicts')"}
    for key in ("blas", "lapack"):
        entry = deps.get(key, {}) if isinstance(deps, dict) else {}
        result[key] = entry.get("name") if isinstance(entry, dict) else None
        result[f"{key}_version"] = entry.get("version") if isinstance(entry, dict) else None
    blas = deps.get("blas", {}) if isinstance(deps, dict) else {}
    if isinstance(blas, dict) and blas.get("openblas configuration"):
        result["blas_configuration"] = blas["openblas configuration"]
    return result


_BLAS_NAMES = ("scipy-openblas", "openblas", "mkl", "blis", "accelerate", "atlas", "flexiblas")


def blas_from_text(text: str) -> dict[str, Any]:
    """Guess the BLAS from numpy.show_config() printed text (numpy < 1.25)."""
    low = text.lower()
    found = next((name for name in _BLAS_NAMES if name in low), None)
    return {"source": "numpy.show_config() text", "blas": found, "blas_version": None,
            "lapack": found, "lapack_version": None}


# ----------------------------------------------------------------------------
# numpy parts
# ----------------------------------------------------------------------------
def import_numpy():
    """Import numpy or return None."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def blas_info(np: Any) -> dict[str, Any]:
    """Which BLAS numpy was built with (and, if threadpoolctl is present, runs with)."""
    try:
        info = blas_from_config(np.show_config(mode="dicts"))
    except TypeError:  # numpy < 1.25 has no mode= argument
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            np.show_config()
        info = blas_from_text(buf.getvalue())
    info["numpy_version"] = np.__version__
    info["runtime"] = None
    try:
        import threadpoolctl  # optional

        info["runtime"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
            for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"
        ]
    except Exception:  # optional extra, never fatal
        pass
    return info


def propagate(np: Any, weights: list[Any], a1: Any) -> Any:
    """Batched propagation: A(l+1) = W(l) . A(l), starting from A1 transposed.

    a1 is (samples, features); the result is (output nodes, samples).
    """
    a = a1.T
    for w in weights:
        a = np.dot(w, a)
    return a


def propagate_loop(np: Any, weights: list[Any], a1: Any, count: int | None = None) -> Any:
    """Per-sample propagation of the first `count` rows: one matrix-vector chain each."""
    count = a1.shape[0] if count is None else count
    out = np.empty((weights[-1].shape[0], count), dtype=a1.dtype)
    for s in range(count):
        v = a1[s]
        for w in weights:
            v = np.dot(w, v)
        out[:, s] = v
    return out


def article_inputs(np: Any) -> tuple[Any, Any, Any]:
    """A1 (10 x 3, rows [1, 2, 4]) built as in the article, and W1, W2."""
    a1 = np.ones((ARTICLE_SAMPLES, 3))
    a1[:, 1] *= ARTICLE_INPUT_ROW[1]
    a1[:, 2] *= ARTICLE_INPUT_ROW[2]
    return a1, np.array(ARTICLE_W1, dtype=float), np.array(ARTICLE_W2, dtype=float)


def article_example(np: Any) -> dict[str, Any]:
    """Run the worked example and compare with the article's printed numbers."""
    a1, w1, w2 = article_inputs(np)
    a2 = np.dot(w1, a1.T)
    a3 = np.dot(w2, a2)
    a2_ok = a2.shape == (5, ARTICLE_SAMPLES) and bool(
        np.all(a2 == np.array(ARTICLE_A2_COLUMN, dtype=float)[:, None]))
    a3_ok = a3.shape == (2, ARTICLE_SAMPLES) and bool(
        np.all(a3 == np.array(ARTICLE_A3_COLUMN, dtype=float)[:, None]))
    loop = propagate_loop(np, [w1, w2], a1)
    return {
        "weights_source": "reconstructed integer matrices reproducing the article's outputs",
        "A1_shape": list(a1.shape),
        "A1_row": [float(v) for v in a1[0]],
        "W1": [list(r) for r in ARTICLE_W1],
        "W2": [list(r) for r in ARTICLE_W2],
        "A2_shape": list(a2.shape),
        "A2_column": [float(v) for v in a2[:, 0]],
        "A3_shape": list(a3.shape),
        "A3_column": [float(v) for v in a3[:, 0]],
        "expected_A2_column": list(ARTICLE_A2_COLUMN),
        "expected_A3_column": list(ARTICLE_A3_COLUMN),
        "A2_matches": a2_ok,
        "A3_matches": a3_ok,
        "loop_matches": bool(np.array_equal(loop, a3)),
        "ok": a2_ok and a3_ok and bool(np.array_equal(loop, a3)),
    }


def shape_error_demo(np: Any) -> dict[str, Any]:
    """What the article hit: W1 . A1 without the transpose raises ValueError."""
    a1, w1, _ = article_inputs(np)
    try:
        np.dot(w1, a1)
    except ValueError as exc:
        return {"expression": "np.dot(W1, A1)", "W1_shape": list(w1.shape),
                "A1_shape": list(a1.shape), "raised": True, "message": str(exc),
                "fix": "transpose the batch: np.dot(W1, A1.T)"}
    return {"expression": "np.dot(W1, A1)", "W1_shape": list(w1.shape),
            "A1_shape": list(a1.shape), "raised": False, "message": None,
            "fix": "transpose the batch: np.dot(W1, A1.T)"}


def make_weights(np: Any, nodes: list[int] | tuple[int, ...], dtype: str, seed: int) -> list[Any]:
    """Random weights, scaled so activations keep their magnitude across layers."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((nodes[i + 1], nodes[i])) / math.sqrt(nodes[i])).astype(dtype)
        for i in range(len(nodes) - 1)
    ]


def loop_check(np: Any, nodes: list[int] | tuple[int, ...], batch: int, dtype: str,
               seed: int) -> dict[str, Any]:
    """Batched propagation equals the per-sample loop on random data."""
    weights = make_weights(np, nodes, dtype, seed)
    a1 = np.random.default_rng(seed + 1).standard_normal((batch, nodes[0])).astype(dtype)
    batched = propagate(np, weights, a1)
    looped = propagate_loop(np, weights, a1)
    tol = 1e-4 if dtype == "float32" else 1e-10
    err = float(np.max(np.abs(batched - looped)))
    scale = float(np.max(np.abs(looped))) or 1.0
    return {"nodes": list(nodes), "batch": batch, "dtype": dtype,
            "output_shape": list(batched.shape), "max_abs_error": err,
            "max_rel_error": err / scale, "tolerance": tol,
            "ok": batched.shape == (nodes[-1], batch) and err / scale <= tol}


# ----------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------
def best_time(fn: Callable[[], Any], sync: Callable[[], Any] | None = None,
              repeat: int = 5, min_time: float = 0.05, max_inner: int = 1000) -> float:
    """Best seconds per call over `repeat` samples of enough calls to last `min_time`."""
    sync = sync or (lambda: None)
    fn()
    sync()  # warm-up (allocations, BLAS thread start, GPU kernels loaded)
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, min(max_inner, int(min_time / one)))
    best = one
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def time_backend(xp: Any, name: str, nodes: list[int], batches: list[int], dtype: str,
                 loop_cap: int, peak_size: int, seed: int, repeat: int,
                 sync: Callable[[], Any] | None, progress: Callable[[str], None]) -> dict[str, Any]:
    """Time the GEMM peak, then batched and per-sample propagation per batch size."""
    rng_np = import_numpy().random.default_rng(seed)
    a = xp.asarray(rng_np.standard_normal((peak_size, peak_size)).astype(dtype))
    b = xp.asarray(rng_np.standard_normal((peak_size, peak_size)).astype(dtype))
    peak_s = best_time(lambda: xp.matmul(a, b), sync, repeat=repeat)
    peak = rate_gflops(gemm_flops(peak_size, peak_size, peak_size), peak_s)
    progress(f"[{name}] GEMM peak {peak_size}^3 {dtype}: {peak:.1f} GFLOP/s")
    weights = [xp.asarray(w) for w in make_weights(import_numpy(), nodes, dtype, seed)]
    rows = []
    for batch in batches:
        a1_host = rng_np.standard_normal((batch, nodes[0])).astype(dtype)
        a1 = xp.asarray(a1_host)
        flops = propagation_flops(batch, nodes)
        batched_s = best_time(lambda a1=a1: propagate(xp, weights, a1), sync, repeat=repeat)
        timed = min(batch, loop_cap)
        loop_s = best_time(lambda a1=a1, timed=timed: propagate_loop(xp, weights, a1, timed), sync,
                           repeat=max(1, repeat // 2), min_time=0.0, max_inner=1)
        per_sample = loop_s / timed
        loop_total = per_sample * batch
        row = {
            "backend": name, "batch": batch, "flops": flops,
            "batched_s": batched_s, "batched_gflops": rate_gflops(flops, batched_s),
            "loop_samples_timed": timed, "loop_s_per_sample": per_sample,
            "loop_s": loop_total, "loop_extrapolated": timed < batch,
            "loop_gflops": rate_gflops(flops, loop_total),
            "speedup": loop_total / batched_s if batched_s > 0 else None,
        }
        row["batched_pct_of_peak"] = percent_of(row["batched_gflops"], peak)
        row["loop_pct_of_peak"] = percent_of(row["loop_gflops"], peak)
        rows.append(row)
        progress(f"[{name}] batch {batch:>6}: batched {row['batched_gflops']:.1f} GFLOP/s "
                 f"({row['batched_pct_of_peak']:.0f}% of the first peak), loop "
                 f"{row['loop_gflops']:.2f} GFLOP/s, speedup {row['speedup']:.1f}x")
    # Measure the peak again after the sweep and keep the better one: a busy machine (or a GPU
    # still clocking up) can make either measurement low.
    peak_after_s = best_time(lambda: xp.matmul(a, b), sync, repeat=repeat)
    peak_before = peak
    if peak_after_s < peak_s:
        peak_s = peak_after_s
        peak = rate_gflops(gemm_flops(peak_size, peak_size, peak_size), peak_s)
        for row in rows:
            row["batched_pct_of_peak"] = percent_of(row["batched_gflops"], peak)
            row["loop_pct_of_peak"] = percent_of(row["loop_gflops"], peak)
    return {"backend": name, "peak_shape": [peak_size, peak_size, peak_size],
            "gemm_peak_s": peak_s, "gemm_peak_gflops": peak,
            "gemm_peak_gflops_before": peak_before,
            "gemm_peak_gflops_after": rate_gflops(gemm_flops(peak_size, peak_size, peak_size),
                                                  peak_after_s),
            "rows": rows}


def find_gpu_library(choice: str) -> tuple[str | None, Any, Callable[[], Any] | None, str]:
    """Return (name, array module, sync, note) for a usable GPU array library."""
    if choice == "none":
        return None, None, None, "GPU timing disabled (--gpu none)"
    reasons = []
    if choice in ("auto", "cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
                name = name.decode() if isinstance(name, bytes) else str(name)
                return "cupy", cupy, cupy.cuda.Device().synchronize, f"CuPy {cupy.__version__} on {name}"
            reasons.append("cupy sees no GPU")
        except Exception as exc:  # any import/driver error means "not usable"
            reasons.append(f"cupy unusable: {type(exc).__name__}: {exc}")
    if choice in ("auto", "torch"):
        try:
            import torch

            if torch.cuda.is_available():
                torch.backends.cuda.matmul.allow_tf32 = False  # measure true fp32
                xp = _TorchArrays(torch)
                name = torch.cuda.get_device_name(0)
                return "torch", xp, torch.cuda.synchronize, f"PyTorch {torch.__version__} on {name}"
            reasons.append("torch sees no GPU")
        except Exception as exc:
            reasons.append(f"torch unusable: {type(exc).__name__}: {exc}")
    return None, None, None, "; ".join(reasons) or "no GPU array library"


class _TorchArrays:
    """The few numpy-like calls propagate() and time_backend() need, on CUDA tensors."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def asarray(self, array: Any) -> Any:
        return self.torch.as_tensor(array, device="cuda")

    def matmul(self, a: Any, b: Any) -> Any:
        return self.torch.matmul(a, b)

    def dot(self, a: Any, b: Any) -> Any:
        return self.torch.matmul(a, b)

    def empty(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self.torch.empty(shape, dtype=dtype, device="cuda")


# ----------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------
def run_propagation(nodes: list[int] | None = None, batches: list[int] | None = None,
                    dtype: str = "float32", gpu: str = "auto", loop_cap: int = 512,
                    peak_size: int = 2048, gpu_peak_size: int = 8192, repeat: int = 5,
                    seed: int = 0, timing: bool = True,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every check and timing; return the report dict (never prints to stdout)."""
    np = import_numpy()
    if np is None:
        raise RuntimeError("numpy is not importable")
    progress = progress or (lambda msg: None)
    nodes = list(nodes or DEFAULT_NODES)
    batches = sorted(batches or DEFAULT_BATCHES)
    report: dict[str, Any] = {
        "tool": TOOL, "schema_version": SCHEMA_VERSION, "ok": True, "failures": [], "notes": [],
        "host": platform.node(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "blas_threads_env": {var: os.environ.get(var) for var in THREAD_VARS},
        "config": {"nodes": nodes, "batches": batches, "dtype": dtype, "loop_cap": loop_cap,
                   "peak_size": peak_size, "repeat": repeat, "seed": seed, "gpu": gpu},
        "blas": blas_info(np),
        "article_example": article_example(np),
        "shape_error": shape_error_demo(np),
        "loop_check": loop_check(np, nodes if max(nodes) <= 1024 else [64, 64, 64],
                                 min(64, max(batches)), dtype, seed),
        "numpy": None, "gpu": None,
        "goal": {"description": "batched propagation at the largest batch >= "
                                f"{GOAL_PCT_OF_PEAK:.0f}% of numpy's GEMM peak (same run)",
                 "target_pct": GOAL_PCT_OF_PEAK, "batch": max(batches), "value_pct": None,
                 "met": None},
    }
    ex = report["article_example"]
    if not ex["ok"]:
        report["failures"].append(
            f"article example: A2 column {ex['A2_column']} (want {ex['expected_A2_column']}), "
            f"A3 column {ex['A3_column']} (want {ex['expected_A3_column']})")
    if not report["shape_error"]["raised"]:
        report["failures"].append("np.dot(W1, A1) without the transpose did not raise ValueError")
    lc = report["loop_check"]
    if not lc["ok"]:
        report["failures"].append(
            f"batched != per-sample loop: max relative error {lc['max_rel_error']:.3g} "
            f"> {lc['tolerance']:.0e}")
    if timing:
        progress(f"timing numpy ({report['blas'].get('blas')}), nodes {nodes}, {dtype}")
        report["numpy"] = time_backend(np, "numpy", nodes, batches, dtype, loop_cap, peak_size,
                                       seed, repeat, None, progress)
        largest = report["numpy"]["rows"][-1]
        report["goal"]["value_pct"] = largest["batched_pct_of_peak"]
        if largest["batched_pct_of_peak"] is not None:
            report["goal"]["met"] = largest["batched_pct_of_peak"] >= GOAL_PCT_OF_PEAK
        name, xp, sync, note = find_gpu_library(gpu)
        report["gpu_library"] = note
        if name:
            progress(f"timing GPU: {note}")
            report["gpu"] = time_backend(xp, name, nodes, batches, dtype, loop_cap,
                                         gpu_peak_size, seed, repeat, sync, progress)
            report["gpu"]["library"] = note
        else:
            report["notes"].append(f"no GPU timing: {note}")
    else:
        report["gpu_library"] = None
        report["notes"].append("timing skipped (--no-timing)")
    report["ok"] = not report["failures"]
    return report


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """Human-readable report."""
    ex, se, lc = report["article_example"], report["shape_error"], report["loop_check"]
    blas = report["blas"]
    lines = [
        f"propagation: {'OK' if report['ok'] else 'FAILED'}   numpy {blas.get('numpy_version')}"
        f" with BLAS {blas.get('blas')} {blas.get('blas_version') or ''}".rstrip(),
        "",
        "Article example (3 -> 5 -> 2 nodes, ten input rows [1, 2, 4]; W1/W2 reconstructed):",
        f"  W1 {ex['W1']}",
        f"  W2 {ex['W2']}",
        f"  A2 = W1 . A1.T  shape {tuple(ex['A2_shape'])}, every column "
        f"{[int(v) for v in ex['A2_column']]}  {'ok' if ex['A2_matches'] else 'MISMATCH'}",
        f"  A3 = W2 . A2    shape {tuple(ex['A3_shape'])}, every column "
        f"{[int(v) for v in ex['A3_column']]}  {'ok' if ex['A3_matches'] else 'MISMATCH'}",
        f"  per-sample loop gives the same: {'yes' if ex['loop_matches'] else 'NO'}",
        f"  without the transpose, {se['expression']} raises: {se['message']}",
        f"  loop check {lc['nodes']} batch {lc['batch']}: max rel error "
        f"{lc['max_rel_error']:.2g} ({'ok' if lc['ok'] else 'FAILED'})",
    ]
    for section in ("numpy", "gpu"):
        data = report.get(section)
        if not data:
            continue
        lines += ["", f"{data['backend']}: GEMM peak {data['gemm_peak_gflops']:.1f} GFLOP/s "
                      f"({'x'.join(map(str, data['peak_shape']))}, {report['config']['dtype']}; "
                      "best of before and after the sweep)",
                  f"  {'batch':>6} {'batched GF/s':>12} {'% peak':>7} {'loop GF/s':>10} "
                  f"{'% peak':>7} {'speedup':>8}"]
        for r in data["rows"]:
            lines.append(
                f"  {r['batch']:>6} {_fmt(r['batched_gflops']):>12} "
                f"{_fmt(r['batched_pct_of_peak'], '.0f'):>7} {_fmt(r['loop_gflops'], '.2f'):>10} "
                f"{_fmt(r['loop_pct_of_peak'], '.1f'):>7} {_fmt(r['speedup'], '.1f'):>7}x"
                + ("  (loop extrapolated)" if r["loop_extrapolated"] else ""))
    goal = report["goal"]
    if goal["value_pct"] is not None:
        lines += ["", f"Goal: {goal['description']}: {goal['value_pct']:.0f}% -> "
                      f"{'met' if goal['met'] else 'NOT met'}"]
    for note in report["notes"]:
        lines.append(f"note: {note}")
    for failure in report["failures"]:
        lines.append(f"FAIL: {failure}")
    return "\n".join(lines)


def write_plot(report: dict[str, Any], path: str) -> str | None:
    """GFLOP/s against batch size (batched and loop, per backend). Returns an error or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib unavailable: {exc}"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for section, colour in (("numpy", "tab:blue"), ("gpu", "tab:green")):
        data = report.get(section)
        if not data:
            continue
        xs = [r["batch"] for r in data["rows"]]
        ax.plot(xs, [r["batched_gflops"] for r in data["rows"]], "o-", color=colour,
                label=f"{data['backend']} batched")
        ax.plot(xs, [r["loop_gflops"] for r in data["rows"]], "x--", color=colour,
                label=f"{data['backend']} per-sample loop")
        ax.axhline(data["gemm_peak_gflops"], color=colour, linestyle=":",
                   label=f"{data['backend']} GEMM peak")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (samples)")
    ax.set_ylabel("GFLOP/s")
    nodes = "->".join(map(str, report["config"]["nodes"]))
    ax.set_title(f"Batch propagation {nodes}, {report['config']['dtype']}, "
                 f"BLAS {report['blas'].get('blas')}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file")
    parser.add_argument("--nodes", help=f"layer sizes, default {','.join(map(str, DEFAULT_NODES))}")
    parser.add_argument("--batches",
                        help=f"batch sizes, default {','.join(map(str, DEFAULT_BATCHES))}")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--gpu", choices=("auto", "cupy", "torch", "none"), default="auto",
                        help="GPU array library for the GPU timing (default auto)")
    parser.add_argument("--loop-cap", type=int, default=512,
                        help="time the per-sample loop on at most this many samples and "
                             "extrapolate (the per-sample cost does not depend on the batch)")
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="square GEMM size for numpy's peak (default 2048)")
    parser.add_argument("--repeat", type=int, default=5, help="timing samples, best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int,
                        help="BLAS threads for numpy (sets OPENBLAS/OMP/MKL_NUM_THREADS before "
                             "numpy is imported); default: the BLAS default (all cores)")
    parser.add_argument("--quick", action="store_true",
                        help=f"small run: nodes {QUICK_NODES}, batches {QUICK_BATCHES}, "
                             "peak 1024, repeat 3")
    parser.add_argument("--no-timing", action="store_true", help="correctness checks only")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        nodes = parse_int_list(args.nodes) if args.nodes else list(
            QUICK_NODES if args.quick else DEFAULT_NODES)
        batches = parse_int_list(args.batches) if args.batches else list(
            QUICK_BATCHES if args.quick else DEFAULT_BATCHES)
    except ValueError as exc:
        print(f"propagation: {exc}", file=sys.stderr)
        return 2
    if len(nodes) < 2 or args.loop_cap < 1 or args.repeat < 1 or args.peak_size < 1:
        print("propagation: --nodes needs at least two layers; --loop-cap, --repeat and "
              "--peak-size must be positive", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1 or "numpy" in sys.modules:
            print("propagation: --threads must be positive and set before numpy is imported",
                  file=sys.stderr)
            return 2
        for var in THREAD_VARS:
            os.environ[var] = str(args.threads)
    if import_numpy() is None:
        print("propagation: numpy is not importable; install it (pip install numpy) "
              "or run inside the ML venv", file=sys.stderr)
        return 2
    peak = 1024 if args.quick and args.peak_size == 2048 else args.peak_size
    repeat = 3 if args.quick and args.repeat == 5 else args.repeat
    progress = (lambda msg: None) if args.quiet else (
        lambda msg: print(f"propagation: {msg}", file=sys.stderr, flush=True))
    report = run_propagation(nodes=nodes, batches=batches, dtype=args.dtype, gpu=args.gpu,
                             loop_cap=args.loop_cap, peak_size=peak,
                             gpu_peak_size=2048 if args.quick else 8192,
                             repeat=repeat, seed=args.seed, timing=not args.no_timing,
                             progress=progress)
    report["plot"] = None
    if args.plot and not args.no_timing:
        error = write_plot(report, args.plot)
        if error:
            report["notes"].append(f"no plot: {error}")
        else:
            report["plot"] = args.plot
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    print(text if args.json else render_table(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Timing of batch propagation: batched against per-sample, numpy and (CuPy or PyTorch) on a GPU, each
against a GEMM peak of the same shapes measured in the same run."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from .core import (
    gemm_flops,
    import_numpy,
    make_weights,
    percent_of,
    propagate,
    propagate_loop,
    propagation_flops,
    rate_gflops,
)

INTERLEAVED_ROUNDS = 2  # rounds of (largest batch, same-shape peak) timed alternately


def best_time(
    fn: Callable[[], Any],
    sync: Callable[[], Any] | None = None,
    repeat: int = 5,
    min_time: float = 0.05,
    max_inner: int = 1000,
) -> float:
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


def layer_gemm_peak(
    xp: Any, nodes: list[int], batch: int, dtype: str, rng: Any, sync: Callable[[], Any] | None, repeat: int
) -> tuple[float, float]:
    """(seconds, flops) of each layer's own GEMM, (n_out x n_in) @ (n_in x batch), timed alone and summed:
    the peak of the same shapes the propagation multiplies."""
    seconds, flops = 0.0, 0.0
    for n_in, n_out in itertools.pairwise(nodes):
        w = xp.asarray(rng.standard_normal((n_out, n_in)).astype(dtype))
        x = xp.asarray(rng.standard_normal((n_in, batch)).astype(dtype))
        seconds += best_time(lambda w=w, x=x: xp.dot(w, x), sync, repeat=repeat)  # the call propagate makes
        flops += gemm_flops(n_out, n_in, batch)
    return seconds, flops


def time_backend(
    xp: Any,
    name: str,
    nodes: list[int],
    batches: list[int],
    dtype: str,
    loop_cap: int,
    peak_size: int,
    seed: int,
    repeat: int,
    sync: Callable[[], Any] | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Time the GEMM peaks, then batched and per-sample propagation per batch size.

    Two peaks, each measured before and after the sweep (best kept: a busy machine or a GPU clocking up
    makes either low): the layers' own GEMM shapes at the largest batch, which the percentages use, and a
    square peak_size^3 GEMM, reported beside it.
    """
    np = import_numpy()
    rng = np.random.default_rng(seed)
    largest = max(batches)
    a = xp.asarray(rng.standard_normal((peak_size, peak_size)).astype(dtype))
    b = xp.asarray(rng.standard_normal((peak_size, peak_size)).astype(dtype))
    square_flops = gemm_flops(peak_size, peak_size, peak_size)

    def peaks() -> tuple[float | None, float | None]:
        seconds, flops = layer_gemm_peak(xp, nodes, largest, dtype, rng, sync, repeat)
        square = best_time(lambda: xp.matmul(a, b), sync, repeat=repeat)
        return rate_gflops(flops, seconds), rate_gflops(square_flops, square)

    same_before, square_before = peaks()
    progress(
        f"[{name}] GEMM peak, layer shapes at batch {largest}: {same_before:.1f} GFLOP/s; "
        f"{peak_size}^3: {square_before:.1f} GFLOP/s ({dtype})"
    )
    weights = [xp.asarray(w) for w in make_weights(np, nodes, dtype, seed)]
    rows = []
    for batch in batches:
        a1 = xp.asarray(rng.standard_normal((batch, nodes[0])).astype(dtype))
        flops = propagation_flops(batch, nodes)
        batched_s = best_time(lambda a1=a1: propagate(xp, weights, a1), sync, repeat=repeat)
        timed = min(batch, loop_cap)
        loop_s = best_time(
            lambda a1=a1, timed=timed: propagate_loop(xp, weights, a1, timed),
            sync,
            repeat=max(1, repeat // 2),
            min_time=0.0,
            max_inner=1,
        )
        per_sample = loop_s / timed
        loop_total = per_sample * batch
        rows.append(
            {
                "backend": name,
                "batch": batch,
                "flops": flops,
                "batched_s": batched_s,
                "batched_gflops": rate_gflops(flops, batched_s),
                "loop_samples_timed": timed,
                "loop_s_per_sample": per_sample,
                "loop_s": loop_total,
                "loop_extrapolated": timed < batch,
                "loop_gflops": rate_gflops(flops, loop_total),
                "speedup": loop_total / batched_s if batched_s > 0 else None,
            }
        )
        progress(
            f"[{name}] batch {batch:>6}: batched {rows[-1]['batched_gflops']:.1f} GFLOP/s, loop "
            f"{rows[-1]['loop_gflops']:.2f} GFLOP/s, speedup {rows[-1]['speedup']:.1f}x"
        )
    same_after, square_after = peaks()
    # The goal compares the largest batch with the same-shape peak: time the two alternately too, so that
    # on a shared machine both get the same quiet moments (minutes apart, one may hit a busy one)
    a1 = xp.asarray(rng.standard_normal((largest, nodes[0])).astype(dtype))
    paired = []
    for _ in range(INTERLEAVED_ROUNDS):
        batched_s = best_time(lambda: propagate(xp, weights, a1), sync, repeat=repeat)
        seconds, flops = layer_gemm_peak(xp, nodes, largest, dtype, rng, sync, repeat)
        paired.append((batched_s, rate_gflops(flops, seconds)))
    last = rows[-1]
    last["batched_s"] = min(last["batched_s"], *(b for b, _ in paired))
    last["batched_gflops"] = rate_gflops(last["flops"], last["batched_s"])
    last["speedup"] = last["loop_s"] / last["batched_s"] if last["batched_s"] > 0 else None
    same = max(v for v in (same_before, same_after, *(g for _, g in paired)) if v is not None)
    square = max(v for v in (square_before, square_after) if v is not None)
    for row in rows:
        row["batched_pct_of_peak"] = percent_of(row["batched_gflops"], same)
        row["loop_pct_of_peak"] = percent_of(row["loop_gflops"], same)
        row["batched_pct_of_square_peak"] = percent_of(row["batched_gflops"], square)
    shapes = [[n_out, n_in, largest] for n_in, n_out in itertools.pairwise(nodes)]
    return {
        "backend": name,
        "peak_shape": shapes[0],
        "peak_shapes": shapes,
        "peak_rule": "each layer's (n_out x n_in) @ (n_in x largest batch) GEMM alone, times summed; best of "
        f"before and after the sweep and of {INTERLEAVED_ROUNDS} rounds alternating with the largest batch",
        "gemm_peak_gflops_interleaved": [g for _, g in paired],
        "gemm_peak_gflops": same,
        "gemm_peak_gflops_before": same_before,
        "gemm_peak_gflops_after": same_after,
        "gemm_peak_s": propagation_flops(largest, nodes) / (same * 1e9) if same else None,
        "square_peak_shape": [peak_size, peak_size, peak_size],
        "square_peak_gflops": square,
        "square_peak_gflops_before": square_before,
        "square_peak_gflops_after": square_after,
        "rows": rows,
    }


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

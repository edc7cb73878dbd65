"""Batch propagation through a linear feed-forward network, as in the first article: the checks.

Weights are shaped (target nodes, source nodes), a batch of inputs (samples, features); the whole batch
propagates at once through the transposed input, A2 = W1 . A1^T and A3 = W2 . A2 (linear, as in the
article's worked example: ten input rows [1, 2, 4], 3 -> 5 -> 2 nodes, the article's own W1 and W2, every
column of A2 [39, 50, 18, 40, 41] and of A3 [358, 335]).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

TOOL = "propagation"
SCHEMA_VERSION = 2  # 2: the article's own W1, peaks of the layers' own GEMM shapes
GOAL_PCT_OF_PEAK = 80.0

# The article's worked example: ten identical input rows [1, 2, 4].
ARTICLE_INPUT_ROW = (1.0, 2.0, 4.0)
ARTICLE_SAMPLES = 10
# The article's matrices: W1 . [1, 2, 4] = [39, 50, 18, 40, 41], W2 . that = [358, 335].
ARTICLE_W1 = ((3, 8, 5), (4, 9, 7), (4, 1, 3), (8, 8, 4), (3, 1, 9))
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
    return {
        "source": "numpy.show_config() text",
        "blas": found,
        "blas_version": None,
        "lapack": found,
        "lapack_version": None,
    }


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
            for p in threadpoolctl.threadpool_info()
            if p.get("user_api") == "blas"
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
        np.all(a2 == np.array(ARTICLE_A2_COLUMN, dtype=float)[:, None])
    )
    a3_ok = a3.shape == (2, ARTICLE_SAMPLES) and bool(
        np.all(a3 == np.array(ARTICLE_A3_COLUMN, dtype=float)[:, None])
    )
    loop = propagate_loop(np, [w1, w2], a1)
    return {
        "weights_source": "the article's W1 and W2",
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
        return {
            "expression": "np.dot(W1, A1)",
            "W1_shape": list(w1.shape),
            "A1_shape": list(a1.shape),
            "raised": True,
            "message": str(exc),
            "fix": "transpose the batch: np.dot(W1, A1.T)",
        }
    return {
        "expression": "np.dot(W1, A1)",
        "W1_shape": list(w1.shape),
        "A1_shape": list(a1.shape),
        "raised": False,
        "message": None,
        "fix": "transpose the batch: np.dot(W1, A1.T)",
    }


def make_weights(np: Any, nodes: list[int] | tuple[int, ...], dtype: str, seed: int) -> list[Any]:
    """Random weights, scaled so activations keep their magnitude across layers."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((nodes[i + 1], nodes[i])) / math.sqrt(nodes[i])).astype(dtype)
        for i in range(len(nodes) - 1)
    ]


def loop_check(
    np: Any, nodes: list[int] | tuple[int, ...], batch: int, dtype: str, seed: int
) -> dict[str, Any]:
    """Batched propagation equals the per-sample loop on random data."""
    weights = make_weights(np, nodes, dtype, seed)
    a1 = np.random.default_rng(seed + 1).standard_normal((batch, nodes[0])).astype(dtype)
    batched = propagate(np, weights, a1)
    looped = propagate_loop(np, weights, a1)
    tol = 1e-4 if dtype == "float32" else 1e-10
    err = float(np.max(np.abs(batched - looped)))
    scale = float(np.max(np.abs(looped))) or 1.0
    return {
        "nodes": list(nodes),
        "batch": batch,
        "dtype": dtype,
        "output_shape": list(batched.shape),
        "max_abs_error": err,
        "max_rel_error": err / scale,
        "tolerance": tol,
        "ok": batched.shape == (nodes[-1], batch) and err / scale <= tol,
    }

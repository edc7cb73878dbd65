"""gpu-propagation: the first article's batch propagation in numpy, checked and timed.

Checks (any failure: exit 1): the article's worked example (ten input rows [1, 2, 4], 3 -> 5 -> 2 nodes, the
article's W1 and W2; every column of A2 is [39, 50, 18, 40, 41], of A3 [358, 335]); batched propagation
equals a per-sample loop; the shape error the article hit without the transpose (np.dot(W1, A1)) is raised
and shown.

Timing: batched against per-sample propagation for growing batches with numpy (and CuPy or PyTorch on a GPU):
GFLOP/s, the speedup, and the percent of a GEMM peak of the same shapes as the layers measured in the same
run (a square GEMM's peak beside it), and which BLAS numpy uses. Goal (reported, not enforced): batched at the
largest batch >= 80% of that same-shape peak.

Output: a readable report, or one JSON object with --json (stable keys, "ok" and "failures"); --output FILE
also writes the JSON, --plot FILE a PNG. Exit codes: 0 the checks passed, 1 a check failed, 2 usage or
environment error (bad arguments, numpy missing, unwritable --output).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

from .. import plotting
from ..common import (
    UsageError,
    busy_note,
    check_output_path,
    dump_json,
    load_average,
    over_peak_note,
    write_text_file,
)
from .core import (
    DEFAULT_BATCHES,
    DEFAULT_NODES,
    GOAL_PCT_OF_PEAK,
    QUICK_BATCHES,
    QUICK_NODES,
    SCHEMA_VERSION,
    THREAD_VARS,
    TOOL,
    article_example,
    blas_info,
    import_numpy,
    loop_check,
    parse_int_list,
    shape_error_demo,
)
from .timing import find_gpu_library, time_backend


def run_propagation(
    nodes: list[int] | None = None,
    batches: list[int] | None = None,
    dtype: str = "float32",
    gpu: str = "auto",
    loop_cap: int = 512,
    peak_size: int = 2048,
    gpu_peak_size: int = 8192,
    repeat: int = 5,
    seed: int = 0,
    timing: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every check and timing; return the report dict (never prints to stdout)."""
    np = import_numpy()
    if np is None:
        raise RuntimeError("numpy is not importable")
    progress = progress or (lambda msg: None)
    nodes = list(nodes or DEFAULT_NODES)
    batches = sorted(batches or DEFAULT_BATCHES)
    report: dict[str, Any] = {
        "tool": TOOL,
        "schema_version": SCHEMA_VERSION,
        "ok": True,
        "failures": [],
        "notes": [],
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": {"start": load_average(), "end": None},
        "blas_threads_env": {var: os.environ.get(var) for var in THREAD_VARS},
        "config": {
            "nodes": nodes,
            "batches": batches,
            "dtype": dtype,
            "loop_cap": loop_cap,
            "peak_size": peak_size,
            "repeat": repeat,
            "seed": seed,
            "gpu": gpu,
        },
        "blas": blas_info(np),
        "article_example": article_example(np),
        "shape_error": shape_error_demo(np),
        "loop_check": loop_check(
            np, nodes if max(nodes) <= 1024 else [64, 64, 64], min(64, max(batches)), dtype, seed
        ),
        "numpy": None,
        "gpu": None,
        "goal": {
            "description": "batched propagation at the largest batch >= "
            f"{GOAL_PCT_OF_PEAK:.0f}% of numpy's GEMM peak of the same shapes (same run)",
            "target_pct": GOAL_PCT_OF_PEAK,
            "batch": max(batches),
            "value_pct": None,
            "met": None,
        },
    }
    ex = report["article_example"]
    if not ex["ok"]:
        report["failures"].append(
            f"article example: A2 column {ex['A2_column']} (want {ex['expected_A2_column']}), "
            f"A3 column {ex['A3_column']} (want {ex['expected_A3_column']})"
        )
    if not report["shape_error"]["raised"]:
        report["failures"].append("np.dot(W1, A1) without the transpose did not raise ValueError")
    lc = report["loop_check"]
    if not lc["ok"]:
        report["failures"].append(
            f"batched != per-sample loop: max relative error {lc['max_rel_error']:.3g} "
            f"> {lc['tolerance']:.0e}"
        )
    if timing:
        progress(f"timing numpy ({report['blas'].get('blas')}), nodes {nodes}, {dtype}")
        report["numpy"] = time_backend(
            np, "numpy", nodes, batches, dtype, loop_cap, peak_size, seed, repeat, None, progress
        )
        largest = report["numpy"]["rows"][-1]
        report["goal"]["value_pct"] = largest["batched_pct_of_peak"]
        if largest["batched_pct_of_peak"] is not None:
            report["goal"]["met"] = largest["batched_pct_of_peak"] >= GOAL_PCT_OF_PEAK
        name, xp, sync, note = find_gpu_library(gpu)
        report["gpu_library"] = note
        if name:
            progress(f"timing GPU: {note}")
            report["gpu"] = time_backend(
                xp, name, nodes, batches, dtype, loop_cap, gpu_peak_size, seed, repeat, sync, progress
            )
            report["gpu"]["library"] = note
        else:
            report["notes"].append(f"no GPU timing: {note}")
    else:
        report["gpu_library"] = None
        report["notes"].append("timing skipped (--no-timing)")
    report["load_average"]["end"] = load_average()
    # the load before the timing: at the end it counts this process's own BLAS threads too
    busy = busy_note([report["load_average"]["start"]], report["cpu_count"], "the timing") if timing else None
    if busy:
        report["notes"].append(busy)
    over = over_peak_note(report["goal"]["value_pct"], f"batched propagation at batch {max(batches)}")
    if over:
        report["notes"].append(over)
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
        "Article example (3 -> 5 -> 2 nodes, ten input rows [1, 2, 4], the article's W1 and W2):",
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
        square = ""
        if data.get("square_peak_shape") != data["peak_shape"]:
            square = f"; {data['square_peak_shape'][0]}^3 GEMM: {data['square_peak_gflops']:.1f} GFLOP/s"
        lines += [
            "",
            f"{data['backend']}: GEMM peak {data['gemm_peak_gflops']:.1f} GFLOP/s with the layers' "
            f"shapes ({', '.join('x'.join(map(str, s)) for s in data['peak_shapes'])}, "
            f"{report['config']['dtype']}; best of before and after the sweep){square}",
            f"  {'batch':>6} {'batched GF/s':>12} {'% peak':>7} {'loop GF/s':>10} "
            f"{'% peak':>7} {'speedup':>8}",
        ]
        for r in data["rows"]:
            lines.append(
                f"  {r['batch']:>6} {_fmt(r['batched_gflops']):>12} "
                f"{_fmt(r['batched_pct_of_peak'], '.0f'):>7} {_fmt(r['loop_gflops'], '.2f'):>10} "
                f"{_fmt(r['loop_pct_of_peak'], '.1f'):>7} {_fmt(r['speedup'], '.1f'):>7}x"
                + ("  (loop extrapolated)" if r["loop_extrapolated"] else "")
            )
    goal = report["goal"]
    if goal["value_pct"] is not None:
        lines += [
            "",
            f"Goal: {goal['description']}: {goal['value_pct']:.0f}% -> {'met' if goal['met'] else 'NOT met'}",
        ]
    for note in report["notes"]:
        lines.append(f"note: {note}")
    for failure in report["failures"]:
        lines.append(f"FAIL: {failure}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-propagation",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok, 1 a check failed, 2 usage or environment error.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file")
    parser.add_argument("--nodes", help=f"layer sizes, default {','.join(map(str, DEFAULT_NODES))}")
    parser.add_argument("--batches", help=f"batch sizes, default {','.join(map(str, DEFAULT_BATCHES))}")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--gpu",
        choices=("auto", "cupy", "torch", "none"),
        default="auto",
        help="GPU array library for the GPU timing (default auto)",
    )
    parser.add_argument(
        "--loop-cap",
        type=int,
        default=512,
        help="time the per-sample loop on at most this many samples and "
        "extrapolate (the per-sample cost does not depend on the batch)",
    )
    parser.add_argument(
        "--peak-size", type=int, default=2048, help="square GEMM size for numpy's peak (default 2048)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timing samples, best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS threads for numpy (sets OPENBLAS/OMP/MKL_NUM_THREADS before "
        "numpy is imported); default: the BLAS default (all cores)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small run: nodes {QUICK_NODES}, batches {QUICK_BATCHES}, peak 1024, repeat 3",
    )
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
        nodes = (
            parse_int_list(args.nodes) if args.nodes else list(QUICK_NODES if args.quick else DEFAULT_NODES)
        )
        batches = (
            parse_int_list(args.batches)
            if args.batches
            else list(QUICK_BATCHES if args.quick else DEFAULT_BATCHES)
        )
    except ValueError as exc:
        print(f"gpu-propagation: {exc}", file=sys.stderr)
        return 2
    if len(nodes) < 2 or args.loop_cap < 1 or args.repeat < 1 or args.peak_size < 1:
        print(
            "propagation: --nodes needs at least two layers; --loop-cap, --repeat and "
            "--peak-size must be positive",
            file=sys.stderr,
        )
        return 2
    if args.threads is not None:
        if args.threads < 1 or "numpy" in sys.modules:
            print("propagation: --threads must be positive and set before numpy is imported", file=sys.stderr)
            return 2
        for var in THREAD_VARS:
            os.environ[var] = str(args.threads)
    try:
        check_output_path(args.output)
        check_output_path(args.plot, "--plot")
    except UsageError as exc:
        print(f"gpu-propagation: error: {exc}", file=sys.stderr)
        return 2
    if import_numpy() is None:
        print(
            "propagation: numpy is not importable; install it (pip install numpy) or run inside the ML venv",
            file=sys.stderr,
        )
        return 2
    peak = 1024 if args.quick and args.peak_size == 2048 else args.peak_size
    repeat = 3 if args.quick and args.repeat == 5 else args.repeat
    progress = (
        (lambda msg: None)
        if args.quiet
        else (lambda msg: print(f"gpu-propagation: {msg}", file=sys.stderr, flush=True))
    )
    report = run_propagation(
        nodes=nodes,
        batches=batches,
        dtype=args.dtype,
        gpu=args.gpu,
        loop_cap=args.loop_cap,
        peak_size=peak,
        gpu_peak_size=2048 if args.quick else 8192,
        repeat=repeat,
        seed=args.seed,
        timing=not args.no_timing,
        progress=progress,
    )
    report["plot"] = None
    if args.plot and not args.no_timing:
        error = plotting.propagation_plot(report, args.plot)
        if error:
            report["notes"].append(f"no plot: {error}")
        else:
            report["plot"] = args.plot
    text = dump_json(report)
    if args.output:
        try:
            write_text_file(args.output, text + "\n")
        except UsageError as exc:
            print(f"gpu-propagation: error: {exc}", file=sys.stderr)
            return 2
    print(text if args.json else render_table(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

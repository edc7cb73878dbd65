"""The PNGs of the tools (matplotlib, Agg backend): benchmark, propagation and fleet. Each returns an error
string instead of raising when matplotlib is missing, and draws only what was measured."""

from __future__ import annotations

import io
from typing import Any

from .benchmark.core import ARTICLE_REFERENCE, FLOPS_FORMULA

NA = "n/a"


def _pyplot() -> tuple[Any, str | None]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return None, f"matplotlib unavailable: {exc}"
    return plt, None


def benchmark_plot(report: dict[str, Any], path: str) -> str | None:
    """Throughput against batch size; beside it the GPU/CPU ratios when a GPU ran, else the percent of the
    same run's GEMM peak (a CPU-only run has no ratio to draw)."""
    plt, why = _pyplot()
    if plt is None:
        return why
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {
        ("gpu", "resident"): "o-",
        ("gpu", "article"): "o--",
        ("cpu", "resident"): "s-",
        ("cpu", "article"): "s--",
    }
    runs = [r for r in report["runs"] if not r.get("error")]
    for (dev, mode), style in styles.items():
        rows = sorted(
            (r for r in runs if r["device"] == dev and r["mode"] == mode and r.get("samples_per_s")),
            key=lambda r: r["batch_size"],
        )
        if rows:
            left.plot(
                [r["effective_batch_size"] for r in rows],
                [r["samples_per_s"] for r in rows],
                style,
                label=f"{dev} {mode}",
            )
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("batch size (samples per step)")
    left.set_ylabel("training samples / s (steady epoch)")
    left.set_title("Throughput")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    effective = {r["batch_size"]: r["effective_batch_size"] for r in runs}
    if report["speedups"]:
        for mode, style in (("resident", "o-"), ("article", "o--")):
            rows = [s for s in report["speedups"] if s["mode"] == mode and s["gpu_speedup"]]
            if rows:
                right.plot(
                    [effective.get(s["batch_size"], s["batch_size"]) for s in rows],
                    [s["gpu_speedup"] for s in rows],
                    style,
                    label=f"{mode}, steady epoch",
                )
            rows = [s for s in report["speedups"] if s["mode"] == mode and s.get("gpu_speedup_total")]
            if rows:
                right.plot(
                    [effective.get(s["batch_size"], s["batch_size"]) for s in rows],
                    [s["gpu_speedup_total"] for s in rows],
                    style,
                    alpha=0.45,
                    label=f"{mode}, total time",
                )
        right.axhline(
            ARTICLE_REFERENCE["speedup"],
            color="grey",
            linestyle=":",
            label=f"article: {ARTICLE_REFERENCE['speedup']}x total (GTX 960 vs i7-6700K)",
        )
        right.axhline(1.0, color="black", linewidth=0.8)
        right.set_xscale("log", base=2)
        right.set_yscale("log")
        right.set_ylabel("GPU speedup over CPU (x)")
        right.set_title("GPU / CPU")
    else:
        for (dev, mode), style in styles.items():
            rows = sorted(
                (
                    r
                    for r in runs
                    if r["device"] == dev and r["mode"] == mode and r.get("pct_of_gemm_peak") is not None
                ),
                key=lambda r: r["batch_size"],
            )
            if rows:
                right.plot(
                    [r["effective_batch_size"] for r in rows],
                    [r["pct_of_gemm_peak"] for r in rows],
                    style,
                    label=f"{dev} {mode}",
                )
        for g in report.get("goals") or []:
            if g.get("value_pct") is not None:
                right.axhline(
                    g["target_pct"],
                    color="grey",
                    linestyle=":",
                    label=f"goal {g['device']} {g['target_pct']:.0f}% at batch {g['batch_size']}",
                )
        right.set_xscale("log", base=2)
        right.set_ylim(bottom=0)  # a share: from zero, so small differences do not look large
        right.set_ylabel("% of the same run's fp32 GEMM peak")
        right.set_title("Share of the GEMM peak (no GPU run)")
    right.set_xlabel("batch size")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    names = [info.get("device_name") for info in report["devices"].values() if info.get("device_name")]
    fig.suptitle(
        f"MNIST benchmark, Keras {report['backend']}{' on ' + ' / '.join(names) if names else ''} - "
        f"DATA: {report['data_label']}\nFLOPs: {FLOPS_FORMULA}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def propagation_plot(report: dict[str, Any], path: str) -> str | None:
    """GFLOP/s against batch size (batched and loop, per backend) with each backend's GEMM peaks."""
    plt, why = _pyplot()
    if plt is None:
        return why
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for section, colour in (("numpy", "tab:blue"), ("gpu", "tab:green")):
        data = report.get(section)
        if not data:
            continue
        xs = [r["batch"] for r in data["rows"]]
        ax.plot(
            xs,
            [r["batched_gflops"] for r in data["rows"]],
            "o-",
            color=colour,
            label=f"{data['backend']} batched",
        )
        ax.plot(
            xs,
            [r["loop_gflops"] for r in data["rows"]],
            "x--",
            color=colour,
            label=f"{data['backend']} per-sample loop",
        )
        ax.axhline(
            data["gemm_peak_gflops"],
            color=colour,
            linestyle=":",
            label=f"{data['backend']} GEMM peak, layer shapes {'x'.join(map(str, data['peak_shape']))}",
        )
        if data.get("square_peak_gflops") and data.get("square_peak_shape") != data["peak_shape"]:
            ax.axhline(
                data["square_peak_gflops"],
                color=colour,
                linestyle="-.",
                alpha=0.5,
                label=f"{data['backend']} GEMM peak, {data['square_peak_shape'][0]}^3",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (samples)")
    ax.set_ylabel("GFLOP/s")
    nodes = "->".join(map(str, report["config"]["nodes"]))
    ax.set_title(
        f"Batch propagation {nodes}, {report['config']['dtype']}, BLAS {report['blas'].get('blas')}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def fleet_png(rows: list[dict[str, Any]]) -> tuple[bytes | None, str | None]:
    """(PNG bytes, None), or (None, why not) when matplotlib is not importable. Deterministic bytes."""
    plt, why = _pyplot()
    if plt is None:
        return None, f"no fleet PNG: {why}"
    hosts = [r["host"] for r in rows]
    series = [
        ("article", "cpu", "tab:blue"),
        ("article", "gpu", "tab:green"),
        ("resident", "cpu", "tab:cyan"),
        ("resident", "gpu", "tab:olive"),
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(hosts) + 4), 4.5))
    width = 0.8 / len(series)
    for i, (mode, device, colour) in enumerate(series):
        xs = [h + (i - (len(series) - 1) / 2) * width for h in range(len(hosts))]
        ys = [r["benchmark"]["modes"][mode][device] or 0 for r in rows]
        ax1.bar(xs, ys, width, color=colour, label=f"{mode} {device.upper()}")
    ax1.set_xticks(range(len(hosts)), hosts, rotation=30, ha="right", fontsize=8)
    if any(r["benchmark"]["modes"][m][d] for r in rows for m, d, _c in series):
        ax1.set_yscale("log")
    ax1.set_ylabel("samples/s at the largest batch")
    data = {r["benchmark"]["data"] for r in rows} - {NA}
    synthetic = (
        " (SYNTHETIC data)"
        if data == {"synthetic"}
        else (" (some hosts: SYNTHETIC data)" if "synthetic" in data else "")
    )
    ax1.set_title(f"MNIST benchmark{synthetic}", fontsize=10)
    ax1.legend(fontsize=7)
    ax1.grid(True, axis="y", alpha=0.3)
    xs = list(range(len(hosts)))
    ax2.bar(
        [x - 0.2 for x in xs],
        [r["propagation"]["numpy_pct"] or 0 for r in rows],
        0.4,
        color="tab:blue",
        label="numpy",
    )
    ax2.bar(
        [x + 0.2 for x in xs],
        [r["propagation"]["gpu_pct"] or 0 for r in rows],
        0.4,
        color="tab:green",
        label="GPU",
    )
    ax2.axhline(80, color="grey", linestyle=":", label="goal 80%")
    ax2.set_xticks(xs, hosts, rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("% of the same-shape GEMM peak (same run)")
    ax2.set_title("Batched propagation, largest batch", fontsize=10)
    ax2.legend(fontsize=7)
    ax2.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    # No Software/date metadata: the same reports give the same bytes
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue(), None

#!/usr/bin/env python3
"""gpu-fleet-report: one Markdown table (and a PNG) of the validation reports across all hosts.

Reads REPORTS/<host>/{doctor,benchmark,propagation}.json, as the gpu_validation role fetches them, and
writes REPORTS/fleet.md (one row per host: doctor verdict, GPU or CPU-only, driver, CUDA and cuDNN
runtime versions, GPUs TensorFlow sees, benchmark samples/s on CPU and GPU and their ratio per mode at
the largest batch, propagation's percent of the GEMM peak) and, when matplotlib is importable,
REPORTS/fleet.png. Runs on the controller: the Markdown needs only the standard library.

A value a report does not hold shows as "n/a". Files are rewritten only when their content changes
(`changed` in the JSON output says whether they were); --dry-run writes nothing and says what would change.

Output: the Markdown table, or one JSON object with --json (keys ok, failures, warnings, changed,
markdown, png, hosts).
Exit codes: 0 every host's reports are there and passed; 1 a host failed a check or lacks a report;
2 usage or environment error (no reports directory, no host reports in it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import plotting
from .benchmark.core import FLOPS_FORMULA

TOOLS = ("doctor", "benchmark", "propagation")
MODES = ("article", "resident")
NA = "n/a"
PNG_NAME = "fleet.png"
MD_NAME = "fleet.md"


# --------------------------------------------------------------------------------------------------
# Reading the reports (pure helpers, tolerant of missing keys)


def dig(data: Any, *paths: str) -> Any:
    """The first value found under one of the dotted paths ("a.b.0.c"), else None."""
    for path in paths:
        node = data
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
                break
        if node is not None:
            return node
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_reports(host_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """{tool: parsed JSON} for the reports present in host_dir, and the problems met reading them."""
    reports: dict[str, Any] = {}
    problems: list[str] = []
    for tool in TOOLS:
        path = host_dir / f"{tool}.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{tool}.json is unreadable: {exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{tool}.json does not hold a JSON object")
            continue
        reports[tool] = data
    return reports, problems


def _version(value: Any, kind: str = "plain") -> str | None:
    """A version as text. Integers as the libraries return them: CUDA 12050 -> "12.5" (kind "cuda"),
    cuDNN 90300 -> "9.3.0" and 8907 -> "8.9.7" (kind "cudnn")."""
    if isinstance(value, dict):
        value = dig(value, "version", "string", "text")
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int) and kind == "cuda" and value >= 1000:
        return f"{value // 1000}.{value % 1000 // 10}"
    if isinstance(value, int) and kind == "cudnn" and value >= 1000:
        major, rest = (value // 10000, value % 10000) if value >= 10000 else (value // 1000, value % 1000)
        return f"{major}.{rest // 100}.{rest % 100}"
    return str(value)


def doctor_summary(doctor: dict[str, Any] | None) -> dict[str, Any]:
    """Verdict, GPUs, driver, CUDA/cuDNN runtime versions and TF's visible GPUs from gpu-doctor's JSON."""
    if doctor is None:
        return {
            "verdict": NA,
            "ok": None,
            "gpu": NA,
            "driver": NA,
            "cuda": NA,
            "cudnn": NA,
            "tf_gpus": NA,
            "failures": [],
        }
    ok = doctor.get("ok")
    failures = [_failure_text(f) for f in doctor.get("failures") or []]
    gpus = dig(doctor, "checks.gpu.gpus")
    names = [str(dig(g, "name") or "NVIDIA GPU") if isinstance(g, dict) else str(g) for g in gpus or []]
    if names:
        counted: dict[str, int] = {}
        for name in names:
            counted[name] = counted.get(name, 0) + 1
        gpu = ", ".join(f"{n} x {name}" if n > 1 else name for name, n in sorted(counted.items()))
    elif doctor.get("mode") == "cpu-only" or isinstance(gpus, list):
        gpu = "CPU-only"
    else:
        gpu = NA
    driver = _version(dig(doctor, "checks.driver_version.version"))
    cuda = _version(dig(doctor, "checks.cuda_runtime.runtime")) or _version(
        dig(doctor, "checks.cuda_runtime.runtime_version"), "cuda"
    )
    cudnn = _version(dig(doctor, "checks.cudnn.runtime")) or _version(
        dig(doctor, "checks.cudnn.runtime_version"), "cudnn"
    )
    tf = dig(doctor, "checks.tensorflow") or {}
    if tf.get("installed") is False:
        tf_gpus: Any = "no TF"
    elif isinstance(tf.get("gpus"), list) and tf.get("installed"):
        tf_gpus = len(tf["gpus"])
    else:
        tf_gpus = NA
    if ok is True:
        verdict = "ok"
    elif ok is False:
        verdict = f"FAIL ({len(failures)})" if failures else "FAIL"
    else:
        verdict = NA
    return {
        "verdict": verdict,
        "ok": ok,
        "gpu": gpu,
        "driver": driver or NA,
        "cuda": cuda or NA,
        "cudnn": cudnn or NA,
        "tf_gpus": tf_gpus,
        "failures": failures,
    }


def _failure_text(failure: Any) -> str:
    if isinstance(failure, dict):
        text = str(failure.get("message") or failure.get("check") or json.dumps(failure, sort_keys=True))
        if failure.get("fix"):
            text += f" (fix: {failure['fix']})"
        return text
    return str(failure)


def _runs(benchmark: dict[str, Any]) -> list[dict[str, Any]]:
    runs = dig(benchmark, "runs")
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def benchmark_summary(benchmark: dict[str, Any] | None) -> dict[str, Any]:
    """Per mode, at the largest batch: best samples/s on CPU and on GPU and the GPU/CPU ratio."""
    empty = {
        mode: {"batch": None, "cpu": None, "gpu": None, "ratio": None, "cpu_pct": None, "gpu_pct": None}
        for mode in MODES
    }
    if benchmark is None:
        return {"ok": None, "data": NA, "backend": NA, "modes": empty, "failures": []}
    best: dict[tuple[str, int, str], float] = {}
    pct: dict[tuple[str, int, str], float] = {}
    for run in _runs(benchmark):
        mode = str(dig(run, "mode") or "")
        device = str(dig(run, "device") or "").lower()
        batch = dig(run, "batch_size")
        rate = dig(run, "samples_per_s")
        if mode not in MODES or device not in ("cpu", "gpu") or not isinstance(batch, int):
            continue
        if _is_number(rate) and rate > 0 and not run.get("error"):
            key = (mode, batch, device)
            best[key] = max(best.get(key, 0.0), float(rate))
            share = dig(run, "pct_of_gemm_peak")
            if _is_number(share):
                pct[key] = max(pct.get(key, 0.0), float(share))
    modes: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        batches = sorted({b for (m, b, _d) in best if m == mode})
        if not batches:
            modes[mode] = dict(empty[mode])
            continue
        batch = batches[-1]
        cpu, gpu = best.get((mode, batch, "cpu")), best.get((mode, batch, "gpu"))
        modes[mode] = {
            "batch": batch,
            "cpu": cpu,
            "gpu": gpu,
            "ratio": gpu / cpu if cpu and gpu else None,
            "cpu_pct": pct.get((mode, batch, "cpu")),
            "gpu_pct": pct.get((mode, batch, "gpu")),
        }
    data = benchmark.get("data")
    return {
        "ok": benchmark.get("ok"),
        "data": str(data) if isinstance(data, str) else NA,
        "backend": str(benchmark.get("backend") or NA),
        "modes": modes,
        "failures": [_failure_text(f) for f in benchmark.get("failures") or []],
    }


def propagation_summary(prop: dict[str, Any] | None) -> dict[str, Any]:
    """Batched propagation at the largest batch as percent of the same run's GEMM peak (numpy, GPU)."""
    if prop is None:
        return {"ok": None, "numpy_pct": None, "gpu_pct": None, "blas": NA, "failures": []}

    def largest(section: str) -> float | None:
        rows = dig(prop, f"{section}.rows")
        if not isinstance(rows, list) or not rows:
            return None
        rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("batch"), int)]
        if not rows:
            return None
        value = max(rows, key=lambda r: r["batch"]).get("batched_pct_of_peak")
        return float(value) if _is_number(value) else None

    numpy_pct = largest("numpy")
    if numpy_pct is None:
        goal = dig(prop, "goal.value_pct")
        numpy_pct = float(goal) if _is_number(goal) else None
    return {
        "ok": prop.get("ok"),
        "numpy_pct": numpy_pct,
        "gpu_pct": largest("gpu"),
        "blas": str(dig(prop, "blas.blas") or NA),
        "failures": [_failure_text(f) for f in prop.get("failures") or []],
    }


def host_row(host: str, reports: dict[str, Any], problems: list[str] | None = None) -> dict[str, Any]:
    """Everything the fleet table and plot show for one host, with its failures."""
    doctor = doctor_summary(reports.get("doctor"))
    bench = benchmark_summary(reports.get("benchmark"))
    prop = propagation_summary(reports.get("propagation"))
    failures = list(problems or [])
    failures += [f"doctor: {f}" for f in doctor["failures"]]
    failures += [f"benchmark: {f}" for f in bench["failures"]]
    failures += [f"propagation: {f}" for f in prop["failures"]]
    for tool, summary in (("doctor", doctor), ("benchmark", bench), ("propagation", prop)):
        if summary["ok"] is False and not summary["failures"]:
            failures.append(f"{tool}: failed")
    if not reports:
        failures.append("no reports")
    return {
        "host": host,
        "reports": sorted(reports),
        "doctor": doctor,
        "benchmark": bench,
        "propagation": prop,
        "ok": not failures,
        "failures": failures,
    }


# --------------------------------------------------------------------------------------------------
# Rendering


def _num(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if _is_number(value):
        return format(value, spec) + suffix
    return NA


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The fleet table (deterministic: the same reports give the same bytes)."""
    head = [
        "host",
        "verdict",
        "doctor",
        "GPU",
        "driver",
        "CUDA rt",
        "cuDNN rt",
        "TF GPUs",
        "data",
        "batch",
        "article CPU/s",
        "article GPU/s",
        "article GPU/CPU",
        "resident CPU/s",
        "resident GPU/s",
        "resident GPU/CPU",
        "resident % peak CPU/GPU",
        "propagation % peak",
    ]
    lines = [
        "# GPU stack fleet report",
        "",
        f"{len(rows)} host(s), {sum(1 for r in rows if r['ok'])} passed. Benchmark columns: samples/s at the "
        "largest batch of the sweep, best run; `article` is numpy arrays into `model.fit`, `resident` keeps "
        "the data on the device; % peak: TFLOP/s with " + FLOPS_FORMULA + " against the fp32 GEMM peak "
        "of the same run. Propagation: batched at the largest batch, percent of numpy's GEMM peak of the "
        "same shapes measured in the same run (GPU's in brackets). n/a: not reported.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        d, b, p = row["doctor"], row["benchmark"], row["propagation"]
        art, res = b["modes"]["article"], b["modes"]["resident"]
        batches = sorted({m["batch"] for m in (art, res) if m["batch"]})
        prop = _num(p["numpy_pct"], ".0f", "%")
        if p["gpu_pct"] is not None:
            prop += f" ({_num(p['gpu_pct'], '.0f', '%')} GPU)"
        cells = [
            row["host"],
            "ok" if row["ok"] else "FAIL",
            d["verdict"],
            d["gpu"],
            d["driver"],
            d["cuda"],
            d["cudnn"],
            d["tf_gpus"],
            # synthetic timings must say so wherever they are shown
            "SYNTHETIC" if b["data"] == "synthetic" else b["data"],
            "/".join(str(x) for x in batches) or NA,
            _num(art["cpu"]),
            _num(art["gpu"]),
            _num(art["ratio"], ".1f", "x"),
            _num(res["cpu"]),
            _num(res["gpu"]),
            _num(res["ratio"], ".1f", "x"),
            f"{_num(res['cpu_pct'], '.0f', '%')} / {_num(res['gpu_pct'], '.0f', '%')}",
            prop,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    failed = [r for r in rows if r["failures"]]
    if failed:
        lines += ["", "## Failures", ""]
        for row in failed:
            lines += [f"- **{_cell(row['host'])}**: {_cell(f)}" for f in row["failures"]]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, content: bytes | None, dry_run: bool = False) -> bool:
    """Make path hold content (None: remove it); True when that changes the file."""
    old = path.read_bytes() if path.is_file() else None
    if old == content:
        return False
    if not dry_run:
        if content is None:
            path.unlink()
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
    return True


# --------------------------------------------------------------------------------------------------
# CLI


def host_dirs(reports: Path, hosts: list[str] | None) -> list[Path]:
    """Host report directories: the named ones, else every directory holding one of the reports."""
    if hosts:
        return [reports / h for h in hosts]
    return sorted(
        d for d in reports.iterdir() if d.is_dir() and any((d / f"{t}.json").exists() for t in TOOLS)
    )


def build_report(reports: Path, hosts: list[str] | None = None, png: bool = True) -> dict[str, Any]:
    """Rows, Markdown and PNG for the reports directory (writes nothing)."""
    rows = []
    for d in host_dirs(reports, hosts):
        found, problems = load_reports(d) if d.is_dir() else ({}, [])
        rows.append(host_row(d.name, found, problems))
    warnings: list[str] = []
    png_bytes = None
    if png and rows:
        png_bytes, why = plotting.fleet_png(rows)
        if why:
            warnings.append(why)
    return {"rows": rows, "markdown": render_markdown(rows), "png": png_bytes, "warnings": warnings}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="gpu-fleet-report",
        description=__doc__.splitlines()[0],
        epilog="Exit codes: 0 every host passed, 1 a host failed or lacks a report, 2 usage or environment.",
    )
    ap.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="directory holding <host>/{doctor,benchmark,propagation}.json (default: reports)",
    )
    ap.add_argument("--hosts", help="comma-separated hosts (default: every host directory with a report)")
    ap.add_argument("--no-png", action="store_true", help="write no PNG (and remove an old one)")
    ap.add_argument("--dry-run", action="store_true", help="write nothing; say what would change")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    reports: Path = args.reports
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None

    def usage_error(msg: str) -> int:
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "failures": [msg],
                        "warnings": [],
                        "changed": False,
                        "markdown": None,
                        "png": None,
                        "hosts": [],
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            print(f"gpu-fleet-report: {msg}", file=sys.stderr)
        return 2

    if not reports.is_dir():
        return usage_error(f"{reports} is not a directory: run the validate playbook first or pass --reports")
    if hosts and any("/" in h or h in ("", ".", "..") for h in hosts):
        return usage_error(f"--hosts takes host names, not paths: {args.hosts}")
    report = build_report(reports, hosts, png=not args.no_png)
    rows = report["rows"]
    if not rows:
        return usage_error(f"no host reports under {reports}: run the validate playbook first")
    md_path, png_path = reports / MD_NAME, reports / PNG_NAME
    changed = write_if_changed(md_path, report["markdown"].encode("utf-8"), args.dry_run)
    # A PNG that cannot be rendered any more must not pass for the current one
    changed = write_if_changed(png_path, report["png"], args.dry_run) or changed
    failures = [f"{r['host']}: {f}" for r in rows for f in r["failures"]]
    if args.json:
        print(
            json.dumps(
                {
                    "ok": not failures,
                    "failures": failures,
                    "warnings": report["warnings"],
                    "changed": changed,
                    "dry_run": args.dry_run,
                    "markdown": str(md_path),
                    "png": str(png_path) if report["png"] is not None else None,
                    "hosts": [
                        {k: r[k] for k in ("host", "ok", "reports", "doctor", "benchmark", "propagation")}
                        for r in rows
                    ],
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(report["markdown"], end="")
        for warning in report["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

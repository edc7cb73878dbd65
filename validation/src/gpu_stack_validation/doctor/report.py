"""The doctor's report: every check in a fixed order, the verdict, the exit code, and the table."""

from __future__ import annotations

import argparse
from typing import Any

from .checks_host import (
    check_cuda_driver,
    check_driver_version,
    check_gpu,
    check_kernel_module,
    check_nouveau,
    check_persistenced,
    check_secure_boot,
)
from .checks_libs import check_cuda_mode, check_cuda_runtime, check_cudnn, check_libraries
from .checks_tf import check_compute_capability, check_dcgm, check_device_query, check_tensorflow, check_xid
from .findings import Findings

SCHEMA = 1
# The keys of "checks", in order; new checks are added, never renamed
CHECKS = (
    "gpu",
    "kernel_module",
    "nouveau",
    "secure_boot",
    "persistenced",
    "cuda_driver",
    "driver_version",
    "cuda_mode",
    "libraries",
    "cuda_runtime",
    "cudnn",
    "tensorflow",
    "compute_capability",
    "device_query",
    "dcgm",
    "xid",
)


def evaluate(facts: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """The report: every check's result, failures and warnings with fixes, the verdict and exit code."""
    fx = Findings()
    expected = facts["expected"]
    checks: dict[str, Any] = {}
    gpu = checks["gpu"] = check_gpu(facts, opts, fx)
    checks["kernel_module"] = check_kernel_module(facts, gpu, fx)
    checks["nouveau"] = check_nouveau(facts, gpu, fx)
    checks["secure_boot"] = check_secure_boot(facts, gpu, fx)
    checks["persistenced"] = check_persistenced(facts, gpu, fx)
    checks["cuda_driver"] = check_cuda_driver(facts, gpu, fx)
    checks["driver_version"] = check_driver_version(facts, expected, fx)
    checks["cuda_mode"] = check_cuda_mode(facts, fx)
    checks["libraries"] = check_libraries(facts, expected, fx)
    checks["cuda_runtime"] = check_cuda_runtime(facts, expected, fx)
    checks["cudnn"] = check_cudnn(facts, expected, fx)
    checks["tensorflow"] = check_tensorflow(facts, expected, gpu, opts, fx)
    checks["compute_capability"] = check_compute_capability(facts, gpu, fx)
    checks["device_query"] = check_device_query(facts, gpu, fx)
    checks["dcgm"] = check_dcgm(facts, gpu, fx)
    checks["xid"] = check_xid(facts, gpu, fx)
    for note in facts.get("notes") or []:
        fx.warn("pins", note, "pass --pins FILE")
    # a check with its own failure is "fail" even when it set another status first
    for f in fx.failures:
        if f["check"] in checks:
            checks[f["check"]]["status"] = "fail"
    ok = not fx.failures
    mode = "gpu" if gpu["found"] else "cpu-only"
    if gpu["found"]:
        names = sorted({g.get("name") or "NVIDIA GPU" for g in gpu["gpus"]})
        what = f"{gpu['count']} GPU ({', '.join(names)})"
    else:
        what = "no GPU: CPU-only"
    tfc = checks["tensorflow"]
    if tfc.get("installed") and tfc.get("version"):
        what += f"; TensorFlow {tfc['version']} sees {len(tfc['gpus'])} GPU"
    elif tfc["status"] == "skip":
        what += "; TensorFlow " + ("not probed" if facts["tensorflow"].get("skipped") else "not installed")
    if ok:
        verdict = f"OK: {what}" + (f" ({len(fx.warnings)} warning(s))" if fx.warnings else "")
    else:
        failed = [c for c in CHECKS if checks[c]["status"] == "fail"]
        verdict = f"FAIL: {what}; {len(fx.failures)} failure(s) in {', '.join(failed)}"
    return {
        "tool": "gpu_doctor",
        "schema": SCHEMA,
        "ok": ok,
        "exit_code": 0 if ok else 1,
        "verdict": verdict,
        "mode": mode,
        "cuda_mode": facts["cuda_mode"]["mode"],
        "host": facts["host"],
        "expected": {k: v for k, v in expected.items() if k != "problems"},
        "checks": checks,
        "failures": fx.failures,
        "warnings": fx.warnings,
    }


def render_table(report: dict[str, Any]) -> str:
    """One row per check, then failures and warnings with their fixes, then the verdict."""
    host = report["host"]
    lines = [
        f"GPU doctor on {host.get('hostname')} ({host.get('os') or '?'}, kernel {host.get('kernel')})",
        f"CUDA libraries: {report['cuda_mode']} mode ({report['checks']['cuda_mode']['source']}); "
        f"expected from: {report['expected'].get('source') or 'nothing'}"
        + (f" (pins: {report['expected']['pins']})" if report["expected"].get("pins") else ""),
        "",
    ]
    width = max(len(c) for c in CHECKS)
    lines.append(f"{'CHECK':<{width}}  STATUS  SUMMARY")
    for name in CHECKS:
        c = report["checks"][name]
        lines.append(f"{name:<{width}}  {c['status'].upper():<6}  {c.get('summary', '')}")
    for title, items in (("Failures", report["failures"]), ("Warnings", report["warnings"])):
        if items:
            lines += ["", f"{title}:"]
            for item in items:
                lines.append(f"  - [{item['check']}] {item['message']}")
                lines.append(f"      fix: {item['fix']}")
    lines += ["", f"Verdict: {report['verdict']}"]
    return "\n".join(lines)

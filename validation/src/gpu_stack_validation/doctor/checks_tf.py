"""Checks of TensorFlow and the GPU's own tests: tensorflow, compute_capability, device_query, dcgm, xid."""

from __future__ import annotations

import argparse
from typing import Any

from ..common import major_minor
from .findings import Findings
from .parsers import XID_HARDWARE, compute_capability_support


def check_tensorflow(
    facts: dict[str, Any],
    expected: dict[str, Any],
    gpu: dict[str, Any],
    opts: argparse.Namespace,
    fx: Findings,
) -> dict[str, Any]:
    """TensorFlow in --python: imports, is a CUDA build, sees the GPUs the driver sees."""
    tf = facts["tensorflow"]
    res: dict[str, Any] = {
        "status": "ok",
        "python": tf.get("executable") or tf.get("python_path") or tf.get("python"),
        "python_version": tf.get("python") if tf.get("executable") else None,
        "installed": tf.get("installed"),
        "version": tf.get("version"),
        "build_info": tf.get("build_info"),
        "gpus": tf.get("gpus") or [],
        "log_hints": tf.get("log_hints") or [],
        "error": tf.get("import_error") or tf.get("probe_error"),
    }
    want_tf = expected.get("tensorflow_version")
    # pip mode: the CUDA libraries are NVIDIA's wheels, which the and-cuda extra pins
    extra = "[and-cuda]" if (facts.get("cuda_mode") or {}).get("mode") == "pip" else ""
    pip = f"tensorflow{extra}=={want_tf}" if want_tf else f"tensorflow{extra}"
    pip = f"'{pip}'" if extra else pip  # the brackets are a shell glob
    install_fix = f"pip install {pip} into {res['python']}'s venv (the ml_venv role)"
    if tf.get("skipped"):
        res["status"] = "skip"
        res["summary"] = "not probed (--skip-tensorflow)"
        return res
    if tf.get("probe_error"):
        res["status"] = "fail"
        res["summary"] = f"probe failed: {tf['probe_error']}"
        fx.fail(
            "tensorflow",
            f"the TensorFlow probe in {res['python']} failed: {tf['probe_error']}",
            "run `python -c 'import tensorflow'` there; raise --tf-timeout if the import is only slow",
        )
        return res
    if not tf.get("installed"):
        res["summary"] = f"not installed in {res['python']}"
        if opts.require_tensorflow:
            res["status"] = "fail"
            fx.fail(
                "tensorflow",
                f"TensorFlow is not installed in {res['python']} (--require-tensorflow)",
                install_fix,
            )
        else:
            res["status"] = "skip"
            res["summary"] += " (libraries checked against the pins)" if expected.get("source") else ""
        return res
    if tf.get("import_error"):
        res["status"] = "fail"
        res["summary"] = f"import fails: {tf['import_error']}"
        fx.fail(
            "tensorflow", f"import tensorflow fails in {res['python']}: {tf['import_error']}", install_fix
        )
        return res
    build = tf.get("build_info") or {}
    parts = [f"TensorFlow {tf.get('version')} (Python {res['python_version']})"]
    if want_tf and tf.get("version") and major_minor(tf["version"]) != major_minor(want_tf):
        res["status"] = "warn"
        fx.warn("tensorflow", f"TensorFlow {tf['version']} installed, pinned {want_tf}", install_fix)
    want_py = expected.get("python_version")
    if want_py and res["python_version"] and major_minor(res["python_version"]) != major_minor(want_py):
        res["status"] = "warn"
        fx.warn(
            "tensorflow",
            f"Python {res['python_version']} runs TensorFlow, pinned {want_py}",
            "recreate the venv with gpu_stack_python_version (the ml_venv role)",
        )
    if not build.get("is_cuda_build"):
        parts.append("CPU-only build")
        dist = tf.get("distribution") or "tensorflow"
        msg = f"TensorFlow {tf.get('version')} ({dist}) is a build without GPU support (is_cuda_build false)"
        fix = (
            f"{res['python']} -m pip uninstall -y {dist} && {res['python']} -m pip install {pip} "
            "(or converge the ml_venv role again)"
        )
        # the stack promises a CUDA build (the pins name a CUDA), GPU or not
        if gpu["found"] or expected.get("source") == "pins":
            res["status"] = "fail"
            fx.fail("tensorflow", msg + (" on a GPU host" if gpu["found"] else ""), fix)
        else:
            res["status"] = "warn" if res["status"] == "ok" else res["status"]
            fx.warn("tensorflow", msg, fix)
    else:
        parts.append(f"built for CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}")
    n = len(res["gpus"])
    parts.append(f"sees {n} GPU{'s' if n != 1 else ''}")
    if gpu["found"] and gpu["driver_answers"] and build.get("is_cuda_build") and n == 0:
        res["status"] = "fail"
        hint = "; ".join(res["log_hints"][:2])
        fx.fail(
            "tensorflow",
            "TensorFlow sees no GPU although the driver answers" + (f": {hint}" if hint else ""),
            "install the libraries the libraries check lists as missing; for more, run python -c "
            "'import tensorflow' with TF_CPP_MAX_VLOG_LEVEL=1 and read the dlopen lines",
        )
    elif not gpu["found"]:
        parts.append("runs on the CPU (no GPU)")
    res["summary"] = "; ".join(parts)
    return res


def check_compute_capability(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """Each GPU's compute capability against the kernels TensorFlow's build carries, read at run time
    from tf.sysconfig.get_build_info()['cuda_compute_capabilities']."""
    build = (facts["tensorflow"].get("build_info") or {}) if facts["tensorflow"].get("installed") else {}
    arches = list(build.get("cuda_compute_capabilities") or [])
    res: dict[str, Any] = {"status": "ok", "tensorflow_arches": arches, "gpus": []}
    if not gpu["found"]:
        res.update(status="skip", summary="no NVIDIA GPU")
        return res
    if not arches:
        res.update(
            status="skip",
            summary="TensorFlow's build info lists no CUDA compute capabilities "
            "(not installed, not probed or a CPU-only build)",
        )
        return res
    tf_ccs = [g.get("compute_capability") for g in facts["tensorflow"].get("gpus") or []]
    parts = []
    for i, g in enumerate(gpu["gpus"]):
        cc = g.get("compute_capability") or (tf_ccs[i] if i < len(tf_ccs) else None)
        support = compute_capability_support(cc, arches)
        res["gpus"].append({"index": g.get("index", i), "name": g.get("name"), **support})
        name = g.get("name") or f"GPU {i}"
        if support["supported"] is None:
            parts.append(f"{name}: compute capability unknown")
            res["status"] = "warn" if res["status"] == "ok" else res["status"]
            fx.warn(
                "compute_capability",
                f"{name}: the compute capability is unknown (NVML, nvidia-smi and the CUDA driver gave none)",
                "check `nvidia-smi --query-gpu=compute_cap --format=csv`",
            )
        elif not support["supported"]:
            res["status"] = "fail"
            parts.append(f"{name} cc {cc}: not in the build")
            fx.fail(
                "compute_capability",
                f"{name} has compute capability {cc}; TensorFlow "
                f"{facts['tensorflow'].get('version')} was built for {', '.join(arches)}: it has no kernels "
                "this GPU can run",
                "use a TensorFlow release whose build info lists sm_"
                f"{cc.replace('.', '')} or an older compute_XY (older GPUs need older releases), or build "
                f"TensorFlow from source with TF_CUDA_COMPUTE_CAPABILITIES={cc}",
            )
        elif support["sass"]:
            parts.append(f"{name} cc {cc}: {support['sass'][-1]}")
        else:
            res["status"] = "warn" if res["status"] == "ok" else res["status"]
            parts.append(f"{name} cc {cc}: PTX only ({support['ptx'][-1]})")
            fx.warn(
                "compute_capability",
                f"{name} (cc {cc}) runs TensorFlow through PTX ({support['ptx'][-1]}), "
                "compiled by the driver on first use: the first start takes minutes",
                "export CUDA_CACHE_MAXSIZE=4294967296 so the driver keeps the compiled kernels",
            )
    res["summary"] = "; ".join(parts) + f" (TensorFlow built for {', '.join(arches)})"
    return res


def check_device_query(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """NVIDIA's verification step (install guide): deviceQuery of cuda-demo-suite-12-9, when installed."""
    dq = facts["device_query"]
    res: dict[str, Any] = {
        "status": "ok",
        "path": dq.get("path"),
        "ran": dq.get("ran"),
        **{
            k: dq.get(k)
            for k in (
                "result",
                "device_count",
                "error_code",
                "error",
                "driver_version",
                "runtime_version",
                "devices",
            )
        },
    }
    if not gpu["found"]:
        res.update(status="skip", summary="no NVIDIA GPU")
    elif not dq.get("path"):
        res.update(
            status="skip",
            summary="deviceQuery not installed (zypper install cuda-demo-suite-12-9 adds "
            "NVIDIA's deviceQuery, x86_64 only)",
        )
    elif dq.get("result") == "PASS":
        names = ", ".join(d["name"] for d in dq.get("devices") or [])
        res["summary"] = (
            f"Result = PASS: {dq.get('device_count')} device(s) ({names}); driver/runtime CUDA "
            f"{dq.get('driver_version')} / {dq.get('runtime_version')}"
        )
    else:
        res["status"] = "fail"
        why = (
            f"cudaGetDeviceCount returned {dq['error_code']} ({dq.get('error')})"
            if dq.get("error_code") is not None
            else f"exit {dq.get('rc')}, no result line"
        )
        res["summary"] = f"Result = FAIL: {why}"
        fix = (
            "update the driver to at least the one the demo suite's CUDA needs (the nvidia_driver role)"
            if dq.get("error_code") == 35
            else "see the gpu and kernel_module checks; `dmesg | grep -i nvrm`"
        )
        fx.fail("device_query", f"NVIDIA's deviceQuery ({dq['path']}) fails: {why}", fix)
    return res


def check_dcgm(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """DCGM's quick diagnostic (dcgmi diag -r 1, the level every GPU supports), when dcgmi is installed."""
    d = facts["dcgm"]
    res: dict[str, Any] = {
        "status": "ok",
        "path": d.get("path"),
        "ran": d.get("ran"),
        "rc": d.get("rc"),
        "tests": d.get("tests") or [],
    }
    if not gpu["found"]:
        res.update(status="skip", summary="no NVIDIA GPU")
        return res
    if not d.get("path"):
        res.update(
            status="skip",
            summary="dcgmi not installed (datacenter-gpu-manager; `dcgmi diag -r 1` is "
            "NVIDIA's quick health check)",
        )
        return res
    if not res["tests"]:
        res["status"] = "warn"
        res["summary"] = f"dcgmi diag -r 1 gave no results (exit {d.get('rc')})"
        fx.warn(
            "dcgm",
            f"dcgmi diag -r 1 did not run: {d.get('output_tail') or 'no output'}",
            "systemctl start nvidia-dcgm (dcgmi talks to nv-hostengine)",
        )
        return res
    for t in d.get("failed") or []:
        fx.fail(
            "dcgm",
            f"dcgmi diag -r 1: {t['category']} / {t['test']}: {t['result']}",
            "dcgmi diag -r 1 -v shows the details; NVIDIA's DCGM diagnostics guide explains each test",
        )
    for t in d.get("warned") or []:
        fx.warn(
            "dcgm",
            f"dcgmi diag -r 1: {t['category']} / {t['test']}: {t['result']}",
            "dcgmi diag -r 1 -v shows the details",
        )
    res["status"] = "fail" if d.get("failed") else ("warn" if d.get("warned") else "ok")
    passed = sum(1 for t in res["tests"] if t["status"] == "Pass")
    res["summary"] = (
        f"dcgmi diag -r 1: {passed}/{len(res['tests'])} passed, {len(d.get('failed') or [])} failed, "
        f"{len(d.get('warned') or [])} warned"
    )
    return res


def check_xid(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """Xid errors (the driver's GPU error reports) in the kernel log of this boot."""
    log = facts["kernel_log"]
    events = log.get("xid") or []
    res: dict[str, Any] = {
        "status": "ok",
        "source": log.get("source"),
        "readable": log.get("readable"),
        "events": events[-20:],
        "count": len(events),
    }
    if not log.get("readable"):
        res.update(status="skip", summary="kernel log not readable (dmesg and journalctl -k need root)")
        return res
    if not events:
        res["summary"] = f"no Xid in the kernel log ({log['source']})"
        if not gpu["found"]:
            res["status"] = "skip"
        return res
    hardware = [e for e in events if e["hardware"]]
    codes = sorted({e["xid"] for e in events})
    res["summary"] = f"{len(events)} Xid event(s) ({', '.join(map(str, codes))}) in {log['source']}"
    for code in sorted({e["xid"] for e in hardware}):
        e = next(x for x in hardware if x["xid"] == code)
        fx.fail(
            "xid",
            f"Xid {code} ({XID_HARDWARE[code]}) on {e['pci']}: {e['message']}",
            "drain the GPU and reset it (nvidia-smi -r) or reboot; if it comes back, the GPU needs service "
            "(NVIDIA's Xid catalogue, docs.nvidia.com/deploy/xid-errors)",
        )
    soft = sorted({e["xid"] for e in events if not e["hardware"]})
    if soft:
        fx.warn(
            "xid",
            f"Xid {', '.join(map(str, soft))} in the kernel log (usually a program's fault, e.g. 13 "
            "graphics exception, 31 MMU fault, 43 stopped channel)",
            "match the time with the program that ran; repeated ones: NVIDIA's Xid catalogue",
        )
    res["status"] = "fail" if hardware else "warn"
    return res

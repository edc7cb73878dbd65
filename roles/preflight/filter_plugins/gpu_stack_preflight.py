"""Pure checks behind the preflight role: platform support, free space and version compatibility.

Filters (used in roles/preflight/tasks, unit-tested in tests/unit/test_preflight_filters.py):
  gpu_stack_platform_match(platforms, distribution, major, arch) -> dict
  gpu_stack_mount_for(mounts, path) -> dict
  gpu_stack_df_mount(df_output) -> dict
  gpu_stack_build_check(table, tensorflow, cuda, cudnn, python, driver=None, min_driver=None) -> dict
"""

from __future__ import annotations

import re
from typing import Any


def version_tuple(version: Any) -> tuple[int, ...]:
    """'12.5.1' -> (12, 5, 1); '555.42.06' -> (555, 42, 6); non-numeric parts are ignored."""
    return tuple(int(p) for p in re.findall(r"\d+", str(version)))


def major_minor(version: Any) -> str:
    """'9.3.0.75' -> '9.3'; '2.20.0' -> '2.20'; '12' -> '12'."""
    return ".".join(str(version).strip().split(".")[:2])


def _platform_label(entry: dict) -> str:
    major = entry.get("major", "*")
    name = entry["distribution"] if major in ("*", None, "") else f"{entry['distribution']} {major}"
    return f"{name} ({', '.join(entry.get('architectures', []))})"


def gpu_stack_platform_match(platforms: list[dict], distribution: str, major: Any, arch: str) -> dict:
    """Find the supported-platform entry for a host.

    Returns {'supported': bool, 'entry': dict|None, 'reason': str, 'supported_list': str}.
    """
    supported_list = "; ".join(_platform_label(p) for p in platforms)
    same_os = [
        p for p in platforms
        if p["distribution"] == distribution and str(p.get("major", "*")) in ("*", str(major))
    ]
    if not same_os:
        return {"supported": False, "entry": None, "supported_list": supported_list,
                "reason": f"{distribution} {major} is not a supported distribution"}
    for entry in same_os:
        if arch in entry.get("architectures", []):
            return {"supported": True, "entry": entry, "supported_list": supported_list, "reason": ""}
    return {"supported": False, "entry": None, "supported_list": supported_list,
            "reason": f"NVIDIA publishes no CUDA repository for {distribution} {major} on {arch}"}


def gpu_stack_mount_for(mounts: list[dict], path: str) -> dict:
    """The mount (an item of ansible_facts['mounts']) whose mount point holds `path` (longest prefix).

    Returns {} when no mount matches (facts without mounts, or a path outside every mount).
    """
    path = "/" + str(path).strip("/")
    best: dict = {}
    for mount in mounts or []:
        point = str(mount.get("mount", ""))
        if not point.startswith("/"):
            continue
        prefix = point.rstrip("/") + "/"
        holds = (path + "/").startswith(prefix) or point == "/"
        if holds and (not best or len(point) > len(best["mount"])):
            best = mount
    return best


def gpu_stack_df_mount(df_output: str) -> dict:
    """Parse `df -P -k PATH` into {'mount', 'size_available' (bytes), 'device'}; {} when unparsable.

    Fallback for hosts whose mount facts skip the filesystem (Ansible leaves out devices such as
    `overlay` that are not paths, e.g. in containers and the sandbox).
    """
    lines = [line for line in str(df_output).splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    # POSIX format: Filesystem 1024-blocks Used Available Capacity Mounted-on (the last may hold spaces)
    fields = lines[-1].split(None, 5)
    if len(fields) < 6 or not fields[3].isdigit():
        return {}
    return {"device": fields[0], "mount": fields[5], "size_available": int(fields[3]) * 1024}


def _python_in_range(python: str, low: str, high: str) -> bool:
    py = version_tuple(major_minor(python))
    return version_tuple(low) <= py <= version_tuple(high)


def gpu_stack_build_check(table: list[dict], tensorflow: Any, cuda: Any, cudnn: Any, python: Any,
                          driver: Any = None, min_driver: dict | None = None) -> dict:
    """Check pins against TensorFlow's tested build table (and the driver against the CUDA major).

    Returns {'ok': bool, 'problems': [str], 'fits': str, 'row': dict|None}; `fits` names the versions
    that go with the pinned TensorFlow (or, when TensorFlow is unknown, the TensorFlow releases listed).
    """
    tf = major_minor(tensorflow)
    cuda_xy, cudnn_xy, py_xy = major_minor(cuda), major_minor(cudnn), major_minor(python)
    problems: list[str] = []
    rows = [r for r in table or [] if tf in [str(v) for v in r.get("tensorflow", [])]]
    row = rows[0] if rows else None
    if row is None:
        known = ", ".join(str(v) for r in table or [] for v in r.get("tensorflow", []))
        problems.append(f"TensorFlow {tf} is not in the build table")
        fits = f"TensorFlow releases in the table: {known}"
        by_cuda = [r for r in table or [] if str(r.get("cuda")) == cuda_xy]
        if by_cuda:
            fits += "; CUDA {} fits TensorFlow {}".format(
                cuda_xy, ", ".join(str(v) for r in by_cuda for v in r["tensorflow"]))
    else:
        fits = (f"TensorFlow {tf} fits CUDA {row['cuda']}, cuDNN {row['cudnn']}.x and "
                f"Python {row['python_min']}-{row['python_max']}")
        if cuda_xy != str(row["cuda"]):
            problems.append(f"CUDA {cuda_xy} does not match TensorFlow {tf} (built for CUDA {row['cuda']})")
        if cudnn_xy != str(row["cudnn"]):
            problems.append(f"cuDNN {cudnn} does not match TensorFlow {tf} (built for cuDNN {row['cudnn']})")
        if not _python_in_range(py_xy, str(row["python_min"]), str(row["python_max"])):
            problems.append(f"Python {py_xy} is outside TensorFlow {tf}'s range "
                            f"{row['python_min']}-{row['python_max']}")
    if driver and min_driver:
        cuda_major = cuda_xy.split(".")[0]
        minimum = (min_driver or {}).get(cuda_major)
        if minimum and version_tuple(driver) < version_tuple(minimum):
            problems.append(
                f"NVIDIA driver {driver} is older than {minimum}, the minimum for CUDA {cuda_major}")
    return {"ok": not problems, "problems": problems, "fits": fits, "row": row}


class FilterModule:
    """Preflight filters."""

    def filters(self) -> dict:
        return {
            "gpu_stack_platform_match": gpu_stack_platform_match,
            "gpu_stack_mount_for": gpu_stack_mount_for,
            "gpu_stack_df_mount": gpu_stack_df_mount,
            "gpu_stack_build_check": gpu_stack_build_check,
        }

"""Pure checks behind the preflight role: platform support, free space and version compatibility.

Filters (used in roles/preflight/tasks, unit-tested in tests/unit/test_preflight_filters.py):
  gpu_stack_platform_match(platforms, distribution, major, arch) -> dict
  gpu_stack_mount_for(mounts, path) -> dict
  gpu_stack_df_mount(df_output) -> dict
  gpu_stack_build_check(table, tensorflow, cuda, cudnn, python, driver=None, min_driver=None) -> dict
  gpu_stack_gpu_classify(gpus, data, override='') -> dict
  gpu_stack_driver_pin_check(pin, generation, cuda, min_driver, branches) -> dict
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
        # '' = the platform's Python, which the ml_venv role picks and checks against the same row
        if py_xy and not _python_in_range(py_xy, str(row["python_min"]), str(row["python_max"])):
            problems.append(f"Python {py_xy} is outside TensorFlow {tf}'s range "
                            f"{row['python_min']}-{row['python_max']}")
    if driver and min_driver:
        cuda_major = cuda_xy.split(".")[0]
        minimum = (min_driver or {}).get(cuda_major)
        if minimum and version_tuple(driver) < version_tuple(minimum):
            problems.append(
                f"NVIDIA driver {driver} is older than {minimum}, the minimum for CUDA {cuda_major}")
    return {"ok": not problems, "problems": problems, "fits": fits, "row": row}


def _chip(pci_name: str) -> str:
    """'GM206 [GeForce GTX 960]' -> 'GM206'; '' when the name does not start with a codename."""
    match = re.match(r"^((?:NV|G|GT|G[FKMPVAHBR]|TU|AD)\d+[A-Z0-9]*)\b", str(pci_name))
    return match.group(1) if match else ""


def _architecture(chip: str, architectures: dict) -> str:
    """Architecture of a chip codename by its letter prefix (GM206 -> Maxwell); 'pre-Fermi' for the
    older families (NV4x, G7x-G9x, GT2xx), '' without a codename."""
    if not chip:
        return ""
    prefix = re.match(r"^[A-Z]+", chip).group(0)
    return architectures.get(prefix, architectures.get("*", ""))


def _label(gpu: dict) -> str:
    product = gpu.get("product") or gpu.get("name") or "unknown product"
    arch = ", ".join(p for p in (gpu.get("chip", ""), gpu.get("architecture", "")) if p)
    return f"{gpu.get('slot', '?')} 10de:{str(gpu.get('device_id', '')).lower()} {product}" + (
        f" ({arch})" if arch else "")


def gpu_stack_gpu_classify(gpus: list[dict], data: dict, override: str = "") -> dict:
    """Classify NVIDIA GPUs by PCI device id with NVIDIA's lists and pick the host's driver generation.

    `data` holds the lists (vars/gpu_list_*.yml, vars/gpu_pci_ids.yml) and the rules (vars/main.yml):
    open (devices the open kernel module supports), legacy (devices only the proprietary 580 module
    supports), pci_ids (device -> 'CHIP [name]'), architectures (codename prefix -> architecture),
    open_only (architectures/products the proprietary module does not drive), routes (architecture ->
    the legacy driver that fits, for messages), and the lists' driver versions for messages.

    Each GPU gets product, chip, architecture, open_module, driver_generation ('G07', 'G06' or ''),
    support ('open', 'legacy', 'unsupported', 'unknown') and reason. The host generation is G07 when
    every GPU takes the open driver, G06 when one needs the 580 proprietary driver and all are driven
    by it, '' without GPUs or when no generation fits (then `problems` says why). A non-empty
    `override` is taken as the host generation; the problems become `warnings`.
    Returns {'gpus', 'generation', 'problems', 'warnings'}.
    """
    open_ids = (data.get("open") or {}).get("devices", {})
    legacy_ids = (data.get("legacy") or {}).get("devices", {})
    pci_ids = (data.get("pci_ids") or {}).get("devices", {})
    architectures = data.get("architectures", {})
    open_only = data.get("open_only", {})
    routes = data.get("routes", {})
    open_version = (data.get("open") or {}).get("origin", {}).get("driver_version", "?")
    legacy_version = (data.get("legacy") or {}).get("origin", {}).get("driver_version", "?")
    out: list[dict] = []
    problems: list[str] = []
    advice = ("A GPU newer than these lists: set preflight_gpu_driver_generation_override to G07 (Turing "
              "and newer) or G06 (Maxwell, Pascal, Volta), or regenerate the lists with "
              "tools/nvidia_gpu_lists.py")
    unknown = False
    for gpu in gpus or []:
        devid = str(gpu.get("device_id", "")).upper().zfill(4)
        pci_name = pci_ids.get(devid, "")
        chip = _chip(pci_name)
        bracket = re.search(r"\[(.+)\]", pci_name)
        item = dict(gpu)
        item.update({
            "product": open_ids.get(devid) or legacy_ids.get(devid) or (bracket.group(1) if bracket else "")
            or gpu.get("name", ""),
            "chip": chip,
            "architecture": _architecture(chip, architectures),
        })
        if devid in open_ids:
            item.update(open_module=True, driver_generation="G07", support="open",
                        reason=f"in NVIDIA's open kernel module list ({open_version})")
        elif devid in legacy_ids:
            item.update(open_module=False, driver_generation="G06", support="legacy",
                        reason=f"in the list of GPUs only the proprietary {legacy_version} driver supports")
        elif item["architecture"] in routes:
            item.update(open_module=False, driver_generation="", support="unsupported",
                        reason=routes[item["architecture"]])
            problems.append(f"{_label(item)}: {item['reason']}")
        else:
            item.update(open_module=False, driver_generation="", support="unknown",
                        reason=(f"PCI id not in NVIDIA's open kernel module list ({open_version}) nor in the "
                                f"580 legacy list ({legacy_version})"))
            problems.append(f"{_label(item)}: {item['reason']}")
            unknown = True
        out.append(item)
    generations = {g["driver_generation"] for g in out}
    generation = ""
    if out and not problems:
        if generations == {"G07"}:
            generation = "G07"
        else:
            proprietary_blocked = [
                g for g in out if g["architecture"] in open_only.get("architectures", [])
                or any(str(g["product"]).startswith(p) for p in open_only.get("products", []))]
            if proprietary_blocked:
                problems.append(
                    "no one driver drives all GPUs: "
                    + ", ".join(_label(g) for g in out if g["driver_generation"] == "G06")
                    + " need the proprietary 580 kernel module (G06); "
                    + ", ".join(_label(g) for g in proprietary_blocked)
                    + " run only with the open kernel module. Put them in different hosts")
            else:
                generation = "G06"
    warnings: list[str] = []
    if override:
        warnings, problems, generation = problems, [], str(override)
    elif unknown:
        problems.append(advice)
    return {"gpus": out, "generation": generation, "problems": problems, "warnings": warnings}


def gpu_stack_driver_pin_check(pin: Any, generation: str, cuda: Any, min_driver: dict | None,
                               branches: dict) -> dict:
    """Check an explicit driver pin against the driver generation's branches and the CUDA major's minimum.

    `branches`: {generation: {'min': first branch, 'max': last branch (optional)}}; '' pin = newest in the
    repository, nothing to check. Returns {'ok': bool, 'problems': [str]}.
    """
    pin = str(pin or "").strip()
    if not pin:
        return {"ok": True, "problems": []}
    if not re.fullmatch(r"\d+(\.\d+){1,2}", pin):
        return {"ok": False, "problems": [f"driver pin {pin!r} is not a driver version "
                                          "(X.Y or X.Y.Z, e.g. 580.126.18), or '' for the newest"]}
    problems: list[str] = []
    branch = version_tuple(pin)[0]
    rule = (branches or {}).get(generation)
    if generation and rule:
        low, high = int(rule.get("min", 0)), rule.get("max")
        if branch < low or (high is not None and branch > int(high)):
            span = f"{low}-{high}" if high is not None else f"{low} and newer"
            problems.append(f"driver {pin} is not a {generation} driver "
                            f"({generation} is the {span} branches)")
    cuda_major = major_minor(cuda).split(".")[0]
    minimum = (min_driver or {}).get(cuda_major)
    if minimum and version_tuple(pin) < version_tuple(minimum):
        problems.append(f"driver {pin} is older than {minimum}, the minimum for CUDA {cuda_major}")
    return {"ok": not problems, "problems": problems}


class FilterModule:
    """Preflight filters."""

    def filters(self) -> dict:
        return {
            "gpu_stack_platform_match": gpu_stack_platform_match,
            "gpu_stack_mount_for": gpu_stack_mount_for,
            "gpu_stack_df_mount": gpu_stack_df_mount,
            "gpu_stack_build_check": gpu_stack_build_check,
            "gpu_stack_gpu_classify": gpu_stack_gpu_classify,
            "gpu_stack_driver_pin_check": gpu_stack_driver_pin_check,
        }

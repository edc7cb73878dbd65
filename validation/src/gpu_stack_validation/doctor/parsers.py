"""Pure parsers of the doctor: the text each probe reads in, structured data out. No I/O here; the
unit tests feed them the real tools' output formats (tests/unit/fixtures/doctor/, each named with
its origin).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import xml.etree.ElementTree as ET
from typing import Any

from ..common import version_tuple

# PCI class codes of display controllers (VGA, 3D, other); NVIDIA's vendor id
GPU_PCI_CLASSES = {"0300", "0302", "0380"}
NVIDIA_VENDOR = "10de"
RC_TIMEOUT, RC_NOT_FOUND = 124, 127
SMI_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "driver_version", "compute_cap")
TF_MARK = "GPU_DOCTOR_TF_JSON:"
TF_LOG_PATTERNS = (
    "Cannot dlopen",
    "Could not load dynamic library",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "Loaded runtime CuDNN",
    "cuDNN version",
    "Skipping registering GPU devices",
    "CUDA_ERROR",
)
# The EFI variable holding the Secure Boot state (UEFI spec: EFI_GLOBAL_VARIABLE GUID)
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def parse_lspci(text: str) -> list[dict[str, str]]:
    """NVIDIA display controllers from `lspci -nn` output (audio and USB functions of the card excluded)."""
    pattern = re.compile(
        r"^(?P<slot>\S+)\s+(?P<cls>.+?)\s+\[(?P<class_id>[0-9a-fA-F]{4})\]:\s+(?P<desc>.*?)\s+"
        r"\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\](?:\s+\(rev (?P<rev>[0-9a-fA-F]+)\))?\s*$"
    )
    gpus = []
    for line in text.splitlines():
        m = pattern.match(line.strip())
        if not m:
            continue
        if m["vendor"].lower() != NVIDIA_VENDOR or m["class_id"].lower() not in GPU_PCI_CLASSES:
            continue
        gpus.append(
            {
                "slot": m["slot"],
                "class": m["cls"],
                "class_id": m["class_id"].lower(),
                "pci_id": f"{m['vendor'].lower()}:{m['device'].lower()}",
                "description": m["desc"],
                "name": _lspci_name(m["desc"]),
            }
        )
    return gpus


def _lspci_name(desc: str) -> str:
    # "NVIDIA Corporation GH100 [H200 SXM 141GB]" -> "H200 SXM 141GB"; without brackets the chip name
    m = re.search(r"\[([^\]]+)\]\s*$", desc)
    return m.group(1) if m else desc.replace("NVIDIA Corporation", "").strip()


def _na(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "[N/A]", "N/A", "[Not Supported]") else value


def _mib(value: str | None) -> int | None:
    value = _na(value)
    if value is None:
        return None
    m = re.match(r"(\d+)", value)
    return int(m.group(1)) if m else None


def parse_nvidia_smi_csv(text: str, fields: tuple[str, ...] = SMI_FIELDS) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`."""
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or not row[0].strip() or row[0].strip() == "index":
            continue
        if len(row) < len(fields):
            continue
        raw = {f: row[i].strip() for i, f in enumerate(fields)}
        index = _na(raw.get("index"))
        gpus.append(
            {
                "index": int(index) if index and index.isdigit() else None,
                "name": _na(raw.get("name")),
                "uuid": _na(raw.get("uuid")),
                "pci_bus_id": _na(raw.get("pci.bus_id")),
                "memory_total_mib": _mib(raw.get("memory.total")),
                "driver_version": _na(raw.get("driver_version")),
                "compute_capability": _na(raw.get("compute_cap")),
            }
        )
    return gpus


def parse_nvidia_smi_xml(text: str) -> dict[str, Any]:
    """Driver version, the driver's CUDA version and the GPUs from `nvidia-smi -q -x`."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError:
        return {"driver_version": None, "cuda_version": None, "gpus": []}
    gpus = []
    for i, gpu in enumerate(root.findall("gpu")):
        gpus.append(
            {
                "index": _int_or(_na(gpu.findtext("minor_number")), i),
                "name": _na(gpu.findtext("product_name")),
                "uuid": _na(gpu.findtext("uuid")),
                "pci_bus_id": _na(gpu.findtext("pci/pci_bus_id")) or gpu.get("id"),
                "memory_total_mib": _mib(gpu.findtext("fb_memory_usage/total")),
                "driver_version": _na(root.findtext("driver_version")),
                "compute_capability": None,
            }
        )
    return {
        "driver_version": _na(root.findtext("driver_version")),
        "cuda_version": _na(root.findtext("cuda_version")),
        "gpus": gpus,
    }


def _int_or(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() else default


def classify_nvidia_smi_failure(rc: int, text: str) -> str:
    """Kind of an nvidia-smi failure: not_installed, timeout, no_driver, no_devices, version_mismatch, ..."""
    low = text.lower()
    if rc == RC_NOT_FOUND:
        return "not_installed"
    if rc == RC_TIMEOUT:
        return "timeout"
    if "couldn't communicate with the nvidia driver" in low or "driver not loaded" in low:
        return "no_driver"
    if "version mismatch" in low:
        return "version_mismatch"
    if "no devices were found" in low:
        return "no_devices"
    if "insufficient permissions" in low or "permission denied" in low:
        return "permission"
    return "failed"


def parse_ldconfig(text: str, arch: str | None = "x86-64") -> dict[str, list[str]]:
    """soname -> paths from `ldconfig -p`, only entries of this architecture (arch None: all)."""
    libs: dict[str, list[str]] = {}
    pattern = re.compile(r"^\s*(?P<name>\S+)\s+\((?P<flags>[^)]*)\)\s+=>\s+(?P<path>\S+)\s*$")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        flags = m["flags"]
        if arch is not None:
            if arch == "i386":
                if "x86-64" in flags or "x32" in flags:
                    continue
            elif arch not in flags:
                continue
        libs.setdefault(m["name"], []).append(m["path"])
    return libs


def ldconfig_arch(machine: str | None = None) -> str | None:
    """The ldconfig -p flag naming this machine's libraries."""
    machine = machine or platform.machine()
    return {"x86_64": "x86-64", "aarch64": "AArch64", "ppc64le": "64bit", "i686": "i386"}.get(machine)


def _define(text: str, name: str) -> int | None:
    m = re.search(rf"^\s*#\s*define\s+{name}\s+(\d+)\b", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def parse_cuda_version_header(text: str) -> int | None:
    """CUDART_VERSION (cuda_runtime_api.h) or CUDA_VERSION (cuda.h), e.g. 12050."""
    value = _define(text, "CUDART_VERSION")
    return value if value is not None else _define(text, "CUDA_VERSION")


def parse_cudnn_version_header(text: str) -> dict[str, Any] | None:
    """CUDNN_MAJOR/MINOR/PATCHLEVEL of cudnn_version.h (v8+) or cudnn.h (v7), and cudnnGetVersion()'s int."""
    major, minor, patch = (_define(text, n) for n in ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"))
    if major is None or minor is None or patch is None:
        return None
    # cuDNN 9 changed the encoding from MAJOR*1000 to MAJOR*10000
    version = major * 10000 + minor * 100 + patch if major >= 9 else major * 1000 + minor * 100 + patch
    return {
        "major": major,
        "minor": minor,
        "patch": patch,
        "version": version,
        "string": f"{major}.{minor}.{patch}",
    }


def cuda_version_str(value: int | None) -> str | None:
    """12050 -> '12.5', 13000 -> '13.0' (cudaRuntimeGetVersion / cuDriverGetVersion encoding)."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def cudnn_version_str(value: int | None) -> str | None:
    """90300 -> '9.3.0'; 8907 -> '8.9.7' (cudnnGetVersion encoding changed in cuDNN 9)."""
    if value is None or value <= 0:
        return None
    if value >= 90000:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


def driver_at_least(have: str | None, need: str | None) -> bool | None:
    """Is driver `have` >= `need`? None when either is unknown."""
    a, b = version_tuple(have), version_tuple(need)
    if a is None or b is None:
        return None
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def parse_proc_driver_version(text: str) -> str | None:
    """Kernel module version from /proc/driver/nvidia/version."""
    m = re.search(r"NVRM version:.*?\s(\d{3,}\.\d+(?:\.\d+)?)\s", text + " ")
    return m.group(1) if m else None


def library_file_version(path: str | None) -> str | None:
    """'/usr/lib64/libcuda.so.555.42.06' -> '555.42.06' (the driver version in the library's file name)."""
    if not path:
        return None
    m = re.search(r"\.so\.(\d{3,}\.\d+(?:\.\d+)?)$", os.path.basename(path))
    return m.group(1) if m else None


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of /etc/os-release, quotes removed."""
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def parse_tf_probe(stdout: str) -> dict[str, Any] | None:
    """The JSON line the TensorFlow probe prints after its marker (TensorFlow may print before it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(TF_MARK):
            try:
                data = json.loads(line[len(TF_MARK) :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def tf_log_hints(stderr: str, limit: int = 12) -> list[str]:
    """TensorFlow's log lines that explain a missing GPU (dlopen failures, cuInit errors, cuDNN mismatch)."""
    hints = [line.strip() for line in stderr.splitlines() if any(p in line for p in TF_LOG_PATTERNS)]
    return hints[:limit]


# --------------------------------------------------------------------------------------------------
# Kernel modules, nouveau, Secure Boot


def parse_proc_modules(text: str) -> dict[str, dict[str, Any]]:
    """Loaded modules from /proc/modules: name -> {size, refcount, state, taint}."""
    modules: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        taint = parts[6].strip("()") if len(parts) > 6 and parts[6].startswith("(") else ""
        modules[parts[0]] = {
            "size": int(parts[1]) if parts[1].isdigit() else None,
            "refcount": parts[2],
            "state": parts[4],
            "taint": taint,
        }
    return modules


def parse_proc_driver_flavour(text: str) -> str | None:
    """'open' (NVIDIA's open kernel module) or 'proprietary' from /proc/driver/nvidia/version."""
    if "NVRM version:" not in text:
        return None
    return "open" if "Open Kernel Module" in text else "proprietary"


def modprobe_blacklists(files: dict[str, str], module: str) -> list[str]:
    """'path: line' for each modprobe.d line that keeps `module` from loading (blacklist or install)."""
    found = []
    pattern = re.compile(
        rf"^\s*(blacklist\s+{re.escape(module)}\b|install\s+{re.escape(module)}\s+/bin/(false|true))"
    )
    for path, text in sorted(files.items()):
        for line in text.splitlines():
            if pattern.match(line):
                found.append(f"{path}: {line.strip()}")
    return found


def cmdline_blacklists(cmdline: str, module: str) -> list[str]:
    """Kernel command-line words that blacklist `module` (modprobe.blacklist=, rd.driver.blacklist=)."""
    out = []
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if (
            key in ("modprobe.blacklist", "rd.driver.blacklist", "module_blacklist")
            and module in value.split(",")
        ) or word in (f"{module}.modeset=0",):
            out.append(word)
    return out


def parse_mokutil_sb_state(text: str) -> bool | None:
    """`mokutil --sb-state`: True (enabled), False (disabled), None (no EFI / unknown)."""
    low = text.lower()
    if "secureboot enabled" in low:
        return True
    if "secureboot disabled" in low:
        return False
    return None


def parse_secure_boot_efivar(data: bytes | None) -> bool | None:
    """The SecureBoot EFI variable: 4 attribute bytes then the value (1 enabled, 0 disabled)."""
    if not data or len(data) < 5:
        return None
    return data[4] == 1


# --------------------------------------------------------------------------------------------------
# deviceQuery, dcgmi diag, Xid, rpm -V


def parse_device_query(text: str) -> dict[str, Any]:
    """NVIDIA's deviceQuery (cuda-samples Samples/1_Utilities/deviceQuery): result, devices, versions."""
    result = re.search(r"^Result = (PASS|FAIL)\s*$", text, re.MULTILINE)
    count = re.search(r"^Detected (\d+) CUDA Capable device", text, re.MULTILINE)
    error = re.search(r"^cudaGetDeviceCount returned (\d+)\s*\n-> (.*)$", text, re.MULTILINE)
    versions = re.search(r"CUDA Driver Version / Runtime Version\s+(\d+\.\d+) / (\d+\.\d+)", text)
    devices = []
    for m in re.finditer(r'^Device (\d+): "(.*)"\s*$', text, re.MULTILINE):
        rest = text[m.end() :]
        cc = re.search(r"CUDA Capability Major/Minor version number:\s+(\d+\.\d+)", rest)
        devices.append(
            {"index": int(m.group(1)), "name": m.group(2), "compute_capability": cc.group(1) if cc else None}
        )
    return {
        "result": result.group(1) if result else None,
        "device_count": int(count.group(1))
        if count
        else (0 if error or "There are no available device" in text else None),
        "error_code": int(error.group(1)) if error else None,
        "error": error.group(2).strip() if error else None,
        "driver_version": versions.group(1) if versions else None,
        "runtime_version": versions.group(2) if versions else None,
        "devices": devices,
    }


def parse_dcgmi_diag(text: str) -> dict[str, Any]:
    """The result table of `dcgmi diag -r 1` ("| Denylist | Pass |" rows under "-- Deployment --")."""
    tests = []
    category = None
    for line in text.splitlines():
        head = re.match(r"^[|+]-+\s+(\w[\w /]*?)\s+-+[+|]", line)
        if head:
            category = head.group(1)
            continue
        row = re.match(r"^\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$", line)
        if not row or row.group(1) in ("Diagnostic",) or row.group(1).startswith("-"):
            continue
        if category is None and row.group(1) in ("Metadata", "Driver Version Detected"):
            continue
        status = row.group(2).split()[0].capitalize()
        if status not in ("Pass", "Fail", "Warn", "Skip"):
            continue
        tests.append({"category": category, "test": row.group(1), "status": status, "result": row.group(2)})
    return {
        "tests": tests,
        "failed": [t for t in tests if t["status"] == "Fail"],
        "warned": [t for t in tests if t["status"] == "Warn"],
    }


# Xid codes that mean the hardware or its memory (not a program) is in trouble: NVIDIA's "XID Errors"
# catalogue (docs.nvidia.com/deploy/xid-errors): 48 DBE ECC, 63/64 row remapping, 74 NVLink, 79 fallen off
# the bus, 92 high single-bit ECC rate, 94/95 contained/uncontained ECC, 119/120 GSP timeout/error.
XID_HARDWARE = {
    48: "double-bit ECC error",
    63: "ECC page retirement/row remapping",
    64: "row remapping failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}


def parse_xid(text: str) -> list[dict[str, Any]]:
    """Xid events from the kernel log: 'NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus'."""
    events = []
    for m in re.finditer(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)$", text, re.MULTILINE):
        code = int(m.group(2))
        events.append(
            {
                "pci": m.group(1).lower(),
                "xid": code,
                "message": m.group(3).strip()[:200],
                "hardware": code in XID_HARDWARE,
            }
        )
    return events


def parse_rpm_verify(text: str) -> list[dict[str, str]]:
    """`rpm -V PKG` lines: 'missing     /path' or 'S.5....T.  c /path' -> [{flags, path}]."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(missing|[.SM5DLUGTP?]{9})\s+(?:[cdglr]\s+)?(/.*)$", line.strip())
        if m:
            out.append({"flags": m.group(1), "path": m.group(2)})
    return out


def compute_capability_support(cc: str | None, arches: list[str]) -> dict[str, Any]:
    """Can a GPU of compute capability cc run a build with these arches (cuda_compute_capabilities)?

    sm_XY is binary code: it runs on GPUs of the same major X and a minor >= Y (sm_80 on 8.6).
    compute_XY is PTX: the driver compiles it on first use for any GPU with cc >= X.Y (slow start).
    Arch-specific builds (sm_90a) run only on exactly that cc.
    """
    want = version_tuple(cc)
    out: dict[str, Any] = {
        "compute_capability": cc,
        "arches": list(arches),
        "sass": None,
        "ptx": None,
        "supported": None,
    }
    if not want or len(want) < 2:
        return out
    sass, ptx = [], []
    for arch in arches:
        m = re.match(r"^(sm|compute)_(\d+)(\d)([af]?)$", str(arch))
        if not m:
            continue
        major, minor, special = int(m.group(2)), int(m.group(3)), m.group(4)
        if m.group(1) == "sm":
            if major == want[0] and (minor == want[1] if special else minor <= want[1]):
                sass.append(arch)
        elif (major, minor) <= (want[0], want[1]) and not special:
            ptx.append(arch)
    out.update(sass=sass, ptx=ptx, supported=bool(sass or ptx))
    return out


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in text (a stamp file), None when it is not one."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None

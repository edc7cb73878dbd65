#!/usr/bin/env python3
"""GPU doctor: is this host a working TensorFlow GPU machine, and if not, what exactly to fix.

Checks, in order (the keys of "checks" in the JSON report):
  gpu             NVIDIA GPUs from lspci -nn, /dev/nvidia*, nvidia-smi and NVML (libnvidia-ml.so.1 via
                  ctypes): name, memory, compute capability. No GPU at all is "no GPU: CPU-only", not a
                  failure, unless --require-gpu. A GPU whose driver does not answer is a failure.
  cuda_driver     libcuda.so.1: cuDriverGetVersion and cuInit (100 = CUDA_ERROR_NO_DEVICE).
  driver_version  driver version (nvidia-smi, NVML, /proc/driver/nvidia/version or the libcuda file name)
                  against the minimum driver for the CUDA major TensorFlow needs; kernel module vs library.
  libraries       every library TensorFlow dlopens: names from its build info
                  (tf.sysconfig.get_build_info(): cuda_version 12.5.1 -> the CUDA 12 sonames, cudnn_version
                  9 -> libcudnn.so.9) when TensorFlow is installed, else from the pins. Each one must be
                  resolved by the loader (ldconfig -p) and dlopen (ctypes.CDLL) must succeed.
  cuda_runtime    cudart version at run time (cudaRuntimeGetVersion) and from the headers
                  (cuda_runtime_api.h CUDART_VERSION or cuda.h CUDA_VERSION) against the expected CUDA.
  cudnn           cuDNN version at run time (cudnnGetVersion) and from cudnn_version.h (cudnn.h for v7).
  tensorflow      TensorFlow in --python (a subprocess with a timeout): version, build info, visible GPUs.
                  Not installed is reported, not a failure, unless --require-tensorflow.

Severity: a pinned library that is missing IS a failure, with or without a GPU, because the stack
promises it (a CPU-only host without the CUDA libraries fails the libraries check). Every failure comes
with a concrete fix (a link, a package, a variable). Header mismatches are warnings.

Pins (what to expect when TensorFlow is absent): --pins FILE, a JSON object
  {"tensorflow_version", "cuda_version", "cudnn_version", "python_version", "sonames": [...],
   "min_driver": {"12": "525.60.13", ...}}
(the gpu_validation role renders it from the inventory); otherwise inventory/group_vars/all/versions.yml
of the repository this script lives in, when it is there and PyYAML is importable.

Output: a table with a verdict line, or with --json ONE JSON object:
  {"tool", "schema", "ok", "exit_code", "verdict", "mode" ("gpu" | "cpu-only"), "host", "expected",
   "checks": {<name>: {"status": "ok"|"warn"|"fail"|"skip", "summary", ...}},
   "failures": [{"check", "message", "fix"}], "warnings": [{"check", "message", "fix"}]}

Exit codes: 0 every check passed, 1 a check failed, 2 usage or environment error (bad arguments, unreadable
--pins, --python not executable). Standard library only (Python >= 3.8); no pynvml needed.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import glob
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = 1
CHECKS = ("gpu", "cuda_driver", "driver_version", "libraries", "cuda_runtime", "cudnn", "tensorflow")

# Fallbacks for a host without pins: copies of gpu_stack_tensorflow_sonames and gpu_stack_cuda_min_driver
# (inventory/group_vars/all/versions.yml; a unit test keeps them equal). Pins always win.
DEFAULT_SONAMES: dict[str, list[str]] = {
    "12": [
        "libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcufft.so.11",
        "libcusparse.so.12", "libcusolver.so.11", "libcurand.so.10",
    ],
    "10": [
        "libcudart.so.10.0", "libcublas.so.10.0", "libcufft.so.10.0", "libcusparse.so.10.0",
        "libcusolver.so.10.0", "libcurand.so.10.0",
    ],
}
DEFAULT_MIN_DRIVER: dict[str, str] = {"13": "580.65.06", "12": "525.60.13", "11": "450.80.02", "10": "410.48"}

# PCI class codes of display controllers (VGA, 3D, other); NVIDIA's vendor id
GPU_PCI_CLASSES = {"0300", "0302", "0380"}
NVIDIA_VENDOR = "10de"

RC_TIMEOUT = 124
RC_NOT_EXECUTABLE = 126
RC_NOT_FOUND = 127

CU_ERRORS = {
    0: "CUDA_SUCCESS", 3: "CUDA_ERROR_NOT_INITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", 804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}
NVML_ERRORS = {
    1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
    9: "Driver Not Loaded", 12: "NVML Shared Library Not Found", 18: "Driver/library version mismatch",
    999: "Unknown Error",
}
GPU_KEYS = ("name", "memory_total_mib", "compute_capability", "uuid", "pci_bus_id")
SMI_FIELDS = ("index", "name", "uuid", "pci.bus_id", "memory.total", "driver_version", "compute_cap")
TF_MARK = "GPU_DOCTOR_TF_JSON:"
TF_LOG_PATTERNS = (
    "Cannot dlopen", "Could not load dynamic library", "Could not find cuda drivers", "failed call to cuInit",
    "Loaded runtime CuDNN", "cuDNN version", "Skipping registering GPU devices", "CUDA_ERROR",
)
DRIVER_PACKAGES = "nvidia-open-driver-G07-signed-cuda-kmp-default nvidia-compute-G07 nvidia-compute-utils-G07"


class UsageError(Exception):
    """Bad arguments or an unusable environment: exit code 2."""


# --------------------------------------------------------------------------------------------------
# Subprocess helper (never raises)


@dataclass(frozen=True)
class CmdResult:
    """Outcome of one command; rc 124 = timeout, 126 = not executable, 127 = not found."""

    argv: tuple[str, ...]
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def output(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def run_cmd(
    argv: list[str] | tuple[str, ...], timeout: float = 20.0, env: dict[str, str] | None = None
) -> CmdResult:
    """Run argv without a shell; timeouts and missing commands become return codes, never exceptions."""
    args = tuple(str(a) for a in argv)
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, errors="replace", timeout=timeout, env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        return CmdResult(args, RC_NOT_FOUND, "", f"{args[0]}: command not found ({exc.strerror})")
    except PermissionError as exc:
        return CmdResult(args, RC_NOT_EXECUTABLE, "", f"{args[0]}: not executable ({exc.strerror})")
    except subprocess.TimeoutExpired as exc:
        err = _text(exc.stderr) + f"\ntimed out after {timeout:g}s"
        return CmdResult(args, RC_TIMEOUT, _text(exc.stdout), err)
    except OSError as exc:
        return CmdResult(args, RC_NOT_EXECUTABLE, "", f"{args[0]}: {exc}")
    return CmdResult(args, proc.returncode, proc.stdout or "", proc.stderr or "")


def find_tool(name: str) -> str:
    """Absolute path of a system tool (sbin dirs included, they are not on every PATH), else the bare name."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return name


# --------------------------------------------------------------------------------------------------
# Pure parsers


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
        gpus.append({
            "slot": m["slot"],
            "class": m["cls"],
            "class_id": m["class_id"].lower(),
            "pci_id": f"{m['vendor'].lower()}:{m['device'].lower()}",
            "description": m["desc"],
            "name": _lspci_name(m["desc"]),
        })
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
        gpus.append({
            "index": int(index) if index and index.isdigit() else None,
            "name": _na(raw.get("name")),
            "uuid": _na(raw.get("uuid")),
            "pci_bus_id": _na(raw.get("pci.bus_id")),
            "memory_total_mib": _mib(raw.get("memory.total")),
            "driver_version": _na(raw.get("driver_version")),
            "compute_capability": _na(raw.get("compute_cap")),
        })
    return gpus


def parse_nvidia_smi_xml(text: str) -> dict[str, Any]:
    """Driver version, the driver's CUDA version and the GPUs from `nvidia-smi -q -x`."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError:
        return {"driver_version": None, "cuda_version": None, "gpus": []}
    gpus = []
    for i, gpu in enumerate(root.findall("gpu")):
        gpus.append({
            "index": _int_or(_na(gpu.findtext("minor_number")), i),
            "name": _na(gpu.findtext("product_name")),
            "uuid": _na(gpu.findtext("uuid")),
            "pci_bus_id": _na(gpu.findtext("pci/pci_bus_id")) or gpu.get("id"),
            "memory_total_mib": _mib(gpu.findtext("fb_memory_usage/total")),
            "driver_version": _na(root.findtext("driver_version")),
            "compute_capability": None,
        })
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
    return {"major": major, "minor": minor, "patch": patch, "version": version,
            "string": f"{major}.{minor}.{patch}"}


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


def version_tuple(value: str | None) -> tuple[int, ...] | None:
    """'525.60.13' -> (525, 60, 13); None when not a dotted number."""
    if value is None:
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", str(value))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def driver_at_least(have: str | None, need: str | None) -> bool | None:
    """Is driver `have` >= `need`? None when either is unknown."""
    a, b = version_tuple(have), version_tuple(need)
    if a is None or b is None:
        return None
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)) >= b + (0,) * (width - len(b))


def major_minor(value: str | None) -> str | None:
    """'12.5.1' -> '12.5'; '9' -> '9'."""
    t = version_tuple(value)
    if t is None:
        return None
    return ".".join(str(p) for p in t[:2])


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
                data = json.loads(line[len(TF_MARK):])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def tf_log_hints(stderr: str, limit: int = 12) -> list[str]:
    """TensorFlow's log lines that explain a missing GPU (dlopen failures, cuInit errors, cuDNN mismatch)."""
    hints = [line.strip() for line in stderr.splitlines() if any(p in line for p in TF_LOG_PATTERNS)]
    return hints[:limit]


def soname_stem(soname: str) -> str:
    """'libcudart.so.12' -> 'libcudart.so'."""
    head, sep, _ = soname.partition(".so")
    return head + sep


def soname_major(soname: str) -> str | None:
    """'libcudart.so.12' -> '12', 'libcudart.so.10.0' -> '10.0'."""
    _, sep, tail = soname.partition(".so.")
    return tail if sep else None


# --------------------------------------------------------------------------------------------------
# Pins


def _str_or_none(data: dict, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise UsageError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
    if "{{" in value:
        raise UsageError(f"{where}: '{key}' is an unrendered template ({value}): render the pins first")
    return value


def normalize_pins(data: Any, where: str) -> dict[str, Any]:
    """Validate a pins object (the --pins JSON schema) and return it with every key present."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: pins must be a JSON object, got {type(data).__name__}")
    pins: dict[str, Any] = {"source": where}
    for key in ("tensorflow_version", "cuda_version", "cudnn_version", "python_version", "driver_version"):
        pins[key] = _str_or_none(data, key, where)
    sonames = data.get("sonames")
    if sonames is not None and not (isinstance(sonames, list) and all(isinstance(s, str) for s in sonames)):
        raise UsageError(f"{where}: 'sonames' must be a list of strings")
    pins["sonames"] = sonames
    by_major = data.get("sonames_by_cuda_major") or {}
    if not isinstance(by_major, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in by_major.values()
    ):
        raise UsageError(f"{where}: 'sonames_by_cuda_major' must map a CUDA major to a list of sonames")
    pins["sonames_by_cuda_major"] = {str(k): list(v) for k, v in by_major.items()}
    min_driver = data.get("min_driver") or {}
    if not isinstance(min_driver, dict):
        raise UsageError(f"{where}: 'min_driver' must map a CUDA major to a driver version")
    pins["min_driver"] = {str(k): str(v) for k, v in min_driver.items()}
    if pins["cuda_version"] is not None and version_tuple(pins["cuda_version"]) is None:
        raise UsageError(f"{where}: 'cuda_version' {pins['cuda_version']!r} is not a version like 12.5")
    return pins


def load_pins_file(path: str) -> dict[str, Any]:
    """--pins FILE (JSON)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise UsageError(f"--pins {path}: cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise UsageError(f"--pins {path}: not valid JSON ({exc})") from exc
    return normalize_pins(data, path)


def pins_from_versions_yml(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The pins object from the gpu_stack_* variables of inventory/group_vars/all/versions.yml."""
    by_major = data.get("gpu_stack_tensorflow_sonames") or {}
    cuda = data.get("gpu_stack_cuda_version")
    major = str(version_tuple(str(cuda))[0]) if cuda is not None and version_tuple(str(cuda)) else None
    return normalize_pins({
        "tensorflow_version": data.get("gpu_stack_tensorflow_version"),
        "cuda_version": cuda,
        "cudnn_version": data.get("gpu_stack_cudnn_version"),
        "python_version": data.get("gpu_stack_python_version"),
        "driver_version": data.get("gpu_stack_nvidia_driver_version"),
        "sonames": by_major.get(major) if isinstance(by_major, dict) and major else None,
        "sonames_by_cuda_major": by_major,
        "min_driver": data.get("gpu_stack_cuda_min_driver") or {},
    }, where)


def default_versions_yml() -> Path | None:
    """inventory/group_vars/all/versions.yml of the repository holding this script, if it is there."""
    try:
        root = Path(__file__).resolve().parents[2]
    except IndexError:
        return None
    path = root / "inventory" / "group_vars" / "all" / "versions.yml"
    return path if path.is_file() else None


def load_default_pins(notes: list[str]) -> dict[str, Any] | None:
    """Pins from the repository's versions.yml (needs PyYAML); None (with a note) when unavailable."""
    path = default_versions_yml()
    if path is None:
        return None
    try:
        import yaml  # optional: only a repository checkout has versions.yml next to this script
    except ImportError:
        notes.append(f"{path} not read: PyYAML is not importable here (pass --pins)")
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        notes.append(f"{path} not read: {exc}")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path} not read: not a mapping")
        return None
    return pins_from_versions_yml(data, str(path))


def derive_expected(tensorflow: dict[str, Any] | None, pins: dict[str, Any] | None) -> dict[str, Any]:
    """What the host must provide: TensorFlow's build info when it is a CUDA build, else the pins."""
    pins = pins or {}
    build = (tensorflow or {}).get("build_info") or {}
    exp: dict[str, Any] = {
        "source": None, "pins": pins.get("source"), "tensorflow_version": pins.get("tensorflow_version"),
        "python_version": pins.get("python_version"), "cuda_version": None, "cuda_major": None,
        "cudnn_version": None, "cudnn_major": None, "sonames": [], "min_driver": None, "problems": [],
    }
    if (tensorflow or {}).get("installed") and build.get("is_cuda_build") and build.get("cuda_version"):
        exp["source"] = "tensorflow"
        exp["cuda_version"] = major_minor(str(build["cuda_version"]))
        exp["cudnn_version"] = str(build["cudnn_version"]) if build.get("cudnn_version") else pins.get(
            "cudnn_version")
    elif pins.get("cuda_version"):
        exp["source"] = "pins"
        exp["cuda_version"] = major_minor(pins["cuda_version"])
        exp["cudnn_version"] = pins.get("cudnn_version")
    else:
        return exp
    cuda_t = version_tuple(exp["cuda_version"])
    major = str(cuda_t[0]) if cuda_t else None
    exp["cuda_major"] = major
    cudnn_t = version_tuple(exp["cudnn_version"])
    exp["cudnn_major"] = str(cudnn_t[0]) if cudnn_t else None
    pins_major = str(version_tuple(pins["cuda_version"])[0]) if pins.get("cuda_version") else None
    if pins.get("sonames") and pins_major == major:  # the role renders [] for a major without a table
        sonames = list(pins["sonames"])
    elif major in (pins.get("sonames_by_cuda_major") or {}):
        sonames = list(pins["sonames_by_cuda_major"][major])
    elif major in DEFAULT_SONAMES:
        sonames = list(DEFAULT_SONAMES[major])
    else:
        sonames = []
        exp["problems"].append(f"no TensorFlow soname table for CUDA {major}")
    if exp["cudnn_major"]:
        cudnn = f"libcudnn.so.{exp['cudnn_major']}"
        if cudnn not in sonames:
            sonames.append(cudnn)
    exp["sonames"] = sonames
    exp["min_driver"] = (pins.get("min_driver") or {}).get(major) or DEFAULT_MIN_DRIVER.get(major or "")
    return exp


# --------------------------------------------------------------------------------------------------
# Probes (impure; the unit tests replace them)


def read_text(path: str) -> str | None:
    """A small text file, None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


def glob_paths(pattern: str) -> list[str]:
    """Sorted glob matches."""
    return sorted(glob.glob(pattern))


def realpath(path: str) -> str:
    return os.path.realpath(path)


def _loaded_path(soname: str) -> str | None:
    # The file the loader really mapped for this library, from /proc/self/maps
    stem = soname_stem(os.path.basename(soname))
    text = read_text("/proc/self/maps") or ""
    for line in text.splitlines():
        path = line.split(None, 5)[-1] if len(line.split(None, 5)) == 6 else ""
        if path.startswith("/") and os.path.basename(path).startswith(stem):
            return path
    return None


def probe_dlopen(target: str) -> dict[str, Any]:
    """dlopen(target) in this process: {ok, path (file mapped), error}."""
    try:
        ctypes.CDLL(target)
    except OSError as exc:
        return {"ok": False, "path": None, "error": str(exc)}
    return {"ok": True, "path": _loaded_path(target), "error": None}


def probe_cuda_driver(library: str = "libcuda.so.1") -> dict[str, Any]:
    """libcuda: cuDriverGetVersion, cuInit(0) and, if that succeeds, each device's name, memory, cc."""
    out: dict[str, Any] = {
        "library": library, "loaded": False, "path": None, "error": None, "driver_api_version": None,
        "cuinit_rc": None, "cuinit_error": None, "devices": [],
    }
    try:
        cu = ctypes.CDLL(library)
    except OSError as exc:
        out["error"] = str(exc)
        return out
    out["loaded"] = True
    out["path"] = _loaded_path(library)
    try:
        version = ctypes.c_int(0)
        if cu.cuDriverGetVersion(ctypes.byref(version)) == 0:
            out["driver_api_version"] = version.value
        rc = int(cu.cuInit(0))
        out["cuinit_rc"] = rc
        out["cuinit_error"] = CU_ERRORS.get(rc, f"CUresult {rc}")
        if rc != 0:
            return out
        count = ctypes.c_int(0)
        cu.cuDeviceGetCount(ctypes.byref(count))
        for i in range(count.value):
            dev = ctypes.c_int(0)
            if cu.cuDeviceGet(ctypes.byref(dev), i) != 0:
                continue
            name = ctypes.create_string_buffer(256)
            cu.cuDeviceGetName(name, 256, dev)
            mem = ctypes.c_size_t(0)
            cu.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            cu.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
            cu.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
            out["devices"].append({
                "index": i, "name": name.value.decode("utf-8", "replace"),
                "memory_total_mib": mem.value // (1 << 20),
                "compute_capability": f"{major.value}.{minor.value}",
            })
    except AttributeError as exc:  # a stub or very old libcuda without the entry point
        out["error"] = f"missing entry point: {exc}"
    return out


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def probe_nvml(library: str = "libnvidia-ml.so.1") -> dict[str, Any]:
    """NVML through ctypes (what pynvml wraps): driver version, driver CUDA version, GPUs."""
    out: dict[str, Any] = {
        "library": library, "loaded": False, "error": None, "init_rc": None, "init_error": None,
        "driver_version": None, "cuda_driver_version": None, "gpus": [],
    }
    try:
        nvml = ctypes.CDLL(library)
    except OSError as exc:
        out["error"] = str(exc)
        return out
    out["loaded"] = True

    def err(rc: int) -> str:
        try:
            nvml.nvmlErrorString.restype = ctypes.c_char_p
            return nvml.nvmlErrorString(rc).decode("utf-8", "replace")
        except (AttributeError, OSError):
            return NVML_ERRORS.get(rc, f"nvmlReturn {rc}")

    try:
        init = getattr(nvml, "nvmlInit_v2", None) or nvml.nvmlInit
        rc = int(init())
        out["init_rc"] = rc
        if rc != 0:
            out["init_error"] = err(rc)
            return out
        buf = ctypes.create_string_buffer(96)
        if nvml.nvmlSystemGetDriverVersion(buf, 96) == 0:
            out["driver_version"] = buf.value.decode()
        cuda = ctypes.c_int(0)
        get_cuda = (getattr(nvml, "nvmlSystemGetCudaDriverVersion_v2", None)
                    or nvml.nvmlSystemGetCudaDriverVersion)
        if get_cuda(ctypes.byref(cuda)) == 0:
            out["cuda_driver_version"] = cuda.value
        count = ctypes.c_uint(0)
        (getattr(nvml, "nvmlDeviceGetCount_v2", None) or nvml.nvmlDeviceGetCount)(ctypes.byref(count))
        by_index = getattr(nvml, "nvmlDeviceGetHandleByIndex_v2", None) or nvml.nvmlDeviceGetHandleByIndex
        for i in range(count.value):
            handle = ctypes.c_void_p()
            if by_index(i, ctypes.byref(handle)) != 0:
                continue
            gpu: dict[str, Any] = {"index": i, "name": None, "uuid": None, "memory_total_mib": None,
                                   "compute_capability": None}
            if nvml.nvmlDeviceGetName(handle, buf, 96) == 0:
                gpu["name"] = buf.value.decode("utf-8", "replace")
            if nvml.nvmlDeviceGetUUID(handle, buf, 96) == 0:
                gpu["uuid"] = buf.value.decode("utf-8", "replace")
            mem = _NvmlMemory()
            if nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(mem)) == 0:
                gpu["memory_total_mib"] = mem.total // (1 << 20)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            if nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) == 0:
                gpu["compute_capability"] = f"{major.value}.{minor.value}"
            out["gpus"].append(gpu)
        nvml.nvmlShutdown()
    except AttributeError as exc:
        out["error"] = f"missing entry point: {exc}"
    return out


def probe_cudart(target: str) -> dict[str, Any]:
    """cudaRuntimeGetVersion of a libcudart (soname or path)."""
    out: dict[str, Any] = {"target": target, "loaded": False, "error": None, "runtime_version": None}
    try:
        lib = ctypes.CDLL(target)
        version = ctypes.c_int(0)
        rc = lib.cudaRuntimeGetVersion(ctypes.byref(version))
    except (OSError, AttributeError) as exc:
        out["error"] = str(exc)
        return out
    out["loaded"] = True
    if rc == 0:
        out["runtime_version"] = version.value
    else:
        out["error"] = f"cudaRuntimeGetVersion returned {rc}"
    return out


def probe_cudnn(target: str) -> dict[str, Any]:
    """cudnnGetVersion (and cudnnGetCudartVersion: the CUDA it was built for) of a libcudnn."""
    out: dict[str, Any] = {"target": target, "loaded": False, "error": None, "version": None,
                           "cudart_version": None}
    try:
        lib = ctypes.CDLL(target)
        lib.cudnnGetVersion.restype = ctypes.c_size_t
        lib.cudnnGetVersion.argtypes = []
        out["version"] = int(lib.cudnnGetVersion())
    except (OSError, AttributeError) as exc:
        out["error"] = str(exc)
        return out
    out["loaded"] = True
    try:
        lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
        lib.cudnnGetCudartVersion.argtypes = []
        out["cudart_version"] = int(lib.cudnnGetCudartVersion())
    except AttributeError:
        pass
    return out


TF_PROBE_SOURCE = r"""
import glob, json, os, sys
out = {"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable, "installed": False}
libs = {}
for base in sys.path:
    for d in glob.glob(os.path.join(base or ".", "nvidia", "*", "lib")):
        for f in sorted(os.listdir(d)):
            if ".so." in f and f not in libs:
                libs[f] = os.path.join(d, f)
out["wheel_libs"] = libs
try:
    import tensorflow as tf
except ImportError as exc:
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "tensorflow":
        out["error"] = str(exc)
    else:
        out["installed"] = True
        out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
except Exception as exc:
    out["installed"] = True
    out["import_error"] = "%s: %s" % (type(exc).__name__, exc)
else:
    out["installed"] = True
    out["version"] = getattr(tf, "__version__", None)
    try:
        info = dict(tf.sysconfig.get_build_info())
    except Exception as exc:
        info = {}
        out["build_info_error"] = str(exc)
    keep = (str, int, float, bool, type(None))
    out["build_info"] = dict((k, list(v) if isinstance(v, (list, tuple)) else v) for k, v in info.items()
                             if isinstance(v, keep + (list, tuple)))
    gpus = []
    for dev in tf.config.list_physical_devices("GPU"):
        item = {"name": dev.name}
        try:
            det = tf.config.experimental.get_device_details(dev)
            item["device_name"] = det.get("device_name")
            if det.get("compute_capability"):
                item["compute_capability"] = "%d.%d" % tuple(det["compute_capability"])
        except Exception:
            pass
        gpus.append(item)
    out["gpus"] = gpus
sys.stdout.write("\n" + MARK + json.dumps(out) + "\n")
""".replace("MARK", repr(TF_MARK))


def probe_tensorflow(python: str, timeout: float) -> dict[str, Any]:
    """Import TensorFlow in `python` (a child process with a timeout): version, build info, GPUs."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "1"  # keep warnings such as "Cannot dlopen some GPU libraries"
    res = run_cmd([python, "-c", TF_PROBE_SOURCE], timeout=timeout, env=env)
    data = parse_tf_probe(res.stdout)
    if data is None:
        tail = res.output.splitlines()[-5:]
        why = "timed out" if res.rc == RC_TIMEOUT else f"exit {res.rc}"
        return {"python": python, "installed": None, "probe_rc": res.rc,
                "probe_error": f"{why}: " + " | ".join(tail), "log_hints": tf_log_hints(res.stderr)}
    data["probe_rc"] = res.rc
    data["log_hints"] = tf_log_hints(res.stderr)
    data.setdefault("python_path", python)
    return data


# --------------------------------------------------------------------------------------------------
# Fact gathering


def _cuda_roots(cuda_home: str) -> list[str]:
    roots = [cuda_home, "/usr/local/cuda", *glob_paths("/usr/local/cuda-*")]
    seen, out = set(), []
    for r in roots:
        if r and r not in seen:
            seen.add(r)
            out.append(r)
    return out


def library_search_dirs(cuda_home: str) -> list[str]:
    """Where CUDA/cuDNN libraries live when the loader does not find them."""
    dirs = []
    for root in _cuda_roots(cuda_home):
        dirs += [f"{root}/lib64", *glob_paths(f"{root}/targets/*/lib")]
    dirs += ["/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
    seen, out = set(), []
    for d in dirs:
        key = realpath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find_library_files(soname: str, dirs: list[str]) -> list[str]:
    """Files named like soname's library (any version) in dirs; the toolkit's stubs are skipped."""
    stem = soname_stem(soname)
    found = []
    for d in dirs:
        for path in glob_paths(os.path.join(d, stem + ".*")):
            if "/stubs/" not in path and path not in found:
                found.append(path)
    return found


def _header(dirs: list[str], names: tuple[str, ...]) -> tuple[str | None, str | None]:
    for d in dirs:
        for name in names:
            path = os.path.join(d, name)
            text = read_text(path)
            if text is not None:
                return path, text
    return None, None


def gather_facts(opts: argparse.Namespace, pins: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """Run every probe once. Nothing here judges; evaluate() does."""
    timeout = opts.timeout
    facts: dict[str, Any] = {"notes": notes, "pins": pins}
    osr = parse_os_release(read_text("/etc/os-release") or "")
    facts["host"] = {
        "hostname": socket.gethostname(), "os": osr.get("PRETTY_NAME"), "kernel": platform.release(),
        "machine": platform.machine(), "doctor_python": platform.python_version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
    }

    res = run_cmd([find_tool("lspci"), "-nn"], timeout=timeout)
    facts["lspci"] = {"available": res.rc != RC_NOT_FOUND, "rc": res.rc,
                      "gpus": parse_lspci(res.stdout) if res.ok else [],
                      "error": None if res.ok else res.output[-300:]}
    facts["dev_nodes"] = [p for p in glob_paths("/dev/nvidia*") if os.path.basename(p) != "nvidia-caps"]

    smi = find_tool("nvidia-smi")
    fields = SMI_FIELDS
    query = [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    res = run_cmd(query, timeout=timeout)
    if not res.ok and "not a valid field" in res.output.lower():  # drivers before compute_cap existed
        fields = SMI_FIELDS[:-1]
        res = run_cmd([smi, f"--query-gpu={','.join(fields)}", query[2]], timeout=timeout)
    smi_facts: dict[str, Any] = {
        "available": res.rc != RC_NOT_FOUND, "rc": res.rc, "ok": res.ok, "gpus": [], "driver_version": None,
        "cuda_version": None, "error_kind": None, "message": None,
    }
    if res.ok:
        smi_facts["gpus"] = parse_nvidia_smi_csv(res.stdout, fields)
        xml = run_cmd([smi, "-q", "-x"], timeout=timeout)
        if xml.ok:
            parsed = parse_nvidia_smi_xml(xml.stdout)
            smi_facts["cuda_version"] = parsed["cuda_version"]
            smi_facts["driver_version"] = parsed["driver_version"]
            if not smi_facts["gpus"]:
                smi_facts["gpus"] = parsed["gpus"]
        if not smi_facts["driver_version"] and smi_facts["gpus"]:
            smi_facts["driver_version"] = smi_facts["gpus"][0].get("driver_version")
    else:
        smi_facts["error_kind"] = classify_nvidia_smi_failure(res.rc, res.output)
        smi_facts["message"] = " ".join(res.output.split())[:300] or None
    facts["nvidia_smi"] = smi_facts

    facts["nvml"] = probe_nvml()
    facts["proc_driver_version"] = parse_proc_driver_version(read_text("/proc/driver/nvidia/version") or "")
    facts["cuda_driver"] = probe_cuda_driver()

    res = run_cmd([find_tool("ldconfig"), "-p"], timeout=timeout)
    facts["ldconfig"] = {"available": res.ok, "rc": res.rc,
                         "libs": parse_ldconfig(res.stdout, ldconfig_arch()) if res.ok else {},
                         "error": None if res.ok else res.output[-300:]}
    libcuda_paths = facts["ldconfig"]["libs"].get("libcuda.so.1") or []
    libcuda_path = facts["cuda_driver"].get("path") or (libcuda_paths[0] if libcuda_paths else None)
    facts["libcuda_file_version"] = library_file_version(realpath(libcuda_path)) if libcuda_path else None

    if opts.skip_tensorflow:
        facts["tensorflow"] = {"python": opts.python, "installed": None, "skipped": True}
    else:
        facts["tensorflow"] = probe_tensorflow(opts.python, opts.tf_timeout)
    expected = derive_expected(facts["tensorflow"], pins)
    facts["expected"] = expected

    dirs = library_search_dirs(opts.cuda_home)
    wheel_libs = facts["tensorflow"].get("wheel_libs") or {}
    libs = []
    for soname in expected["sonames"]:
        dl = probe_dlopen(soname)
        libs.append({
            "soname": soname,
            "ldconfig": facts["ldconfig"]["libs"].get(soname, []),
            "dlopen": dl,
            "wheel": wheel_libs.get(soname),
            "candidates": [] if dl["ok"] else find_library_files(soname, dirs),
            "other_sonames": sorted(
                s for s in facts["ldconfig"]["libs"] if soname_stem(s) == soname_stem(soname) and s != soname
                and soname_major(s)),
        })
    facts["libraries"] = libs

    include_dirs = [f"{opts.cuda_home}/include", "/usr/local/cuda/include", "/usr/include",
                    "/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu"]
    path, text = _header(include_dirs, ("cuda_runtime_api.h", "cuda.h"))
    facts["cuda_header"] = {"path": path, "version": parse_cuda_version_header(text) if text else None}
    path, text = _header(include_dirs, ("cudnn_version.h", "cudnn.h"))
    facts["cudnn_header"] = {"path": path, "version": parse_cudnn_version_header(text) if text else None}
    toolkits = []
    for root in glob_paths("/usr/local/cuda-*"):
        m = re.search(r"cuda-(\d+\.\d+)$", root)
        if not m:
            continue
        text = read_text(f"{root}/include/cuda_runtime_api.h")
        hv = parse_cuda_version_header(text) if text else None
        toolkits.append({"path": root, "version": cuda_version_str(hv) or m.group(1)})
    facts["toolkits"] = toolkits

    def usable(lib: dict[str, Any]) -> str | None:
        if lib["dlopen"]["ok"]:
            return lib["soname"]
        return lib["wheel"]

    cudart = next((lib for lib in libs if lib["soname"].startswith("libcudart.so.")), None)
    facts["cudart"] = probe_cudart(usable(cudart)) if cudart and usable(cudart) else None
    cudnn = next((lib for lib in libs if lib["soname"].startswith("libcudnn.so.")), None)
    facts["cudnn"] = probe_cudnn(usable(cudnn)) if cudnn and usable(cudnn) else None
    return facts


# --------------------------------------------------------------------------------------------------
# Evaluation (pure: facts in, report out)


class Findings:
    """Failures and warnings, each with the check that raised it and its fix."""

    def __init__(self) -> None:
        self.failures: list[dict[str, str]] = []
        self.warnings: list[dict[str, str]] = []

    def fail(self, check: str, message: str, fix: str) -> None:
        self.failures.append({"check": check, "message": message, "fix": fix})

    def warn(self, check: str, message: str, fix: str) -> None:
        self.warnings.append({"check": check, "message": message, "fix": fix})


def merge_gpus(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """One list of GPUs: nvidia-smi first, gaps filled from NVML and the CUDA driver, else lspci."""
    smi = facts["nvidia_smi"]["gpus"] if facts["nvidia_smi"]["ok"] else []
    nvml = facts["nvml"].get("gpus") or []
    cuda = facts["cuda_driver"].get("devices") or []
    sources = ((smi, "nvidia-smi"), (nvml, "nvml"), (cuda, "cuda"))
    base, source = next(((rows, name) for rows, name in sources if rows), ([], ""))
    gpus = []
    for i, g in enumerate(base):
        gpu = {key: g.get(key) for key in GPU_KEYS}
        gpu["index"] = g.get("index", i)
        gpu["source"] = source
        for other in (nvml, cuda):
            if i < len(other):
                for key in ("name", "memory_total_mib", "compute_capability", "uuid"):
                    if gpu.get(key) is None and other[i].get(key) is not None:
                        gpu[key] = other[i][key]
        gpus.append(gpu)
    if not gpus:
        for i, g in enumerate(facts["lspci"]["gpus"]):
            gpus.append({"index": i, "name": g["name"], "memory_total_mib": None, "compute_capability": None,
                         "uuid": None, "pci_bus_id": g["slot"], "pci_id": g["pci_id"], "source": "lspci"})
    return gpus


def _gpu_line(g: dict[str, Any]) -> str:
    parts = [g.get("name") or "NVIDIA GPU"]
    if g.get("memory_total_mib"):
        parts.append(f"{g['memory_total_mib']} MiB")
    if g.get("compute_capability"):
        parts.append(f"cc {g['compute_capability']}")
    return ", ".join(parts)


def driver_version_of(facts: dict[str, Any]) -> tuple[str | None, str | None]:
    """(version, source) of the NVIDIA driver from the best source available."""
    for value, source in (
        (facts["nvidia_smi"].get("driver_version"), "nvidia-smi"),
        (facts["nvml"].get("driver_version"), "nvml"),
        (facts.get("proc_driver_version"), "/proc/driver/nvidia/version"),
        (facts.get("libcuda_file_version"), "libcuda file name"),
    ):
        if value:
            return value, source
    return None, None


def check_gpu(facts: dict[str, Any], opts: argparse.Namespace, fx: Findings) -> dict[str, Any]:
    lspci, smi, nvml, cuda = facts["lspci"], facts["nvidia_smi"], facts["nvml"], facts["cuda_driver"]
    gpus = merge_gpus(facts)
    driver_answers = bool((smi["ok"] and smi["gpus"]) or nvml.get("gpus") or cuda.get("cuinit_rc") == 0)
    found = bool(lspci["gpus"] or driver_answers)
    res: dict[str, Any] = {
        "status": "ok", "found": found, "cpu_only": not found, "count": len(gpus), "gpus": gpus,
        "driver_answers": driver_answers,
        "lspci": {"available": lspci["available"], "devices": lspci["gpus"]},
        "dev_nodes": facts["dev_nodes"],
        "nvidia_smi": {k: smi[k] for k in ("available", "ok", "rc", "error_kind", "message")},
        "nvml": {k: nvml.get(k) for k in ("loaded", "init_error", "error")},
    }
    evidence = [
        "lspci: not installed" if not lspci["available"] else
        f"lspci: {len(lspci['gpus'])} NVIDIA" if lspci["rc"] == 0 else f"lspci: failed ({lspci['rc']})",
        f"/dev/nvidia*: {len(facts['dev_nodes'])}",
        "nvidia-smi: " + ("ok" if smi["ok"] else (smi["error_kind"] or "failed").replace("_", " ")),
    ]
    if not lspci["available"]:
        fx.warn("gpu", "lspci is not installed: a GPU whose driver is missing cannot be seen",
                "zypper install pciutils")
    if not found:
        res["summary"] = "no NVIDIA GPU: CPU-only (" + "; ".join(evidence) + ")"
        if opts.require_gpu:
            res["status"] = "fail"
            fx.fail("gpu", "no NVIDIA GPU found and --require-gpu was given (" + "; ".join(evidence) + ")",
                    "check `lspci -nn | grep -i nvidia` on the host; in a VM pass the GPU through "
                    "(vagrant-libvirt: libvirt.pci + kvm_hidden); or drop --require-gpu on a CPU-only host")
        return res
    if not driver_answers:
        res["status"] = "fail"
        names = ", ".join(g["name"] for g in lspci["gpus"]) or "an NVIDIA GPU"
        kind = smi["error_kind"]
        if kind == "version_mismatch" or nvml.get("init_rc") == 18:
            fx.fail("gpu", f"{names} present but the loaded kernel module and the driver libraries differ "
                    "(Driver/library version mismatch)",
                    "reboot (or unload and reload the nvidia modules) after the driver update")
        elif kind == "no_driver" or not facts["dev_nodes"]:
            fx.fail("gpu", f"{names} present (lspci) but the NVIDIA driver is not loaded"
                    + (f": {smi['message']}" if smi.get("message") else ""),
                    f"zypper install {DRIVER_PACKAGES} (the nvidia_driver role), then reboot; "
                    "`dmesg | grep -i nvrm` tells why the module did not load (secure boot, missing kmp)")
        else:
            fx.fail("gpu", f"{names} present but neither nvidia-smi nor NVML nor cuInit reach it ("
                    + "; ".join(evidence) + ")",
                    "check the /dev/nvidia* permissions (the user needs the video group) and "
                    "`nvidia-smi`; reinstall nvidia-compute-G07 if libraries are missing")
        res["summary"] = f"{names} found but the driver does not answer (" + "; ".join(evidence) + ")"
        return res
    version, _ = driver_version_of(facts)
    plural = "s" if len(gpus) != 1 else ""
    res["summary"] = f"{len(gpus)} GPU{plural}: " + "; ".join(_gpu_line(g) for g in gpus)
    if version:
        res["summary"] += f"; driver {version}"
    return res


def check_cuda_driver(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    cuda = facts["cuda_driver"]
    api = cuda.get("driver_api_version")
    res: dict[str, Any] = {
        "status": "ok", "library": cuda.get("path") or cuda.get("library"), "loaded": cuda.get("loaded"),
        "driver_api_version": api, "driver_api": cuda_version_str(api), "cuinit_rc": cuda.get("cuinit_rc"),
        "cuinit_error": cuda.get("cuinit_error"), "device_count": len(cuda.get("devices") or []),
        "error": cuda.get("error"),
    }
    found = gpu["found"]
    if not cuda.get("loaded"):
        res["summary"] = f"libcuda.so.1 cannot be loaded ({cuda.get('error')})"
        fix = "zypper install nvidia-compute-G07 (the nvidia_driver role installs the driver's user space)"
        if found:
            res["status"] = "fail"
            fx.fail("cuda_driver", "libcuda.so.1 (the CUDA driver library) cannot be loaded", fix)
        else:
            res["status"] = "warn"
            fx.warn("cuda_driver", "libcuda.so.1 is not installed (fine on a CPU-only host)", fix)
        return res
    rc = cuda.get("cuinit_rc")
    head = f"CUDA driver API {res['driver_api'] or '?'}"
    if rc == 0:
        res["summary"] = f"{head}; cuInit ok, {res['device_count']} device(s)"
        return res
    if rc == 100 and not found:
        res["summary"] = f"{head}; cuInit 100 (CUDA_ERROR_NO_DEVICE): CPU-only"
        return res
    why = f"cuInit returned {rc} ({res['cuinit_error']})"
    if rc == 34:
        fix = ("libcuda.so.1 is the toolkit's stub: remove .../lib64/stubs from /etc/ld.so.conf.d and "
               "LD_LIBRARY_PATH, run ldconfig, install nvidia-compute-G07")
    elif rc == 100 and facts["host"].get("cuda_visible_devices") is not None:
        fix = f"CUDA_VISIBLE_DEVICES={facts['host']['cuda_visible_devices']!r} hides the GPU: unset it"
    elif rc in (35, 803):
        fix = ("the driver is older than the CUDA libraries or does not match them: zypper install "
               f"{DRIVER_PACKAGES} at gpu_stack_nvidia_driver_version (the nvidia_driver role), then reboot")
    else:
        fix = "check `nvidia-smi` and `dmesg | grep -i nvrm`; reboot after a driver update"
    res["summary"] = f"{head}; {why}"
    if found:
        res["status"] = "fail"
        fx.fail("cuda_driver", f"{why} although a GPU is present", fix)
    else:
        res["status"] = "warn"
        fx.warn("cuda_driver", why, fix)
    return res


def check_driver_version(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    version, source = driver_version_of(facts)
    need = expected.get("min_driver")
    api = facts["cuda_driver"].get("driver_api_version")
    kmod, libv = facts.get("proc_driver_version"), facts.get("libcuda_file_version")
    res: dict[str, Any] = {
        "status": "ok", "version": version, "source": source, "kernel_module_version": kmod,
        "library_version": libv, "required_min": need, "cuda_major": expected.get("cuda_major"),
        "driver_api": cuda_version_str(api),
    }
    libcuda = facts["cuda_driver"].get("path") or ""
    if kmod and libv and kmod != libv and "/compat/" in libcuda:
        # cuda-compat: a newer user-space driver on purpose (forward compatibility, datacenter GPUs only)
        res["status"] = "warn"
        fx.warn("driver_version",
                f"libcuda {libv} from {libcuda} runs on kernel module {kmod} (CUDA forward compatibility)",
                "fine on datacenter GPUs; elsewhere remove cuda-compat and update the driver")
    elif kmod and libv and kmod != libv:
        res["status"] = "fail"
        fx.fail("driver_version",
                f"kernel module {kmod} but libcuda {libv}: the driver was updated without a reboot",
                "reboot (or reload the nvidia kernel modules)")
    if version is None:
        res["status"] = "skip" if res["status"] == "ok" else res["status"]
        res["summary"] = "no NVIDIA driver found: nothing to compare"
        return res
    if need is None:
        res["summary"] = f"driver {version} ({source}); no CUDA expectation to compare with"
        return res
    ok = driver_at_least(version, need)
    major = expected["cuda_major"]
    if ok is False:
        res["status"] = "fail"
        fx.fail("driver_version", f"driver {version} is older than {need}, the minimum for CUDA {major}",
                f"update the NVIDIA driver to >= {need}: the nvidia_driver role with "
                f"gpu_stack_nvidia_driver_version (zypper install {DRIVER_PACKAGES}), then reboot")
    api_major = api // 1000 if api else None
    if api_major is not None and major is not None and major.isdigit() and api_major < int(major):
        res["status"] = "fail"
        fx.fail("driver_version",
                f"the driver supports CUDA {cuda_version_str(api)}, "
                f"TensorFlow needs CUDA {expected['cuda_version']}",
                f"update the NVIDIA driver to >= {need} (the nvidia_driver role)")
    cmp = ">=" if ok else "<"
    res["summary"] = f"driver {version} ({source}) {cmp} {need} needed by CUDA {major}"
    if api:
        res["summary"] += f"; driver API CUDA {cuda_version_str(api)}"
    return res


def package_for(soname: str, expected: dict[str, Any]) -> tuple[str, str]:
    """(openSUSE package, role) that provides a soname for the expected CUDA."""
    stem = soname_stem(soname).replace(".so", "")
    cuda_major = expected.get("cuda_major") or soname_major(soname) or "12"
    cuda_t = version_tuple(expected.get("cuda_version"))
    cuda_xy = f"{cuda_t[0]}-{cuda_t[1]}" if cuda_t and len(cuda_t) > 1 else f"{cuda_major}-<minor>"
    if stem.startswith("libcudnn"):
        return f"libcudnn{expected.get('cudnn_major') or soname_major(soname)}-cuda-{cuda_major}", "cudnn"
    if stem == "libnccl":
        return "libnccl2", "cuda"
    if stem in ("libcuda", "libnvidia-ml"):
        return "nvidia-compute-G07", "nvidia_driver"
    return f"cuda-libraries-{cuda_xy}", "cuda"


def classify_library(lib: dict[str, Any], ldconfig_available: bool) -> str:
    """ok | env (dlopen only through LD_LIBRARY_PATH) | wheel (TF's pip wheels) | broken | missing."""
    if lib["dlopen"]["ok"]:
        return "ok" if lib["ldconfig"] or not ldconfig_available else "env"
    if lib["wheel"]:
        return "wheel"
    if lib["ldconfig"]:
        return "broken"
    return "missing"


def library_problem(lib: dict[str, Any], expected: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, reason, fix) for a library the loader cannot give TensorFlow."""
    soname = lib["soname"]
    pkg, role = package_for(soname, expected)
    if lib["ldconfig"]:
        path = lib["ldconfig"][0]
        return ("broken", f"resolves to {path} but dlopen fails: {lib['dlopen']['error']}",
                f"`ldd {path} | grep 'not found'` names the missing dependency; reinstall {pkg}")
    exact = [p for p in lib["candidates"] if os.path.basename(p) == soname]
    if exact:
        d = os.path.dirname(exact[0])
        conf = f"/etc/ld.so.conf.d/988_cuda-{expected.get('cuda_major') or 'x'}.conf"
        return ("not_searched", f"exists in {d}, which the loader does not search",
                f"echo {d} > {conf} && ldconfig (or run the cuda_links role)")
    versioned = [p for p in lib["candidates"] if os.path.basename(p).startswith(soname + ".")]
    if versioned:
        target = versioned[0]
        d = os.path.dirname(target)
        return ("no_link", f"only {os.path.basename(target)} exists, without the {soname} link",
                f"ln -s {os.path.basename(target)} {d}/{soname} && ldconfig (or run the cuda_links role)")
    others = sorted({os.path.basename(p) for p in lib["candidates"] if soname_major(os.path.basename(p))}
                    | set(lib["other_sonames"]))
    fix = f"zypper install {pkg} (or run the {role} role)"
    if others:
        # e.g. CUDA 13 installed: its libraries have other sonames, TensorFlow's build cannot use them
        cuda = expected.get("cuda_version")
        if role == "cuda":
            fix = (f"zypper install {pkg} (the cuda role with gpu_stack_cuda_version: \"{cuda}\"); it "
                   "installs beside the other CUDA release, which TensorFlow cannot use")
        return ("other_version", f"not installed (found instead: {', '.join(others)})", fix)
    return ("missing", "not installed", fix)


def group_message(items: list[tuple[str, str]]) -> str:
    """One message for the libraries that share a fix: 'a, b: not installed (found instead: a.so.13)'."""
    instead = [r.split("found instead: ", 1)[1].rstrip(")") for _, r in items if "found instead: " in r]
    if instead and all(r.startswith("not installed") for _, r in items):
        names = ", ".join(soname for soname, _ in items)
        return f"{names}: not installed (found instead: {', '.join(instead)})"
    by_reason: dict[str, list[str]] = {}
    for soname, reason in items:
        by_reason.setdefault(reason, []).append(soname)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def check_libraries(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    ld_ok = facts["ldconfig"]["available"]
    rows = []
    env_dirs: dict[str, list[str]] = {}  # directory -> sonames found only outside the ldconfig cache
    # one failure per package to install (or per link to make): {key: (fix, [(soname, reason)])}
    groups: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for lib in facts["libraries"]:
        state = classify_library(lib, ld_ok)
        row = {"soname": lib["soname"], "status": state, "ldconfig": lib["ldconfig"],
               "dlopen_ok": lib["dlopen"]["ok"], "dlopen_path": lib["dlopen"].get("path"),
               "dlopen_error": lib["dlopen"].get("error"), "wheel": lib["wheel"],
               "candidates": lib["candidates"], "package": package_for(lib["soname"], expected)[0]}
        if state in ("broken", "missing"):
            kind, reason, fix = library_problem(lib, expected)
            row["problem"] = kind
            row["reason"] = reason
            row["fix"] = fix
            key = row["package"] if kind in ("missing", "other_version") else fix
            old_fix, items = groups.get(key, (fix, []))
            # the fix that names the CUDA version wins over the plain install
            groups[key] = (fix if kind == "other_version" else old_fix, [*items, (lib["soname"], reason)])
        elif state == "env":
            where = os.path.dirname(lib["dlopen"].get("path") or "") or "?"
            env_dirs.setdefault(where, []).append(lib["soname"])
        rows.append(row)
    how = "through LD_LIBRARY_PATH" if facts["host"].get("ld_library_path") else "from a default directory"
    for d, sonames in env_dirs.items():
        conf = f"/etc/ld.so.conf.d/988_cuda-{expected.get('cuda_major') or 'x'}.conf"
        fx.warn("libraries", f"{', '.join(sonames)} load from {d} ({how}) but the ldconfig cache does not "
                "list them: services and Jupyter kernels do not inherit LD_LIBRARY_PATH",
                f"echo {d} > {conf} && ldconfig (or run the cuda_links role)")
    for fix, items in groups.values():
        fx.fail("libraries", group_message(items), fix)
    res: dict[str, Any] = {"status": "ok", "expected_from": expected.get("source"),
                           "ldconfig_available": ld_ok, "libraries": rows}
    if not ld_ok:
        fx.warn("libraries", "ldconfig -p did not run: only dlopen was checked",
                "run the doctor as a user whose PATH has /sbin (or /usr/sbin)")
    for problem in expected.get("problems") or []:
        res["status"] = "fail"
        fx.fail("libraries", f"{problem}: TensorFlow supports CUDA 12 at most (pinned CUDA "
                f"{expected.get('cuda_version')})",
                'set gpu_stack_cuda_version: "12.5" (and gpu_stack_cuda_release: "12.5.1") in '
                "inventory/group_vars/all/versions.yml")
    if not expected.get("sonames"):
        if res["status"] == "ok":
            res["status"] = "skip"
        res["summary"] = "nothing to check: TensorFlow is not installed and no pins were found"
        if not expected.get("problems"):
            fx.warn("libraries", "no expected libraries: TensorFlow is not installed and no pins were given",
                    "pass --pins FILE (the gpu_validation role renders it) or run from the repository")
        return res
    bad = [r["soname"] for r in rows if r["status"] in ("broken", "missing")]
    if bad:
        res["status"] = "fail"
    good = len(rows) - len(bad)
    res["summary"] = f"{good}/{len(rows)} libraries load (expected from {expected.get('source')}" + (
        f", CUDA {expected.get('cuda_version')}, cuDNN {expected.get('cudnn_version')})")
    if bad:
        res["summary"] += "; missing: " + ", ".join(bad)
    return res


def check_cuda_runtime(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    want = expected.get("cuda_version")
    cudart = facts.get("cudart") or {}
    header = facts.get("cuda_header") or {}
    runtime = cuda_version_str(cudart.get("runtime_version"))
    head = cuda_version_str(header.get("version"))
    res: dict[str, Any] = {
        "status": "ok", "expected": want, "runtime_version": cudart.get("runtime_version"),
        "runtime": runtime,
        "runtime_error": cudart.get("error"), "header_path": header.get("path"),
        "header_version": header.get("version"), "header": head, "toolkits": facts.get("toolkits") or [],
    }
    installed = ", ".join(f"{t['version']} ({t['path']})" for t in res["toolkits"]) or "none under /usr/local"
    if want is None:
        res["status"] = "skip"
        res["summary"] = f"no expected CUDA; toolkits: {installed}"
        return res
    parts = []
    if runtime is None:
        res["status"] = "skip"
        parts.append(f"libcudart for CUDA {want} not loadable (see libraries); toolkits: {installed}")
    else:
        parts.append(f"cudart {runtime} at run time")
        rt, wt = version_tuple(runtime), version_tuple(want)
        if rt and wt and rt[0] != wt[0]:
            res["status"] = "fail"
            fx.fail("cuda_runtime", f"cudart {runtime} loaded, TensorFlow needs CUDA {want}",
                    f"zypper install {package_for('libcudart.so', expected)[0]} (the cuda role)")
        elif rt and wt and rt < wt:
            res["status"] = "warn"
            fx.warn("cuda_runtime", f"cudart {runtime} is older than CUDA {want}, TensorFlow's build",
                    f"zypper install {package_for('libcudart.so', expected)[0]} (the cuda role)")
    if head is not None:
        parts.append(f"header {head} ({header.get('path')})")
        if major_minor(head) != major_minor(want):
            if res["status"] == "ok":
                res["status"] = "warn"
            fx.warn("cuda_runtime", f"{header.get('path')} is CUDA {head}, expected {want}",
                    f"update-alternatives --set cuda /usr/local/cuda-{want} (install cuda-cudart-devel-"
                    f"{want.replace('.', '-')} if it is missing)")
    else:
        parts.append("no CUDA headers")
    res["summary"] = "; ".join(parts) + f" (expected {want})"
    return res


def check_cudnn(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    want = expected.get("cudnn_version")
    probe = facts.get("cudnn") or {}
    header = facts.get("cudnn_header") or {}
    hv = header.get("version") or {}
    runtime = cudnn_version_str(probe.get("version"))
    built_for = cuda_version_str(probe.get("cudart_version"))
    res: dict[str, Any] = {
        "status": "ok", "expected": want, "runtime_version": probe.get("version"), "runtime": runtime,
        "built_for_cuda": built_for, "runtime_error": probe.get("error"), "header_path": header.get("path"),
        "header": hv.get("string"), "header_version": hv.get("version"),
    }
    if want is None:
        res["status"] = "skip"
        res["summary"] = "no expected cuDNN"
        return res
    pkg = package_for(f"libcudnn.so.{expected.get('cudnn_major')}", expected)[0]
    parts = []
    if runtime is None:
        res["status"] = "skip"
        parts.append(f"libcudnn.so.{expected.get('cudnn_major')} not loadable (see libraries)")
    else:
        parts.append(f"cuDNN {runtime} at run time" + (f" (built for CUDA {built_for})" if built_for else ""))
        rt, wt = version_tuple(runtime), version_tuple(want)
        if rt and wt and (rt[0] != wt[0] or (len(wt) > 1 and rt[:2] < wt[:2])):
            # TensorFlow refuses a cuDNN older than the minor it was compiled with
            res["status"] = "fail"
            fx.fail("cudnn", f"cuDNN {runtime} loaded, TensorFlow needs {want}",
                    f"zypper install {pkg} at {want} (the cudnn role, cudnn_version)")
        cuda_major = expected.get("cuda_major")
        bt = version_tuple(built_for)
        if bt and cuda_major and cuda_major.isdigit() and bt[0] != int(cuda_major):
            res["status"] = "fail"
            fx.fail("cudnn", f"cuDNN {runtime} is built for CUDA {built_for}, TensorFlow uses {cuda_major}",
                    f"zypper install {pkg} (the cuDNN build for CUDA {cuda_major})")
    if hv:
        parts.append(f"header {hv['string']} ({header.get('path')})")
        if runtime and hv.get("version") != probe.get("version"):
            if res["status"] == "ok":
                res["status"] = "warn"
            fx.warn("cudnn", f"{header.get('path')} is cuDNN {hv['string']} but the library is {runtime}",
                    f"install the headers of the same release ({pkg.replace('-cuda', '-devel-cuda')}, "
                    "or rerun the cudnn role)")
    else:
        parts.append("no cuDNN header")
    res["summary"] = "; ".join(parts) + f" (expected {want})"
    return res


def check_tensorflow(facts: dict[str, Any], expected: dict[str, Any], gpu: dict[str, Any],
                     opts: argparse.Namespace, fx: Findings) -> dict[str, Any]:
    tf = facts["tensorflow"]
    res: dict[str, Any] = {
        "status": "ok", "python": tf.get("executable") or tf.get("python_path") or tf.get("python"),
        "python_version": tf.get("python") if tf.get("executable") else None,
        "installed": tf.get("installed"), "version": tf.get("version"), "build_info": tf.get("build_info"),
        "gpus": tf.get("gpus") or [], "log_hints": tf.get("log_hints") or [],
        "error": tf.get("import_error") or tf.get("probe_error"),
    }
    want_tf = expected.get("tensorflow_version")
    pip = f"tensorflow=={want_tf}" if want_tf else "tensorflow"
    install_fix = f"pip install {pip} into {res['python']}'s venv (the ml_venv role)"
    if tf.get("skipped"):
        res["status"] = "skip"
        res["summary"] = "not probed (--skip-tensorflow)"
        return res
    if tf.get("probe_error"):
        res["status"] = "fail"
        res["summary"] = f"probe failed: {tf['probe_error']}"
        fx.fail("tensorflow", f"the TensorFlow probe in {res['python']} failed: {tf['probe_error']}",
                "run `python -c 'import tensorflow'` there; raise --tf-timeout if the import is only slow")
        return res
    if not tf.get("installed"):
        res["summary"] = f"not installed in {res['python']}"
        if opts.require_tensorflow:
            res["status"] = "fail"
            fx.fail("tensorflow", f"TensorFlow is not installed in {res['python']} (--require-tensorflow)",
                    install_fix)
        else:
            res["status"] = "skip"
            res["summary"] += " (libraries checked against the pins)" if expected.get("source") else ""
        return res
    if tf.get("import_error"):
        res["status"] = "fail"
        res["summary"] = f"import fails: {tf['import_error']}"
        fx.fail("tensorflow", f"import tensorflow fails in {res['python']}: {tf['import_error']}",
                install_fix)
        return res
    build = tf.get("build_info") or {}
    parts = [f"TensorFlow {tf.get('version')} (Python {res['python_version']})"]
    if want_tf and tf.get("version") and major_minor(tf["version"]) != major_minor(want_tf):
        res["status"] = "warn"
        fx.warn("tensorflow", f"TensorFlow {tf['version']} installed, pinned {want_tf}", install_fix)
    want_py = expected.get("python_version")
    if want_py and res["python_version"] and major_minor(res["python_version"]) != major_minor(want_py):
        res["status"] = "warn"
        fx.warn("tensorflow", f"Python {res['python_version']} runs TensorFlow, pinned {want_py}",
                "recreate the venv with gpu_stack_python_version (the ml_venv role)")
    if not build.get("is_cuda_build"):
        parts.append("CPU-only build")
        msg = f"TensorFlow {tf.get('version')} is a CPU-only build"
        fix = f"pip uninstall tensorflow-cpu; {install_fix}"
        if gpu["found"]:
            res["status"] = "fail"
            fx.fail("tensorflow", msg + " on a GPU host", fix)
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
        fx.fail("tensorflow",
                "TensorFlow sees no GPU although the driver answers" + (f": {hint}" if hint else ""),
                "install the libraries the libraries check lists as missing; for more, run python -c "
                "'import tensorflow' with TF_CPP_MAX_VLOG_LEVEL=1 and read the dlopen lines")
    elif not gpu["found"]:
        parts.append("runs on the CPU (no GPU)")
    res["summary"] = "; ".join(parts)
    return res


def evaluate(facts: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """The report: every check's result, failures and warnings with fixes, the verdict and exit code."""
    fx = Findings()
    expected = facts["expected"]
    checks: dict[str, Any] = {}
    checks["gpu"] = check_gpu(facts, opts, fx)
    checks["cuda_driver"] = check_cuda_driver(facts, checks["gpu"], fx)
    checks["driver_version"] = check_driver_version(facts, expected, fx)
    checks["libraries"] = check_libraries(facts, expected, fx)
    checks["cuda_runtime"] = check_cuda_runtime(facts, expected, fx)
    checks["cudnn"] = check_cudnn(facts, expected, fx)
    checks["tensorflow"] = check_tensorflow(facts, expected, checks["gpu"], opts, fx)
    for note in facts.get("notes") or []:
        fx.warn("pins", note, "pass --pins FILE")
    # a check with its own failure is "fail" even when it set another status first
    for f in fx.failures:
        if f["check"] in checks:
            checks[f["check"]]["status"] = "fail"
    ok = not fx.failures
    gpu = checks["gpu"]
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
        "tool": "gpu_doctor", "schema": SCHEMA, "ok": ok, "exit_code": 0 if ok else 1, "verdict": verdict,
        "mode": mode, "host": facts["host"],
        "expected": {k: v for k, v in expected.items() if k != "problems"},
        "checks": checks, "failures": fx.failures, "warnings": fx.warnings,
    }


# --------------------------------------------------------------------------------------------------
# Output


def render_table(report: dict[str, Any]) -> str:
    """One row per check, then failures and warnings with their fixes, then the verdict."""
    host = report["host"]
    lines = [f"GPU doctor on {host.get('hostname')} ({host.get('os') or '?'}, kernel {host.get('kernel')})",
             f"expected from: {report['expected'].get('source') or 'nothing'}"
             + (f" (pins: {report['expected']['pins']})" if report["expected"].get("pins") else ""), ""]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu_doctor.py",
        description="Check that this host can run TensorFlow on its NVIDIA GPU; print each problem, its fix.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 usage or environment error.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--pins", metavar="FILE",
                   help="pinned versions (JSON); default: the repository's "
                   "inventory/group_vars/all/versions.yml")
    p.add_argument("--python", default=sys.executable,
                   help="interpreter whose TensorFlow is checked (default: this one, %(default)s)")
    p.add_argument("--cuda-home", default=os.environ.get("CUDA_HOME") or "/usr/local/cuda",
                   help="CUDA toolkit root for headers (default: $CUDA_HOME or /usr/local/cuda)")
    p.add_argument("--require-gpu", action="store_true",
                   help="no NVIDIA GPU is a failure (default: CPU-only is ok)")
    p.add_argument("--require-tensorflow", action="store_true", help="TensorFlow not installed is a failure")
    p.add_argument("--skip-tensorflow", action="store_true", help="do not import TensorFlow (faster)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds per system command (default %(default)s)")
    p.add_argument("--tf-timeout", type=float, default=180.0,
                   help="seconds for the TensorFlow import and GPU listing (default %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the doctor; returns the exit code (0 ok, 1 a check failed, 2 usage or environment error)."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        if opts.timeout <= 0 or opts.tf_timeout <= 0:
            raise UsageError("--timeout and --tf-timeout must be positive")
        if not opts.skip_tensorflow:
            python = opts.python if os.sep in opts.python else (shutil.which(opts.python) or opts.python)
            if not (os.path.isfile(python) and os.access(python, os.X_OK)):
                raise UsageError(f"--python {opts.python}: not an executable file")
            opts.python = python
        notes: list[str] = []
        pins = load_pins_file(opts.pins) if opts.pins else load_default_pins(notes)
    except UsageError as exc:
        print(f"gpu_doctor: error: {exc}", file=sys.stderr)
        return 2
    report = evaluate(gather_facts(opts, pins, notes), opts)
    text = json.dumps(report, indent=2, sort_keys=False)
    if opts.output:
        try:
            Path(opts.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"gpu_doctor: error: --output {opts.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    print(text if opts.json else render_table(report))
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main())

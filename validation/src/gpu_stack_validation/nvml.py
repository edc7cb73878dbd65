"""NVML through nvidia-ml-py (NVIDIA's own binding, imported as pynvml): one module for the doctor
(driver, GPUs, compute capability, persistence mode) and the benchmark (a sampler of utilisation and
memory of the GPU being timed, chosen by its PCI bus id).

Every function takes the binding as an optional argument, so tests pass a fake one; none raises:
an unusable NVML becomes a reason string.
"""

from __future__ import annotations

import importlib
import re
import statistics
import threading
from collections.abc import Mapping
from typing import Any

INTERVAL_S = 0.25  # what the article watched with nvidia-smi -lms 250


def load_binding() -> tuple[Any, str | None]:
    """(pynvml, None), or (None, why) when nvidia-ml-py is not installed."""
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:
        return None, f"nvidia-ml-py is not installed ({exc}): pip install nvidia-ml-py"


def error_text(nv: Any, exc: Exception) -> tuple[int | None, str]:
    """(NVML return code, message) of an exception raised by the binding."""
    value = getattr(exc, "value", None)
    try:
        text = str(exc)
    except Exception:  # str() of an NVMLError calls into the library
        text = f"NVML error {value}"
    return (value if isinstance(value, int) else None), text


def normalize_bus_id(bus_id: str | bytes | None) -> str | None:
    """'00000000:18:00.0' (NVML), '0000:18:00.0' or '18:00.0' (lspci) -> '0000:18:00.0' (lowercase)."""
    if bus_id is None:
        return None
    if isinstance(bus_id, bytes):
        bus_id = bus_id.decode("ascii", "replace")
    m = re.match(r"^\s*(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\s*$", bus_id)
    if not m:
        return None
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def _call(fn: Any, *args: Any) -> Any:
    """The binding's getter, None when the GPU or driver does not support it."""
    try:
        value = fn(*args)
    except Exception:  # NVMLError_NotSupported, FunctionNotFound (older drivers), ...
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def probe(nv: Any = None) -> dict[str, Any]:
    """Driver version, the driver's CUDA version and every GPU NVML sees."""
    out: dict[str, Any] = {
        "library": "libnvidia-ml.so.1",
        "binding": None,
        "loaded": False,
        "error": None,
        "init_rc": None,
        "init_error": None,
        "driver_version": None,
        "cuda_driver_version": None,
        "gpus": [],
    }
    if nv is None:
        nv, why = load_binding()
        if nv is None:
            out["error"] = why
            return out
    out["binding"] = getattr(nv, "__name__", "pynvml")
    try:
        nv.nvmlInit()
    except Exception as exc:
        rc, text = error_text(nv, exc)
        out["init_rc"] = rc
        if rc == getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", 12):
            out["error"] = f"libnvidia-ml.so.1 cannot be loaded ({text})"
        else:
            out["loaded"] = True
            out["init_error"] = text
        return out
    out.update(loaded=True, init_rc=0)
    try:
        out["driver_version"] = _call(nv.nvmlSystemGetDriverVersion)
        out["cuda_driver_version"] = _call(nv.nvmlSystemGetCudaDriverVersion)
        count = _call(nv.nvmlDeviceGetCount) or 0
        for i in range(count):
            handle = _call(nv.nvmlDeviceGetHandleByIndex, i)
            if handle is None:
                continue
            gpu: dict[str, Any] = {
                "index": i,
                "name": _call(nv.nvmlDeviceGetName, handle),
                "uuid": _call(nv.nvmlDeviceGetUUID, handle),
                "pci_bus_id": None,
                "memory_total_mib": None,
                "compute_capability": None,
                "persistence_mode": None,
            }
            pci = _call(nv.nvmlDeviceGetPciInfo, handle)
            if pci is not None:
                gpu["pci_bus_id"] = normalize_bus_id(getattr(pci, "busId", None))
            mem = _call(nv.nvmlDeviceGetMemoryInfo, handle)
            if mem is not None:
                gpu["memory_total_mib"] = int(mem.total) // (1 << 20)
            cc = _call(nv.nvmlDeviceGetCudaComputeCapability, handle)
            if cc is not None:
                gpu["compute_capability"] = f"{cc[0]}.{cc[1]}"
            mode = _call(nv.nvmlDeviceGetPersistenceMode, handle)
            if mode is not None:
                gpu["persistence_mode"] = bool(mode)
            out["gpus"].append(gpu)
    finally:
        _call(nv.nvmlShutdown)
    return out


def bus_id_of_visible_gpu(
    gpus: list[Mapping[str, Any]], environ: Mapping[str, str]
) -> tuple[str | None, str]:
    """PCI bus id of CUDA device 0 of a process started with this environment, and how it was found.

    The benchmark's GPU worker runs with CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA's device indices count
    the GPUs in PCI order, as NVML's do; CUDA_VISIBLE_DEVICES' first entry (an index or a UUID prefix)
    then names the GPU being timed.
    """
    ordered = sorted((g for g in gpus if g.get("pci_bus_id")), key=lambda g: str(g["pci_bus_id"]))
    if not ordered:
        return None, "NVML lists no GPU with a PCI bus id"
    first = (environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
    if first.isdigit():
        if int(first) < len(ordered):
            return str(ordered[int(first)]["pci_bus_id"]), f"CUDA device {first} in PCI bus order"
        return None, f"CUDA_VISIBLE_DEVICES={first} but NVML lists {len(ordered)} GPU(s)"
    for g in ordered:
        if first and str(g.get("uuid") or "").startswith(first):
            return str(g["pci_bus_id"]), f"UUID {first}"
    return None, f"CUDA_VISIBLE_DEVICES entry {first!r} matches no GPU NVML lists"


def summarise(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Mean and peak of (utilisation %, memory used MiB) samples."""
    if not samples:
        return {
            "nvml_samples": 0,
            "gpu_util_mean_pct": None,
            "gpu_util_peak_pct": None,
            "gpu_mem_used_mean_mib": None,
            "gpu_mem_used_peak_mib": None,
        }
    utils = [s[0] for s in samples]
    mems = [s[1] for s in samples]
    return {
        "nvml_samples": len(samples),
        "gpu_util_mean_pct": statistics.fmean(utils),
        "gpu_util_peak_pct": max(utils),
        "gpu_mem_used_mean_mib": statistics.fmean(mems),
        "gpu_mem_used_peak_mib": max(mems),
    }


class Sampler:
    """Samples one GPU's utilisation and used memory in a thread; unusable -> `reason` says why.

    The GPU is chosen by its PCI bus id (the one the framework times), so a host with several different
    GPUs samples the right one; without a bus id it falls back to NVML index 0 and says so.
    """

    def __init__(self, pci_bus_id: str | None = None, interval: float = INTERVAL_S, nv: Any = None) -> None:
        self.interval = interval
        self.reason: str | None = None
        self.gpu_name: str | None = None
        self.pci_bus_id = normalize_bus_id(pci_bus_id)
        self.selected_by = "pci_bus_id" if self.pci_bus_id else "index 0 (no PCI bus id known)"
        self._nv: Any = None
        self._handle: Any = None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if nv is None:
            nv, why = load_binding()
            if nv is None:
                self.reason = why
                return
        try:
            nv.nvmlInit()
        except Exception as exc:
            self.reason = f"nvmlInit failed: {error_text(nv, exc)[1]}"
            return
        try:
            if self.pci_bus_id:
                self._handle = nv.nvmlDeviceGetHandleByPciBusId(self.pci_bus_id)
            else:
                self._handle = nv.nvmlDeviceGetHandleByIndex(0)
            self.gpu_name = _call(nv.nvmlDeviceGetName, self._handle)
            if not self.pci_bus_id:
                pci = _call(nv.nvmlDeviceGetPciInfo, self._handle)
                self.pci_bus_id = normalize_bus_id(getattr(pci, "busId", None)) if pci else None
        except Exception as exc:
            self.reason = f"no NVML device {self.pci_bus_id or 0}: {error_text(nv, exc)[1]}"
            _call(nv.nvmlShutdown)
            return
        self._nv = nv

    @property
    def available(self) -> bool:
        return self._nv is not None

    def info(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "gpu_name": self.gpu_name,
            "pci_bus_id": self.pci_bus_id,
            "selected_by": self.selected_by,
            "interval_s": self.interval,
        }

    def read(self) -> tuple[float, float] | None:
        try:
            util = self._nv.nvmlDeviceGetUtilizationRates(self._handle)
            mem = self._nv.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception:
            return None
        return float(util.gpu), int(mem.used) / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample = self.read()
            if sample is not None:
                self._samples.append(sample)
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._samples = []
        if not self.available:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        result = summarise(self._samples)
        result["nvml_reason"] = None if self.available else self.reason
        return result

    def close(self) -> None:
        if self._nv is not None:
            _call(self._nv.nvmlShutdown)
            self._nv = None


def device_count(nv: Any = None) -> int | None:
    """GPUs NVML sees, None when NVML is unusable."""
    if nv is None:
        nv, _ = load_binding()
        if nv is None:
            return None
    try:
        nv.nvmlInit()
    except Exception:
        return None
    try:
        return _call(nv.nvmlDeviceGetCount)
    finally:
        _call(nv.nvmlShutdown)

"""What the host must provide: the pins (--pins, the role's pins.json, or the checkout's pins.yml)
and TensorFlow's build info, merged into one expectation (CUDA, cuDNN, the sonames TensorFlow dlopens).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..common import UsageError, major_minor, version_tuple

# Fallbacks for a host without pins: copies of gpu_stack_tensorflow_sonames and gpu_stack_cuda_min_driver
# (pins.yml; a unit test keeps them equal). Pins always win.
DEFAULT_SONAMES: dict[str, list[str]] = {
    "12": [
        "libcudart.so.12",
        "libcublas.so.12",
        "libcublasLt.so.12",
        "libcufft.so.11",
        "libcusparse.so.12",
        "libcusolver.so.11",
        "libcurand.so.10",
    ],
    "10": [
        "libcudart.so.10.0",
        "libcublas.so.10.0",
        "libcufft.so.10.0",
        "libcusparse.so.10.0",
        "libcusolver.so.10.0",
        "libcurand.so.10.0",
    ],
}
DEFAULT_MIN_DRIVER: dict[str, str] = {"13": "580.65.06", "12": "525.60.13", "11": "450.80.02", "10": "410.48"}
# Where the gpu_validation role puts pins.json: inside the virtualenv the package is installed in
INSTALLED_PINS = Path(sys.prefix) / "share" / "gpu-stack" / "validation" / "pins.json"


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


def pins_from_pins_yml(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The pins object from the gpu_stack_* variables of pins.yml."""
    by_major = data.get("gpu_stack_tensorflow_sonames") or {}
    cuda = data.get("gpu_stack_cuda_version")
    major = str(version_tuple(str(cuda))[0]) if cuda is not None and version_tuple(str(cuda)) else None
    return normalize_pins(
        {
            "tensorflow_version": data.get("gpu_stack_tensorflow_version"),
            "cuda_version": cuda,
            "cudnn_version": data.get("gpu_stack_cudnn_version"),
            "python_version": data.get("gpu_stack_python_version"),
            "driver_version": data.get("gpu_stack_nvidia_driver_version"),
            "sonames": by_major.get(major) if isinstance(by_major, dict) and major else None,
            "sonames_by_cuda_major": by_major,
            "min_driver": data.get("gpu_stack_cuda_min_driver") or {},
        },
        where,
    )


def default_pins_yml() -> Path | None:
    """pins.yml of the checkout (or installed collection) whose validation/src this module runs from."""
    try:
        root = Path(__file__).resolve().parents[4]
    except IndexError:
        return None
    path = root / "pins.yml"
    return path if path.is_file() else None


def load_default_pins(notes: list[str]) -> dict[str, Any] | None:
    """The installed pins.json (the role's), else the checkout's pins.yml (needs PyYAML), else None."""
    if INSTALLED_PINS.is_file():
        return load_pins_file(str(INSTALLED_PINS))
    path = default_pins_yml()
    if path is None:
        return None
    try:
        import yaml  # optional: only a checkout has pins.yml next to this script
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
    return pins_from_pins_yml(data, str(path))


def derive_expected(tensorflow: dict[str, Any] | None, pins: dict[str, Any] | None) -> dict[str, Any]:
    """What the host must provide: TensorFlow's build info when it is a CUDA build, else the pins."""
    pins = pins or {}
    build = (tensorflow or {}).get("build_info") or {}
    exp: dict[str, Any] = {
        "source": None,
        "pins": pins.get("source"),
        "tensorflow_version": pins.get("tensorflow_version"),
        "python_version": pins.get("python_version"),
        "cuda_version": None,
        "cuda_major": None,
        "cudnn_version": None,
        "cudnn_major": None,
        "sonames": [],
        "min_driver": None,
        "problems": [],
    }
    if (tensorflow or {}).get("installed") and build.get("is_cuda_build") and build.get("cuda_version"):
        exp["source"] = "tensorflow"
        exp["cuda_version"] = major_minor(str(build["cuda_version"]))
        exp["cudnn_version"] = (
            str(build["cudnn_version"]) if build.get("cudnn_version") else pins.get("cudnn_version")
        )
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

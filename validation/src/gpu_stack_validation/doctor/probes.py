"""Probes of the doctor: each reads one thing from the host (a file, a library through ctypes, a command)
and returns plain data; none judges and none raises. The unit tests replace them with a scripted host.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
from typing import Any

from .. import nvml
from ..common import RC_TIMEOUT, find_tool, run_cmd
from ..elf import soname_stem
from .parsers import TF_MARK, parse_tf_probe, tf_log_hints

CU_ERRORS = {
    0: "CUDA_SUCCESS",
    3: "CUDA_ERROR_NOT_INITIALIZED",
    34: "CUDA_ERROR_STUB_LIBRARY",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
    804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}


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
        "library": library,
        "loaded": False,
        "path": None,
        "error": None,
        "driver_api_version": None,
        "cuinit_rc": None,
        "cuinit_error": None,
        "devices": [],
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
            out["devices"].append(
                {
                    "index": i,
                    "name": name.value.decode("utf-8", "replace"),
                    "memory_total_mib": mem.value // (1 << 20),
                    "compute_capability": f"{major.value}.{minor.value}",
                }
            )
    except AttributeError as exc:  # a stub or very old libcuda without the entry point
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
    out: dict[str, Any] = {
        "target": target,
        "loaded": False,
        "error": None,
        "version": None,
        "cudart_version": None,
    }
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
out = {"python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable, "prefix": sys.prefix,
       "installed": False}
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
    from importlib import metadata
    try:
        out["distribution"] = (metadata.packages_distributions().get("tensorflow") or [None])[0]
    except Exception:
        out["distribution"] = None
    try:
        dist = out["distribution"] or "tensorflow"
        out["nvidia_requires"] = [r for r in (metadata.requires(dist) or []) if r.startswith("nvidia-")]
    except Exception:
        out["nvidia_requires"] = []
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
        return {
            "python": python,
            "installed": None,
            "probe_rc": res.rc,
            "probe_error": f"{why}: " + " | ".join(tail),
            "log_hints": tf_log_hints(res.stderr),
        }
    data["probe_rc"] = res.rc
    data["log_hints"] = tf_log_hints(res.stderr)
    data.setdefault("python_path", python)
    return data


def read_bytes(path: str, limit: int = 1 << 16) -> bytes | None:
    """The first bytes of a file (an EFI variable), None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def lexists(path: str) -> bool:
    return os.path.lexists(path)


def exists(path: str) -> bool:
    return os.path.exists(path)


def last_link(path: str) -> str | None:
    """The last symlink on the way from path to its file (the link that names the file), directories
    resolved; None when path is not a symlink."""
    if not os.path.islink(path):
        return None
    current = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    for _ in range(40):  # the kernel's own limit on link chains
        target = os.readlink(current)
        nxt = os.path.join(os.path.realpath(os.path.dirname(current)), target)
        nxt = os.path.join(os.path.realpath(os.path.dirname(nxt)), os.path.basename(nxt))
        if not os.path.islink(nxt):
            return current
        current = nxt
    return current


def processes_named(prefix: str) -> list[int]:
    """Pids whose /proc/PID/comm starts with prefix (comm is cut at 15 characters)."""
    pids = []
    for comm in glob_paths("/proc/[0-9]*/comm"):
        name = read_text(comm)
        if name is not None and name.strip().startswith(prefix[:15]):
            pids.append(int(comm.split("/")[2]))
    return pids


def rpm_owner(path: str, timeout: float) -> str | None:
    """Name of the RPM that owns path (a file, or a link even when it dangles), None when none does."""
    res = run_cmd([find_tool("rpm"), "-qf", "--queryformat", "%{NAME}\\n", path], timeout=timeout)
    if res.ok and res.stdout.strip() and "not owned" not in res.stdout:
        return res.stdout.split()[0]
    return None


def rpm_installed(package: str, timeout: float) -> str | None:
    """VERSION-RELEASE of an installed RPM, None when it is not installed (or rpm is missing)."""
    res = run_cmd(
        [find_tool("rpm"), "-q", "--queryformat", "%{VERSION}-%{RELEASE}\\n", package], timeout=timeout
    )
    return res.stdout.split()[0] if res.ok and res.stdout.strip() else None


def rpm_names(pattern: str, timeout: float) -> list[str] | None:
    """Names of the installed RPMs matching a glob (`rpm -qa PATTERN`), None when rpm cannot be run."""
    res = run_cmd([find_tool("rpm"), "-qa", "--queryformat", "%{NAME}\\n", pattern], timeout=timeout)
    if not res.ok:
        return None
    return sorted({line.strip() for line in res.stdout.splitlines() if line.strip()})


def rpm_verify(package: str, timeout: float) -> str:
    """Output of `rpm -V package` (empty: every file as packaged)."""
    return run_cmd([find_tool("rpm"), "-V", package], timeout=timeout).stdout


def dev_nodes() -> list[str]:
    return [p for p in glob_paths("/dev/nvidia*") if os.path.basename(p) != "nvidia-caps"]


def venv_root(python: str) -> str | None:
    """The virtualenv a python executable belongs to (<venv>/bin/python, pyvenv.cfg beside bin/)."""
    parent = os.path.dirname(os.path.abspath(python))
    if os.path.basename(parent) != "bin":
        return None
    root = os.path.dirname(parent)
    return root if os.path.isfile(os.path.join(root, "pyvenv.cfg")) else None


def wheel_libraries(prefix: str) -> dict[str, str]:
    """Libraries of NVIDIA's pip wheels in a virtualenv: file name -> path (site-packages/nvidia/*/lib)."""
    libs: dict[str, str] = {}
    for d in glob_paths(os.path.join(prefix, "lib", "python3*", "site-packages", "nvidia", "*", "lib")):
        for path in glob_paths(os.path.join(d, "*.so*")):
            libs.setdefault(os.path.basename(path), path)
    return libs


def wheel_distributions(prefix: str) -> dict[str, str]:
    """Installed nvidia-* distributions of a virtualenv: name -> version, from their dist-info folders."""
    dists: dict[str, str] = {}
    for info in glob_paths(os.path.join(prefix, "lib", "python3*", "site-packages", "nvidia_*.dist-info")):
        name, _, version = os.path.basename(info)[: -len(".dist-info")].partition("-")
        dists[name.replace("_", "-").lower()] = version
    return dists


def load_json_file(path: str) -> Any:
    text = read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def find_device_query() -> str | None:
    """NVIDIA's deviceQuery from cuda-demo-suite-X-Y (/usr/local/cuda-X.Y/extras/demo_suite/deviceQuery)."""
    for path in [*glob_paths("/usr/local/cuda*/extras/demo_suite/deviceQuery"), find_tool("deviceQuery")]:
        if os.path.isabs(path) and os.access(path, os.X_OK):
            return path
    return None


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


def probe_nvml() -> dict[str, Any]:
    """NVML through nvidia-ml-py: driver, its CUDA, GPUs with bus id, compute capability, persistence."""
    return nvml.probe()

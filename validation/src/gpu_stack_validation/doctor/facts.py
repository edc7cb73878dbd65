"""Fact gathering: every probe runs once, here; nothing here judges (the checks modules do)."""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
from typing import Any

from ..common import RC_NOT_FOUND, find_tool, run_cmd
from ..elf import file_major, read_soname, soname_major, soname_stem
from . import probes
from .parsers import (
    SECURE_BOOT_EFIVAR,
    SMI_FIELDS,
    classify_nvidia_smi_failure,
    cmdline_blacklists,
    cuda_version_str,
    ldconfig_arch,
    library_file_version,
    modprobe_blacklists,
    parse_cuda_version_header,
    parse_cudnn_version_header,
    parse_dcgmi_diag,
    parse_device_query,
    parse_ldconfig,
    parse_lspci,
    parse_mokutil_sb_state,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_xml,
    parse_os_release,
    parse_proc_driver_flavour,
    parse_proc_driver_version,
    parse_proc_modules,
    parse_rpm_verify,
    parse_secure_boot_efivar,
    parse_xid,
)
from .pins import derive_expected

STAMP_NAME = "gpu-stack-venv.json"  # written by the ml_venv role into a finished virtualenv
MODPROBE_DIRS = ("/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d", "/run/modprobe.d")


def package_for(soname: str, expected: dict[str, Any]) -> tuple[str, str]:
    """(RPM of NVIDIA's CUDA repository, role) that ships a soname for the expected CUDA X.Y."""
    stem = soname_stem(soname).replace(".so", "")
    cuda_major = expected.get("cuda_major") or soname_major(soname) or "12"
    cuda_t = (expected.get("cuda_version") or "").split(".")
    xy = f"{cuda_t[0]}-{cuda_t[1]}" if len(cuda_t) > 1 and all(cuda_t[:2]) else f"{cuda_major}-<minor>"
    if stem.startswith("libcudnn"):
        return f"libcudnn{expected.get('cudnn_major') or soname_major(soname)}-cuda-{cuda_major}", "cudnn"
    if stem == "libnccl":
        return "libnccl2", "cuda"
    if stem in ("libcuda", "libnvidia-ml"):
        return "nvidia-compute-G07", "nvidia_driver"
    if stem == "libcudart":
        return f"cuda-cudart-{xy}", "cuda"
    if stem == "libnvrtc":
        return f"cuda-nvrtc-{xy}", "cuda"
    if stem in ("libcublas", "libcublasLt"):
        return f"libcublas-{xy}", "cuda"
    return f"{stem}-{xy}", "cuda"  # libcufft-12-5, libcurand-12-5, libcusolver-12-5, libcusparse-12-5


# The kernel module package of each driver generation when none is installed: the nvidia_driver role's
# defaults (G07: SUSE's signed open kmp from NVIDIA's CUDA repository; G06: NVIDIA's graphics repository)
DEFAULT_KMP = {
    "G07": "nvidia-open-driver-G07-signed-cuda-kmp-default",
    "G06": "nvidia-driver-G06-kmp-default",
}


def driver_packages(installed: list[str] | None) -> dict[str, Any]:
    """The driver's RPMs to name in a fix: the installed ones (`rpm -qa 'nvidia-*'`), so a G06 host is told
    about G06 packages; without any, generation G07 (every GPU from Turing on)."""
    names = installed or []
    kmps = [n for n in names if "-kmp-" in n]
    kmp = next((n for n in kmps if n.endswith("-kmp-default")), kmps[0] if kmps else None)
    gens = [m.group(1) for n in [kmp or "", *names] for m in [re.search(r"-(G0\d)(?:-|$)", n)] if m]
    generation = gens[0] if gens else "G07"
    return {
        "source": "installed RPMs" if kmp or gens else "generation G07 (no NVIDIA driver RPM installed)",
        "generation": generation,
        "kmp": kmp or DEFAULT_KMP.get(generation, DEFAULT_KMP["G07"]),
        "compute": f"nvidia-compute-{generation}",
        "utils": f"nvidia-compute-utils-{generation}",
        "installed": names,
    }


# pip mode: the wheel of NVIDIA's that carries each library (tensorflow[and-cuda] pins them)
WHEELS = {
    "libcudart": "nvidia-cuda-runtime-cu12",
    "libcublas": "nvidia-cublas-cu12",
    "libcublasLt": "nvidia-cublas-cu12",
    "libcufft": "nvidia-cufft-cu12",
    "libcurand": "nvidia-curand-cu12",
    "libcusolver": "nvidia-cusolver-cu12",
    "libcusparse": "nvidia-cusparse-cu12",
    "libcudnn": "nvidia-cudnn-cu12",
    "libnccl": "nvidia-nccl-cu12",
    "libnvrtc": "nvidia-cuda-nvrtc-cu12",
    "libnvJitLink": "nvidia-nvjitlink-cu12",
}


def wheel_for(soname: str, cuda_major: str | None) -> str:
    stem = soname_stem(soname).replace(".so", "")
    name = WHEELS.get(stem, f"nvidia-{stem[3:]}-cu12")
    return name.replace("-cu12", f"-cu{cuda_major}") if cuda_major else name


def host_facts() -> dict[str, Any]:
    osr = parse_os_release(probes.read_text("/etc/os-release") or "")
    return {
        "hostname": socket.gethostname(),
        "os": osr.get("PRETTY_NAME"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "doctor_python": platform.python_version(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
    }


def gpu_facts(timeout: float) -> dict[str, Any]:
    """lspci, /dev/nvidia*, nvidia-smi and NVML."""
    res = run_cmd([find_tool("lspci"), "-nn"], timeout=timeout)
    out: dict[str, Any] = {
        "lspci": {
            "available": res.rc != RC_NOT_FOUND,
            "rc": res.rc,
            "gpus": parse_lspci(res.stdout) if res.ok else [],
            "error": None if res.ok else res.output[-300:],
        },
        "dev_nodes": probes.dev_nodes(),
    }
    smi = find_tool("nvidia-smi")
    fields = SMI_FIELDS
    query = [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    res = run_cmd(query, timeout=timeout)
    if not res.ok and "not a valid field" in res.output.lower():  # drivers before compute_cap existed
        fields = SMI_FIELDS[:-1]
        res = run_cmd([smi, f"--query-gpu={','.join(fields)}", query[2]], timeout=timeout)
    smi_facts: dict[str, Any] = {
        "available": res.rc != RC_NOT_FOUND,
        "rc": res.rc,
        "ok": res.ok,
        "gpus": [],
        "driver_version": None,
        "cuda_version": None,
        "error_kind": None,
        "message": None,
    }
    if res.ok:
        smi_facts["gpus"] = parse_nvidia_smi_csv(res.stdout, fields)
        xml = run_cmd([smi, "-q", "-x"], timeout=timeout)
        if xml.ok:
            parsed = parse_nvidia_smi_xml(xml.stdout)
            smi_facts.update(cuda_version=parsed["cuda_version"], driver_version=parsed["driver_version"])
            smi_facts["gpus"] = smi_facts["gpus"] or parsed["gpus"]
        if not smi_facts["driver_version"] and smi_facts["gpus"]:
            smi_facts["driver_version"] = smi_facts["gpus"][0].get("driver_version")
    else:
        smi_facts["error_kind"] = classify_nvidia_smi_failure(res.rc, res.output)
        smi_facts["message"] = " ".join(res.output.split())[:300] or None
    out["nvidia_smi"] = smi_facts
    out["nvml"] = probes.probe_nvml()
    return out


def kernel_facts(timeout: float) -> dict[str, Any]:
    """The nvidia and nouveau kernel modules, the blacklists, Secure Boot, nvidia-persistenced."""
    version_text = probes.read_text("/proc/driver/nvidia/version") or ""
    modules_text = probes.read_text("/proc/modules")
    modules = parse_proc_modules(modules_text or "")
    conf = {}
    for d in MODPROBE_DIRS:
        for path in probes.glob_paths(f"{d}/*.conf"):
            conf[path] = probes.read_text(path) or ""
    modinfo = run_cmd([find_tool("modinfo"), "-F", "signer", "nvidia"], timeout=timeout)
    mok = run_cmd([find_tool("mokutil"), "--sb-state"], timeout=timeout)
    sb = parse_mokutil_sb_state(mok.output) if mok.rc != RC_NOT_FOUND else None
    sb_source = "mokutil --sb-state" if sb is not None else None
    if sb is None:
        sb = parse_secure_boot_efivar(probes.read_bytes(SECURE_BOOT_EFIVAR))
        sb_source = "SecureBoot EFI variable" if sb is not None else None
    return {
        "proc_version": parse_proc_driver_version(version_text),
        "proc_version_text": version_text.splitlines()[0] if version_text else None,
        "flavour": parse_proc_driver_flavour(version_text),
        "sys_version": (probes.read_text("/sys/module/nvidia/version") or "").strip() or None,
        "taint": (probes.read_text("/sys/module/nvidia/taint") or "").strip() or None,
        "modules": {
            name: modules[name]
            for name in ("nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm", "nouveau")
            if name in modules
        },
        "modules_readable": modules_text is not None,
        "module_signer": modinfo.stdout.strip() or None if modinfo.ok else None,
        "modinfo_rc": modinfo.rc,
        "nouveau_blacklist": modprobe_blacklists(conf, "nouveau")
        + cmdline_blacklists(probes.read_text("/proc/cmdline") or "", "nouveau"),
        "secure_boot": sb,
        "secure_boot_source": sb_source,
        "mokutil_available": mok.rc != RC_NOT_FOUND,
        "persistenced_pids": probes.processes_named("nvidia-persistenced"),
        "persistenced_installed": find_tool("nvidia-persistenced") != "nvidia-persistenced",
        "driver_packages": driver_packages(probes.rpm_names("nvidia-*", timeout)),
    }


def cuda_mode_facts(opts: argparse.Namespace, tf: dict[str, Any]) -> dict[str, Any]:
    """Which CUDA the virtualenv's TensorFlow uses: the ml_venv stamp, or the nvidia wheels beside it."""
    prefix = tf.get("prefix") or probes.venv_root(opts.python)
    stamp_path = os.path.join(prefix, STAMP_NAME) if prefix else None
    stamp = probes.load_json_file(stamp_path) if stamp_path else None
    wheels = dict(tf.get("wheel_libs") or {})
    if prefix:
        for name, path in probes.wheel_libraries(prefix).items():
            wheels.setdefault(name, path)
    dists = probes.wheel_distributions(prefix) if prefix else {}
    stamped = stamp.get("cuda_mode") if isinstance(stamp, dict) else None
    has_runtime = any(name.startswith("libcudart.so.") for name in wheels)
    if opts.cuda_mode != "auto":
        mode, source = opts.cuda_mode, "--cuda-mode"
    elif stamped in ("system", "pip"):
        mode, source = stamped, f"ml_venv stamp {stamp_path}"
    elif has_runtime:
        mode, source = "pip", "detected: NVIDIA's CUDA wheels (nvidia-*-cu12) beside TensorFlow"
    else:
        mode, source = "system", "detected: no NVIDIA CUDA wheels in the virtualenv"
    return {
        "mode": mode,
        "source": source,
        "requested": opts.cuda_mode,
        "venv": prefix,
        "stamp": stamp_path if stamp is not None else None,
        "stamp_mode": stamped,
        "stamp_invalid": stamp is not None and stamped not in ("system", "pip"),
        "wheel_libs": wheels,
        "wheel_dists": dists,
        "tensorflow_nvidia_requires": tf.get("nvidia_requires") or [],
    }


def _resolution(path: str) -> dict[str, Any]:
    real = probes.realpath(path)
    return {
        "path": path,
        "link_exists": probes.lexists(path),
        "last_link": probes.last_link(path),
        "realpath": real,
        "exists": probes.exists(real) if real else False,
        "elf_soname": read_soname(real),
        "file_major": file_major(real),
    }


def system_library_facts(
    soname: str, ldconfig: dict[str, list[str]], dirs: list[str], expected: dict[str, Any], timeout: float
) -> dict[str, Any]:
    dl = probes.probe_dlopen(soname)
    exact = [p for d in dirs for p in [os.path.join(d, soname)] if probes.lexists(p)]
    paths = list(
        dict.fromkeys([*ldconfig.get(soname, []), *([dl["path"]] if dl.get("path") else []), *exact])
    )
    lib: dict[str, Any] = {
        "soname": soname,
        "ldconfig": ldconfig.get(soname, []),
        "dlopen": dl,
        "wheel": None,
        "candidates": [] if dl["ok"] else probes.find_library_files(soname, dirs),
        "other_sonames": sorted(
            s for s in ldconfig if soname_stem(s) == soname_stem(soname) and s != soname and soname_major(s)
        ),
        "resolved": [_resolution(p) for p in paths],
        "owners": {},
        "rpm": None,
    }
    aliased = any(r["elf_soname"] and r["elf_soname"] != soname for r in lib["resolved"])
    if not dl["ok"] or aliased:
        for p in [*paths, *lib["candidates"]]:
            owner = probes.rpm_owner(p, timeout)
            if owner:
                lib["owners"][p] = owner
        package = next(iter(lib["owners"].values()), None) or package_for(soname, expected)[0]
        installed = probes.rpm_installed(package, timeout)
        lib["rpm"] = {
            "package": package,
            "installed": installed,
            "verify": parse_rpm_verify(probes.rpm_verify(package, timeout)) if installed else [],
        }
    return lib


def pip_library_facts(soname: str, mode: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    path = mode["wheel_libs"].get(soname)
    wheel = wheel_for(soname, expected.get("cuda_major"))
    lib: dict[str, Any] = {
        "soname": soname,
        "wheel": path,
        "wheel_package": wheel,
        "wheel_version": mode["wheel_dists"].get(wheel),
        "dlopen": {"ok": False, "path": None, "error": "not in the venv"},
        "resolved": [_resolution(path)] if path else [],
        "ldconfig": [],
        "candidates": [],
        "other_sonames": sorted(
            n
            for n in mode["wheel_libs"]
            if soname_stem(n) == soname_stem(soname) and n != soname and soname_major(n)
        ),
    }
    if path:
        lib["dlopen"] = probes.probe_dlopen(path)
    return lib


def tool_facts(gpu_found: bool, timeout: float, dcgm_timeout: float) -> dict[str, Any]:
    """deviceQuery, dcgmi diag -r 1 and the kernel log's Xid lines."""
    out: dict[str, Any] = {
        "device_query": {"path": probes.find_device_query(), "ran": False},
        "dcgm": {"path": None, "ran": False},
        "kernel_log": {"source": None, "readable": False, "xid": []},
    }
    dq = out["device_query"]
    if dq["path"] and gpu_found:
        res = run_cmd([dq["path"]], timeout=timeout * 3)
        dq.update(ran=True, rc=res.rc, **parse_device_query(res.stdout))
    dcgmi = find_tool("dcgmi")
    if os.path.isabs(dcgmi):
        out["dcgm"]["path"] = dcgmi
        if gpu_found:
            res = run_cmd([dcgmi, "diag", "-r", "1"], timeout=dcgm_timeout)
            out["dcgm"].update(
                ran=True, rc=res.rc, output_tail=res.output[-400:], **parse_dcgmi_diag(res.stdout)
            )
    for argv, source in (
        ([find_tool("dmesg")], "dmesg"),
        ([find_tool("journalctl"), "-k", "-b", "--no-pager", "-q"], "journalctl -k -b"),
    ):
        res = run_cmd(argv, timeout=timeout)
        if res.ok and res.stdout.strip():
            out["kernel_log"] = {"source": source, "readable": True, "xid": parse_xid(res.stdout)}
            break
    return out


def gather_facts(opts: argparse.Namespace, pins: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """Run every probe once."""
    timeout = opts.timeout
    facts: dict[str, Any] = {"notes": notes, "pins": pins, "host": host_facts()}
    facts.update(gpu_facts(timeout))
    facts["kernel"] = kernel_facts(timeout)
    facts["proc_driver_version"] = facts["kernel"]["proc_version"]
    facts["cuda_driver"] = probes.probe_cuda_driver()
    res = run_cmd([find_tool("ldconfig"), "-p"], timeout=timeout)
    facts["ldconfig"] = {
        "available": res.ok,
        "rc": res.rc,
        "libs": parse_ldconfig(res.stdout, ldconfig_arch()) if res.ok else {},
        "error": None if res.ok else res.output[-300:],
    }
    ld = facts["ldconfig"]["libs"]
    libcuda = facts["cuda_driver"].get("path") or (ld.get("libcuda.so.1") or [None])[0]
    facts["libcuda_file_version"] = library_file_version(probes.realpath(libcuda)) if libcuda else None
    libnvml = (ld.get("libnvidia-ml.so.1") or [None])[0]
    facts["libnvml_file_version"] = library_file_version(probes.realpath(libnvml)) if libnvml else None

    if opts.skip_tensorflow:
        facts["tensorflow"] = {"python": opts.python, "installed": None, "skipped": True}
    else:
        facts["tensorflow"] = probes.probe_tensorflow(opts.python, opts.tf_timeout)
    expected = derive_expected(facts["tensorflow"], pins)
    facts["expected"] = expected
    mode = cuda_mode_facts(opts, facts["tensorflow"])
    facts["cuda_mode"] = mode

    dirs = probes.library_search_dirs(opts.cuda_home)
    if mode["mode"] == "pip":
        facts["libraries"] = [pip_library_facts(s, mode, expected) for s in expected["sonames"]]
    else:
        facts["libraries"] = [
            system_library_facts(s, ld, dirs, expected, timeout) for s in expected["sonames"]
        ]

    include_dirs = [
        f"{opts.cuda_home}/include",
        "/usr/local/cuda/include",
        "/usr/include",
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
    ]
    path, text = probes._header(include_dirs, ("cuda_runtime_api.h", "cuda.h"))
    facts["cuda_header"] = {"path": path, "version": parse_cuda_version_header(text) if text else None}
    path, text = probes._header(include_dirs, ("cudnn_version.h", "cudnn.h"))
    facts["cudnn_header"] = {"path": path, "version": parse_cudnn_version_header(text) if text else None}
    toolkits = []
    for root in probes.glob_paths("/usr/local/cuda-*"):
        m = re.search(r"cuda-(\d+\.\d+)$", root)
        if m:
            text = probes.read_text(f"{root}/include/cuda_runtime_api.h")
            hv = parse_cuda_version_header(text) if text else None
            toolkits.append({"path": root, "version": cuda_version_str(hv) or m.group(1)})
    facts["toolkits"] = toolkits

    def usable(prefix: str) -> str | None:
        lib = next((x for x in facts["libraries"] if x["soname"].startswith(prefix)), None)
        if lib is None or not lib["dlopen"]["ok"]:
            return None
        return lib["wheel"] if mode["mode"] == "pip" else lib["soname"]

    cudart, cudnn = usable("libcudart.so."), usable("libcudnn.so.")
    facts["cudart"] = probes.probe_cudart(cudart) if cudart else None
    facts["cudnn"] = probes.probe_cudnn(cudnn) if cudnn else None
    gpu_found = bool(
        facts["lspci"]["gpus"] or facts["nvml"].get("gpus") or facts["cuda_driver"].get("cuinit_rc") == 0
    )
    facts.update(tool_facts(gpu_found, timeout, opts.dcgm_timeout))
    return facts

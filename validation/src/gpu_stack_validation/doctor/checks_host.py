"""Checks of the GPU, the kernel side and the driver: gpu, kernel_module, nouveau, secure_boot,
persistenced, cuda_driver, driver_version. Pure: facts in, a result dict out, findings recorded."""

from __future__ import annotations

import argparse
from typing import Any

from ..nvml import normalize_bus_id
from .facts import DEFAULT_KMP, driver_packages
from .findings import Findings
from .parsers import cuda_version_str, driver_at_least

GPU_KEYS = ("name", "memory_total_mib", "compute_capability", "uuid", "pci_bus_id")
NOUVEAU_FIX = (
    "echo 'blacklist nouveau' > /etc/modprobe.d/60-blacklist-nouveau.conf && dracut -f && reboot "
    "(the initrd must not load nouveau either)"
)


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
        gpu["pci_bus_id"] = normalize_bus_id(gpu.get("pci_bus_id")) or gpu.get("pci_bus_id")
        for other in (nvml, cuda):
            if i < len(other):
                for key in ("name", "memory_total_mib", "compute_capability", "uuid", "pci_bus_id"):
                    if gpu.get(key) is None and other[i].get(key) is not None:
                        gpu[key] = other[i][key]
        gpus.append(gpu)
    if not gpus:
        for i, g in enumerate(facts["lspci"]["gpus"]):
            gpus.append(
                {
                    "index": i,
                    "name": g["name"],
                    "memory_total_mib": None,
                    "compute_capability": None,
                    "uuid": None,
                    "pci_bus_id": g["slot"],
                    "pci_id": g["pci_id"],
                    "source": "lspci",
                }
            )
    return gpus


def _driver(facts: dict[str, Any]) -> dict[str, Any]:
    """The driver's packages to name in fixes (facts.driver_packages: installed, else generation G07)."""
    return facts["kernel"].get("driver_packages") or driver_packages(None)


def _driver_install(facts: dict[str, Any]) -> str:
    d = _driver(facts)
    return f"{d['kmp']} {d['compute']} {d['utils']}"


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
    """lspci, /dev/nvidia*, nvidia-smi and NVML: is there a GPU, and does its driver answer?"""
    lspci, smi, nvml, cuda = facts["lspci"], facts["nvidia_smi"], facts["nvml"], facts["cuda_driver"]
    gpus = merge_gpus(facts)
    driver_answers = bool((smi["ok"] and smi["gpus"]) or nvml.get("gpus") or cuda.get("cuinit_rc") == 0)
    found = bool(lspci["gpus"] or driver_answers)
    res: dict[str, Any] = {
        "status": "ok",
        "found": found,
        "cpu_only": not found,
        "count": len(gpus),
        "gpus": gpus,
        "driver_answers": driver_answers,
        "lspci": {"available": lspci["available"], "devices": lspci["gpus"]},
        "dev_nodes": facts["dev_nodes"],
        "nvidia_smi": {k: smi[k] for k in ("available", "ok", "rc", "error_kind", "message")},
        "nvml": {k: nvml.get(k) for k in ("loaded", "init_error", "error")},
    }
    evidence = [
        "lspci: not installed"
        if not lspci["available"]
        else f"lspci: {len(lspci['gpus'])} NVIDIA"
        if lspci["rc"] == 0
        else f"lspci: failed ({lspci['rc']})",
        f"/dev/nvidia*: {len(facts['dev_nodes'])}",
        "nvidia-smi: " + ("ok" if smi["ok"] else (smi["error_kind"] or "failed").replace("_", " ")),
    ]
    if not lspci["available"]:
        fx.warn(
            "gpu",
            "lspci is not installed: a GPU whose driver is missing cannot be seen",
            "zypper install pciutils",
        )
    if not found:
        res["summary"] = "no NVIDIA GPU: CPU-only (" + "; ".join(evidence) + ")"
        if opts.require_gpu:
            res["status"] = "fail"
            fx.fail(
                "gpu",
                "no NVIDIA GPU found and --require-gpu was given (" + "; ".join(evidence) + ")",
                "check `lspci -nn | grep -i nvidia` on the host; in a VM pass the GPU through "
                "(vagrant-libvirt: libvirt.pci + kvm_hidden); or drop --require-gpu on a CPU-only host",
            )
        return res
    if not driver_answers:
        res["status"] = "fail"
        names = ", ".join(g["name"] for g in lspci["gpus"]) or "an NVIDIA GPU"
        kind = smi["error_kind"]
        if kind == "version_mismatch" or nvml.get("init_rc") == 18:
            fx.fail(
                "gpu",
                f"{names} present but the loaded kernel module and the driver libraries differ "
                "(Driver/library version mismatch)",
                "reboot (or unload and reload the nvidia modules) after the driver update",
            )
        elif kind == "no_driver" or not facts["dev_nodes"]:
            fx.fail(
                "gpu",
                f"{names} present (lspci) but the NVIDIA driver is not loaded"
                + (f": {smi['message']}" if smi.get("message") else ""),
                f"zypper install {_driver_install(facts)} (the nvidia_driver role), then reboot; "
                "`dmesg | grep -i nvrm` tells why the module did not load (secure boot, missing kmp)",
            )
        else:
            fx.fail(
                "gpu",
                f"{names} present but neither nvidia-smi nor NVML nor cuInit reach it ("
                + "; ".join(evidence)
                + ")",
                "check the /dev/nvidia* permissions (the user needs the video group) and "
                f"`nvidia-smi`; reinstall {_driver(facts)['compute']} if libraries are missing",
            )
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
        "status": "ok",
        "library": cuda.get("path") or cuda.get("library"),
        "loaded": cuda.get("loaded"),
        "driver_api_version": api,
        "driver_api": cuda_version_str(api),
        "cuinit_rc": cuda.get("cuinit_rc"),
        "cuinit_error": cuda.get("cuinit_error"),
        "device_count": len(cuda.get("devices") or []),
        "error": cuda.get("error"),
    }
    found = gpu["found"]
    if not cuda.get("loaded"):
        res["summary"] = f"libcuda.so.1 cannot be loaded ({cuda.get('error')})"
        fix = f"zypper install {_driver(facts)['compute']} (the nvidia_driver role installs the user space)"
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
        fix = (
            "libcuda.so.1 is the toolkit's stub: remove .../lib64/stubs from /etc/ld.so.conf.d and "
            f"LD_LIBRARY_PATH, run ldconfig, install {_driver(facts)['compute']}"
        )
    elif rc == 100 and facts["host"].get("cuda_visible_devices") is not None:
        fix = f"CUDA_VISIBLE_DEVICES={facts['host']['cuda_visible_devices']!r} hides the GPU: unset it"
    elif rc in (35, 803):
        fix = (
            "the driver is older than the CUDA libraries or does not match them: zypper install "
            f"{_driver_install(facts)} at gpu_stack_nvidia_driver_version (the nvidia_driver role), "
            "then reboot"
        )
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
        "status": "ok",
        "version": version,
        "source": source,
        "kernel_module_version": kmod,
        "library_version": libv,
        "required_min": need,
        "cuda_major": expected.get("cuda_major"),
        "driver_api": cuda_version_str(api),
    }
    libcuda = facts["cuda_driver"].get("path") or ""
    if kmod and libv and kmod != libv:
        # reported here, judged by kernel_module (the module loaded vs the user-space driver)
        res["module_matches_library"] = False
        res["compat_library"] = "/compat/" in libcuda
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
        fx.fail(
            "driver_version",
            f"driver {version} is older than {need}, the minimum for CUDA {major}",
            f"update the NVIDIA driver to >= {need}: the nvidia_driver role with "
            f"gpu_stack_nvidia_driver_version (zypper install {_driver_install(facts)}), then reboot",
        )
    api_major = api // 1000 if api else None
    if api_major is not None and major is not None and major.isdigit() and api_major < int(major):
        res["status"] = "fail"
        fx.fail(
            "driver_version",
            f"the driver supports CUDA {cuda_version_str(api)}, "
            f"TensorFlow needs CUDA {expected['cuda_version']}",
            f"update the NVIDIA driver to >= {need} (the nvidia_driver role)",
        )
    cmp = ">=" if ok else "<"
    res["summary"] = f"driver {version} ({source}) {cmp} {need} needed by CUDA {major}"
    if api:
        res["summary"] += f"; driver API CUDA {cuda_version_str(api)}"
    return res


def userspace_driver(facts: dict[str, Any]) -> tuple[str | None, str | None]:
    """(version, source) of the user-space driver: the version in libcuda's or libnvidia-ml's file name."""
    if facts.get("libcuda_file_version"):
        return facts["libcuda_file_version"], "libcuda.so file name"
    if facts.get("libnvml_file_version"):
        return facts["libnvml_file_version"], "libnvidia-ml.so file name"
    return None, None


def check_kernel_module(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """The nvidia module loaded, its version equal to the user-space driver (no update without reboot)."""
    k = facts["kernel"]
    version = k.get("proc_version") or k.get("sys_version")
    loaded = bool(version) or "nvidia" in k["modules"]
    user, user_source = userspace_driver(facts)
    libcuda = facts["cuda_driver"].get("path") or ""
    res: dict[str, Any] = {
        "status": "ok",
        "loaded": loaded,
        "version": version,
        "source": "/proc/driver/nvidia/version"
        if k.get("proc_version")
        else ("/sys/module/nvidia/version" if version else None),
        "flavour": k.get("flavour"),
        "userspace_version": user,
        "userspace_source": user_source,
        "uvm_loaded": "nvidia_uvm" in k["modules"],
        "modules": sorted(m for m in k["modules"] if m != "nouveau"),
        "driver_packages": _driver(facts),  # what the fixes name
    }
    if not loaded:
        if gpu["found"]:
            res["status"] = "fail"
            res["summary"] = "the nvidia kernel module is not loaded"
            why = " (Secure Boot is on: an unsigned module is refused)" if k.get("secure_boot") else ""
            fx.fail(
                "kernel_module",
                f"an NVIDIA GPU is present but the nvidia kernel module is not loaded{why}",
                "modprobe nvidia nvidia_uvm; if it fails, `dmesg | grep -iE 'nvrm|nvidia'` says why: "
                f"the kmp must match the running kernel (`rpm -q {_driver(facts)['kmp']}` against "
                "`uname -r`); after a kmp install, reboot",
            )
        else:
            res["status"] = "skip"
            res["summary"] = "not loaded (no NVIDIA GPU)"
        return res
    res["summary"] = f"nvidia {version or '?'} loaded ({k.get('flavour') or 'flavour unknown'})"
    if user:
        res["summary"] += f"; user-space driver {user} ({user_source})"
    if version and user and version != user:
        if "/compat/" in libcuda:
            res["status"] = "warn"
            fx.warn(
                "kernel_module",
                f"libcuda {user} from {libcuda} runs on kernel module {version} (CUDA forward compatibility)",
                "fine on datacenter GPUs; elsewhere remove cuda-compat and update the driver",
            )
        else:
            res["status"] = "fail"
            fx.fail(
                "kernel_module",
                f"the loaded nvidia kernel module is {version} but the user-space driver is "
                f"{user} ({user_source}): the driver was updated without a reboot",
                "reboot (or stop every CUDA program and nvidia-persistenced, then "
                "rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe nvidia nvidia_uvm)",
            )
    if gpu["found"] and not res["uvm_loaded"] and "/dev/nvidia-uvm" not in facts["dev_nodes"]:
        res["status"] = "warn" if res["status"] == "ok" else res["status"]
        fx.warn(
            "kernel_module",
            "nvidia_uvm is not loaded and /dev/nvidia-uvm is missing: CUDA programs fail "
            "until it is (CUDA loads it through nvidia-modprobe when that is installed)",
            "modprobe nvidia_uvm",
        )
    return res


def check_nouveau(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """nouveau must not hold the GPU, and should be blacklisted on a host with an NVIDIA GPU."""
    k = facts["kernel"]
    loaded = "nouveau" in k["modules"]
    blacklist = k.get("nouveau_blacklist") or []
    res: dict[str, Any] = {
        "status": "ok",
        "loaded": loaded,
        "blacklisted": bool(blacklist),
        "blacklist": blacklist,
    }
    if not k.get("modules_readable"):
        res["status"] = "skip"
        res["summary"] = "/proc/modules is not readable"
        return res
    if not gpu["found"]:
        res["status"] = "skip"
        res["summary"] = "no NVIDIA GPU" + ("; nouveau is loaded" if loaded else "")
        return res
    if loaded:
        res["status"] = "fail"
        res["summary"] = "nouveau is loaded"
        fx.fail(
            "nouveau",
            "nouveau (the kernel's own NVIDIA driver) is loaded: it holds the GPU and the nvidia "
            "module cannot bind it",
            NOUVEAU_FIX,
        )
    elif not blacklist:
        res["status"] = "warn"
        res["summary"] = "nouveau not loaded, but not blacklisted"
        fx.warn("nouveau", "nouveau is not blacklisted: it can claim the GPU at the next boot", NOUVEAU_FIX)
    else:
        res["summary"] = f"nouveau not loaded; blacklisted ({blacklist[0]})"
    return res


def _signed_fix(facts: dict[str, Any]) -> str:
    """G07 has a prebuilt Secure-Boot-signed kmp; any other module needs its key enrolled (MOK)."""
    d = _driver(facts)
    enroll = "then reboot and confirm the key in MokManager"
    if d["generation"] == "G07":
        return (
            f"install the Secure-Boot-signed kmp {DEFAULT_KMP['G07']} (the nvidia_driver role's default); "
            "with DKMS (nvidia-open-driver-G07) enroll its key: mokutil --import /var/lib/dkms/mok.pub, "
            + enroll
        )
    return f"enroll the key {d['kmp']} is signed with (mokutil --import CERTIFICATE), {enroll}"


def check_secure_boot(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """Secure Boot state, and whether the nvidia module is signed (taint E: an unsigned module loaded)."""
    k = facts["kernel"]
    sb = k.get("secure_boot")
    loaded = bool(k.get("proc_version") or k.get("sys_version") or "nvidia" in k["modules"])
    taint = k.get("taint") or ""
    res: dict[str, Any] = {
        "status": "ok",
        "enabled": sb,
        "source": k.get("secure_boot_source"),
        "module_signer": k.get("module_signer"),
        "module_taint": taint or None,
        "module_unsigned": "E" in taint if taint else None,
    }
    state = {True: "on", False: "off", None: "unknown (no EFI variables, mokutil missing)"}[sb]
    res["summary"] = f"Secure Boot {state}" + (f" ({res['source']})" if res["source"] else "")
    if res["module_signer"]:
        res["summary"] += f"; nvidia module signed by {res['module_signer']}"
    elif facts["kernel"].get("modinfo_rc") == 0:
        res["summary"] += "; nvidia module on disk carries no signature"
    if not gpu["found"]:
        res["status"] = "skip" if sb is None else "ok"
        return res
    if sb and not loaded:
        res["status"] = "fail"
        fx.fail(
            "secure_boot",
            "Secure Boot is on and the nvidia module is not loaded: the kernel refuses a module "
            "without a trusted signature",
            _signed_fix(facts),
        )
    elif loaded and "E" in taint:
        res["status"] = "warn"
        fx.warn(
            "secure_boot",
            "the loaded nvidia module is unsigned (kernel taint E): with Secure Boot on it would be refused",
            _signed_fix(facts),
        )
    return res


def check_persistenced(facts: dict[str, Any], gpu: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """nvidia-persistenced (or NVML persistence mode) keeps the driver initialised between CUDA programs."""
    k = facts["kernel"]
    pids = k.get("persistenced_pids") or []
    modes = [g.get("persistence_mode") for g in facts["nvml"].get("gpus") or []]
    res: dict[str, Any] = {
        "status": "ok",
        "running": bool(pids),
        "pids": pids,
        "installed": k.get("persistenced_installed"),
        "persistence_mode": modes,
    }
    if not gpu["found"]:
        res["status"] = "skip"
        res["summary"] = "no NVIDIA GPU"
        return res
    if pids:
        res["summary"] = f"nvidia-persistenced running (pid {', '.join(map(str, pids))})"
    elif modes and all(modes):
        res["summary"] = "persistence mode on (NVML), no daemon"
    else:
        res["status"] = "warn"
        res["summary"] = "nvidia-persistenced not running; persistence mode off"
        install = "" if k.get("persistenced_installed") else "zypper install nvidia-persistenced && "
        fx.warn(
            "persistenced",
            "nvidia-persistenced is not running and persistence mode is off: the driver "
            "tears the GPU down after each CUDA program (slow starts; NVIDIA recommends it for compute)",
            f"{install}systemctl enable --now nvidia-persistenced",
        )
    return res

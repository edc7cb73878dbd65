"""Unit tests of the doctor's newer checks: the kernel module and its version, nouveau, Secure Boot,
nvidia-persistenced, the CUDA mode (system or pip), cross-major aliases, the RPM that owns a missing
library, the GPU's compute capability against TensorFlow's build, deviceQuery, dcgmi diag and Xid errors.

Scripted hosts come from test_gpu_doctor (the same fake probes); the parsers read the real tools' formats
(fixtures/doctor/README.md names each origin).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpu_stack_validation import nvml
from test_gpu_doctor import (
    GPU_KERNEL_FILES,
    L12,
    doctor,
    failures,
    fixture,
    gd,
    gpu_host,
    sandbox_host,
    tf_ok,
)

# --------------------------------------------------------------------------------------------------
# Parsers


def test_parse_proc_modules() -> None:
    mods = gd.parse_proc_modules(fixture("proc_modules_nvidia.txt"))
    assert {"nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"} <= set(mods)
    assert mods["nvidia"]["state"] == "Live" and mods["nvidia"]["taint"] == "O"
    assert mods["video"]["taint"] == ""


def test_driver_flavour_from_proc_version() -> None:
    assert gd.parse_proc_driver_flavour(fixture("proc_driver_version.txt")) == "open"
    text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.144.03  Mon Dec 30 17:44:08 UTC 2024\n"
    assert gd.parse_proc_driver_flavour(text) == "proprietary"
    assert gd.parse_proc_driver_version(text) == "550.144.03"
    assert gd.parse_proc_driver_flavour("") is None


def test_nouveau_blacklists() -> None:
    files = {
        "/usr/lib/modprobe.d/50-nvidia-default.conf": "# keep nouveau away\nblacklist nouveau\n",
        "/etc/modprobe.d/60-x.conf": "install nouveau /bin/false\noptions nvidia NVreg_X=1\n",
        "/etc/modprobe.d/10-other.conf": "blacklist nouveaux\n",
    }
    assert gd.modprobe_blacklists(files, "nouveau") == [
        "/etc/modprobe.d/60-x.conf: install nouveau /bin/false",
        "/usr/lib/modprobe.d/50-nvidia-default.conf: blacklist nouveau",
    ]
    assert gd.cmdline_blacklists("BOOT_IMAGE=/vmlinuz rd.driver.blacklist=nouveau,foo quiet", "nouveau") == [
        "rd.driver.blacklist=nouveau,foo"
    ]
    assert gd.cmdline_blacklists("quiet splash", "nouveau") == []


def test_secure_boot_state() -> None:
    assert gd.parse_mokutil_sb_state(fixture("mokutil_sb_enabled.txt")) is True
    assert gd.parse_mokutil_sb_state("SecureBoot disabled\n") is False
    assert gd.parse_mokutil_sb_state("EFI variables are not supported on this system\n") is None
    assert gd.parse_secure_boot_efivar(b"\x06\x00\x00\x00\x01") is True
    assert gd.parse_secure_boot_efivar(b"\x06\x00\x00\x00\x00") is False
    assert gd.parse_secure_boot_efivar(None) is None


def test_parse_device_query() -> None:
    ok = gd.parse_device_query(fixture("device_query_h100_pass.txt"))
    assert ok == {
        "result": "PASS",
        "device_count": 1,
        "error_code": None,
        "error": None,
        "driver_version": "13.0",
        "runtime_version": "12.9",
        "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}],
    }
    bad = gd.parse_device_query(fixture("device_query_insufficient_driver.txt"))
    assert (bad["result"], bad["error_code"], bad["device_count"]) == ("FAIL", 35, 0)
    assert bad["error"] == "CUDA driver version is insufficient for CUDA runtime version"


def test_parse_dcgmi_diag() -> None:
    ok = gd.parse_dcgmi_diag(fixture("dcgmi_diag_r1_pass.txt"))
    assert len(ok["tests"]) == 9 and not ok["failed"] and not ok["warned"]
    assert ok["tests"][0] == {
        "category": "Deployment",
        "test": "Denylist",
        "status": "Pass",
        "result": "Pass",
    }
    bad = gd.parse_dcgmi_diag(fixture("dcgmi_diag_r1_fail.txt"))
    assert [t["test"] for t in bad["failed"]] == ["Page Retirement/Row Remap"]
    assert [t["test"] for t in bad["warned"]] == ["Persistence Mode"]


def test_parse_xid() -> None:
    events = gd.parse_xid(fixture("dmesg_xid.txt"))
    assert [(e["pci"], e["xid"], e["hardware"]) for e in events] == [
        ("0000:18:00", 13, False),
        ("0000:2a:00", 79, True),
    ]
    assert events[1]["message"].endswith("GPU has fallen off the bus.")


def test_parse_rpm_verify() -> None:
    assert gd.parse_rpm_verify(fixture("rpm_verify_libcublas_missing.txt")) == [
        {"flags": "missing", "path": f"{L12}/libcublas.so.12.5.3.2"}
    ]
    assert gd.parse_rpm_verify("S.5....T.  c /etc/ld.so.conf.d/000_cuda.conf\n") == [
        {"flags": "S.5....T.", "path": "/etc/ld.so.conf.d/000_cuda.conf"}
    ]


@pytest.mark.parametrize(
    ("cc", "sass", "ptx", "supported"),
    [
        ("8.6", ["sm_80"], [], True),  # binary code of the same major runs on a later minor
        ("8.9", ["sm_80", "sm_89"], [], True),
        ("9.0", [], ["compute_90"], True),  # PTX only: JIT-compiled on first use
        ("10.0", [], ["compute_90"], True),
        ("5.2", [], [], False),  # the article's GTX 960 (Maxwell) is not in TensorFlow 2.20's build
        (None, None, None, None),
    ],
)
def test_compute_capability_support(cc: str | None, sass: Any, ptx: Any, supported: bool | None) -> None:
    arches = json.loads(fixture("tf_build_info_2_20.json"))["cuda_compute_capabilities"]
    got = gd.compute_capability_support(cc, arches)
    assert (got["sass"], got["ptx"], got["supported"]) == (sass, ptx, supported)
    assert gd.compute_capability_support("9.0", ["sm_90a"])["sass"] == ["sm_90a"]
    assert gd.compute_capability_support("9.1", ["sm_90a"])["supported"] is False


def test_read_soname_of_real_elf_and_not_elf(tmp_path: Path) -> None:
    libc = gd.probe_dlopen("libc.so.6")["path"]
    assert gd.read_soname(libc) == "libc.so.6"
    text = tmp_path / "libfake.so.1"
    text.write_text("not ELF", encoding="utf-8")
    assert gd.read_soname(str(text)) is None and gd.read_soname(str(tmp_path / "absent")) is None
    assert gd.file_major("libcufft.so.10.9.0.58") == "10" and gd.file_major("libfoo.so") is None


# --------------------------------------------------------------------------------------------------
# Kernel side


def test_gpu_without_kernel_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host()
    for path in ("/proc/driver/nvidia/version", "/proc/modules"):
        host.files.pop(path)
    host.files["/proc/modules"] = "video 73728 0 - Live 0xffffffffc0d1a000\n"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "kernel_module")
    assert fail["message"] == "an NVIDIA GPU is present but the nvidia kernel module is not loaded"
    assert fail["fix"].startswith("modprobe nvidia nvidia_uvm;") and "uname -r" in fail["fix"]


# A machine on the G06 driver (580, the last branch for Maxwell to Volta), package names of NVIDIA's
# graphics repository; the version is the scripted host's driver
G06_RPMS = {
    "nvidia-driver-G06-kmp-default": "580.159.04-1",
    "nvidia-compute-G06": "580.159.04-1",
    "nvidia-compute-utils-G06": "580.159.04-1",
}


def test_fixes_name_the_installed_driver_generation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host(rpm_installed=dict(G06_RPMS), tools={"mokutil": (0, fixture("mokutil_sb_enabled.txt"))})
    host.files.pop("/proc/driver/nvidia/version")
    host.files["/proc/modules"] = "video 73728 0 - Live 0xffffffffc0d1a000\n"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "kernel_module")
    assert "rpm -q nvidia-driver-G06-kmp-default" in fail["fix"] and "G07" not in fail["fix"]
    packages = report["checks"]["kernel_module"]["driver_packages"]
    assert (packages["generation"], packages["source"]) == ("G06", "installed RPMs")
    (sb,) = failures(report, "secure_boot")
    assert sb["fix"].startswith("enroll the key nvidia-driver-G06-kmp-default is signed with (mokutil")
    # no driver RPM at all: generation G07, the default for every GPU from Turing on
    assert gd.driver_packages([]) == {
        "source": "generation G07 (no NVIDIA driver RPM installed)",
        "generation": "G07",
        "kmp": "nvidia-open-driver-G07-signed-cuda-kmp-default",
        "compute": "nvidia-compute-G07",
        "utils": "nvidia-compute-utils-G07",
        "installed": [],
    }
    assert gd.driver_packages(sorted(G06_RPMS))["compute"] == "nvidia-compute-G06"


def test_secure_boot_blocks_an_unsigned_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host(tools={"mokutil": (0, fixture("mokutil_sb_enabled.txt")), "modinfo": (0, "\n")})
    host.files.pop("/proc/driver/nvidia/version")
    host.files["/proc/modules"] = "video 73728 0 - Live 0xffffffffc0d1a000\n"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    sb = report["checks"]["secure_boot"]
    assert sb["enabled"] is True and sb["source"] == "mokutil --sb-state"
    assert "nvidia module on disk carries no signature" in sb["summary"]
    (fail,) = failures(report, "secure_boot")
    assert "Secure Boot is on and the nvidia module is not loaded" in fail["message"]
    assert (
        "nvidia-open-driver-G07-signed-cuda-kmp-default" in fail["fix"] and "mokutil --import" in fail["fix"]
    )
    assert failures(report, "kernel_module")[0]["message"].endswith(
        "(Secure Boot is on: an unsigned module is refused)"
    )


def test_signed_module_and_unsigned_taint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host(
        tools={"modinfo": (0, "SUSE Linux Enterprise Secure Boot Signkey\n"), "dmesg": (0, "boot\n")}
    )
    rc, report = doctor(monkeypatch, capsys, host)
    assert (
        rc == 0
        and "signed by SUSE Linux Enterprise Secure Boot Signkey"
        in report["checks"]["secure_boot"]["summary"]
    )
    host = gpu_host()
    host.files["/sys/module/nvidia/taint"] = "POE\n"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0 and report["checks"]["secure_boot"]["module_unsigned"] is True
    assert [w["check"] for w in report["warnings"]].count("secure_boot") == 1


def test_nouveau_loaded_on_a_gpu_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host()
    host.files["/proc/modules"] += "nouveau 2510848 0 - Live 0xffffffffc1400000\n"
    host.files.pop("/usr/lib/modprobe.d/50-nvidia-default.conf")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "nouveau")
    assert "nouveau (the kernel's own NVIDIA driver) is loaded" in fail["message"]
    assert fail["fix"].startswith("echo 'blacklist nouveau' > /etc/modprobe.d/60-blacklist-nouveau.conf")
    # not loaded but not blacklisted: a warning with the same fix
    host.files["/proc/modules"] = fixture("proc_modules_nvidia.txt")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0 and report["checks"]["nouveau"]["status"] == "warn"


def test_persistenced_missing_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host()
    host.files.pop("/proc/4242/comm")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0
    (warn,) = [w for w in report["warnings"] if w["check"] == "persistenced"]
    assert warn["fix"] == "zypper install nvidia-persistenced && systemctl enable --now nvidia-persistenced"
    host.nvml["gpus"][0]["persistence_mode"] = True
    rc, report = doctor(monkeypatch, capsys, host)
    assert report["checks"]["persistenced"]["summary"] == "persistence mode on (NVML), no daemon"


def test_sandbox_skips_the_gpu_only_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, sandbox_host())
    assert rc == 0
    for name in ("kernel_module", "persistenced", "compute_capability", "device_query", "dcgm"):
        assert report["checks"][name]["status"] == "skip", name


# --------------------------------------------------------------------------------------------------
# Libraries: deleted file, cross-major alias, CUDA mode


def test_deleted_library_names_the_rpm_and_the_reinstall(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """libcublas.so.12.5.3.2 deleted: the soname link dangles; rpm -qf names its package, rpm -V the file."""
    host = gpu_host(tf=None)
    link, real = f"{L12}/libcublas.so.12", f"{L12}/libcublas.so.12.5.3.2"
    host.files.pop(link)
    host.links[link] = real
    del host.loadable["libcublas.so.12"]
    host.rpm_owner[link] = "libcublas-12-5"
    host.rpm_installed["libcublas-12-5"] = "12.5.3.2-1"
    host.rpm_verify["libcublas-12-5"] = fixture("rpm_verify_libcublas_missing.txt")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "libraries")
    assert fail["message"] == (
        f"libcublas.so.12: {link} points to a deleted file ({real}) (rpm -V libcublas-12-5: missing {real})"
    )
    assert fail["fix"] == f"zypper install -f libcublas-12-5 (the RPM that owns {link})"
    row = next(r for r in report["checks"]["libraries"]["libraries"] if r["soname"] == "libcublas.so.12")
    assert row["owners"] == {link: "libcublas-12-5"} and row["rpm_verify"][0]["flags"] == "missing"


def test_cross_major_alias_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """libcufft.so.11 -> libcufft.so.10.9.0.58 (SONAME libcufft.so.10): it loads, but it is not the ABI."""
    host = gpu_host(tf=None)
    link, other = f"{L12}/libcufft.so.11", f"{L12}/libcufft.so.10.9.0.58"
    host.files[other] = ""
    host.links[link] = other
    host.rpm_installed["libcufft-12-5"] = "11.2.3.61-1"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "libraries")
    assert fail["message"].startswith(
        f"libcufft.so.11: resolves across majors: {link} -> {other} (SONAME libcufft.so.10)"
    )
    assert (
        fail["fix"]
        == f"rm {link} && zypper install -f libcufft-12-5 && ldconfig (remove the alias, install the "
        "library of the right major)"
    )
    row = next(r for r in report["checks"]["libraries"]["libraries"] if r["soname"] == "libcufft.so.11")
    assert row["status"] == "alias" and row["dlopen_ok"] is True


def _pip_host(**changes: Any) -> Any:
    tf = tf_ok()
    site = "/opt/ml-venv/lib/python3.11/site-packages/nvidia"
    tf["wheel_libs"] = {
        s: f"{site}/{s.split('.')[0][3:]}/lib/{s}" for s in [*gd.DEFAULT_SONAMES["12"], "libcudnn.so.9"]
    }
    tf["nvidia_requires"] = ['nvidia-cublas-cu12==12.5.3.2; extra == "and-cuda"']
    ld = fixture("ldconfig_plain.txt")
    files = {"/dev/nvidia0": "", **GPU_KERNEL_FILES, **{p: "" for p in tf["wheel_libs"].values()}}
    files["/opt/ml-venv/gpu-stack-venv.json"] = json.dumps({"cuda_mode": "pip"})
    loadable = {**gd.__dict__["parse_ldconfig"](ld), **{p: p for p in tf["wheel_libs"].values()}}
    loadable = {k: (v[0] if isinstance(v, list) else v) for k, v in loadable.items()}
    host = gpu_host(ldconfig=ld, loadable=loadable, tf=tf, files=files)
    for key, value in changes.items():
        setattr(host, key, value)
    return host, site


def test_pip_mode_from_the_stamp_checks_the_wheels_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host, site = _pip_host()
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0, report["failures"]
    mode = report["checks"]["cuda_mode"]
    assert (report["cuda_mode"], mode["source"]) == ("pip", "ml_venv stamp /opt/ml-venv/gpu-stack-venv.json")
    # a wheel missing fails with the exact pip command (the pin from TensorFlow's and-cuda extra)
    lib = f"{site}/cublas/lib/libcublas.so.12"
    host.files.pop(lib)
    host.tf["wheel_libs"].pop("libcublas.so.12")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "libraries")
    assert fail["message"] == "libcublas.so.12: not in /opt/ml-venv (site-packages/nvidia/*/lib)"
    assert fail["fix"].startswith(
        "/opt/ml-venv/bin/pip install --force-reinstall 'nvidia-cublas-cu12==12.5.3.2'"
    )


def test_pip_mode_cpu_only_tensorflow_is_reinstalled_with_its_cuda_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In pip mode TensorFlow's CUDA is NVIDIA's wheels, which tensorflow[and-cuda] pins: the fix says so."""
    host, _site = _pip_host()
    host.tf["build_info"] = {**host.tf["build_info"], "is_cuda_build": False}
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "tensorflow")
    assert fail["fix"].endswith(
        "-m pip install 'tensorflow[and-cuda]==2.20.0' (or converge the ml_venv role again)"
    )


def test_pip_mode_wheel_of_another_major(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host, site = _pip_host()
    lib = f"{site}/cufft/lib/libcufft.so.11"
    host.elf[lib] = "libcufft.so.10"
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "libraries")
    assert "resolves across majors" in fail["message"] and "SONAME libcufft.so.10" in fail["message"]
    assert fail["fix"].startswith("pip install --force-reinstall nvidia-cufft-cu12")


def test_system_mode_stamp_ignores_wheels_and_pip_mode_ignores_the_system(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A system-library problem must not fail a pip-mode host, and a wheel problem not a system-mode one."""
    host, _site = _pip_host()
    assert "libcudart.so.12" not in host.ldconfig  # no system CUDA at all: fine in pip mode
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0
    host = gpu_host()
    host.files["/opt/ml-venv/gpu-stack-venv.json"] = json.dumps({"cuda_mode": "system"})
    host.tf["wheel_libs"] = {
        "libcudart.so.12": "/opt/ml-venv/lib/python3.11/site-packages/nvidia/x/lib/broken"
    }
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0 and report["cuda_mode"] == "system"
    rc, report = doctor(monkeypatch, capsys, gpu_host(), "--cuda-mode", "pip")
    assert rc == 1 and report["checks"]["cuda_mode"]["source"] == "--cuda-mode"
    assert all("not in /opt/ml-venv" in f["message"] for f in failures(report, "libraries"))


# --------------------------------------------------------------------------------------------------
# TensorFlow's build, deviceQuery, dcgmi, Xid


def test_gpu_older_than_tensorflows_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The article's GTX 960 (Maxwell, cc 5.2) against TensorFlow 2.20's build info, read at run time."""
    host = gpu_host()
    for gpus in (host.nvml["gpus"], host.cuda["devices"]):
        gpus[0].update(name="NVIDIA GeForce GTX 960", compute_capability="5.2")
    host.smi_csv = host.smi_csv.replace("NVIDIA H100 80GB HBM3", "NVIDIA GeForce GTX 960").replace(
        ", 9.0", ", 5.2"
    )
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "compute_capability")
    assert fail["message"] == (
        "NVIDIA GeForce GTX 960 has compute capability 5.2; TensorFlow 2.20.0 was built for sm_60, sm_70, "
        "sm_80, sm_89, compute_90: it has no kernels this GPU can run"
    )
    assert "TF_CUDA_COMPUTE_CAPABILITIES=5.2" in fail["fix"]
    cc = report["checks"]["compute_capability"]
    assert cc["tensorflow_arches"] == ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]


def test_device_query_pass_and_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "/usr/local/cuda-12.9/extras/demo_suite/deviceQuery"
    host = gpu_host(device_query=path, tools={"deviceQuery": (0, fixture("device_query_h100_pass.txt"))})
    rc, report = doctor(monkeypatch, capsys, host)
    dq = report["checks"]["device_query"]
    assert rc == 0 and dq["status"] == "ok" and dq["summary"].startswith("Result = PASS: 1 device(s)")
    host.tools["deviceQuery"] = (1, fixture("device_query_insufficient_driver.txt"))
    rc, report = doctor(monkeypatch, capsys, host)
    (fail,) = failures(report, "device_query")
    assert "cudaGetDeviceCount returned 35" in fail["message"] and "nvidia_driver role" in fail["fix"]
    rc, report = doctor(monkeypatch, capsys, gpu_host())
    assert "zypper install cuda-demo-suite-12-9" in report["checks"]["device_query"]["summary"]


def test_dcgmi_diag(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = gpu_host(tools={"dcgmi": (0, fixture("dcgmi_diag_r1_pass.txt")), "dmesg": (0, "boot\n")})
    rc, report = doctor(monkeypatch, capsys, host)
    assert (
        rc == 0 and report["checks"]["dcgm"]["summary"] == "dcgmi diag -r 1: 9/9 passed, 0 failed, 0 warned"
    )
    host.tools["dcgmi"] = (226, fixture("dcgmi_diag_r1_fail.txt"))
    rc, report = doctor(monkeypatch, capsys, host)
    (fail,) = failures(report, "dcgm")
    assert fail["message"] == "dcgmi diag -r 1: Deployment / Page Retirement/Row Remap: Fail"
    host.tools["dcgmi"] = (1, "Error: unable to establish a connection to the specified host: localhost\n")
    rc, report = doctor(monkeypatch, capsys, host)
    (warn,) = (w for w in report["warnings"] if w["check"] == "dcgm")
    assert rc == 0 and "systemctl start nvidia-dcgm" in warn["fix"]


def test_xid_in_the_kernel_log(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = gpu_host(tools={"dmesg": (0, fixture("dmesg_xid.txt"))})
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = failures(report, "xid")
    assert fail["message"].startswith("Xid 79 (GPU has fallen off the bus) on 0000:2a:00")
    assert "nvidia-smi -r" in fail["fix"]
    assert any(w["check"] == "xid" and w["message"].startswith("Xid 13") for w in report["warnings"])
    assert report["checks"]["xid"]["count"] == 2
    host.tools.pop("dmesg")
    rc, report = doctor(monkeypatch, capsys, host)
    assert report["checks"]["xid"]["status"] == "skip"


# --------------------------------------------------------------------------------------------------
# NVML through nvidia-ml-py (a fake binding with pynvml's names)


class _Err(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {9: "Driver Not Loaded", 12: "NVML Shared Library Not Found"}.get(self.value, "Unknown Error")


class FakeNvml:
    """pynvml's calls the package uses, over two different GPUs."""

    NVML_ERROR_LIBRARY_NOT_FOUND = 12

    def __init__(self, init_error: int | None = None) -> None:
        self.init_error = init_error
        self.gpus = [
            {"name": "NVIDIA RTX A4000", "bus": "00000000:3B:00.0", "uuid": "GPU-aaaa", "util": 5},
            {"name": "NVIDIA H100 80GB HBM3", "bus": "00000000:18:00.0", "uuid": "GPU-bbbb", "util": 97},
        ]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise _Err(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.gpus[i]

    def nvmlDeviceGetHandleByPciBusId(self, bus: str) -> dict[str, Any]:
        for g in self.gpus:
            if nvml.normalize_bus_id(g["bus"]) == nvml.normalize_bus_id(bus):
                return g
        raise _Err(6)

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> str:
        return h["name"]

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:
        return h["uuid"]

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> Any:
        return type("Pci", (), {"busId": h["bus"].encode()})()

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        return type("Mem", (), {"total": 81559 << 20, "used": 1024 << 20})()

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> tuple[int, int]:
        return (9, 0) if "H100" in h["name"] else (8, 6)

    def nvmlDeviceGetPersistenceMode(self, h: dict[str, Any]) -> int:
        raise _Err(3)  # Not Supported: reported as None

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return type("Util", (), {"gpu": h["util"]})()


def test_nvml_probe_through_the_binding() -> None:
    out = nvml.probe(FakeNvml())
    assert out["loaded"] and out["driver_version"] == "580.159.04" and out["cuda_driver_version"] == 13000
    assert [
        (g["name"], g["pci_bus_id"], g["compute_capability"], g["persistence_mode"]) for g in out["gpus"]
    ] == [
        ("NVIDIA RTX A4000", "0000:3b:00.0", "8.6", None),
        ("NVIDIA H100 80GB HBM3", "0000:18:00.0", "9.0", None),
    ]
    assert nvml.probe(FakeNvml(init_error=9))["init_error"] == "Driver Not Loaded"
    assert "cannot be loaded" in nvml.probe(FakeNvml(init_error=12))["error"]


def test_sampler_picks_the_timed_gpu_by_bus_id() -> None:
    """A mixed host: CUDA device 0 in PCI order is the H100 at 18:00.0, not NVML's index 0."""
    fake = FakeNvml()
    gpus = nvml.probe(fake)["gpus"]
    bus, how = nvml.bus_id_of_visible_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "0"})
    assert (bus, how) == ("0000:18:00.0", "CUDA device 0 in PCI bus order")
    assert nvml.bus_id_of_visible_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"})[0] == "0000:3b:00.0"
    assert nvml.bus_id_of_visible_gpu(gpus, {"CUDA_VISIBLE_DEVICES": "5"})[0] is None
    sampler = nvml.Sampler(bus, interval=0.01, nv=fake)
    assert sampler.available and sampler.gpu_name == "NVIDIA H100 80GB HBM3"
    assert sampler.read() == (97.0, 1024.0)
    sampler.start()
    import time

    time.sleep(0.05)
    stats = sampler.stop()
    sampler.close()
    assert stats["nvml_samples"] >= 1 and stats["gpu_util_peak_pct"] == 97.0
    assert nvml.Sampler("0000:99:00.0", nv=fake).reason.startswith("no NVML device 0000:99:00.0")
    assert nvml.Sampler(nv=FakeNvml(init_error=9)).reason == "nvmlInit failed: Driver Not Loaded"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("00000000:18:00.0", "0000:18:00.0"),
        ("18:00.0", "0000:18:00.0"),
        (b"0000:3B:00.0", "0000:3b:00.0"),
        ("junk", None),
        (None, None),
    ],
)
def test_normalize_bus_id(raw: Any, norm: str | None) -> None:
    assert nvml.normalize_bus_id(raw) == norm

"""The GPU doctor against real failures planted in a provisioned sandbox host: each test breaks the stack
the way it breaks on real machines, asserts the doctor's failure and its exact fix, applies that fix and
asserts that the doctor passes again (so each fault is undone, and the fix is proven, before the next).

The host is provisioned once for the module (playbooks/provision.yml without the ML virtualenv: these faults
need no TensorFlow; the CPU-only TensorFlow build is planted in test_validate_playbook.py, whose host has
one). The doctor runs inside the host from the package's source, with the host's Python, real probes and
the pins the gpu_validation role would write. Also here: the doctor's real ctypes probes on the stub
libraries of the sandbox repository, unpacked (this needs the built sandbox, so it runs after it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, converged_snapshot, host_name_for, host_python

from sandbox.sandboxctl import DEFAULT_LAYOUT, SandboxHost

SRC = REPO_ROOT / "validation" / "src" / "gpu_stack_validation"
L12 = "/usr/local/cuda-12.5/targets/x86_64-linux/lib"
CUDA_LINKED = "/usr/local/cuda/targets/x86_64-linux/lib"
IN_HOST = "/opt/doctor-under-test"


def role_pins() -> dict[str, Any]:
    """pins.json as the gpu_validation role renders it from pins.yml."""
    v = yaml.safe_load((REPO_ROOT / "pins.yml").read_text())
    major = v["gpu_stack_cuda_version"].split(".")[0]
    return {
        "tensorflow_version": v["gpu_stack_tensorflow_version"],
        "cuda_version": v["gpu_stack_cuda_version"],
        "cudnn_version": v["gpu_stack_cudnn_version"],
        "python_version": v["gpu_stack_python_version"],
        "driver_version": v["gpu_stack_nvidia_driver_version"],
        "sonames": v["gpu_stack_tensorflow_sonames"][major],
        "sonames_by_cuda_major": v["gpu_stack_tensorflow_sonames"],
        "min_driver": v["gpu_stack_cuda_min_driver"],
    }


@pytest.fixture(scope="module")
def host(sandbox_ready: Path) -> Iterator[SandboxHost]:
    """A host from the converged Leap 15.6 snapshot (repository, driver, CUDA 12.5, cuDNN, links), the doctor
    copied in from the sources."""
    with SandboxHost(host_name_for("doctor-faults"), snapshot=converged_snapshot("leap156")) as h:
        dest = Path(h.root) / IN_HOST.lstrip("/")
        shutil.copytree(SRC, dest / "gpu_stack_validation", ignore=shutil.ignore_patterns("__pycache__"))
        (dest / "pins.json").write_text(json.dumps(role_pins()), encoding="utf-8")
        yield h


def doctor(h: SandboxHost) -> tuple[int, dict[str, Any]]:
    res = h.run(
        "env",
        f"PYTHONPATH={IN_HOST}",
        host_python(h),
        "-m",
        "gpu_stack_validation.doctor.cli",
        "--json",
        "--skip-tensorflow",
        "--pins",
        f"{IN_HOST}/pins.json",
        "--cuda-mode",
        "system",
    )
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def lib_failures(report: dict[str, Any]) -> list[dict[str, str]]:
    return [f for f in report["failures"] if f["check"] == "libraries"]


def sh(h: SandboxHost, script: str) -> None:
    res = h.run("sh", "-ec", script)
    assert res.returncode == 0, f"{script}: {res.stdout}{res.stderr}"


def test_provisioned_host_passes(host: SandboxHost) -> None:
    rc, report = doctor(host)
    assert rc == 0, report["failures"]
    assert report["checks"]["libraries"]["summary"].startswith("8/8 libraries load from the system")


def test_deleted_library_file_names_its_rpm(host: SandboxHost) -> None:
    """The issue's own case: libcublas.so.12.5.3.2 deleted. Not 'not installed', not cuda-libraries-12-5."""
    sh(host, f"rm {L12}/libcublas.so.12.5.3.2")
    rc, report = doctor(host)
    assert rc == 1
    (fail,) = lib_failures(report)
    # the loader's cache lists the link under /usr/local/cuda (the alternatives link the cuda role sets)
    link = f"{CUDA_LINKED}/libcublas.so.12"
    assert fail["message"] == (
        f"libcublas.so.12: {link} points to a deleted file ({L12}/libcublas.so.12.5.3.2) "
        f"(rpm -V libcublas-12-5: missing {L12}/libcublas.so.12.5.3.2)"
    )
    assert fail["fix"] == f"zypper install -f libcublas-12-5 (the RPM that owns {link})"
    sh(host, "zypper --non-interactive --quiet install -f libcublas-12-5")
    assert doctor(host)[0] == 0


def test_removed_soname_link(host: SandboxHost) -> None:
    """The soname link removed, the loader's cache not yet rebuilt: the file is there, the link is not."""
    sh(host, f"rm {L12}/libcufft.so.11")
    rc, report = doctor(host)
    assert rc == 1
    (fail,) = lib_failures(report)
    assert fail["message"] == (
        f"libcufft.so.11: {L12}/libcufft.so.11 (the soname link) is gone, "
        f"libcufft.so.11.2.3.61 is there (rpm -V libcufft-12-5: missing {L12}/libcufft.so.11)"
    )
    assert (
        fail["fix"]
        == "zypper install -f libcufft-12-5 (or ldconfig, which makes the link from the file's SONAME)"
    )
    sh(host, "zypper --non-interactive --quiet install -f libcufft-12-5")
    assert doctor(host)[0] == 0


def test_alias_across_majors(host: SandboxHost, tmp_path: Path) -> None:
    """libcufft 11 gone and libcufft.so.11 pointing at a libcufft 10 (SONAME libcufft.so.10): it loads, but
    it is another ABI; the doctor finds it from the ELF SONAME, whoever made the link."""
    src = tmp_path / "empty.c"
    src.write_text("int cufftGetVersion(int *v) { *v = 10902; return 0; }\n", encoding="utf-8")
    lib10 = "libcufft.so.10.9.0.58"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libcufft.so.10", "-o", str(tmp_path / lib10), str(src)],
        check=True,
    )
    shutil.copy(tmp_path / lib10, Path(host.root) / L12.lstrip("/") / lib10)
    sh(host, f"rpm -e --nodeps libcufft-12-5 && ln -s {lib10} {L12}/libcufft.so.11 && ldconfig")
    rc, report = doctor(host)
    assert rc == 1
    (fail,) = lib_failures(report)
    # reached through /usr/local/cuda/lib64 and the cuda_links role's /usr/lib64 link; the alias is one link
    assert fail["message"].startswith("libcufft.so.11: resolves across majors: ")
    assert f"-> {L12}/{lib10} (SONAME libcufft.so.10)" in fail["message"]
    assert fail["fix"] == (
        f"rm {L12}/libcufft.so.11 && zypper install libcufft-12-5 && ldconfig (remove the alias, "
        "install the library of the right major)"
    )
    sh(host, f"rm {L12}/libcufft.so.11 && zypper --non-interactive --quiet install libcufft-12-5 && ldconfig")
    sh(host, f"rm {L12}/{lib10} {L12}/libcufft.so.10 && ldconfig")
    assert doctor(host)[0] == 0


def userspace_driver(root: Path) -> str:
    """The driver version in the file name of the host's libcuda (what the nvidia_driver role installed)."""
    name = os.path.basename(os.path.realpath(root / "usr/lib64/libcuda.so.1"))
    assert name.startswith("libcuda.so.") and name.count(".") >= 4, name
    return name.removeprefix("libcuda.so.")


def test_kernel_module_older_than_the_userspace_driver(host: SandboxHost) -> None:
    """The state after a driver update without a reboot: the loaded module (/proc/driver/nvidia/version,
    planted on a tmpfs over the host's /proc/driver) is 550.144.03, the user-space driver the installed
    one."""
    user = userspace_driver(Path(host.root))
    assert user != "550.144.03"
    target = Path(host.root) / "proc" / "driver"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        (target / "nvidia").mkdir()
        (target / "nvidia" / "version").write_text(
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.144.03  Release Build  "
            "(dvs-builder@U16-I1-N07-12-3)  Mon Dec 30 17:10:12 UTC 2024\nGCC version:  gcc version 7.5.0\n",
            encoding="utf-8",
        )
        rc, report = doctor(host)
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert rc == 1
    (fail,) = [f for f in report["failures"] if f["check"] == "kernel_module"]
    assert fail["message"] == (
        f"the loaded nvidia kernel module is 550.144.03 but the user-space driver is {user} "
        "(libcuda.so file name): the driver was updated without a reboot"
    )
    assert fail["fix"].startswith("reboot")
    assert report["checks"]["kernel_module"]["flavour"] == "open"
    assert doctor(host)[0] == 0


STUB_REPO = DEFAULT_LAYOUT.repos / "cuda" / "opensuse15" / "x86_64"
STUB_RPMS = (
    "cuda-cudart-12-5-12.5.82",
    "cuda-cudart-devel-12-5-12.5.82",
    "libcublas-12-5-12.5.3.2",
    "libcufft-12-5-11.2.3.61",
    "libcurand-12-5-10.3.6.82",
    "libcusolver-12-5-11.6.3.83",
    "libcusparse-12-5-12.5.1.3",
    "libcudnn9-cuda-12-9.3.0.75",
)


def stub_driver_rpms() -> tuple[str, list[Path]]:
    """(driver version, its nvidia-compute and nvidia-compute-utils RPMs): the oldest driver the stub repo
    carries, whatever its generation (G06 or G07)."""
    found = {}
    for path in STUB_REPO.glob("nvidia-compute-G0[0-9]-*.rpm"):
        version = path.name.split("-")[3]
        utils = STUB_REPO / path.name.replace("nvidia-compute-", "nvidia-compute-utils-", 1)
        if utils.is_file():
            found[tuple(int(p) for p in version.split("."))] = (version, [path, utils])
    assert found, f"no nvidia-compute RPM in {STUB_REPO}"
    return found[min(found)]


def test_real_probes_on_the_sandbox_stub_libraries(sandbox_ready: Path, tmp_path: Path) -> None:
    """The doctor's real ctypes probes, on this controller, against the stub ELF libraries of the sandbox
    repo, unpacked with rpm2archive (not installed): cuInit, the runtime and cuDNN versions, the SONAMEs."""
    driver, driver_rpms = stub_driver_rpms()
    for path in [STUB_REPO / f"{rpm}-1.x86_64.rpm" for rpm in STUB_RPMS] + driver_rpms:
        with path.open("rb") as fh:
            tar = subprocess.run(["rpm2archive", "-"], stdin=fh, capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
            archive.extractall(tmp_path, filter="tar")
    root, cuda = tmp_path / "usr", tmp_path / "usr/local/cuda-12.5"
    env = dict(
        os.environ,
        PYTHONPATH=str(SRC.parent),
        PATH=f"{root}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
        LD_LIBRARY_PATH=f"{root}/lib64:{cuda}/targets/x86_64-linux/lib",
    )
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps(role_pins()), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpu_stack_validation.doctor.cli",
            "--json",
            "--skip-tensorflow",
            "--cuda-home",
            str(cuda),
            "--cuda-mode",
            "system",
            "--pins",
            str(pins),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["failures"]
    checks = report["checks"]
    assert checks["gpu"]["nvidia_smi"]["error_kind"] == "no_driver"
    assert checks["cuda_driver"]["cuinit_rc"] == 100 and checks["cuda_driver"]["driver_api_version"] == 12050
    assert checks["driver_version"]["version"] == driver
    assert (
        checks["cuda_runtime"]["runtime_version"] == 12050
        and checks["cuda_runtime"]["header_version"] == 12050
    )
    assert checks["cudnn"]["runtime_version"] == 90300 and checks["cudnn"]["built_for_cuda"] == "12.5"
    libs = checks["libraries"]["libraries"]
    assert {r["status"] for r in libs} <= {"ok", "env"}
    assert all(r["resolved"][0]["elf_soname"] == r["soname"] for r in libs)  # the stubs' real DT_SONAMEs

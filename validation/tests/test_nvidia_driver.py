"""nvidia_driver: one kernel module package of the expected generation, its user space at exactly the kmp's
driver version (SUSE's recipe, whatever the pin), SUSE's zypper locks, and truthful reboot bookkeeping.

Expected values from the inventory (`stack_vars`): nvidia_driver_route, nvidia_driver_force,
nvidia_driver_generation, nvidia_driver_version (gpu_stack_nvidia_driver_version), else the role's defaults
and platform vars. Skipped where the role installs no driver (route none, or no GPU and not forced).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from stack_defaults import role_defaults

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nvidia_driver"
DEFAULTS = role_defaults("nvidia_driver")
LOCKS = "__nvidia_driver_zypper_locks"
VARS_FILES = {"opensuse-leap": "openSUSE_Leap", "opensuse-tumbleweed": "openSUSE_Tumbleweed", "sles": "SLES"}


def _has_nvidia_gpu(host) -> bool:
    out = host.run("cat /sys/bus/pci/devices/*/vendor /dev/null 2>/dev/null").stdout
    return "0x10de" in out.split()


@pytest.fixture(scope="module")
def driver(host, stack_vars) -> dict:
    route = stack_vars.get("nvidia_driver_route", DEFAULTS["nvidia_driver_route"])
    force = str(stack_vars.get("nvidia_driver_force", False)).lower() == "true"
    if route == "none":
        pytest.skip("nvidia_driver_route is none")
    if not force and not _has_nvidia_gpu(host):
        pytest.skip("no NVIDIA GPU and nvidia_driver_force is false: the role skips the driver")
    pin = stack_vars.get("gpu_stack_nvidia_driver_version", "")
    version = str(stack_vars.get("nvidia_driver_version", pin))
    # Without a GPU the forced driver is G07 (SUSE's current generation), unless set
    generation = stack_vars.get("nvidia_driver_generation", "auto")
    if generation == "auto" and not _has_nvidia_gpu(host):
        generation = "G07"
    info = host.system_info
    name = VARS_FILES.get(info.distribution, info.distribution)
    major = (info.release or "").split(".")[0]
    platform = {}
    for candidate in (f"{name}-{major}.yml", f"{name}.yml"):
        if (ROLE / "vars" / candidate).exists():
            platform = yaml.safe_load((ROLE / "vars" / candidate).read_text())
            break
    query = "rpm -qa --qf '%{NAME} %{VERSION}\\n' 'nvidia*kmp*'"
    kmps = [line.split() for line in host.check_output(query).splitlines() if line.strip()]
    locks = stack_vars.get("nvidia_driver_zypper_locks") or (platform.get(LOCKS) or {}).get(generation, [])
    return {"version": version, "generation": generation, "kmps": kmps, "locks": locks,
            "marker": stack_vars.get("nvidia_driver_reboot_marker", DEFAULTS["nvidia_driver_reboot_marker"])}


def _rpm_version(host, name: str) -> str:
    res = host.run(f"rpm -q --qf '%{{VERSION}}\\n' {name}")
    assert res.rc == 0, f"{name} is not installed"
    return res.stdout.split()[-1]


def test_exactly_one_kernel_module_package(driver) -> None:
    assert len(driver["kmps"]) == 1, f"kmp packages installed: {driver['kmps']}"


def test_kmp_of_expected_generation(driver) -> None:
    name = driver["kmps"][0][0]
    if driver["generation"] != "auto":
        assert f"-{driver['generation']}-" in name, f"{name} is not a {driver['generation']} kmp"


def test_kmp_at_pinned_driver(driver) -> None:
    if not driver["version"]:
        pytest.skip("no driver pin: the newest kmp of the generation")
    # kmp versions are <driver>_k<kernel>, e.g. 595.71.05_k6.12.0_160000.29
    assert driver["kmps"][0][1].split("_")[0] == driver["version"], driver["kmps"]


def test_userspace_at_kmp_version(host, driver) -> None:
    """SUSE's recipe: the user space at exactly the installed kmp's driver version, whatever the pin."""
    name, version = driver["kmps"][0]
    kmp_driver = version.split("_")[0]
    generation = "G07" if "-G07-" in name else "G06"
    userspace = [f"nvidia-compute-{generation}", f"nvidia-compute-utils-{generation}"]
    if "-signed-cuda-kmp" in name:
        userspace.append("nvidia-persistenced")
    versions = {pkg: _rpm_version(host, pkg) for pkg in userspace}
    assert all(v == kmp_driver for v in versions.values()), f"kmp {kmp_driver}, user space {versions}"


def test_zypper_locks(host, driver) -> None:
    if not driver["locks"]:
        pytest.skip("no locks for this platform")
    locked = host.check_output("zypper --non-interactive --xmlout locks")
    missing = [name for name in driver["locks"] if f"<name>{name}</name>" not in locked]
    assert missing == [], f"not locked: {missing}"


def test_nvidia_smi_installed(host, driver) -> None:
    assert host.exists("nvidia-smi"), "nvidia-smi (nvidia-compute-utils) is not on PATH"


def test_driver_packages_verify(host, driver) -> None:
    names = host.check_output("rpm -qa 'nvidia*'").split()
    assert names, "no nvidia packages installed"
    res = host.run("rpm -V " + " ".join(names))
    assert res.rc == 0 and not res.stdout.strip(), res.stdout


def test_reboot_marker_is_current(host, driver) -> None:
    marker = host.file(driver["marker"])
    if not marker.exists:
        pytest.skip("no reboot pending")
    fields = [line.split("=", 1) for line in marker.content_string.splitlines() if "=" in line]
    boot_ids = [v for k, v in fields if k == "boot_id"]
    kmps = sorted(v for k, v in fields if k == "kmp")
    current = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    # a marker from an earlier boot is removed by the role's next run
    assert boot_ids == [current], f"stale marker: {boot_ids} vs {current}"
    query = "rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n' 'nvidia*kmp*'"
    installed = sorted(host.check_output(query).split())
    assert kmps == installed


@pytest.mark.gpu
def test_nvidia_smi_lists_gpu(host, driver) -> None:
    res = host.run("nvidia-smi -L")
    assert res.rc == 0 and "GPU 0" in res.stdout, res.stderr or res.stdout


@pytest.mark.gpu
def test_loaded_module_matches_package(host, driver) -> None:
    loaded = host.file("/sys/module/nvidia/version").content_string.strip()
    installed = driver["kmps"][0][1].split("_")[0]
    assert loaded == installed, "reboot to load the installed module"

"""preflight: the host is a platform NVIDIA publishes CUDA for, has room under /usr/local, and the pins fit
TensorFlow's tested builds. Read-only checks, run with the same pure functions the role uses
(plugins/filter/gpu_stack_preflight.py); expected values from the inventory (`stack_vars`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from stack_defaults import role_defaults

ROLE = Path(__file__).resolve().parents[2] / "roles" / "preflight"
PLUGINS = ROLE.parents[1] / "plugins"
_FILTERS = PLUGINS / "filter" / "gpu_stack_preflight.py"
_SPEC = importlib.util.spec_from_file_location("preflight", _FILTERS)
pf = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pf)
DEFAULTS = role_defaults("preflight")
PLATFORMS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__preflight_supported_platforms"]
# os-release ID -> the distribution name Ansible reports (what the role's table uses)
ANSIBLE_DISTRIBUTION = {"opensuse-leap": "openSUSE Leap", "opensuse-tumbleweed": "openSUSE Tumbleweed",
                        "sles": "SLES"}


def _input(stack_vars: dict, name: str):
    """An input as the role resolves it: inventory, else the default (`{{ gpu_stack_x }}` followed)."""
    value = stack_vars.get(name, DEFAULTS[name])
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        value = stack_vars[value.strip("{} ")]
    return value


def test_platform_is_supported(host) -> None:
    info = host.system_info
    dist = ANSIBLE_DISTRIBUTION.get(info.distribution, info.distribution)
    major = (info.release or "").split(".")[0]
    arch = host.check_output("uname -m")
    res = pf.gpu_stack_platform_match(PLATFORMS, dist, major, arch)
    assert res["supported"], f"{res['reason']}; supported: {res['supported_list']}"


def test_free_space_under_install_path(host, stack_vars) -> None:
    path = _input(stack_vars, "preflight_free_space_path")
    mount = pf.gpu_stack_df_mount(host.check_output(f"df -P -k {path}"))
    assert mount, f"df could not measure {path}"
    minimum = float(_input(stack_vars, "preflight_min_free_gb")) * 1024**3
    free = mount["size_available"] / 1024**3
    assert mount["size_available"] >= minimum, f"{free:.1f} GiB free on {mount['mount']}"


def test_pins_fit_tensorflow_build_table(stack_vars) -> None:
    if str(_input(stack_vars, "preflight_version_override")).lower() == "true":
        pytest.skip("gpu_stack_version_override is true: pins outside the table were accepted on purpose")
    res = pf.gpu_stack_build_check(
        stack_vars["gpu_stack_tensorflow_build_table"], stack_vars["gpu_stack_tensorflow_version"],
        stack_vars["gpu_stack_cuda_version"], stack_vars["gpu_stack_cudnn_version"],
        stack_vars["gpu_stack_python_version"], stack_vars["gpu_stack_nvidia_driver_version"],
        stack_vars["gpu_stack_cuda_min_driver"])
    assert res["ok"], f"{res['problems']}; {res['fits']}"


@pytest.mark.gpu
def test_nvidia_gpu_on_pci_bus(host) -> None:
    out = host.check_output("cat /sys/bus/pci/devices/*/vendor /dev/null 2>/dev/null | sort -u")
    assert "0x10de" in out.split(), "no PCI device of vendor 10de (NVIDIA)"
    gpus = host.run("lspci -D -n -mm -d 10de:")
    if gpus.rc == 0:
        classes = [row["class_id"] for row in _lspci(gpus.stdout)]
        assert any(c.startswith("03") for c in classes), f"NVIDIA devices, no display controller: {classes}"


def _lspci(text: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location("pci_gpus", PLUGINS / "modules" / "gpu_stack_pci_gpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_lspci_mm(text, numeric=True)

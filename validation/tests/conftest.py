"""Shared fixtures for the testinfra suite.

Run against the sandbox (chroot backend), a Vagrant VM or real hosts (ansible/ssh backend):
    pytest validation/tests --connection=chroot --hosts=/path/to/sandbox/root
    pytest validation/tests --hosts='ansible://all' --ansible-inventory=inventory/hosts.yml
Expected values come from the same inventory the roles were converged with (`stack_vars`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO / "inventory" / "sandbox.yml"
# The stack pins the roles default to (an inventory may override each)
PINS = REPO / "pins.yml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack-inventory",
        default=os.environ.get("GPU_STACK_INVENTORY"),
        help="inventory whose variables give the expected values "
        "(default: --ansible-inventory, else inventory/sandbox.yml)",
    )


def _ansible_inventory_cmd() -> str:
    # Prefer the ansible-inventory next to the running interpreter (the controller venv)
    here = Path(sys.executable).parent / "ansible-inventory"
    return str(here) if here.exists() else (shutil.which("ansible-inventory") or "ansible-inventory")


@functools.cache
def _inventory_hostvars(inventory: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    out = subprocess.run(
        [_ansible_inventory_cmd(), "-i", inventory, "--list"],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ansible-inventory -i {inventory} failed: {out.stderr.strip()}")
    return json.loads(out.stdout).get("_meta", {}).get("hostvars", {})


def _resolve_host_vars(inventory: str, name: str) -> dict:
    hostvars = _inventory_hostvars(inventory)
    if name in hostvars:
        return hostvars[name]
    # The chroot backend knows a host by its root path: match it to ansible_host
    real = os.path.realpath(name)
    for hv in hostvars.values():
        target = hv.get("ansible_host")
        if target and os.path.realpath(str(target)) == real:
            return hv
    raise LookupError(f"host {name!r} is not in inventory {inventory}: pass --stack-inventory")


@pytest.fixture(scope="module")
def stack_vars(host, request: pytest.FixtureRequest) -> dict:
    """Variables of the host under test for expected values: the stack pins of pins.yml (what the roles
    default to), overridden by the inventory's variables (group_vars merged), as the roles see them."""
    inventory = (
        request.config.getoption("--stack-inventory")
        or request.config.getoption("--ansible-inventory", default=None)
        or str(DEFAULT_INVENTORY)
    )
    return {**_pins(), **_resolve_host_vars(inventory, host.backend.get_hostname())}


@functools.cache
def _pins() -> dict:
    return yaml.safe_load(PINS.read_text(encoding="utf-8"))


def _xy(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


@pytest.fixture(scope="module")
def platform_python(host) -> str:
    """X.Y of the Python the platform's virtualenv uses when the pins leave it to the platform: Leap and
    SLE 15 keep python3 at 3.6, so their venv takes python311; Leap 16, SLE 16 and Tumbleweed use their
    system Python 3.13."""
    release = host.file("/etc/os-release").content_string
    version_id = re.search(r'^VERSION_ID="?([^"\n]+)"?', release, re.M)
    return "3.11" if version_id and version_id.group(1).startswith("15") else "3.13"


@pytest.fixture(scope="module")
def cuda_mode(host, stack_vars) -> str:
    """Where TensorFlow's CUDA must come from on this host: the mode the inventory sets, else (auto) derived
    from the host's repositories as the cuda role should: the system toolkit when zypper offers the pinned
    cuda-toolkit-X-Y at the pinned release, TensorFlow's pip wheels otherwise."""
    mode = str(stack_vars.get("cuda_mode", stack_vars.get("gpu_stack_cuda_mode", "auto")))
    if mode in ("system", "pip"):
        return mode
    version = str(stack_vars.get("cuda_version", stack_vars["gpu_stack_cuda_version"]))
    release = str(stack_vars.get("cuda_release", stack_vars["gpu_stack_cuda_release"]))
    package = stack_vars.get("cuda_package", f"cuda-toolkit-{version.replace('.', '-')}")
    out = host.run(f"zypper --non-interactive --xmlout search --match-exact --details {package}")
    editions = re.findall(r'edition="([^"]+)"', out.stdout)
    return "system" if any(e.startswith(release) for e in editions) else "pip"


@pytest.fixture(scope="module")
def system_cuda_only(cuda_mode) -> None:
    """Skip tests of the system CUDA tree on a host where TensorFlow uses its pip CUDA wheels."""
    if cuda_mode != "system":
        pytest.skip("TensorFlow uses its pip CUDA wheels here: nothing goes into the system CUDA tree")


@pytest.fixture(scope="module")
def host_python(host, stack_vars) -> str:
    """A Python on the host that runs code: the ML virtualenv's, else a versioned interpreter. Leap and
    SLE 15's system python3 (3.6) is not one to rely on."""
    candidates = [f"{stack_vars.get('gpu_stack_venv_path', '/opt/gpu-stack/venv')}/bin/python",
                  "/usr/bin/python3.13", "/usr/bin/python3.12", "/usr/bin/python3.11", "python3"]
    for python in candidates:
        if host.run(f"{python} -c pass").rc == 0:
            return python
    pytest.fail(f"no working Python on the host among {candidates}")

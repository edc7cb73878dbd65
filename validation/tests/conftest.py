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
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO / "inventory" / "sandbox.yml"


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
    """Inventory variables (group_vars merged) of the host under test, for expected values."""
    inventory = (
        request.config.getoption("--stack-inventory")
        or request.config.getoption("--ansible-inventory", default=None)
        or str(DEFAULT_INVENTORY)
    )
    return _resolve_host_vars(inventory, host.backend.get_hostname())

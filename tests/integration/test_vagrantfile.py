"""`vagrant validate` for every box/provider combination, CPU-only and with GPU passthrough.

No VM can boot here; this checks the Vagrantfile against the real vagrant and vagrant-libvirt
(Debian's packages) and VirtualBox's option schema (through a VBoxManage stand-in when absent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")


def _validate(box: str, provider: str, pci: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GPU_STACK_BOX=box, GPU_STACK_GPU_PCI=pci, VAGRANT_DEFAULT_PROVIDER=provider)
    if shutil.which("VBoxManage") is None:
        env["PATH"] = f"{REPO / 'tests/vagrant/bin'}:{env['PATH']}"
    return subprocess.run(["vagrant", "validate"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("pci", ["", "0000:65:00.0"], ids=["cpu", "gpu-passthrough"])
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
@pytest.mark.parametrize("box", ["leap", "tumbleweed"])
def test_vagrantfile_validates(box: str, provider: str, pci: str) -> None:
    out = _validate(box, provider, pci)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "validated successfully" in out.stdout


@pytest.mark.parametrize(("var", "value", "message"), [
    ("GPU_STACK_BOX", "ubuntu", "GPU_STACK_BOX=ubuntu is not known"),
    ("GPU_STACK_GPU_PCI", "65:00", "is not a PCI address"),
])
def test_vagrantfile_rejects_bad_input(var: str, value: str, message: str) -> None:
    env = dict(os.environ, **{var: value})
    out = subprocess.run(["vagrant", "validate"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr

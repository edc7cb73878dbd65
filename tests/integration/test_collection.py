"""The collection as a user gets it: built, installed into a collections path of its own, and run by FQCN
from a directory outside this repository, with an inventory of its own.

The build (`ansible-galaxy collection build`) and the install happen here, into a temporary directory;
`ansible-playbook gpu_stack.opensuse.provision` then converges a fresh host and a second run must report
changed=0. Nothing of the checkout reaches that run: no ansible.cfg (ANSIBLE_CONFIG unset, the working
directory is the temporary one), no inventory/group_vars, and the collections path is the temporary one,
so the roles' defaults come from the installed collection's pins.yml. community.general comes from the
`ansible` package in the controller's virtualenv (Ansible also scans its Python path for collections).

provision.yml, not site.yml: it converges every role except gpu_validation (ml_venv's TensorFlow install
from the wheelhouse included), which the validate-playbook scenario covers and which would add minutes of
TensorFlow runs on these 2 cores without testing anything the collection changes.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, VENV_BIN, failure_text, recap

from sandbox.sandboxctl import SandboxHost

PINS = yaml.safe_load((REPO_ROOT / "pins.yml").read_text())
CUDNN_DIR = REPO_ROOT / ".cache/sandbox/repos/cudnn"
SANDBOX_KEYS = REPO_ROOT / ".cache/sandbox/repos/KEYS.json"

# The environment of a user's shell: the controller virtualenv on PATH and nothing of this checkout.
GALAXY = str(VENV_BIN / "ansible-galaxy")
USER_ENV = {"PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
            "ANSIBLE_NOCOLOR": "1"}


def cudnn_archive() -> Path:
    """The cuDNN archive a user downloads from NVIDIA: here the sandbox's fixture of the pinned release."""
    name = f"cudnn-linux-x86_64-{PINS['gpu_stack_cudnn_version']}_cuda12-archive.tar.xz"
    path = CUDNN_DIR / name
    assert path.is_file(), f"{path} missing: build the sandbox (make sandbox)"
    return path


def user_inventory(host: SandboxHost) -> dict:
    """What a user must set (the host, the cuDNN archive), then the sandbox's stand-ins for what a real
    workstation reaches on the internet or has itself."""
    archive = cudnn_archive()
    sandbox_key = json.loads(SANDBOX_KEYS.read_text())["nvidia"]
    user = {
        "cudnn_archive_src": str(archive),
        "cudnn_archive_sha256": archive.with_name(archive.name + ".sha256").read_text().split()[0],
    }
    stand_ins = {
        # the host is a chroot of the controller, not an ssh host
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(host.root),
        "ansible_become": False,
        # NVIDIA's CUDA repository and its signing key: the stub repository, signed with the sandbox's
        # test key (bound into every host at /srv/sandbox-repos)
        "cuda_repo_mirror": "file:/srv/sandbox-repos/cuda",
        "cuda_repo_gpgkey": "/srv/sandbox-repos/keys/nvidia.asc",
        "cuda_repo_gpgkey_fingerprint": sandbox_key["fingerprint"],
        # no GPU in the controller's /sys: force the driver so its packages are still installed
        "nvidia_driver_force": True,
        # PyPI: the wheelhouse of the pinned wheels, bound read-only into every host
        "ml_venv_wheelhouse": "/srv/sandbox-wheelhouse",
        # the host shares the controller's (CI) disk: the role's 10 GiB minimum would fail a busy one
        "preflight_min_free_gb": 2,
    }
    return {"workstations": {"hosts": {host.name: {**stand_ins, **user}}}}


def run(cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built from this checkout and installed into a temporary collections path."""
    work = tmp_path_factory.mktemp("collection")
    build = run([GALAXY, "collection", "build", "--output-path", str(work), str(REPO_ROOT)],
                cwd=work, env=USER_ENV, timeout=300)
    assert build.returncode == 0, build.stdout
    (tarball,) = work.glob("gpu_stack-opensuse-*.tar.gz")
    collections = work / "collections"
    install = run([GALAXY, "collection", "install", str(tarball), "-p", str(collections)],
                  cwd=work, env={**USER_ENV, "ANSIBLE_COLLECTIONS_PATH": str(collections)}, timeout=300)
    assert install.returncode == 0, install.stdout
    assert (collections / "ansible_collections/gpu_stack/opensuse/pins.yml").is_file()
    return collections


def test_installed_collection_converges_a_fresh_host_by_fqcn(installed: Path, sandbox_ready: Path,
                                                             tmp_path: Path) -> None:
    env = {**USER_ENV, "ANSIBLE_COLLECTIONS_PATH": str(installed)}
    # Ansible finds gpu_stack.opensuse in the temporary path only, not in this checkout
    listed = run([GALAXY, "collection", "list", "gpu_stack.opensuse", "--format", "json"],
                 cwd=tmp_path, env=env, timeout=300)
    assert listed.returncode == 0, listed.stdout
    assert list(json.loads(listed.stdout)) == [str(installed / "ansible_collections")], listed.stdout
    with SandboxHost(f"collection-{uuid.uuid4().hex[:6]}", platform="leap156") as host:
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(yaml.safe_dump(user_inventory(host), sort_keys=False))
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "gpu_stack.opensuse.provision"]
        first = run(cmd, cwd=tmp_path, env=env, timeout=3600)
        assert first.returncode == 0, failure_text(first.stdout, host.name) or first.stdout[-4000:]
        assert recap(first.stdout, host.name)["changed"] > 0
        second = run(cmd, cwd=tmp_path, env=env, timeout=3600)
        assert second.returncode == 0, failure_text(second.stdout, host.name) or second.stdout[-4000:]
        assert recap(second.stdout, host.name)["changed"] == 0, second.stdout[-6000:]

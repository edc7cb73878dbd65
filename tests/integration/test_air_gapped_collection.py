"""An air-gapped site as a user meets it: the collection built and installed into a collections path of
its own, the offline bundle written by tools/offline_bundle.py, and `ansible-playbook
gpu_stack.opensuse.provision` run by FQCN from a directory outside this repository, with an inventory of
its own, the bundle's offline.yml and pip pointed at a dead index.

Nothing of the checkout reaches that run: no ansible.cfg (ANSIBLE_CONFIG unset, the working directory is
the temporary one), no inventory/group_vars, and the collections path is the temporary one, so the roles'
defaults come from the installed collection's pins.yml and the rest from the bundle. community.general
comes from the `ansible` package in the controller's virtualenv (Ansible also scans its Python path for
collections). The fresh host converges from the bundle alone (wheelhouse, cuDNN archive, NVIDIA's
local-installer RPM), and a second run reports changed=0.

provision.yml, not site.yml: it converges every role except gpu_validation (ml_venv's TensorFlow install
from the bundle's wheelhouse included), which the validate-playbook scenario covers and which would add
minutes of TensorFlow runs on these 2 cores without testing anything the collection or the bundle change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, VENV_BIN, failure_text, recap

from sandbox.sandboxctl import SandboxHost

pytestmark = pytest.mark.sandbox

REPOS = REPO_ROOT / ".cache/sandbox/repos"
SANDBOX_KEYS = REPOS / "KEYS.json"
CUDNN = REPOS / "cudnn/cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz"
INSTALLER = REPOS / "local-installer/cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm"
# Nothing listens on the discard port of the loopback interface: connections are refused at once
DEAD_INDEX = "http://127.0.0.1:9/simple"

# The environment of a user's shell: the controller virtualenv on PATH and nothing of this checkout.
GALAXY = str(VENV_BIN / "ansible-galaxy")
USER_ENV = {"PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
            "ANSIBLE_NOCOLOR": "1"}


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


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, sandbox_ready: Path) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "gpu-stack-offline"
    res = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools/offline_bundle.py"), "--out", str(out),
         "--cudnn-archive", str(CUDNN), "--cuda-local-installer", str(INSTALLER),
         "--python", "3.11", "--cuda-mode", "system", "--wheels-from", str(REPO_ROOT / ".cache/wheelhouse")],
        capture_output=True, text=True, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_bundle_is_complete(bundle: Path) -> None:
    sums = (bundle / "SHA256SUMS").read_text()
    for name in (CUDNN.name, INSTALLER.name, "wheelhouse/wheelhouse.json"):
        assert name in sums, name
    manifest = json.loads((bundle / "wheelhouse" / "wheelhouse.json").read_text())
    assert {t["python"] for t in manifest["targets"]} == {"3.11"}
    assert any(f.startswith("tensorflow-2.21.0-cp311") for f in manifest["files"])


def user_inventory(host: SandboxHost) -> dict:
    """The host, then the sandbox's stand-ins for what a real workstation has itself: everything else the
    roles need comes from the bundle's offline.yml."""
    sandbox_key = json.loads(SANDBOX_KEYS.read_text())["nvidia"]
    stand_ins = {
        # the host is a chroot of the controller, not an ssh host
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(host.root),
        "ansible_become": False,
        # NVIDIA's signing key: the stub repositories are signed with the sandbox's test key
        "cuda_repo_gpgkey": "/srv/sandbox-repos/keys/nvidia.asc",
        "cuda_repo_gpgkey_fingerprint": sandbox_key["fingerprint"],
        # no GPU in the controller's /sys: force the driver so its packages are still installed
        "nvidia_driver_force": True,
        # the host shares the controller's (CI) disk: the role's 10 GiB minimum would fail a busy one
        "preflight_min_free_gb": 2,
        # PyPI is cut off: pip's index is a dead address
        "ml_venv_pip_environment": {"PIP_INDEX_URL": DEAD_INDEX, "PIP_RETRIES": "0"},
    }
    return {"workstations": {"hosts": {host.name: stand_ins}}}


def test_installed_collection_converges_an_air_gapped_host_from_the_bundle(
    installed: Path, bundle: Path, fresh_host: SandboxHost, tmp_path: Path
) -> None:
    env = {**USER_ENV, "ANSIBLE_COLLECTIONS_PATH": str(installed)}
    # Ansible finds gpu_stack.opensuse in the temporary path only, not in this checkout
    listed = run([GALAXY, "collection", "list", "gpu_stack.opensuse", "--format", "json"],
                 cwd=tmp_path, env=env, timeout=300)
    assert listed.returncode == 0, listed.stdout
    assert list(json.loads(listed.stdout)) == [str(installed / "ansible_collections")], listed.stdout
    host = fresh_host
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(user_inventory(host), sort_keys=False))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
           "--extra-vars", f"@{bundle / 'offline.yml'}", "gpu_stack.opensuse.provision"]
    first = run(cmd, cwd=tmp_path, env=env, timeout=3600)
    assert first.returncode == 0, failure_text(first.stdout, host.name) or first.stdout[-4000:]
    assert recap(first.stdout, host.name)["changed"] > 0
    code = "import tensorflow, numpy, h5py; print(tensorflow.__version__)"
    res = host.run("/opt/gpu-stack/venv/bin/python", "-c", code)
    assert res.returncode == 0 and res.stdout.strip() == "2.21.0", res.stderr[-2000:]
    # the CUDA repository is the local installer's, the driver its bundled release
    assert "cuda-opensuse15-12-5-local" in host.run("zypper", "--non-interactive", "repos").stdout
    assert host.run("rpm", "-q", "--qf", "%{VERSION}", "nvidia-compute-G06").stdout == "555.42.06"
    second = run(cmd, cwd=tmp_path, env=env, timeout=3600)
    assert second.returncode == 0, failure_text(second.stdout, host.name) or second.stdout[-4000:]
    assert recap(second.stdout, host.name)["changed"] == 0, second.stdout[-6000:]

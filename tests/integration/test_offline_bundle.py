"""An air-gapped install from the offline bundle alone: tools/offline_bundle.py writes the wheelhouse, the
cuDNN archive and NVIDIA's local-installer RPM; a fresh host whose package index is unreachable (pip
pointed at a dead address) converges the provision roles from it, and a second run changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, run_playbook

pytestmark = pytest.mark.sandbox

REPOS = REPO_ROOT / ".cache" / "sandbox" / "repos"
CUDNN = REPOS / "cudnn" / "cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz"
INSTALLER = REPOS / "local-installer" / "cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm"
DEAD_INDEX = "http://127.0.0.1:9/simple"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bundle") / "gpu-stack-offline"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tools" / "offline_bundle.py"),
            "--out",
            str(out),
            "--cudnn-archive",
            str(CUDNN),
            "--cuda-local-installer",
            str(INSTALLER),
            "--python",
            "3.11",
            "--cuda-mode",
            "system",
            "--wheels-from",
            str(REPO_ROOT / ".cache" / "wheelhouse"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_bundle_is_complete(bundle) -> None:
    sums = (bundle / "SHA256SUMS").read_text()
    for name in (CUDNN.name, INSTALLER.name, "wheelhouse/wheelhouse.json"):
        assert name in sums, name
    manifest = json.loads((bundle / "wheelhouse" / "wheelhouse.json").read_text())
    assert {t["python"] for t in manifest["targets"]} == {"3.11"}
    assert any(f.startswith("tensorflow-2.21.0-cp311") for f in manifest["files"])


def test_air_gapped_converge_from_the_bundle(fresh_host, bundle) -> None:
    cut_off = {"ml_venv_pip_environment": {"PIP_INDEX_URL": DEAD_INDEX, "PIP_RETRIES": "0"}}
    args = ["--extra-vars", f"@{bundle / 'offline.yml'}"]
    first = run_playbook(fresh_host, "playbooks/provision.yml", extra_vars=cut_off, args=args)
    assert first.returncode == 0, first.stdout[-4000:]
    code = "import tensorflow, numpy, h5py; print(tensorflow.__version__)"
    res = fresh_host.run("/opt/gpu-stack/venv/bin/python", "-c", code)
    assert res.returncode == 0 and res.stdout.strip() == "2.21.0", res.stderr[-2000:]
    # the CUDA repository is the local installer's, the driver its bundled release
    assert "cuda-opensuse15-12-5-local" in fresh_host.run("zypper", "--non-interactive", "repos").stdout
    assert fresh_host.run("rpm", "-q", "--qf", "%{VERSION}", "nvidia-compute-G06").stdout == "555.42.06"
    second = run_playbook(fresh_host, "playbooks/provision.yml", extra_vars=cut_off, args=args)
    assert second.returncode == 0 and " changed=0 " in second.stdout, second.stdout[-3000:]

"""Fault scenarios of the preflight, cuda_repo, nvidia_driver and cuda roles, each on a fresh sandbox host.

Each bad input stops the run with a message naming the problem and the fix, and nothing on the host
changed (installed RPMs and the file tree are as before):
1. unsupported OS (a Debian os-release),
2. a signing key whose fingerprint is not the expected one,
3. a local-installer RPM whose sha256 is not the given one,
4. TensorFlow/CUDA pins that are not a row of TensorFlow's build table.
5. An unreachable repository stops the run before any package is installed (the repository file and
   the key may be in place: they are what the run was asked to add).
"""

from __future__ import annotations

import pytest
from conftest import diff_snapshots, run_playbook, snapshot

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
TAGS = "preflight,cuda_repo,nvidia_driver,cuda"
SANDBOX_FINGERPRINT = "EAF843F3D788E462FC3AEFD791AD8E865D0297AF"
# NVIDIA's real CUDA key: a well-formed fingerprint that the sandbox key does not have
OTHER_FINGERPRINT = "610C 7B14 E068 A878 070D A4E9 9CD0 A493 D42D 0685"
DEBIAN_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""


def _flat(text: str) -> str:
    """Output with all whitespace runs collapsed (the YAML callback wraps long messages)."""
    return " ".join(text.split())


def _fails_saying(res, *messages: str) -> None:
    out = _flat(res.stdout)
    assert res.returncode != 0, res.stdout[-3000:]
    for message in messages:
        assert message in out, f"{message!r} not in output:\n{res.stdout[-3000:]}"


def test_unsupported_os(fresh_host) -> None:
    os_release = fresh_host.root / "etc" / "os-release"
    if os_release.is_symlink():
        os_release.unlink()
    os_release.write_text(DEBIAN_OS_RELEASE)
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS)
    _fails_saying(
        res,
        # Ansible reads the point release from /etc/debian_version: "Debian 12.x"
        "Unsupported platform: found Debian 12",
        "(x86_64, os_family Debian); Debian 12 is not a supported distribution.",
        "Supported: openSUSE Leap 15 (x86_64); openSUSE Leap 16 (x86_64, aarch64); openSUSE Tumbleweed "
        "(x86_64, aarch64); SLES 15 (x86_64, aarch64); SLES 16 (x86_64, aarch64).",
    )
    assert diff_snapshots(before, snapshot(fresh_host)) == []


def test_wrong_key_fingerprint(fresh_host) -> None:
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS,
                       extra_vars={"cuda_repo_gpgkey_fingerprint": OTHER_FINGERPRINT})
    _fails_saying(
        res,
        "Not trusting the CUDA repository signing key",
        "/srv/sandbox-repos/cuda/opensuse15/x86_64/5D0297AF.pub:",
        "does not match any key fingerprints",
        SANDBOX_FINGERPRINT,
        "Expected fingerprint 610C7B14E068A878070DA4E99CD0A493D42D0685 (cuda_repo_gpgkey_fingerprint).",
        "No repository was added and no package installed.",
    )
    assert diff_snapshots(before, snapshot(fresh_host)) == []


def test_local_installer_wrong_sha256(fresh_host) -> None:
    wrong = "0" * 64
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars={
        "cuda_repo_route": "local_installer", "cuda_repo_local_installer_sha256": wrong})
    _fails_saying(
        res,
        "sha256 mismatch for local installer /srv/sandbox-repos/local-installer/"
        "cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm (on the host):",
        f"expected {wrong} (cuda_repo_local_installer_sha256). Not installing it; nothing was changed.",
    )
    assert diff_snapshots(before, snapshot(fresh_host)) == []


@pytest.mark.parametrize(
    ("extra_vars", "messages"),
    [
        ({"gpu_stack_cuda_version": "12.3"},
         ["The pinned versions are not a build TensorFlow was tested with: "
          "CUDA 12.3 does not match TensorFlow 2.21 (built for CUDA 12.5).",
          "Versions that fit: TensorFlow 2.21 fits CUDA 12.5, cuDNN 9.3.x and Python 3.10-3.13.",
          "or set gpu_stack_version_override: true"]),
        ({"gpu_stack_tensorflow_version": "2.16.2"},
         ["CUDA 12.5 does not match TensorFlow 2.16 (built for CUDA 12.3); "
          "cuDNN 9.3.0.75 does not match TensorFlow 2.16 (built for cuDNN 8.9).",
          "Versions that fit: TensorFlow 2.16 fits CUDA 12.3, cuDNN 8.9.x and Python 3.9-3.12."]),
    ],
    ids=["cuda-12.3-for-tf-2.21", "tf-2.16-on-cuda-12.5"],
)
def test_incompatible_pins(fresh_host, extra_vars: dict, messages: list[str]) -> None:
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars=extra_vars)
    _fails_saying(res, *messages)
    assert diff_snapshots(before, snapshot(fresh_host)) == []


def test_unreachable_repository_stops_before_packages(fresh_host) -> None:
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars={
        "cuda_repo_baseurl": "file:/srv/sandbox-repos/cuda/no-such-dir"})
    _fails_saying(
        res,
        "Cannot refresh the CUDA repository cuda-opensuse15-x86_64",
        "(file:/srv/sandbox-repos/cuda/no-such-dir)",
        "Check the URL (cuda_repo_baseurl, cuda_repo_mirror)",
        "No package was installed.",
    )
    after = snapshot(fresh_host)
    added = set(after["rpm"]) - set(before["rpm"])
    # only the trusted key (rpm keeps keys as gpg-pubkey packages), no package from the repository
    assert all(p.startswith("gpg-pubkey-5d0297af-") for p in added), added
    assert set(before["rpm"]) <= set(after["rpm"])

"""Fault scenarios of the preflight, cuda_repo, nvidia_driver and cuda roles, each on its own fresh sandbox
host; one ansible-playbook run covers all of them at once (scenario_hosts).

Each bad input stops the run with a message naming the problem and the fix, and nothing on the host
changed (installed RPMs and the file tree are as before):
1. unsupported OS (a Debian os-release),
2. a signing key whose fingerprint is not the expected one (both named in plain hex), also when rpm
   already trusts that key,
3. a local-installer RPM whose sha256 is not the given one,
4. TensorFlow/CUDA pins that are not a row of TensorFlow's build table.
5. An unreachable repository stops the run before any package is installed (the repository file and
   the key may be in place: they are what the run was asked to add).
"""

from __future__ import annotations

import re

import pytest
from conftest import diff_snapshots, failure_text, run_playbook_on, scenario_hosts, snapshot

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
TAGS = "preflight,cuda_repo,nvidia_driver,cuda"
SANDBOX_FINGERPRINT = "EAF843F3D788E462FC3AEFD791AD8E865D0297AF"
# NVIDIA's real CUDA key: a well-formed fingerprint that the sandbox key does not have
OTHER_FINGERPRINT = "610C 7B14 E068 A878 070D A4E9 9CD0 A493 D42D 0685"
DEBIAN_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
ID=debian
HOME_URL="https://www.debian.org/"
"""


WRONG_SHA = "0" * 64
# Both fingerprints in plain hex, and the fix
WRONG_KEY = [
    "Not trusting the CUDA repository signing key /srv/sandbox-repos/keys/nvidia.asc: its fingerprint is "
    f"{SANDBOX_FINGERPRINT}",
    "but cuda_repo_gpgkey_fingerprint is 610C7B14E068A878070DA4E99CD0A493D42D0685. No repository was added "
    "and no package installed. Check NVIDIA's key out of band: if it is the key you expect, set "
    "cuda_repo_gpgkey_fingerprint to its fingerprint; otherwise fix cuda_repo_gpgkey.",
]
# case -> (platform, host vars, messages the failure must name, rpm -qa may gain only this prefix)
CASES = {
    "unsupported-os": (
        "leap160",
        {},
        [
            # Ansible reads the point release from /etc/debian_version: "Debian 13.x" under a trixie stand-in
            "Unsupported platform: found Debian 13",
            "(x86_64, os_family Debian); Debian 13 is not a supported distribution.",
            "Supported: openSUSE Leap 15 (x86_64); openSUSE Leap 16 (x86_64, aarch64); openSUSE Tumbleweed "
            "(x86_64, aarch64); SLES 15 (x86_64, aarch64); SLES 16 (x86_64, aarch64).",
        ],
        None,
    ),
    "wrong-key-fingerprint": (
        "leap156",
        {"cuda_repo_gpgkey_fingerprint": OTHER_FINGERPRINT},
        WRONG_KEY,
        None,
    ),
    # rpm already trusts the key (imported before the run): the same message, not rpm_key's
    "wrong-key-fingerprint-key-trusted": (
        "leap156",
        {"cuda_repo_gpgkey_fingerprint": OTHER_FINGERPRINT},
        WRONG_KEY,
        None,
    ),
    "local-installer-wrong-sha256": (
        "leap156",
        {"cuda_repo_route": "local_installer", "cuda_repo_local_installer_sha256": WRONG_SHA},
        [
            "sha256 mismatch for local installer /srv/sandbox-repos/local-installer/"
            "cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm (on the host):",
            f"expected {WRONG_SHA} (cuda_repo_local_installer_sha256).",
            "Not installing it; nothing was changed.",
        ],
        None,
    ),
    "cuda-12.3-for-tf-2.21": (
        "leap156",
        {"gpu_stack_cuda_version": "12.3"},
        [
            "The pinned versions are not a build TensorFlow was tested with: "
            "CUDA 12.3 does not match TensorFlow 2.21 (built for CUDA 12.5).",
            "Versions that fit: TensorFlow 2.21 fits CUDA 12.5, cuDNN 9.3.x and Python 3.10-3.13.",
            "or set gpu_stack_version_override: true",
        ],
        None,
    ),
    "tf-2.16-on-cuda-12.5": (
        "sles15",
        {"gpu_stack_tensorflow_version": "2.16.2"},
        [
            "CUDA 12.5 does not match TensorFlow 2.16 (built for CUDA 12.3); "
            "cuDNN 9.3.0.75 does not match TensorFlow 2.16 (built for cuDNN 8.9).",
            "Versions that fit: TensorFlow 2.16 fits CUDA 12.3, cuDNN 8.9.x and Python 3.9-3.12.",
        ],
        None,
    ),
    # An unreachable repository: the repository file and the key may be in place (the run was asked to
    # add them), but no package from it
    "unreachable-repository": (
        "leap156",
        {"cuda_repo_baseurl": "file:/srv/sandbox-repos/cuda/no-such-dir"},
        [
            "Cannot refresh the CUDA repository cuda-opensuse15-x86_64",
            "(file:/srv/sandbox-repos/cuda/no-such-dir)",
            "Check the URL (cuda_repo_baseurl, cuda_repo_mirror)",
            "No package was installed.",
        ],
        "gpg-pubkey-5d0297af-",
    ),
}


@pytest.fixture(scope="module")
def faults(sandbox_ready):
    cases = {case: (platform, host_vars) for case, (platform, host_vars, _m, _k) in CASES.items()}
    with scenario_hosts("fault", cases) as (inventory, hosts):
        os_release = hosts["unsupported-os"].root / "etc" / "os-release"
        if os_release.is_symlink():
            os_release.unlink()
        os_release.write_text(DEBIAN_OS_RELEASE)
        trusting = hosts["wrong-key-fingerprint-key-trusted"]
        trusted = trusting.run("rpm", "--import", "/srv/sandbox-repos/keys/nvidia.asc")
        assert trusted.returncode == 0, trusted.stderr
        before = {case: snapshot(host) for case, host in hosts.items()}
        res = run_playbook_on(inventory, ",".join(h.name for h in hosts.values()), PLAYBOOK, tags=TAGS)
        yield res, hosts, before


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_and_says_why(faults, case: str) -> None:
    res, hosts, before = faults
    host = hosts[case]
    assert re.search(rf"{re.escape(host.name)}\s+:.*failed=1", res.stdout), res.stdout[-3000:]
    failure = failure_text(res.stdout, host.name)
    for message in CASES[case][2]:
        assert message in failure, f"{case}: {message!r} not in {failure!r}"
    assert "frozenset" not in failure and "a valid file must be given" not in failure
    after = snapshot(host)
    allowed = CASES[case][3]
    if allowed is None:
        assert diff_snapshots(before[case], after) == [], case
    else:
        added = set(after["rpm"]) - set(before[case]["rpm"])
        assert all(p.startswith(allowed) for p in added), added
        assert set(before[case]["rpm"]) <= set(after["rpm"])

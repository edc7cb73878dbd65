"""Routes and modes of the preflight, cuda_repo, nvidia_driver and cuda roles on fresh sandbox hosts.

1. --check --diff on a fresh host succeeds and changes nothing (the package steps are skipped while the
   CUDA repository does not exist yet; see the cuda_repo README).
2. The original procedure's local-installer repository with the GFX driver route and nvidia_driver_reboot
   true: the run succeeds, refuses to reboot over the chroot connection and says so, tells that a reboot
   is required; a second run and a --check --diff run report changed=0.
3. gpu_stack_version_override turns the version mismatch into a warning.
"""

from __future__ import annotations

import re

import pytest
from conftest import diff_snapshots, run_playbook, snapshot

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
TAGS = "preflight,cuda_repo,nvidia_driver,cuda"
RECAP = re.compile(r"^\S+\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _recap(res) -> tuple[int, int, int]:
    """(changed, unreachable, failed) of the only host in the run."""
    found = RECAP.findall(res.stdout)
    assert len(found) == 1, res.stdout[-3000:]
    return tuple(int(n) for n in found[0])


def test_check_mode_on_fresh_host_changes_nothing(fresh_host) -> None:
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, check=True, diff=True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "the CUDA repository does not exist yet" in _flat(res.stdout)
    assert diff_snapshots(before, snapshot(fresh_host)) == []


def test_local_installer_and_gfx_routes(fresh_host) -> None:
    extra = {"cuda_repo_route": "local_installer", "nvidia_driver_route": "gfx_repo",
             "nvidia_driver_reboot": True}
    first = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars=extra)
    assert first.returncode == 0, first.stdout[-3000:]
    out = _flat(first.stdout)
    assert "nvidia_driver_reboot is true but" in out and "Not rebooting; reboot the machine yourself." in out
    assert "The NVIDIA kernel module package changed" in out

    # the graphics repository route installs its kmp and the user space at the kmp's version
    for name in ("cuda-repo-opensuse15-12-5-local", "nvidia-open-driver-G07-signed-kmp-default",
                 "nvidia-compute-G07", "cuda-toolkit-12-5"):
        assert fresh_host.run("rpm", "-q", name).returncode == 0, name
    repos = fresh_host.run("zypper", "--non-interactive", "repos").stdout
    assert "cuda-opensuse15-12-5-local" in repos and "cuda-opensuse15-x86_64" not in repos

    second = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars=extra)
    assert _recap(second) == (0, 0, 0), second.stdout[-3000:]
    assert "A reboot is still pending" in _flat(second.stdout) or "Not rebooting" in _flat(second.stdout)
    check = run_playbook(fresh_host, PLAYBOOK, tags=TAGS, extra_vars=extra, check=True, diff=True)
    assert _recap(check) == (0, 0, 0), check.stdout[-3000:]


def test_version_override_warns(fresh_host) -> None:
    res = run_playbook(fresh_host, PLAYBOOK, tags="preflight", extra_vars={
        "gpu_stack_python_version": "3.8", "gpu_stack_version_override": True})
    assert res.returncode == 0, res.stdout[-3000:]
    out = _flat(res.stdout)
    assert "gpu_stack_version_override is true, going on with pins TensorFlow was not tested with:" in out
    assert "Python 3.8 is outside TensorFlow 2.21's range 3.10-3.13" in out

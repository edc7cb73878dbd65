"""Fault scenarios of the ml_venv role, each on a fresh sandbox host.

1. The requested Python is not available (no package provides it, or it is outside TensorFlow's range):
   the run fails with a message naming the problem and the fix, and nothing on the host changed.
2. The package index is unreachable during an upgrade of a working virtualenv (an explicit index URL that
   the role checks first, and an index that only pip knows from its environment): the run fails saying
   so, and the existing virtualenv is untouched and still imports TensorFlow.
"""

from __future__ import annotations

import os

import pytest
from conftest import diff_snapshots, run_playbook, snapshot

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
VENV = "/opt/gpu-stack/venv"
# Nothing listens on the discard port of the loopback interface: connections are refused at once
DEAD_INDEX = "http://127.0.0.1:9/simple"


def _flat(text: str) -> str:
    """Output with whitespace runs collapsed and YAML's '' quoting undone (the YAML callback wraps and
    single-quotes long messages)."""
    return " ".join(text.replace("''", "'").split())


@pytest.mark.parametrize(
    ("version", "messages"),
    [
        ("3.12", ["Python 3.12 is not available on this host", "no repository provides python312",
                  "Nothing was changed"]),
        ("3.8", ["Python 3.8 is outside TensorFlow 2.21.0's range 3.10 - 3.13"]),
    ],
    ids=["no-package", "outside-tf-range"],
)
def test_requested_python_not_available(fresh_host, version: str, messages: list[str]) -> None:
    before = snapshot(fresh_host)
    res = run_playbook(fresh_host, PLAYBOOK, tags="ml_venv", extra_vars={"ml_venv_python_version": version})
    out = _flat(res.stdout)
    assert res.returncode != 0, res.stdout[-3000:]
    for message in messages:
        assert message in out, res.stdout[-3000:]
    assert diff_snapshots(before, snapshot(fresh_host)) == []


def test_unreachable_index_keeps_working_venv(converged_host) -> None:
    fresh_host = converged_host  # converged by site.yml: the virtualenv is there
    first = run_playbook(fresh_host, PLAYBOOK, tags="ml_venv")
    assert first.returncode == 0, first.stdout[-3000:]
    link = os.path.join(fresh_host.root, VENV.lstrip("/"))
    target = os.readlink(link)
    before = snapshot(fresh_host)

    # Any change of the requirements means a new build: six is already installed, but pinning it as an
    # extra requirement changes the rendered file, so pip has to ask the index.
    # (the sandbox installs from its wheelhouse: these runs go to an index instead, which is unreachable)
    upgrade = {"ml_venv_extra_packages": ["six==1.17.0"], "ml_venv_wheelhouse": ""}
    runs = {
        "index URL checked by the role": ({**upgrade, "ml_venv_pip_index_url": DEAD_INDEX},
                                          "pip could not reach the package index"),
        "index known only to pip": ({
            **upgrade, "ml_venv_pip_environment": {"PIP_INDEX_URL": DEAD_INDEX, "PIP_RETRIES": "2"},
        }, "pip could not reach the package index"),
        # a wheelhouse without a wheel of a pinned requirement is refused before anything is installed
        "wheelhouse without a pin": ({"ml_venv_extra_packages": ["colorama==0.4.6"]},
                                     "does not hold every pinned requirement"),
    }
    for what, (extra_vars, message) in runs.items():
        res = run_playbook(fresh_host, PLAYBOOK, tags="ml_venv", extra_vars=extra_vars)
        out = _flat(res.stdout)
        assert res.returncode != 0, f"{what}: {res.stdout[-3000:]}"
        assert message in out, f"{what}: {res.stdout[-3000:]}"
        assert f"The existing virtualenv {VENV} -> {target} is unchanged and still in use" in out, what
    assert "colorama==0.4.6" in out

    assert os.readlink(link) == target
    assert diff_snapshots(before, snapshot(fresh_host)) == []
    code = "import numpy, h5py, tensorflow; print(tensorflow.__version__)"
    works = fresh_host.run(f"{VENV}/bin/python", "-c", code)
    assert works.returncode == 0, works.stderr[-2000:]

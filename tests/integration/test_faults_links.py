"""The loader cache as desired state, aliases across majors, files-only system links and the project's one
loader file, on fresh sandbox hosts with NVIDIA's (stub) CUDA repo and toolkit installed. Several cases
share one ansible-playbook run (scenario_hosts), and only the roles a case needs run (--tags).

1. Interrupted runs: ansible-playbook is interrupted (SIGINT to its process group, as Ctrl-C in a terminal)
   when the cuDNN module starts, right after the cuDNN module, and right after the links module (the
   test-only interrupt_at callback in plugins/callback). `--check` then reports the stale loader cache
   without touching it; a normal run refreshes it (reported as a change) although no handler ran; a
   further run changes nothing; the cudnn, cuda_links and loader testinfra tests pass. Each host's CUDA
   include/ has a subdirectory, which must become a real directory of file links, and goes on removal.
2. An alias across majors (TensorFlow expecting libcufft.so.12 where CUDA 12.5 has libcufft.so.11): refused
   by default with a warning; enabled, made, warned about on every run and flagged by testinfra; declared
   in cuda_links_aliases, refused before anything is written. A loader directory no other configuration
   lists goes into the project's one loader file, which repeats none of NVIDIA's.
"""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import (
    DEFAULT_PLATFORM,
    REPO_ROOT,
    diff_snapshots,
    failed_tests,
    flat,
    recap,
    run_playbook_on,
    run_testinfra_on,
    scenario_hosts,
    snapshot,
    task_status,
)

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
TAGS = "cudnn,cuda_links"
PINS = yaml.safe_load((REPO_ROOT / "pins.yml").read_text())
CUDA = str(PINS["gpu_stack_cuda_version"])
MAJOR = CUDA.split(".")[0]
CUDNN_MAJOR = str(PINS["gpu_stack_cudnn_version"]).split(".")[0]
SONAMES = list(PINS["gpu_stack_tensorflow_sonames"][MAJOR])
LIB = f"/usr/local/cuda-{CUDA}/targets/x86_64-linux/lib"
INCLUDE = f"/usr/local/cuda-{CUDA}/targets/x86_64-linux/include"
CALLBACKS = str(REPO_ROOT / "tests/integration/plugins/callback")
CUDNN_TASK = "tarball | Install cuDNN into the CUDA tree"
LINKS_TASK = "links | Create SONAME, development, compatibility and system-directory links"
CUDNN_LOADER = "cudnn : loader | Make the loader cache resolve the cuDNN libraries"
LINKS_LOADER = "cuda_links : loader | Make the loader cache resolve the libraries and links"
CUDA_LOADER = "cuda : ldconfig | Make the loader find and resolve the CUDA libraries"
# The whole of test_cudnn.py and test_cuda_links.py, and the loader part of test_cuda.py
LOADER_TESTS = (
    "test_cudnn.py",
    "test_cuda_links.py",
    "test_cuda.py::test_loader_resolves_library_of_pinned_major",
    "test_cuda.py::test_one_project_loader_file_duplicating_no_other",
    "test_cuda.py::test_loader_searches_the_cuda_libraries",
)
POINTS = {
    "cudnn-module-start": f"start:{CUDNN_TASK}",
    "after-cudnn-module": f"end:{CUDNN_TASK}",
    "after-links-module": f"end:{LINKS_TASK}",
}


def _ldconfig_p(host) -> str:
    res = host.run("ldconfig", "-p")
    assert res.returncode == 0, res.stderr
    return res.stdout


def _add_header_subdirectory(host) -> None:
    """NVIDIA's include/ has subdirectories (crt/, cuda/, thrust/ ...); the stub toolkit has none."""
    crt = host.root / INCLUDE.lstrip("/") / "crt"
    crt.mkdir()
    (crt / "host_config.h").write_text("/* stands for NVIDIA's crt/host_config.h */\n")


def _interrupt(inventory, host, point: str, tmp_path):
    mark = tmp_path / f"interrupt-{host.name}"
    env = {
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.profile_tasks,interrupt_at",
        "GPU_STACK_INTERRUPT_AT": point,
        "GPU_STACK_INTERRUPT_MARK": str(mark),
    }
    res = run_playbook_on(inventory, host.name, PLAYBOOK, tags=TAGS, env=env, new_session=True)
    refused = re.search(r"\[WARNING\]: Skipping callback 'interrupt_at'.*?\n(?=\S)", res.stdout, re.S)
    assert not refused, refused and refused.group(0)
    assert mark.exists(), f"the run never reached {point}:\n{res.stdout[-3000:]}"
    assert res.returncode != 0 and "User interrupted execution" in res.stdout, res.stdout[-3000:]


# --- 1. interrupted runs


def test_interrupted_runs_end_converged(sandbox_ready, tmp_path) -> None:
    cases = {case: (DEFAULT_PLATFORM, {}) for case in POINTS}
    with scenario_hosts("intr", cases, cuda=True) as (inventory, hosts):
        for host in hosts.values():
            _add_header_subdirectory(host)
        for case, point in POINTS.items():
            _interrupt(inventory, hosts[case], point, tmp_path)

        # the case: cuDNN in place, the loader cache without it (no handler ran)
        cudnn = hosts["after-cudnn-module"]
        assert (cudnn.root / LIB.lstrip("/") / f"libcudnn.so.{CUDNN_MAJOR}").is_symlink()
        assert f"libcudnn.so.{CUDNN_MAJOR} " not in _ldconfig_p(cudnn)
        links = hosts["after-links-module"]
        assert (links.root / f"usr/lib64/libcudnn.so.{CUDNN_MAJOR}").is_symlink()
        assert f"=> /usr/lib64/libcudnn.so.{CUDNN_MAJOR}\n" not in _ldconfig_p(links)
        start = hosts["cudnn-module-start"]
        assert not (start.root / "var/lib/opensuse-gpu-stack/manifest-cudnn.json").exists()

        everyone = ",".join(h.name for h in hosts.values())
        caches = {case: _ldconfig_p(h) for case, h in hosts.items()}
        check = run_playbook_on(inventory, everyone, PLAYBOOK, tags=TAGS, args=["--check", "--diff"])
        assert check.returncode == 0, check.stdout[-3000:]
        assert task_status(check.stdout, CUDNN_LOADER, cudnn.name) == "changed", check.stdout[-4000:]
        assert task_status(check.stdout, LINKS_LOADER, links.name) == "changed", check.stdout[-4000:]
        assert {case: _ldconfig_p(h) for case, h in hosts.items()} == caches, "check mode ran ldconfig"

        heal = run_playbook_on(inventory, everyone, PLAYBOOK, tags=TAGS)
        assert heal.returncode == 0, heal.stdout[-3000:]
        assert task_status(heal.stdout, CUDNN_LOADER, cudnn.name) == "changed", heal.stdout[-4000:]
        assert task_status(heal.stdout, LINKS_LOADER, links.name) == "changed", heal.stdout[-4000:]
        again = run_playbook_on(inventory, everyone, PLAYBOOK, tags=TAGS)
        assert again.returncode == 0, again.stdout[-3000:]
        assert {case: recap(again.stdout, h.name)["changed"] for case, h in hosts.items()} == dict.fromkeys(
            POINTS, 0
        ), again.stdout[-3000:]
        tests = run_testinfra_on(inventory, list(hosts.values()), *LOADER_TESTS)
        assert tests.returncode == 0, tests.stdout[-4000:]

        # files only: the header subdirectory is a real directory of file links, and goes on removal
        sys_crt = links.root / "usr/include/crt"
        assert sys_crt.is_dir() and not sys_crt.is_symlink()
        assert links.run("readlink", "/usr/include/crt/host_config.h").stdout.strip() == (
            "/usr/local/cuda/include/crt/host_config.h"
        )
        removed = run_playbook_on(inventory, links.name, "playbooks/remove.yml")
        assert removed.returncode == 0 and not sys_crt.exists(), removed.stdout[-3000:]
        assert (links.root / INCLUDE.lstrip("/") / "crt/host_config.h").is_file()


# --- 2. aliases across majors, the project's loader file

WANTED = {"cuda_links_expected_sonames": [*SONAMES, "libcufft.so.12"]}
CASES = {
    # TensorFlow built for a CUDA whose cuFFT is libcufft.so.12, on CUDA 12.5 (libcufft.so.11)
    "refused": (DEFAULT_PLATFORM, WANTED),
    "enabled": (DEFAULT_PLATFORM, {**WANTED, "cuda_links_expected_aliases_enabled": True}),
    "declared": (DEFAULT_PLATFORM, {"cuda_links_aliases": [{"name": "libcufft.so.12",
                                                            "target": "libcufft.so.11"}]}),
    # a library directory no ld.so.conf.d file lists, next to the CUDA one NVIDIA's files list
    "loader-file": (DEFAULT_PLATFORM, {"cuda_ldconfig_dirs": ["/usr/local/cuda/targets/x86_64-linux/lib",
                                                              "/opt/vendor/lib"]}),
}
REFUSED = (
    f"[WARNING]: compatibility alias {LIB}/libcufft.so.12 -> libcufft.so.11: libcufft.so.12 is missing: "
    "libcufft.so.11 has major 11, a different ABI than the 12 TensorFlow was built for, so no alias was "
    "made. Install the CUDA version TensorFlow was built for"
)
ENABLED = (
    f"[WARNING]: compatibility alias {LIB}/libcufft.so.12 -> libcufft.so.11: libcufft.so.12 is missing "
    "and was linked to libcufft.so.11 (cuda_links_expected_aliases_enabled): libcufft.so.11 has major "
    "11, a different ABI"
)
DECLARED = (
    "links not changed, nothing was written: alias libcufft.so.12 -> libcufft.so.11 links major 12 to a "
    "library of major 11 (libcufft.so.11): a different major is a different ABI, and TensorFlow would load "
    "an incompatible library. Install the CUDA version that provides libcufft.so.12, or add cross_major: "
    "true to this cuda_links_aliases item"
)
OWN_LOADER_FILE = "etc/ld.so.conf.d/opensuse-gpu-stack-cuda.conf"


def test_aliases_across_majors_and_the_project_loader_file(sandbox_ready) -> None:
    with scenario_hosts("alias", CASES, cuda=True) as (inventory, hosts):
        (hosts["loader-file"].root / "opt/vendor/lib").mkdir(parents=True)
        everyone = ",".join(h.name for h in hosts.values())
        first = run_playbook_on(inventory, everyone, PLAYBOOK, tags=f"cuda,{TAGS}")
        out = flat(first.stdout)
        assert {case: recap(first.stdout, h.name)["failed"] for case, h in hosts.items()} == {
            "refused": 0, "enabled": 0, "declared": 1, "loader-file": 0}, first.stdout[-4000:]
        assert REFUSED in out and ENABLED in out and DECLARED in out, out[-4000:]

        refused, enabled, declared = hosts["refused"], hosts["enabled"], hosts["declared"]
        for path in (f"{LIB}/libcufft.so.12", "/usr/lib64/libcufft.so.12"):
            assert not (refused.root / path.lstrip("/")).exists(), path
            assert enabled.run("readlink", "-f", path).stdout.strip() == enabled.run(
                "readlink", "-f", f"{LIB}/libcufft.so.11").stdout.strip(), path
        # refused before the links module wrote anything: no manifest, no link into the CUDA tree
        assert not (declared.root / "var/lib/opensuse-gpu-stack/manifest-cuda_links.json").exists()
        assert declared.run("find", "/usr/lib64", "/usr/include", "-lname", "/usr/local/cuda*").stdout == ""

        loader = hosts["loader-file"]
        assert task_status(first.stdout, CUDA_LOADER, loader.name) == "changed"
        assert (loader.root / OWN_LOADER_FILE).read_text() == (
            "# Managed by opensuse-gpu-stack (roles/cuda): directories no other loader configuration lists\n"
            "/opt/vendor/lib\n"
        )
        assert "/opt/vendor/lib:" in loader.run("ldconfig", "-v", "-N", "-X").stdout
        for case in ("refused", "enabled", "declared"):
            assert not (hosts[case].root / OWN_LOADER_FILE).exists(), case  # NVIDIA's files list the CUDA one

        before = snapshot(declared)
        again = run_playbook_on(inventory, everyone, PLAYBOOK, tags=f"cuda,{TAGS}")
        out = flat(again.stdout)
        assert {case: recap(again.stdout, h.name)["changed"] for case, h in hosts.items()} == dict.fromkeys(
            CASES, 0), again.stdout[-4000:]
        assert recap(again.stdout, declared.name)["failed"] == 1
        assert REFUSED in out and ENABLED in out and DECLARED in out, out[-4000:]  # on every run
        assert diff_snapshots(before, snapshot(declared)) == []

        checked = ("refused", "enabled", "loader-file")
        tests = run_testinfra_on(inventory, [hosts[c] for c in checked], *LOADER_TESTS)
        failed = {case: failed_tests(tests.stdout, hosts[case]) for case in checked}
        assert failed == {
            "refused": [], "enabled": ["test_cuda_links.py::test_no_alias_across_majors"], "loader-file": []
        }, tests.stdout[-6000:]
        flagged = re.sub(r"\s+", " ", tests.stdout)
        assert f"{LIB}/libcufft.so.12 leads to libcufft.so.11" in flagged, tests.stdout[-4000:]
        assert "/usr/lib64/libcufft.so.12 leads to libcufft.so.11" in flagged

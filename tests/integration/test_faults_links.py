"""The loader cache as desired state, aliases across majors, files-only system links and the project's one
loader file, on fresh sandbox hosts with NVIDIA's CUDA repo and toolkit installed (conftest.cuda_host).

1. Interrupted runs: ansible-playbook is interrupted (SIGINT to its process group, as Ctrl-C in a terminal)
   when the cuDNN task starts, right after the cuDNN module, and right after the links module (the
   interrupt_at callback in plugins/callback). A normal run then ends converged: the loader cache is
   refreshed (reported as a change) although no handler ran, a further run changes nothing, and the
   cudnn, cuda_links and loader testinfra tests pass.
2. An alias across majors (TensorFlow expecting libcufft.so.12 where CUDA 12.5 has libcufft.so.11) is
   refused by default with a warning and nothing changed; enabled, it is made, warned about on every run
   and flagged by testinfra; declared in cuda_links_aliases, it is refused before anything is written.
3. Header subdirectories become real directories of file links (never a directory link), and the project's
   loader file exists only while NVIDIA's files do not list the CUDA directory.

Only the roles the scenarios need run (tags cudnn,cuda_links, with cuda for 3; preflight always runs).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import REPO_ROOT, diff_snapshots, flat, recap_changed, run_playbook, run_testinfra, snapshot

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
TAGS = "cudnn,cuda_links"
PINS = yaml.safe_load((REPO_ROOT / "inventory/group_vars/all/versions.yml").read_text())
CUDA = str(PINS["gpu_stack_cuda_version"])
MAJOR = CUDA.split(".")[0]
CUDNN_MAJOR = str(PINS["gpu_stack_cudnn_version"]).split(".")[0]
SONAMES = list(PINS["gpu_stack_tensorflow_sonames"][MAJOR])
LIB = f"/usr/local/cuda-{CUDA}/targets/x86_64-linux/lib"
INCLUDE = f"/usr/local/cuda-{CUDA}/targets/x86_64-linux/include"
CALLBACKS = str(REPO_ROOT / "tests/integration/plugins/callback")
CUDNN_TASK = "tarball | Install cuDNN into the CUDA tree"
LINKS_TASK = "links | Create SONAME, development, compatibility and system-directory links"
# The loader part of test_cuda.py, and the whole of test_cudnn.py and test_cuda_links.py
LOADER_TESTS = (
    "test_cudnn.py",
    "test_cuda_links.py",
    "test_cuda.py::test_loader_resolves_library_of_pinned_major",
    "test_cuda.py::test_one_project_loader_file_duplicating_no_other",
    "test_cuda.py::test_loader_searches_the_cuda_libraries",
)
# Caches that a refresh rewrites (rpm's database is compared through `rpm -qa`)
CACHES = ("/etc/ld.so.cache", "/var/cache/ldconfig/aux-cache", "/var/lib/rpm/")


def _ldconfig_p(host) -> str:
    res = host.run("ldconfig", "-p")
    assert res.returncode == 0, res.stderr
    return res.stdout


def _changed_task(output: str, task: str) -> bool:
    """Whether the (first) run of a task reported `changed` for the host."""
    part = output.split(f"{task}]", 1)
    assert len(part) == 2, f"task {task!r} not in the output:\n{output[-3000:]}"
    return bool(re.match(r"\s*\*+\s*\n(?:[^\n]*\d\d:\d\d:\d\d[^\n]*\n)?changed: \[", part[1]))


def _paths(diff: list[str]) -> set[str]:
    return {d.split(": ", 1)[1].split(":", 1)[0] for d in diff}


def _outside_caches(diff: list[str]) -> list[str]:
    return [d for d in diff if not d.split(": ", 1)[1].startswith(CACHES)]


def run_interrupted(host, point: str, tmp_path):
    mark = tmp_path / "interrupt-mark"
    env = {
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "interrupt_at",
        "GPU_STACK_INTERRUPT_AT": point,
        "GPU_STACK_INTERRUPT_MARK": str(mark),
    }
    res = run_playbook(host, PLAYBOOK, tags=TAGS, env=env, new_session=True)
    assert mark.exists(), f"the run never reached {point}:\n{res.stdout[-3000:]}"
    assert res.returncode != 0 and "User interrupted execution" in res.stdout, res.stdout[-3000:]
    return res


# --- 1. interrupted runs


@pytest.mark.parametrize(
    ("point", "stale"),
    [
        (f"start:{CUDNN_TASK}", False),
        (f"end:{CUDNN_TASK}", True),
        (f"end:{LINKS_TASK}", True),
    ],
    ids=["cudnn-module-start", "after-cudnn-module", "after-links-module"],
)
def test_an_interrupted_run_is_repaired_by_the_next(cuda_host, tmp_path, point: str, stale: bool) -> None:
    run_interrupted(cuda_host, point, tmp_path)
    cache = _ldconfig_p(cuda_host)
    if point == f"end:{CUDNN_TASK}":
        # the case: cuDNN in place, the loader cache without it (the handler never ran)
        assert (cuda_host.root / LIB.lstrip("/") / f"libcudnn.so.{CUDNN_MAJOR}").is_symlink()
        assert f"libcudnn.so.{CUDNN_MAJOR} " not in cache
    if point == f"end:{LINKS_TASK}":
        assert (cuda_host.root / f"usr/lib64/libcudnn.so.{CUDNN_MAJOR}").is_symlink()
        assert f"=> /usr/lib64/libcudnn.so.{CUDNN_MAJOR}\n" not in cache

    heal = run_playbook(cuda_host, PLAYBOOK, tags=TAGS)
    assert heal.returncode == 0, heal.stdout[-3000:]
    if stale:
        loader_task = (
            "cudnn : loader | Make the loader cache resolve the cuDNN libraries"
            if "cuDNN" in point
            else "cuda_links : loader | Make the loader cache resolve the libraries and links"
        )
        assert _changed_task(heal.stdout, loader_task), heal.stdout[-4000:]
    again = run_playbook(cuda_host, PLAYBOOK, tags=TAGS)
    assert again.returncode == 0 and recap_changed(again.stdout) == 0, again.stdout[-3000:]
    tests = run_testinfra(cuda_host, *LOADER_TESTS)
    assert tests.returncode == 0, tests.stdout[-4000:]


# --- 2. aliases across majors


def test_aliases_across_majors(cuda_host) -> None:
    converge = run_playbook(cuda_host, PLAYBOOK, tags=TAGS)
    assert converge.returncode == 0, converge.stdout[-3000:]
    # TensorFlow built for a CUDA whose cuFFT is libcufft.so.12, on CUDA 12.5 (libcufft.so.11)
    wanted = {"cuda_links_expected_sonames": [*SONAMES, "libcufft.so.12"]}

    before = snapshot(cuda_host)
    refused = run_playbook(cuda_host, PLAYBOOK, tags=TAGS, extra_vars=wanted)
    out = flat(refused.stdout)
    assert refused.returncode == 0 and recap_changed(refused.stdout) == 0, refused.stdout[-3000:]
    assert (
        f"[WARNING]: compatibility alias {LIB}/libcufft.so.12 -> libcufft.so.11: libcufft.so.12 is missing: "
        "libcufft.so.11 has major 11, a different ABI than the 12 TensorFlow was built for, so no alias was "
        "made. Install the CUDA version TensorFlow was built for"
    ) in out, out[-3000:]
    assert diff_snapshots(before, snapshot(cuda_host)) == []

    enabled = {**wanted, "cuda_links_expected_aliases_enabled": True}
    made = run_playbook(cuda_host, PLAYBOOK, tags=TAGS, extra_vars=enabled)
    out = flat(made.stdout)
    assert made.returncode == 0, made.stdout[-3000:]
    warning = (
        f"[WARNING]: compatibility alias {LIB}/libcufft.so.12 -> libcufft.so.11: libcufft.so.12 is missing "
        "and was linked to libcufft.so.11 (cuda_links_expected_aliases_enabled): libcufft.so.11 has major "
        "11, a different ABI"
    )
    assert warning in out, out[-3000:]
    diff = diff_snapshots(before, snapshot(cuda_host))
    assert _paths(_outside_caches(diff)) == {
        f"{LIB}/libcufft.so.12",
        "/usr/lib64/libcufft.so.12",
        "/var/lib/opensuse-gpu-stack/manifest-cuda_links.json",
    }, diff
    again = run_playbook(cuda_host, PLAYBOOK, tags=TAGS, extra_vars=enabled)
    assert recap_changed(again.stdout) == 0 and warning in flat(again.stdout), again.stdout[-3000:]
    flagged = run_testinfra(cuda_host, "test_cuda_links.py::test_no_alias_across_majors")
    assert flagged.returncode != 0, flagged.stdout[-3000:]
    assert f"{LIB}/libcufft.so.12 leads to libcufft.so.11" in flagged.stdout
    assert "/usr/lib64/libcufft.so.12 leads to libcufft.so.11" in flagged.stdout

    # back to the default: our alias goes, and testinfra is clean again
    back = run_playbook(cuda_host, PLAYBOOK, tags=TAGS)
    assert back.returncode == 0 and not (cuda_host.root / LIB.lstrip("/") / "libcufft.so.12").is_symlink()
    tests = run_testinfra(cuda_host, "test_cuda_links.py")
    assert tests.returncode == 0, tests.stdout[-4000:]

    before = snapshot(cuda_host)
    declared = run_playbook(
        cuda_host,
        PLAYBOOK,
        tags=TAGS,
        extra_vars={"cuda_links_aliases": [{"name": "libcufft.so.12", "target": "libcufft.so.11"}]},
    )
    out = flat(declared.stdout)
    assert declared.returncode != 0, declared.stdout[-3000:]
    assert (
        "links not changed, nothing was written: alias libcufft.so.12 -> libcufft.so.11 links major 12 to a "
        "library of major 11 (libcufft.so.11): a different major is a different ABI"
    ) in out, out[-3000:]
    assert "add cross_major: true to this cuda_links_aliases item" in out
    assert diff_snapshots(before, snapshot(cuda_host)) == []


# --- 3. files only, one loader file


def test_header_directories_are_real_and_the_loader_file_appears_only_when_needed(cuda_host) -> None:
    # NVIDIA's include/ has subdirectories (crt/, cuda/ ...); the stub toolkit has none, so add one
    crt = cuda_host.root / INCLUDE.lstrip("/") / "crt"
    crt.mkdir()
    (crt / "host_config.h").write_text("/* stands for NVIDIA's crt/host_config.h */\n")
    tags = f"cuda,{TAGS}"
    first = run_playbook(cuda_host, PLAYBOOK, tags=tags)
    assert first.returncode == 0, first.stdout[-3000:]
    sys_crt = cuda_host.root / "usr/include/crt"
    assert sys_crt.is_dir() and not sys_crt.is_symlink()
    assert (sys_crt / "host_config.h").is_symlink()
    assert cuda_host.run("readlink", "/usr/include/crt/host_config.h").stdout.strip() == (
        "/usr/local/cuda/include/crt/host_config.h"
    )
    conf_d = cuda_host.root / "etc/ld.so.conf.d"
    assert not [p.name for p in conf_d.iterdir() if "opensuse-gpu-stack" in p.name]  # NVIDIA's files cover it

    # a toolkit whose packages registered no loader configuration: the project's one file lists the directory
    nvidia = {
        p.name: p.read_text()
        for p in conf_d.iterdir()
        if re.match(r"^(000_cuda|98\d_cuda-\d+)\.conf$", p.name)
    }
    assert sorted(nvidia) == ["000_cuda.conf", f"{1000 - int(MAJOR)}_cuda-{MAJOR}.conf"]
    for name in nvidia:
        (conf_d / name).unlink()
    assert cuda_host.run("ldconfig").returncode == 0
    own = run_playbook(cuda_host, PLAYBOOK, tags=tags)
    assert own.returncode == 0 and _changed_task(
        own.stdout, "cuda : ldconfig | Make the loader find and resolve the CUDA libraries"
    ), own.stdout[-3000:]
    ours = conf_d / "opensuse-gpu-stack-cuda.conf"
    assert ours.read_text() == (
        "# Managed by opensuse-gpu-stack (roles/cuda): directories no other loader "
        "configuration lists\n/usr/local/cuda/targets/x86_64-linux/lib\n"
    )
    assert f"libcudnn.so.{CUDNN_MAJOR} " in _ldconfig_p(cuda_host)
    # (not rpm -V of test_cudnn.py: NVIDIA's files are missing on purpose)
    tests = run_testinfra(cuda_host, "test_cudnn.py::test_ldconfig_resolves_cudnn", *LOADER_TESTS[1:])
    assert tests.returncode == 0, tests.stdout[-4000:]

    for name, text in nvidia.items():
        (conf_d / name).write_text(text)
    back = run_playbook(cuda_host, PLAYBOOK, tags=tags)
    assert back.returncode == 0 and not ours.exists(), back.stdout[-3000:]
    again = run_playbook(cuda_host, PLAYBOOK, tags=tags)
    assert recap_changed(again.stdout) == 0, again.stdout[-3000:]
    manifest = json.loads(
        (cuda_host.root / "var/lib/opensuse-gpu-stack/manifest-cuda_links.json").read_text()
    )
    assert {"path": "/usr/include/crt", "kind": "dir", "reason": "mirror"} in manifest["entries"]
    removed = run_playbook(cuda_host, "playbooks/remove.yml")
    assert removed.returncode == 0 and not sys_crt.exists(), removed.stdout[-3000:]
    assert (crt / "host_config.h").exists()

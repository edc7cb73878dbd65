"""cudnn and cuda_links on fresh sandbox hosts: fault scenarios, both tarball layouts, install-then-remove.

Each test gets its own host with NVIDIA's CUDA repo and cuda-toolkit-12-5 installed straight from the stub
repo with zypper (the cuda role has its own tests), then runs playbooks/provision.yml with --tags cudnn
and/or cuda_links (preflight always runs; it only reads).

Faults (each asserts the message and that nothing on the host changed): a missing archive, a sha256
mismatch, an archive without cudnn.h and one with a '..' member (from the controller and from the host),
a URL source without sha256, a foreign file in /usr/lib64 with cuda_links_strict (and kept intact without).
Bad archives are built here with tarfile from the sandbox's good fixture.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, diff_snapshots, run_playbook, snapshot
from conftest import flat as _flat
from conftest import recap_changed as _recap_changed

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
REMOVE = "playbooks/remove.yml"
PINS = yaml.safe_load((REPO_ROOT / "inventory/group_vars/all/versions.yml").read_text())
CUDNN = str(PINS["gpu_stack_cudnn_version"])
CUDA = str(PINS["gpu_stack_cuda_version"])
FIXTURES = REPO_ROOT / ".cache/sandbox/repos/cudnn"
CURRENT = f"cudnn-linux-x86_64-{CUDNN}_cuda{CUDA.split('.')[0]}-archive.tar.xz"
OLD = f"cudnn-{CUDA}-linux-x64-v{CUDNN}.tgz"
HOST_REPOS = "/srv/sandbox-repos"
MAJOR = CUDNN.split(".")[0]
VERSION_INT = int(MAJOR) * 10000 + int(CUDNN.split(".")[1]) * 100 + int(CUDNN.split(".")[2])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bad_archive(dest: Path, kind: str) -> Path:
    """The good current-layout fixture, rebuilt with tarfile: without cudnn.h, or with a '..' member."""
    with tarfile.open(FIXTURES / CURRENT) as good, tarfile.open(dest, "w:xz") as bad:
        top = good.getmembers()[0].name.split("/")[0]
        for member in good.getmembers():
            if kind == "no-cudnn-h" and member.name.endswith("/include/cudnn.h"):
                continue
            bad.addfile(member, good.extractfile(member) if member.isreg() else None)
        if kind == "traversal":
            evil = tarfile.TarInfo(f"{top}/lib/../../../../../etc/cron.d/gpu-stack-evil")
            payload = b"* * * * * root touch /tmp/owned\n"
            evil.size = len(payload)
            bad.addfile(evil, io.BytesIO(payload))
    return dest


# --- faults


@pytest.mark.parametrize(
    ("extra_vars", "messages"),
    [
        ({"cudnn_archive_src": "/nonexistent/" + CURRENT, "cudnn_archive_sha256": ""},
         ["cuDNN archive /nonexistent/" + CURRENT + " not found on the controller", "Nothing was written",
          "set cudnn_archive_src"]),
        ({"cudnn_archive_sha256": "0" * 64},
         ["sha256 mismatch", "expected " + "0" * 64, "Nothing was written", "fix cudnn_archive_sha256"]),
        ({"cudnn_source": "url", "cudnn_archive_url": f"file://{HOST_REPOS}/cudnn/{CURRENT}",
          "cudnn_archive_sha256": ""},
         ["cudnn_source is url but cudnn_archive_sha256 is empty"]),
    ],
    ids=["missing-archive", "sha256-mismatch", "url-without-sha256"],
)
def test_bad_source_writes_nothing(cuda_host, extra_vars: dict, messages: list[str]) -> None:
    before = snapshot(cuda_host)
    res = run_playbook(cuda_host, PLAYBOOK, tags="cudnn", extra_vars=extra_vars)
    out = _flat(res.stdout)
    assert res.returncode != 0, res.stdout[-3000:]
    for message in messages:
        assert message in out, res.stdout[-3000:]
    assert diff_snapshots(before, snapshot(cuda_host)) == []


@pytest.mark.parametrize("source", ["controller", "host"])
@pytest.mark.parametrize(
    ("kind", "message"),
    [("no-cudnn-h", "no include/cudnn.h in the archive"), ("traversal", "escapes the archive with")],
    ids=["no-cudnn-h", "traversal"],
)
def test_bad_archive_is_refused_before_writing(cuda_host, tmp_path, source, kind, message) -> None:
    archive = bad_archive(tmp_path / f"bad-{kind}.tar.xz", kind)
    src = str(archive)
    if source == "host":
        shutil.copy(archive, cuda_host.root / "root" / archive.name)
        src = f"/root/{archive.name}"
    before = snapshot(cuda_host)
    res = run_playbook(cuda_host, PLAYBOOK, tags="cudnn", extra_vars={
        "cudnn_source": source, "cudnn_archive_src": src, "cudnn_archive_sha256": _sha256(archive)})
    out = _flat(res.stdout)
    assert res.returncode != 0, res.stdout[-3000:]
    assert message in out and "nothing was written" in out, res.stdout[-3000:]
    assert not (cuda_host.root / "etc/cron.d/gpu-stack-evil").exists()
    assert diff_snapshots(before, snapshot(cuda_host)) == []


def test_foreign_file_in_lib64_is_kept(cuda_host) -> None:
    first = run_playbook(cuda_host, PLAYBOOK, tags="cudnn")
    assert first.returncode == 0, first.stdout[-3000:]
    foreign = cuda_host.root / "usr/lib64" / f"libcudnn.so.{MAJOR}"
    foreign.write_bytes(b"a user's own build of cuDNN\n")
    content = foreign.read_bytes()

    before = snapshot(cuda_host)
    strict = run_playbook(cuda_host, PLAYBOOK, tags="cuda_links", extra_vars={"cuda_links_strict": True})
    out = _flat(strict.stdout)
    assert strict.returncode != 0, strict.stdout[-3000:]
    assert f"/usr/lib64/libcudnn.so.{MAJOR} exists and was not created by this project" in out, out[-3000:]
    assert "nothing was written" in out
    assert diff_snapshots(before, snapshot(cuda_host)) == []

    lenient = run_playbook(cuda_host, PLAYBOOK, tags="cuda_links")
    out = _flat(lenient.stdout)
    assert lenient.returncode == 0, lenient.stdout[-3000:]
    assert f"Skipped 1 path(s): /usr/lib64/libcudnn.so.{MAJOR} exists and was not created" in out, out[-3000:]
    assert foreign.read_bytes() == content and not foreign.is_symlink()
    assert (cuda_host.root / "usr/lib64/libcudnn.so").is_symlink()

    removed = run_playbook(cuda_host, REMOVE)
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert foreign.read_bytes() == content


# --- layouts, sources, removal


@pytest.mark.parametrize(
    "extra_vars",
    [
        {},
        {"cudnn_source": "host", "cudnn_archive_src": f"{HOST_REPOS}/cudnn/{OLD}"},
        {"cudnn_source": "url", "cudnn_archive_url": f"file://{HOST_REPOS}/cudnn/{CURRENT}"},
    ],
    ids=["current-layout-from-controller", "old-layout-from-host", "current-layout-from-url"],
)
def test_layouts_and_sources_converge(cuda_host, extra_vars: dict) -> None:
    name = Path(extra_vars.get("cudnn_archive_src") or extra_vars.get("cudnn_archive_url") or CURRENT).name
    extra_vars = {**extra_vars, "cudnn_archive_sha256": (FIXTURES / f"{name}.sha256").read_text().split()[0]}
    first = run_playbook(cuda_host, PLAYBOOK, tags="cudnn,cuda_links", extra_vars=extra_vars)
    assert first.returncode == 0, first.stdout[-3000:]
    second = run_playbook(cuda_host, PLAYBOOK, tags="cudnn,cuda_links", extra_vars=extra_vars)
    assert second.returncode == 0 and _recap_changed(second.stdout) == 0, second.stdout[-3000:]

    root = cuda_host.root
    for link in ("include", "lib64"):
        assert (root / f"usr/local/cuda-{CUDA}/{link}").is_symlink(), f"cuda-{CUDA}/{link} was replaced"
    # /usr/local/cuda is an absolute alternatives link: look from inside the host
    header = cuda_host.run("stat", "-L", "-c", "%F %a %U:%G", "/usr/local/cuda/include/cudnn_version.h")
    assert header.stdout.strip() == "regular file 644 root:root", header.stdout + header.stderr
    verify = cuda_host.run("sh", "-c", "rpm -qa 'cuda*' 'libcu*' | xargs rpm -V")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr
    code = f"import ctypes; print(ctypes.CDLL('libcudnn.so.{MAJOR}').cudnnGetVersion())"
    load = cuda_host.run("python3", "-c", code)
    assert load.stdout.strip() == str(VERSION_INT), load.stdout + load.stderr


def test_install_then_remove_restores_the_tree(cuda_host) -> None:
    before = snapshot(cuda_host)
    install = run_playbook(cuda_host, PLAYBOOK, tags="cudnn,cuda_links")
    assert install.returncode == 0, install.stdout[-3000:]
    installed = diff_snapshots(before, snapshot(cuda_host))
    assert any(f"/usr/lib64/libcudnn.so.{MAJOR}" in d for d in installed), installed

    check = run_playbook(cuda_host, REMOVE, check=True)
    assert check.returncode == 0 and _recap_changed(check.stdout) > 0, check.stdout[-3000:]
    removed = run_playbook(cuda_host, REMOVE)
    assert removed.returncode == 0, removed.stdout[-3000:]
    # rpm's sqlite database does not shrink after rpm -e (the package list is compared instead) and
    # ldconfig's aux-cache keeps stat data of files it saw: both are caches, not the installed tree.
    caches = ("/var/lib/rpm/rpmdb.sqlite", "/var/cache/ldconfig/aux-cache")
    diff = [d for d in diff_snapshots(before, snapshot(cuda_host)) if not d.split(": ")[1].startswith(caches)]
    assert diff == [], diff
    again = run_playbook(cuda_host, REMOVE)
    assert again.returncode == 0 and _recap_changed(again.stdout) == 0, again.stdout[-3000:]


def test_rpm_route_converges_and_removes_only_its_packages(cuda_host) -> None:
    before = snapshot(cuda_host)
    rpm = {"cudnn_install_method": "rpm"}
    first = run_playbook(cuda_host, PLAYBOOK, tags="cudnn,cuda_links", extra_vars=rpm)
    assert first.returncode == 0, first.stdout[-3000:]
    second = run_playbook(cuda_host, PLAYBOOK, tags="cudnn,cuda_links", extra_vars=rpm)
    assert second.returncode == 0 and _recap_changed(second.stdout) == 0, second.stdout[-3000:]
    cuda_major = CUDA.split(".")[0]
    packages = [f"libcudnn{MAJOR}-cuda-{cuda_major}", f"libcudnn{MAJOR}-devel-cuda-{cuda_major}"]
    assert cuda_host.run("rpm", "-q", *packages).returncode == 0
    code = f"import ctypes; print(ctypes.CDLL('libcudnn.so.{MAJOR}').cudnnGetVersion())"
    assert cuda_host.run("python3", "-c", code).stdout.strip() == str(VERSION_INT)

    switch = run_playbook(cuda_host, PLAYBOOK, tags="cudnn")
    assert switch.returncode != 0 and "was installed from RPMs by this project" in _flat(switch.stdout)

    removed = run_playbook(cuda_host, REMOVE)
    assert removed.returncode == 0, removed.stdout[-3000:]
    # rpm's sqlite database does not shrink after rpm -e (the package list is compared instead) and
    # ldconfig's aux-cache keeps stat data of files it saw: both are caches, not the installed tree.
    caches = ("/var/lib/rpm/rpmdb.sqlite", "/var/cache/ldconfig/aux-cache")
    diff = [d for d in diff_snapshots(before, snapshot(cuda_host)) if not d.split(": ")[1].startswith(caches)]
    assert diff == [], diff

"""cudnn and cuda_links on fresh sandbox hosts: fault scenarios, both tarball layouts, install-then-remove.

Each host has NVIDIA's CUDA repo and cuda-toolkit-12-5 installed straight from the stub repo with zypper
(the cuda role has its own tests); the tests run playbooks/provision.yml with --tags cudnn and/or cuda_links
(preflight always runs; it only reads).

Faults (each asserts the message and that nothing on the host changed), all on their own hosts in one
ansible-playbook run: a missing archive, a sha256 mismatch, a URL source without sha256, an archive without
cudnn.h and one with a '..' member (from the controller and from the host), and a 4-byte "library" that
starts like an ELF file. Over an installed cuDNN, that archive is refused saying that cuDNN stays installed.
A foreign file in /usr/lib64 is refused with cuda_links_strict; without it, it is kept intact, warned
about, the links task reports its change and the loader cache is refreshed.
Bad archives are built here with tarfile from the sandbox's good fixture.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import (
    DEFAULT_PLATFORM,
    REPO_ROOT,
    diff_snapshots,
    failure_text,
    host_python,
    run_playbook,
    run_playbook_on,
    scenario_hosts,
    snapshot,
    task_status,
)
from conftest import flat as _flat
from conftest import recap_changed as _recap_changed

pytestmark = pytest.mark.sandbox

PLAYBOOK = "playbooks/provision.yml"
REMOVE = "playbooks/remove.yml"
PINS = yaml.safe_load((REPO_ROOT / "pins.yml").read_text())
CUDNN = str(PINS["gpu_stack_cudnn_version"])
CUDA = str(PINS["gpu_stack_cuda_version"])
FIXTURES = REPO_ROOT / ".cache/sandbox/repos/cudnn"
CURRENT = f"cudnn-linux-x86_64-{CUDNN}_cuda{CUDA.split('.')[0]}-archive.tar.xz"
OLD = f"cudnn-{CUDA}-linux-x64-v{CUDNN}.tgz"
HOST_REPOS = "/srv/sandbox-repos"
MAJOR = CUDNN.split(".")[0]
CUDNN3 = ".".join(CUDNN.split(".")[:3])
NOT_INSTALLED = "cuDNN not installed, nothing was written"
LINKS_TASK = "links | Create SONAME, development, compatibility and system-directory links"
LINKS_LOADER = "cuda_links : loader | Make the loader cache resolve the libraries and links"
VERSION_INT = int(MAJOR) * 10000 + int(CUDNN.split(".")[1]) * 100 + int(CUDNN.split(".")[2])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bad_archive(dest: Path, kind: str) -> Path:
    """The good current-layout fixture, rebuilt with tarfile: without cudnn.h, with a '..' member, or with
    a 4-byte "library" that starts like an ELF file."""
    with tarfile.open(FIXTURES / CURRENT) as good, tarfile.open(dest, "w:xz") as bad:
        top = good.getmembers()[0].name.split("/")[0]
        for member in good.getmembers():
            if kind == "no-cudnn-h" and member.name.endswith("/include/cudnn.h"):
                continue
            if kind == "fake-elf" and member.name == f"{top}/lib/libcudnn.so.{CUDNN3}":
                member.size = 4
                bad.addfile(member, io.BytesIO(b"\x7fELF"))
                continue
            bad.addfile(member, good.extractfile(member) if member.isreg() else None)
        if kind == "traversal":
            evil = tarfile.TarInfo(f"{top}/lib/../../../../../etc/cron.d/gpu-stack-evil")
            payload = b"* * * * * root touch /tmp/owned\n"
            evil.size = len(payload)
            bad.addfile(evil, io.BytesIO(payload))
    return dest


TOP = CURRENT.removesuffix(".tar.xz")
FAKE_ELF = (
    "members named like shared libraries are not ELF shared objects for this host, refusing to install them: "
    f"{TOP}/lib/libcudnn.so.{CUDNN3} is only 4 bytes long: a truncated ELF header, not a library"
)


# --- faults: every bad input on its own fresh host, all in one ansible-playbook run

# case -> (extra host vars, or the bad archive's kind and source; the messages its failure must contain)
BAD_INPUTS = {
    "missing-archive": ({"cudnn_archive_src": "/nonexistent/" + CURRENT, "cudnn_archive_sha256": ""},
                        ["cuDNN archive /nonexistent/" + CURRENT + " not found on the controller",
                         "Nothing was written", "set cudnn_archive_src"]),
    "sha256-mismatch": ({"cudnn_archive_sha256": "0" * 64},
                        ["sha256 mismatch", "expected " + "0" * 64, "Nothing was written",
                         "fix cudnn_archive_sha256"]),
    "url-without-sha256": ({"cudnn_source": "url", "cudnn_archive_url": f"file://{HOST_REPOS}/cudnn/{CURRENT}",
                            "cudnn_archive_sha256": ""},
                           ["cudnn_source is url but cudnn_archive_sha256 is empty"]),
    "no-cudnn-h-controller": (("no-cudnn-h", "controller"),
                              [NOT_INSTALLED, "no include/cudnn.h in the archive"]),
    "no-cudnn-h-host": (("no-cudnn-h", "host"),
                        [NOT_INSTALLED, "no include/cudnn.h in the archive"]),
    "traversal-controller": (("traversal", "controller"),
                             [NOT_INSTALLED, "escapes the archive with"]),
    "traversal-host": (("traversal", "host"), [NOT_INSTALLED, "escapes the archive with"]),
    "fake-elf": (("fake-elf", "controller"), [NOT_INSTALLED, FAKE_ELF]),
}


def _bad_input_vars(case: str, tmp_path: Path) -> dict:
    spec = BAD_INPUTS[case][0]
    if isinstance(spec, dict):
        return spec
    kind, source = spec
    archive = bad_archive(tmp_path / f"bad-{kind}.tar.xz", kind)
    src = str(archive) if source == "controller" else f"/root/{archive.name}"
    return {"cudnn_source": source, "cudnn_archive_src": src, "cudnn_archive_sha256": _sha256(archive)}


def test_bad_inputs_are_refused_before_writing(sandbox_ready, tmp_path) -> None:
    cases = {case: (DEFAULT_PLATFORM, _bad_input_vars(case, tmp_path)) for case in BAD_INPUTS}
    with scenario_hosts("badin", cases, cuda=True) as (inventory, hosts):
        for case, host in hosts.items():
            if cases[case][1].get("cudnn_source") == "host":
                name = Path(cases[case][1]["cudnn_archive_src"]).name
                shutil.copy(tmp_path / name, host.root / "root" / name)
        before = {case: snapshot(host) for case, host in hosts.items()}
        res = run_playbook_on(inventory, ",".join(h.name for h in hosts.values()), PLAYBOOK, tags="cudnn")
        assert res.returncode != 0, res.stdout[-3000:]
        for case, host in hosts.items():
            failure = failure_text(res.stdout, host.name)
            for message in BAD_INPUTS[case][1]:
                assert message in failure, f"{case}: {message!r} not in {failure!r}"
            assert not (host.root / "etc/cron.d/gpu-stack-evil").exists()
            assert diff_snapshots(before[case], snapshot(host)) == [], case


def test_foreign_file_in_lib64_is_kept(cuda_host, tmp_path) -> None:
    first = run_playbook(cuda_host, PLAYBOOK, tags="cudnn")
    assert first.returncode == 0, first.stdout[-3000:]

    # a bad archive over an installed cuDNN says that cuDNN stays as it is
    fake = bad_archive(tmp_path / "fake.tar.xz", "fake-elf")
    before = snapshot(cuda_host)
    refused = run_playbook(cuda_host, PLAYBOOK, tags="cudnn", extra_vars={
        "cudnn_archive_src": str(fake), "cudnn_archive_sha256": _sha256(fake)})
    out = _flat(refused.stdout)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert f"cuDNN {CUDNN3} stays installed, nothing was changed: archive" in out, out[-3000:]
    assert FAKE_ELF in out
    assert diff_snapshots(before, snapshot(cuda_host)) == []

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

    # the case: the task that made the links reports the change and shows the warning, and the
    # loader cache is refreshed (a manual ldconfig afterwards changes nothing)
    lenient = run_playbook(cuda_host, PLAYBOOK, tags="cuda_links")
    out = _flat(lenient.stdout)
    assert lenient.returncode == 0, lenient.stdout[-3000:]
    assert (
        f"[WARNING]: left alone 1 path(s) this project did not create: /usr/lib64/libcudnn.so.{MAJOR} exists "
        "and was not created by this project (a regular file)"
    ) in out, out[-3000:]
    assert task_status(lenient.stdout, f"cuda_links : {LINKS_TASK}", cuda_host.name) == "changed"
    assert task_status(lenient.stdout, LINKS_LOADER, cuda_host.name) == "changed"
    assert foreign.read_bytes() == content and not foreign.is_symlink()
    assert (cuda_host.root / "usr/lib64/libcudnn.so").is_symlink()
    cache = cuda_host.run("ldconfig", "-p").stdout
    assert f"=> /usr/lib64/libcudnn_ops.so.{MAJOR}\n" in cache
    assert cuda_host.run("ldconfig").returncode == 0 and cuda_host.run("ldconfig", "-p").stdout == cache
    # nothing but the links of the manifest, the manifest and the loader cache changed
    manifest = "/var/lib/opensuse-gpu-stack/manifest-cuda_links.json"
    made = {e["path"] for e in json.loads((cuda_host.root / manifest.lstrip("/")).read_text())["entries"]}
    made.add(manifest)
    changed = {d.split(": ", 1)[1].split(":", 1)[0] for d in diff_snapshots(before, snapshot(cuda_host))}
    assert changed - made <= {"/etc/ld.so.cache", "/var/cache/ldconfig/aux-cache"}, changed - made
    again = run_playbook(cuda_host, PLAYBOOK, tags="cuda_links")
    assert _recap_changed(again.stdout) == 0 and "[WARNING]: left alone 1 path(s)" in again.stdout

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
    load = cuda_host.run(host_python(cuda_host), "-c", code)
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
    assert cuda_host.run(host_python(cuda_host), "-c", code).stdout.strip() == str(VERSION_INT)

    switch = run_playbook(cuda_host, PLAYBOOK, tags="cudnn")
    assert switch.returncode != 0 and "was installed from RPMs by this project" in _flat(switch.stdout)

    removed = run_playbook(cuda_host, REMOVE)
    assert removed.returncode == 0, removed.stdout[-3000:]
    # rpm's sqlite database does not shrink after rpm -e (the package list is compared instead) and
    # ldconfig's aux-cache keeps stat data of files it saw: both are caches, not the installed tree.
    caches = ("/var/lib/rpm/rpmdb.sqlite", "/var/cache/ldconfig/aux-cache")
    diff = [d for d in diff_snapshots(before, snapshot(cuda_host)) if not d.split(": ")[1].startswith(caches)]
    assert diff == [], diff

"""Unit tests for plugins/modules/cudnn_archive.py: archive inspection, planning, install and removal.

Archives are built here with tarfile (owners uid 1000 and odd modes on purpose); installs go into a
fake CUDA tree under tmp_path whose include/ and lib64/ are symlinks into targets/, like NVIDIA's RPMs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_elf as elf
from elf_samples import synthetic_elf

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("cudnn_archive", REPO / "plugins/modules/cudnn_archive.py")
ca = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ca)

PIN = "9.3.0.75"
TOP = "cudnn-linux-x86_64-9.3.0.75_cuda12-archive"
VERSION_H = "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n#define CUDNN_PATCHLEVEL 0\n"
SUBLIBS = ["graph", "ops", "cnn", "adv", "heuristic", "engines_precompiled", "engines_runtime_compiled"]
HOST = elf.host_machine()


def so(soname: str) -> bytes:
    """A small but well-formed ELF shared object for the machine running the tests."""
    return synthetic_elf(2 if HOST[1] == 64 else 1, HOST[2], soname, machine=HOST[0] or 62)


# --- fixtures


def member(name, kind="file", data=b"", target="", mode=0o640, uid=1000):
    return {"name": name, "kind": kind, "data": data, "target": target, "mode": mode, "uid": uid}


def make_tar(path: Path, members: list[dict], compression: str = "xz") -> Path:
    with tarfile.open(path, "w:" + compression) as tar:
        for m in members:
            info = tarfile.TarInfo(m["name"])
            info.mode, info.uid, info.gid = m["mode"], m["uid"], m["uid"]
            info.uname = info.gname = "builder"
            kinds = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "link": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }
            info.type = kinds[m["kind"]]
            if m["kind"] in ("link", "hard"):
                info.linkname = m["target"]
            data = m["data"] if m["kind"] == "file" else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data or m["kind"] == "file" else None)
    return path


def redist_members(version_h: str = VERSION_H, top: str = TOP, extra=()) -> list[dict]:
    ms = [
        member(top, "dir", mode=0o700),
        member(top + "/include", "dir", mode=0o700),
        member(top + "/include/cudnn.h", data=b'#include "cudnn_version.h"\n', mode=0o600),
        member(top + "/include/cudnn_version.h", data=version_h.encode(), mode=0o666),
        member(top + "/lib", "dir", mode=0o777),
        member(top + "/lib/libcudnn.so.9.3.0", data=so("libcudnn.so.9"), mode=0o700),
        member(top + "/lib/libcudnn.so.9", "link", target="libcudnn.so.9.3.0"),
        member(top + "/lib/libcudnn.so", "link", target="libcudnn.so.9"),
        member(top + "/lib/libcudnn_static.a", data=b"!<arch>\n", mode=0o600),
        member(top + "/LICENSE", data=b"license\n"),
    ]
    for sub in SUBLIBS:
        ms += [
            member(f"{top}/lib/libcudnn_{sub}.so.9.3.0", data=so(f"libcudnn_{sub}.so.9"), mode=0o600),
            member(f"{top}/lib/libcudnn_{sub}.so.9", "link", target=f"libcudnn_{sub}.so.9.3.0"),
            member(f"{top}/lib/libcudnn_{sub}.so", "link", target=f"libcudnn_{sub}.so.9"),
        ]
    return ms + list(extra)


def legacy_members() -> list[dict]:
    return [
        member("cuda/include/cudnn.h", data=VERSION_H.encode(), mode=0o444),
        member("cuda/include/cudnn_version.h", data=VERSION_H.encode(), mode=0o444),
        member("cuda/lib64/libcudnn.so.9.3.0", data=so("libcudnn.so.9"), mode=0o775),
        member("cuda/lib64/libcudnn.so.9", "link", target="libcudnn.so.9.3.0"),
        member("cuda/lib64/libcudnn.so", "link", target="libcudnn.so.9"),
        member("cuda/NVIDIA_SLA_cuDNN_Support.txt", data=b"sla\n"),
    ]


@pytest.fixture
def cuda_tree(tmp_path: Path) -> dict:
    """/usr/local/cuda -> cuda-12.5, with include and lib64 as symlinks into targets/ (like the RPMs)."""
    root = tmp_path / "root"
    targets = root / "usr/local/cuda-12.5/targets/x86_64-linux"
    (targets / "include").mkdir(parents=True)
    (targets / "lib").mkdir()
    (targets / "include/cuda_runtime.h").write_text("// cuda\n")
    (targets / "lib/libcudart.so.12.5.82").write_bytes(b"\x7fELF cudart")
    os.symlink("targets/x86_64-linux/include", root / "usr/local/cuda-12.5/include")
    os.symlink("targets/x86_64-linux/lib", root / "usr/local/cuda-12.5/lib64")
    os.symlink("cuda-12.5", root / "usr/local/cuda")
    return {
        "root": root,
        "home": str(root / "usr/local/cuda"),
        "include": targets / "include",
        "lib": targets / "lib",
        "manifest": str(root / "var/lib/opensuse-gpu-stack/manifest-cudnn.json"),
    }


class FailJson(Exception):
    pass


class FakeModule:
    def __init__(self, check_mode=False, tmpdir=None):
        self.check_mode = check_mode
        self.tmpdir = tmpdir

    def fail_json(self, msg, **kwargs):
        raise FailJson(msg)


def params(tree, archive, **overrides):
    p = {
        "state": "present",
        "src": str(archive),
        "remote_src": True,
        "url": None,
        "sha256": None,
        "version": PIN,
        "cuda_home": tree["home"],
        "manifest": tree["manifest"],
        "timeout": 10,
        "validate_certs": True,
        "archive_pending": False,
        "archive_name": None,
    }
    p.update(overrides)
    return p


def listing(root: Path) -> list[tuple]:
    """Paths, kinds, modes and link targets under root (for before/after comparisons)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out.append(
                (os.path.relpath(path, root), stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), target)
            )
    return sorted(out)


# --- pure helpers


@pytest.mark.parametrize(
    "name, expected",
    [
        ("./cuda/include/cudnn.h", "cuda/include/cudnn.h"),
        ("top/lib/", "top/lib"),
        ("a//b/./c", "a/b/c"),
        (".", ""),
    ],
)
def test_normalize_name(name, expected):
    assert ca.normalize_name(name) == expected


@pytest.mark.parametrize("name", ["/etc/passwd", "top/../../etc/passwd", "../x", "top/lib/../../y"])
def test_normalize_name_rejects_escapes(name):
    with pytest.raises(ca.ArchiveError):
        ca.normalize_name(name)


def _info(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    "info, words",
    [
        (_info("/abs/file"), "absolute path"),
        (_info("top/../../etc/shadow"), "'..'"),
        (_info("top/lib/evil", tarfile.SYMTYPE, "/etc/shadow"), "absolute path"),
        (_info("top/lib/evil", tarfile.SYMTYPE, "../../../etc"), "outside the archive"),
        (_info("top/lib/evil", tarfile.SYMTYPE, ""), "empty target"),
        (_info("top/lib/hard", tarfile.LNKTYPE, "top/lib/x"), "hard link"),
        (_info("top/dev/null", tarfile.CHRTYPE), "device file"),
        (_info("top/dev/sda", tarfile.BLKTYPE), "device file"),
        (_info("top/fifo", tarfile.FIFOTYPE), "FIFO"),
        (_info("top/volume", b"V"), "special member"),
    ],
)
def test_member_problem_rejects(info, words):
    assert words in ca.member_problem(info)


@pytest.mark.parametrize(
    "info",
    [
        _info("top/include/cudnn.h"),
        _info("top/lib", tarfile.DIRTYPE),
        _info("top/lib/libcudnn.so.9", tarfile.SYMTYPE, "libcudnn.so.9.3.0"),
        _info("top/lib/sub/link", tarfile.SYMTYPE, "../libcudnn.so.9"),
    ],
)
def test_member_problem_accepts(info):
    assert ca.member_problem(info) is None


@pytest.mark.parametrize(
    "text, expected",
    [
        (VERSION_H, (9, 3, 0)),
        (
            "#  define CUDNN_MAJOR 7\n#define CUDNN_MINOR 6\n#define CUDNN_PATCHLEVEL 5\n"
            "#define CUDNN_VERSION (CUDNN_MAJOR * 1000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)\n",
            (7, 6, 5),
        ),
        ("#define CUDNN_MAJOR 8\n#define CUDNN_MINOR 9\n", None),
        ("nothing here", None),
    ],
)
def test_parse_version(text, expected):
    assert ca.parse_version(text) == expected


@pytest.mark.parametrize("pin, expected", [("9.3.0.75", (9, 3, 0)), ("8.9.7", (8, 9, 7))])
def test_pin_triplet(pin, expected):
    assert ca.pin_triplet(pin) == expected


@pytest.mark.parametrize("pin", ["9.3", "9.x.0", ""])
def test_pin_triplet_rejects(pin):
    with pytest.raises(ValueError):
        ca.pin_triplet(pin)


def test_detect_layout_both():
    redist = ca.detect_layout([TOP + "/include/cudnn.h", TOP + "/lib/libcudnn.so.9"])
    assert redist == {"layout": "redist", "top": TOP, "include": TOP + "/include", "lib": TOP + "/lib"}
    legacy = ca.detect_layout(["cuda/include/cudnn.h", "cuda/lib64/libcudnn.so.7"])
    assert legacy["layout"] == "legacy" and legacy["lib"] == "cuda/lib64"


@pytest.mark.parametrize(
    "names, words",
    [
        (["top/lib/libcudnn.so.9"], "no include/cudnn.h"),
        (["a/include/cudnn.h", "b/include/cudnn.h"], "several cuDNN trees"),
        (["top/include/cudnn.h"], "no top/lib"),
        (["top/include/cudnn.h", "top/lib/x", "top/lib64/y"], "ambiguous"),
    ],
)
def test_detect_layout_rejects(names, words):
    with pytest.raises(ca.ArchiveError, match=words):
        ca.detect_layout(names)


# --- inspection


def test_inspect_redist(tmp_path):
    info = ca.inspect_archive(str(make_tar(tmp_path / "a.tar.xz", redist_members())), PIN)
    assert (info["layout"], info["version"], info["version_source"]) == ("redist", "9.3.0", "cudnn_version.h")
    rels = {(e["section"], e["rel"]): e for e in info["entries"]}
    assert rels[("include", "cudnn.h")]["mode"] == 0o644
    assert rels[("lib", "libcudnn.so.9.3.0")]["mode"] == 0o755
    assert rels[("lib", "libcudnn_static.a")]["mode"] == 0o644
    assert rels[("lib", "libcudnn.so.9")] == {
        "section": "lib",
        "rel": "libcudnn.so.9",
        "kind": "link",
        "target": "libcudnn.so.9.3.0",
    }
    assert info["ignored"] == [TOP + "/LICENSE"]


def test_inspect_legacy_tgz(tmp_path):
    info = ca.inspect_archive(str(make_tar(tmp_path / "a.tgz", legacy_members(), "gz")), PIN)
    assert (info["layout"], info["top"], info["version"]) == ("legacy", "cuda", "9.3.0")
    assert {e["section"] for e in info["entries"]} == {"include", "lib"}


def test_inspect_v7_reads_cudnn_h(tmp_path):
    v7 = "#define CUDNN_MAJOR 7\n#define CUDNN_MINOR 6\n#define CUDNN_PATCHLEVEL 5\n"
    ms = [
        member("cuda/include/cudnn.h", data=v7.encode()),
        member("cuda/lib64/libcudnn.so.7.6.5", data=so("libcudnn.so.7")),
    ]
    info = ca.inspect_archive(str(make_tar(tmp_path / "v7.tgz", ms, "gz")), "7.6.5.32")
    assert (info["version"], info["version_source"]) == ("7.6.5", "cudnn.h")


def test_inspect_adds_missing_parent_dirs(tmp_path):
    ms = redist_members(extra=[member(TOP + "/include/sub/deep/x.h", data=b"x")])
    info = ca.inspect_archive(str(make_tar(tmp_path / "a.tar.xz", ms)), PIN)
    dirs = {e["rel"] for e in info["entries"] if e["kind"] == "dir"}
    assert {"sub", "sub/deep"} <= dirs


@pytest.mark.parametrize(
    "extra, words",
    [
        ([member(TOP + "/../../etc/cron.d/x", data=b"x")], "escapes the archive"),
        ([member("/etc/cron.d/x", data=b"x")], "absolute path"),
        ([member(TOP + "/lib/evil.so", "link", target="../../../../etc/shadow")], "outside the archive"),
        ([member(TOP + "/lib/evil.so", "link", target="/etc/shadow")], "absolute path"),
        (
            [member(TOP + "/lib/evil.so", "link", target="../include/cudnn.h")],
            "points outside " + TOP + "/lib/",
        ),
        ([member(TOP + "/lib/dangling.so", "link", target="libnothere.so")], "not a file in the archive"),
        ([member(TOP + "/lib/null", "chr")], "device file"),
        ([member(TOP + "/lib/pipe", "fifo")], "FIFO"),
        ([member(TOP + "/lib/hard.so", "hard", target=TOP + "/lib/libcudnn.so.9.3.0")], "hard link"),
        ([member(TOP + "/lib/libcudnn.so.9/x", data=b"x")], "not a directory"),
        ([member(TOP + "/include/cudnn.h", data=b"again")], "appears twice"),
    ],
)
def test_inspect_rejects_unsafe(tmp_path, extra, words):
    archive = make_tar(tmp_path / "bad.tar.xz", redist_members(extra=extra))
    with pytest.raises(ca.ArchiveError, match=words.replace("(", r"\(").replace(".", r"\.")):
        ca.inspect_archive(str(archive), PIN)


@pytest.mark.parametrize(
    "drop, words",
    [
        ("/include/cudnn.h", "no include/cudnn.h"),
        ("/include/cudnn_version.h", "no cudnn_version.h"),
        ("/lib/libcudnn.so.9.3.0", "not a file in the archive"),
    ],
)
def test_inspect_rejects_incomplete(tmp_path, drop, words):
    ms = [m for m in redist_members() if not m["name"].endswith(drop)]
    with pytest.raises(ca.ArchiveError, match=words):
        ca.inspect_archive(str(make_tar(tmp_path / "bad.tar.xz", ms)), PIN)


def test_inspect_rejects_archive_without_library(tmp_path):
    ms = [m for m in redist_members() if "/lib/libcudnn.so" not in m["name"]]
    with pytest.raises(ca.ArchiveError, match=r"no libcudnn\.so\.\* library"):
        ca.inspect_archive(str(make_tar(tmp_path / "bad.tar.xz", ms)), PIN)


def test_inspect_rejects_v9_without_version_header_even_if_cudnn_h_has_version(tmp_path):
    ms = [m for m in redist_members() if not m["name"].endswith("cudnn_version.h")]
    ms = [dict(m, data=VERSION_H.encode()) if m["name"].endswith("cudnn.h") else m for m in ms]
    with pytest.raises(ca.ArchiveError, match=r"without include/cudnn_version\.h"):
        ca.inspect_archive(str(make_tar(tmp_path / "bad.tar.xz", ms)), PIN)


def test_inspect_rejects_version_mismatch(tmp_path):
    other = VERSION_H.replace("MINOR 3", "MINOR 1")
    with pytest.raises(ca.ArchiveError, match=r"holds cuDNN 9\.1\.0 but the pin is 9\.3\.0\.75"):
        ca.inspect_archive(str(make_tar(tmp_path / "old.tar.xz", redist_members(other))), PIN)


def test_inspect_rejects_non_tar(tmp_path):
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"<html>404</html>")
    with pytest.raises(ca.ArchiveError, match="cannot be read as a tar archive"):
        ca.inspect_archive(str(junk), PIN)


def _with_library(data: bytes, name: str = "libcudnn.so.9.3.0") -> list[dict]:
    return [dict(m, data=data) if m["name"] == f"{TOP}/lib/{name}" else m for m in redist_members()]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x7fELF", "lib/libcudnn.so.9.3.0 is only 4 bytes long: a truncated ELF header, not a library"),
        (b"\x7fELF" + b"\0" * 4092, "lib/libcudnn.so.9.3.0 has an unknown ELF class (0)"),
        (b"a user's notes\n", "lib/libcudnn.so.9.3.0 is not an ELF file"),
        (synthetic_elf(2, "<", "libcudnn.so.9", machine=22), "lib/libcudnn.so.9.3.0 is built for s390x"),
        (
            synthetic_elf(2, "<", "libcudnn.so.9", etype=2),
            "lib/libcudnn.so.9.3.0 is an executable, not a shared",
        ),
        (so("libcudnn.so.9")[:-8], "lib/libcudnn.so.9.3.0 is truncated: its dynamic section ends beyond"),
    ],
    ids=["4-byte-elf-magic", "zeros", "text", "other-arch", "executable", "truncated"],
)
def test_inspect_refuses_members_that_are_not_shared_objects_of_this_host(tmp_path, data, words):
    with pytest.raises(ca.ArchiveError) as err:
        ca.inspect_archive(str(make_tar(tmp_path / "bad.tar.xz", _with_library(data))), PIN)
    assert "members named like shared libraries are not ELF shared objects for this host" in str(err.value)
    assert words in str(err.value)


def test_inspect_checks_every_shared_library_against_the_target_host(tmp_path):
    archive = str(make_tar(tmp_path / "a.tar.xz", redist_members()))
    other = (183, 64, "<") if HOST[0] != 183 else (62, 64, "<")
    words = f"is built for {elf.machine_name(HOST[0])}, this host is {elf.machine_name(other[0])}"
    with pytest.raises(ca.ArchiveError) as err:
        ca.inspect_archive(archive, PIN, host=other)
    assert f"lib/libcudnn_graph.so.9.3.0 {words}" in str(err.value)
    # the static archive and the headers are not shared libraries: not checked
    assert ca.inspect_archive(archive, PIN)["version"] == "9.3.0"


# --- install / remove


def run(tree, archive, check=False, **overrides):
    return ca.run_present(FakeModule(check_mode=check), params(tree, archive, **overrides))


@pytest.mark.parametrize("layout", ["redist", "legacy"])
def test_install_writes_through_rpm_symlinks_with_fixed_modes(tmp_path, cuda_tree, layout):
    archive = (
        make_tar(tmp_path / "a.tar.xz", redist_members())
        if layout == "redist"
        else make_tar(tmp_path / "a.tgz", legacy_members(), "gz")
    )
    result = run(cuda_tree, archive)
    assert result["changed"] and result["layout"] == layout and result["version"] == "9.3.0"
    home = Path(cuda_tree["home"])
    assert os.path.islink(home.parent / "cuda-12.5/include") and os.path.islink(
        home.parent / "cuda-12.5/lib64"
    )
    header = cuda_tree["include"] / "cudnn_version.h"
    lib = cuda_tree["lib"] / "libcudnn.so.9.3.0"
    for path, mode in ((header, 0o644), (lib, 0o755), (cuda_tree["include"] / "cudnn.h", 0o644)):
        st = os.lstat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), path
    assert os.readlink(cuda_tree["lib"] / "libcudnn.so.9") == "libcudnn.so.9.3.0"
    assert os.path.realpath(home / "lib64/libcudnn.so") == str(lib)
    assert not [n for n in os.listdir(cuda_tree["lib"]) if n.startswith(ca.STAGING_PREFIX)]
    manifest = json.loads(Path(cuda_tree["manifest"]).read_text())
    assert manifest["state"] == "installed" and manifest["layout"] == layout
    assert str(lib) in {e["path"] for e in manifest["entries"]}
    assert str(cuda_tree["lib"] / "libcudart.so.12.5.82") not in {e["path"] for e in manifest["entries"]}
    assert (
        manifest["created_dirs"]
        == [str(cuda_tree["root"] / "var/lib"), str(cuda_tree["root"] / "var/lib/opensuse-gpu-stack")]
        or str(cuda_tree["root"] / "var/lib/opensuse-gpu-stack") in manifest["created_dirs"]
    )


def test_second_run_changes_nothing(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    run(cuda_tree, archive)
    before = listing(cuda_tree["root"])
    again = run(cuda_tree, archive)
    assert not again["changed"] and again["installed"] == []
    assert listing(cuda_tree["root"]) == before
    # the action plugin's probe: no archive needed when the manifest records it intact
    probe = run(cuda_tree, None, src=None, sha256=ca.sha256_file(str(archive)), archive_pending=True)
    assert not probe["changed"] and "needs_archive" not in probe


def test_probe_asks_for_archive_when_a_file_was_changed(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    run(cuda_tree, archive)
    os.chmod(cuda_tree["lib"] / "libcudnn_ops.so.9.3.0", 0o700)
    probe = run(cuda_tree, None, src=None, sha256=ca.sha256_file(str(archive)), archive_pending=True)
    assert probe["needs_archive"] is True and not probe["changed"]
    fixed = run(cuda_tree, archive)
    assert fixed["changed"] and fixed["installed"] == [str(cuda_tree["lib"] / "libcudnn_ops.so.9.3.0")]
    assert stat.S_IMODE(os.stat(cuda_tree["lib"] / "libcudnn_ops.so.9.3.0").st_mode) == 0o755


def test_check_mode_reports_and_writes_nothing(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    before = listing(cuda_tree["root"])
    result = run(cuda_tree, archive, check=True)
    assert result["changed"] and str(cuda_tree["include"] / "cudnn.h") in result["installed"]
    assert "cudnn.h" in result["diff"]["after"]
    assert listing(cuda_tree["root"]) == before


def test_foreign_file_is_a_conflict_and_nothing_is_written(tmp_path, cuda_tree):
    (cuda_tree["include"] / "cudnn.h").write_text("// a user's own header\n")
    before = listing(cuda_tree["root"])
    with pytest.raises(
        FailJson, match=r"nothing was written.*cudnn\.h exists and was not installed by this project"
    ):
        run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()))
    assert listing(cuda_tree["root"]) == before
    assert (cuda_tree["include"] / "cudnn.h").read_text() == "// a user's own header\n"


def test_a_refused_upgrade_says_the_installed_cudnn_stays(tmp_path, cuda_tree):
    run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()))
    (cuda_tree["include"] / "cudnn_extra.h").write_text("// a user's own header\n")
    extra = [member(f"{TOP}/include/cudnn_extra.h", data=b"// new in this build\n")]
    before = listing(cuda_tree["root"])
    with pytest.raises(
        FailJson, match=r"^cuDNN 9\.3\.0 stays installed, nothing was changed: 1 path\(s\) exist"
    ):
        run(cuda_tree, make_tar(tmp_path / "b.tar.xz", redist_members(extra=extra)))
    assert listing(cuda_tree["root"]) == before


def test_refusals_say_what_stays_on_the_host():
    assert ca.nothing_changed(None) == "cuDNN not installed, nothing was written"
    installed = {"state": "installed", "version": "9.3.0", "entries": [{"path": "/x", "kind": "file"}]}
    assert ca.nothing_changed(installed) == "cuDNN 9.3.0 stays installed, nothing was changed"
    interrupted = dict(installed, state="installing")
    assert ca.nothing_changed(interrupted).startswith("the interrupted install of cuDNN 9.3.0 stays as it is")
    rpms = {"state": "installed", "version_pin": "9.3.0.75", "entries": [], "packages": ["libcudnn9-cuda-12"]}
    assert ca.nothing_changed(rpms) == (
        "cuDNN 9.3.0.75 from RPMs (libcudnn9-cuda-12) stays installed, nothing was changed"
    )


def test_identical_foreign_file_is_left_alone_and_not_recorded(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    target = cuda_tree["include"] / "cudnn.h"
    target.write_bytes(b'#include "cudnn_version.h"\n')
    os.chmod(target, 0o644)
    run(cuda_tree, archive)
    manifest = json.loads(Path(cuda_tree["manifest"]).read_text())
    assert str(target) not in {e["path"] for e in manifest["entries"]}
    ca.run_absent(FakeModule(), cuda_tree["manifest"])
    assert target.exists()


def test_missing_cuda_home_fails_clearly(tmp_path, cuda_tree):
    with pytest.raises(ca.ArchiveError, match="install the CUDA toolkit first"):
        run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()), cuda_home=str(tmp_path / "nocuda"))


def test_sha256_mismatch_fails_before_writing(tmp_path, cuda_tree):
    before = listing(cuda_tree["root"])
    with pytest.raises(FailJson, match="sha256 mismatch"):
        run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()), sha256="0" * 64)
    assert listing(cuda_tree["root"]) == before


def test_url_requires_sha256(tmp_path, cuda_tree):
    with pytest.raises(FailJson, match="needs sha256"):
        run(cuda_tree, None, src=None, url="https://example.invalid/cudnn.tar.xz")


def test_install_then_remove_restores_the_tree(tmp_path, cuda_tree):
    before = listing(cuda_tree["root"])
    run(
        cuda_tree,
        make_tar(tmp_path / "a.tar.xz", redist_members(extra=[member(TOP + "/include/sub/x.h", data=b"x")])),
    )
    assert (cuda_tree["include"] / "sub/x.h").exists()
    check = ca.run_absent(FakeModule(check_mode=True), cuda_tree["manifest"])
    assert check["changed"] and str(cuda_tree["lib"] / "libcudnn.so.9") in check["removed"]
    assert Path(cuda_tree["manifest"]).exists()
    result = ca.run_absent(FakeModule(), cuda_tree["manifest"])
    assert result["changed"] and result["kept"] == []
    assert listing(cuda_tree["root"]) == before
    assert not ca.run_absent(FakeModule(), cuda_tree["manifest"])["changed"]


def test_remove_keeps_what_changed_since_install(tmp_path, cuda_tree):
    run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()))
    edited = cuda_tree["include"] / "cudnn.h"
    edited.write_text("// edited by a user\n")
    result = ca.run_absent(FakeModule(), cuda_tree["manifest"])
    assert result["kept"] == [str(edited)] and edited.read_text() == "// edited by a user\n"
    assert not (cuda_tree["lib"] / "libcudnn.so.9.3.0").exists()


def test_switching_archives_removes_stale_entries(tmp_path, cuda_tree):
    run(
        cuda_tree,
        make_tar(tmp_path / "a.tar.xz", redist_members(extra=[member(TOP + "/include/old.h", data=b"o")])),
    )
    assert (cuda_tree["include"] / "old.h").exists()
    result = run(cuda_tree, make_tar(tmp_path / "b.tgz", legacy_members(), "gz"))
    assert result["changed"] and str(cuda_tree["include"] / "old.h") in result["removed"]
    assert not (cuda_tree["lib"] / "libcudnn_ops.so.9.3.0").exists()
    manifest = json.loads(Path(cuda_tree["manifest"]).read_text())
    assert manifest["layout"] == "legacy"
    assert all(os.path.lexists(e["path"]) for e in manifest["entries"])


def test_stale_staging_dir_is_cleaned(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    run(cuda_tree, archive)
    stale = cuda_tree["lib"] / (ca.STAGING_PREFIX + "9.3.0-1")
    stale.mkdir()
    (stale / "000001").write_bytes(b"half")
    result = run(cuda_tree, archive)
    assert result["changed"] and str(stale) in result["removed"] and not stale.exists()


def test_interrupted_commit_is_completed_by_the_next_run(tmp_path, cuda_tree, monkeypatch):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 4:  # manifest write, then three renames
            raise OSError(5, "simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(ca.os, "replace", flaky)
    with pytest.raises(OSError):
        run(cuda_tree, archive)
    monkeypatch.setattr(ca.os, "replace", real_replace)
    manifest = json.loads(Path(cuda_tree["manifest"]).read_text())
    assert manifest["state"] == "installing"
    assert not (cuda_tree["lib"] / "libcudnn.so.9").exists(), "the loader name must be placed last"
    assert not [n for n in os.listdir(cuda_tree["lib"]) if n.startswith(ca.STAGING_PREFIX)]
    result = run(cuda_tree, archive)
    assert result["changed"] and (cuda_tree["lib"] / "libcudnn.so.9").is_symlink()
    assert json.loads(Path(cuda_tree["manifest"]).read_text())["state"] == "installed"


def test_commit_order_puts_loader_link_last():
    entries = [
        ({"kind": "link", "section": "lib", "rel": "libcudnn.so.9"}, "/l/libcudnn.so.9"),
        ({"kind": "link", "section": "lib", "rel": "libcudnn.so"}, "/l/libcudnn.so"),
        ({"kind": "file", "section": "include", "rel": "cudnn.h"}, "/i/cudnn.h"),
        ({"kind": "file", "section": "lib", "rel": "libcudnn.so.9.3.0"}, "/l/libcudnn.so.9.3.0"),
        ({"kind": "dir", "section": "include", "rel": "sub"}, "/i/sub"),
    ]
    order = [p for _, p in ca.commit_order(entries)]
    assert order == ["/i/sub", "/l/libcudnn.so.9.3.0", "/i/cudnn.h", "/l/libcudnn.so", "/l/libcudnn.so.9"]


def test_url_source_downloads_verifies_and_installs(tmp_path, cuda_tree):
    archive = make_tar(tmp_path / "a.tar.xz", redist_members())
    digest = ca.sha256_file(str(archive))
    module = FakeModule(tmpdir=str(tmp_path))

    class Response(io.BytesIO):
        pass

    import ansible.module_utils.urls as urls

    def fake_fetch(mod, url, timeout=10):
        return Response(archive.read_bytes()), {"status": 200, "msg": "OK"}

    orig, urls.fetch_url = urls.fetch_url, fake_fetch
    try:
        p = params(cuda_tree, None, src=None, url="https://example.invalid/" + archive.name, sha256=digest)
        result = ca.run_present(module, p)
        assert result["changed"] and result["version"] == "9.3.0"
        assert not ca.run_present(module, p)["changed"]
        with pytest.raises(FailJson, match="sha256 mismatch"):
            ca.run_present(module, dict(p, sha256="f" * 64))
    finally:
        urls.fetch_url = orig


def test_rpm_route_manifest_refuses_tarball(tmp_path, cuda_tree):
    manifest = Path(cuda_tree["manifest"])
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "schema": 1,
                "role": "cudnn",
                "method": "rpm",
                "entries": [],
                "packages": ["libcudnn9-cuda-12"],
                "state": "installed",
            }
        )
    )
    with pytest.raises(FailJson, match="was installed from RPMs by this project"):
        run(cuda_tree, make_tar(tmp_path / "a.tar.xz", redist_members()))
    # removal of an RPM-route manifest removes only the manifest (the role removes the packages)
    assert ca.run_absent(FakeModule(), cuda_tree["manifest"])["removed"] == [cuda_tree["manifest"]]


def test_check_mode_before_cuda_exists_reports_a_change(tmp_path, cuda_tree):
    result = run(
        cuda_tree,
        make_tar(tmp_path / "a.tar.xz", redist_members()),
        check=True,
        cuda_home=str(tmp_path / "not-yet"),
    )
    assert result["changed"] and "would be installed once the CUDA toolkit is" in result["warnings"][0]


def test_errors_name_the_archive_not_the_temporary_copy(tmp_path, cuda_tree):
    ms = [m for m in redist_members() if not m["name"].endswith("/include/cudnn.h")]
    with pytest.raises(ca.ArchiveError, match=r"^archive cudnn-x\.tar\.xz: no include/cudnn\.h"):
        run(cuda_tree, make_tar(tmp_path / "tmpcopy", ms), archive_name="cudnn-x.tar.xz")

"""Unit tests for plugins/modules/soname_links.py: planning, links, aliases, mirrors and removal.

Shared libraries are compiled with gcc -shared -Wl,-soname (conftest.build); the ELF reader itself is
tested in test_gpu_stack_elf.py. Link trees live under tmp_path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "soname_links", REPO / "plugins/modules/soname_links.py"
)
sl = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sl)

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is needed to build test libraries")


# --- names


@pytest.mark.parametrize(
    "a, b",
    [
        ("libcudnn.so.9.10.0", "libcudnn.so.9.3.0"),
        ("libx.so.12.5.82", "libx.so.12.5"),
        ("libx.so.2", "libx.so.1.99"),
    ],
)
def test_version_key_orders_numerically(a, b):
    assert sl.version_key(a) > sl.version_key(b)


@pytest.mark.parametrize(
    "soname, dev",
    [
        ("libcudnn.so.9", "libcudnn.so"),
        ("libcudart.so.12", "libcudart.so"),
        ("libcublas.so.10.0", "libcublas.so"),
        ("libfoo.so", None),
        ("ld-x", None),
    ],
)
def test_dev_name(soname, dev):
    assert sl.dev_name(soname) == dev


def test_stem_of():
    assert sl.stem_of("libcufft.so.11") == sl.stem_of("libcufft.so.10") == "libcufft"


# --- planning and links


@pytest.fixture
def tree(tmp_path, build):
    """A CUDA-like tree (cuda -> cuda-12.5, lib64 -> targets/.../lib) plus fake /usr/include, /usr/lib64."""
    root = tmp_path / "root"
    lib = root / "usr/local/cuda-12.5/targets/x86_64-linux/lib"
    inc = root / "usr/local/cuda-12.5/targets/x86_64-linux/include"
    lib.mkdir(parents=True)
    inc.mkdir()
    (inc / "cudnn.h").write_text("// h\n")
    (inc / "crt").mkdir()
    (inc / "crt" / "host_config.h").write_text("// h\n")
    os.symlink("targets/x86_64-linux/lib", root / "usr/local/cuda-12.5/lib64")
    os.symlink("targets/x86_64-linux/include", root / "usr/local/cuda-12.5/include")
    os.symlink("cuda-12.5", root / "usr/local/cuda")
    # cudart as the RPMs ship it (links present), cuDNN as a bare file (no links), an old cuFFT only
    shutil.copy(build("libcudart.so.12"), lib / "libcudart.so.12.5.82")
    os.symlink("libcudart.so.12.5.82", lib / "libcudart.so.12")
    os.symlink("libcudart.so.12", lib / "libcudart.so")
    shutil.copy(build("libcudnn.so.9"), lib / "libcudnn.so.9.3.0")
    shutil.copy(build("libcudnn.so.9"), lib / "libcudnn.so.9.1.0")
    shutil.copy(build("libcufft.so.10"), lib / "libcufft.so.10.1.2")
    shutil.copy(build("libcublas.so.10"), lib / "libcublas.so.10.2.1")
    (lib / "libcudnn_static.a").write_bytes(b"!<arch>\n")
    (lib / "stubs").mkdir()
    for d in ("usr/include", "usr/lib64", "etc/ld.so.conf.d"):
        (root / d).mkdir(parents=True, exist_ok=True)
    home = root / "usr/local/cuda"
    return {
        "root": root,
        "lib": lib,
        "inc": inc,
        "home": home,
        "params": {
            "state": "present",
            "lib_dirs": [str(home / "lib64")],
            "dev_links": True,
            "aliases": [
                {"name": "libcublas.so.10.0", "target": "libcublas.so.10"},
                {"name": "libnope.so.1.0", "target": "libnope.so.1"},
            ],
            "expected_sonames": ["libcudart.so.12", "libcufft.so.11", "libcurand.so.10"],
            "expected_aliases": True,
            "mirrors": [
                {"src": str(home / "include"), "dest": str(root / "usr/include"), "recurse": True},
                {"src": str(home / "lib64"), "dest": str(root / "usr/lib64"), "patterns": ["*.so*"]},
            ],
            "manifest": str(root / "var/lib/opensuse-gpu-stack/manifest-cuda_links.json"),
            "strict": False,
        },
    }


def listing(root: Path) -> list[tuple]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out.append(
                (
                    os.path.relpath(path, root),
                    stat.S_IFMT(st.st_mode),
                    os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
                )
            )
    return sorted(out)


def present(tree, check=False, **overrides):
    return sl.run_present(dict(tree["params"], **overrides), check, owner=None)


@needs_gcc
def test_creates_soname_dev_alias_and_mirror_entries(tree):
    lib, root = tree["lib"], tree["root"]
    result = present(tree)
    assert result["changed"]
    # SONAME link to the newest real file, dev link to the SONAME
    assert os.readlink(lib / "libcudnn.so.9") == "libcudnn.so.9.3.0"
    assert os.readlink(lib / "libcudnn.so") == "libcudnn.so.9"
    assert os.readlink(lib / "libcufft.so.10") == "libcufft.so.10.1.2"
    # RPM-style links already right: untouched and not recorded
    assert str(lib / "libcudart.so.12") not in result["created"]
    # declared alias (the original procedure's libcublas.so.10.0) and TF's expected libcufft.so.11
    assert os.readlink(lib / "libcublas.so.10.0") == "libcublas.so.10"
    assert os.readlink(lib / "libcufft.so.11") == "libcufft.so.10"
    reasons = {
        (a["path"].split("/")[-1], a["reason"], a["created"], a["cross_major"]) for a in result["aliases"]
    }
    assert {
        ("libcublas.so.10.0", "declared", True, False),
        ("libcufft.so.11", "expected", True, True),
        ("libnope.so.1.0", "declared", False, False),
    } == reasons
    assert result["missing_sonames"] == ["libcurand.so.10"]
    # the expected alias crosses majors: a warning (every run), the declared same-major one is not
    assert [w for w in result["warnings"] if "libcufft.so.11" in w and "a different ABI" in w]
    assert not [w for w in result["warnings"] if "libcublas.so.10.0" in w]
    # mirrors: absolute links through /usr/local/cuda, including links created above
    assert os.readlink(root / "usr/lib64/libcudnn.so.9") == str(tree["home"] / "lib64/libcudnn.so.9")
    assert os.readlink(root / "usr/lib64/libcufft.so.11") == str(tree["home"] / "lib64/libcufft.so.11")
    assert os.readlink(root / "usr/include/cudnn.h") == str(tree["home"] / "include/cudnn.h")
    # files only: a header directory becomes a real directory of file links, never a directory link
    crt = root / "usr/include/crt"
    assert crt.is_dir() and not crt.is_symlink() and stat.S_IMODE(crt.stat().st_mode) == 0o755
    assert os.readlink(crt / "host_config.h") == str(tree["home"] / "include/crt/host_config.h")
    assert not (root / "usr/lib64/libcudnn_static.a").exists()
    assert not (root / "usr/lib64/stubs").exists()
    for entry in os.listdir(root / "usr/lib64"):
        assert os.path.exists(root / "usr/lib64" / entry), "dangling " + entry
    for system_dir in ("usr/include", "usr/lib64"):
        for dirpath, dirnames, filenames in os.walk(root / system_dir):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                assert not (path.is_symlink() and path.is_dir()), f"directory link {path}"
    manifest = json.loads(Path(tree["params"]["manifest"]).read_text())
    assert manifest["state"] == "applied"
    assert sorted(e["path"] for e in manifest["entries"]) == sorted(result["created"])
    assert {"path": str(crt), "kind": "dir", "reason": "mirror"} in manifest["entries"]
    assert not [e for e in manifest["entries"] if e["kind"] == "file"]


@needs_gcc
def test_second_run_and_check_mode_change_nothing(tree):
    present(tree)
    before = listing(tree["root"])
    again = present(tree)
    assert not again["changed"], again
    assert not present(tree, check=True)["changed"]
    assert listing(tree["root"]) == before


@needs_gcc
def test_check_mode_on_a_fresh_tree_reports_and_writes_nothing(tree):
    before = listing(tree["root"])
    result = present(tree, check=True)
    assert result["changed"] and str(tree["lib"] / "libcudnn.so.9") in result["created"]
    assert listing(tree["root"]) == before


@needs_gcc
def test_foreign_file_is_left_alone_listed_and_kept(tree):
    foreign = tree["root"] / "usr/lib64/libcudnn.so.9"
    foreign.write_bytes(b"a user's own library")
    result = present(tree)
    assert "skipped" not in result  # Ansible would read it as "the task was skipped"
    assert [s["path"] for s in result["foreign"]] == [str(foreign)]
    assert "not created by this project" in result["foreign"][0]["reason"]
    assert foreign.read_bytes() == b"a user's own library"
    assert any("left alone 1 path(s) this project did not create" in w for w in result["warnings"])
    assert result["changed"]
    assert os.path.islink(tree["root"] / "usr/lib64/libcudnn.so")
    sl.run_absent(tree["params"], False)
    assert foreign.read_bytes() == b"a user's own library"


@needs_gcc
def test_strict_mode_fails_before_writing(tree):
    foreign = tree["root"] / "usr/include/cudnn.h"
    foreign.write_text("// rpm-owned header\n")
    before = listing(tree["root"])
    with pytest.raises(
        sl.StrictError, match=r"nothing was written: .*usr/include/cudnn\.h exists and was not created"
    ):
        present(tree, strict=True)
    assert listing(tree["root"]) == before


@needs_gcc
def test_owner_lookup_is_reported(tree):
    (tree["root"] / "usr/include/cudnn.h").write_text("// rpm-owned header\n")
    result = sl.run_present(tree["params"], True, owner=lambda p: "package libcudnn9-devel-cuda-12")
    assert result["foreign"][0]["owner"] == "package libcudnn9-devel-cuda-12"


@needs_gcc
def test_existing_equivalent_links_are_accepted(tree):
    # a link made by hand that resolves to the same file is fine: not touched, not recorded
    os.symlink(str(tree["lib"] / "libcudnn.so.9.3.0"), tree["root"] / "usr/lib64/libcudnn.so.9.3.0")
    result = present(tree)
    assert result["foreign"] == []
    assert str(tree["root"] / "usr/lib64/libcudnn.so.9.3.0") not in result["created"]
    sl.run_absent(tree["params"], False)
    assert os.path.islink(tree["root"] / "usr/lib64/libcudnn.so.9.3.0")


@needs_gcc
def test_install_then_remove_restores_the_tree(tree):
    before = listing(tree["root"])
    present(tree)
    assert listing(tree["root"]) != before
    check = sl.run_absent(tree["params"], True)
    assert check["changed"] and Path(tree["params"]["manifest"]).exists()
    result = sl.run_absent(tree["params"], False)
    assert result["changed"] and result["kept"] == []
    assert listing(tree["root"]) == before
    assert not sl.run_absent(tree["params"], False)["changed"]


@needs_gcc
def test_remove_keeps_links_changed_since(tree):
    present(tree)
    link = tree["root"] / "usr/include/cudnn.h"
    link.unlink()
    link.write_text("// replaced by the user\n")
    result = sl.run_absent(tree["params"], False)
    assert result["kept"] == [str(link)] and link.read_text() == "// replaced by the user\n"


@needs_gcc
def test_changed_link_is_no_longer_ours(tree):
    present(tree)
    link = tree["lib"] / "libcudnn.so"
    link.unlink()
    os.symlink("libcudnn.so.9.1.0", link)
    result = present(tree)
    assert [s["path"] for s in result["foreign"]] == [str(link)]
    assert "changed since this project created it" in result["foreign"][0]["reason"]
    assert os.readlink(link) == "libcudnn.so.9.1.0"
    manifest = json.loads(Path(tree["params"]["manifest"]).read_text())
    assert str(link) not in {e["path"] for e in manifest["entries"]}


@needs_gcc
def test_stale_links_go_when_their_library_goes(tree):
    present(tree)
    for name in ("libcufft.so.10.1.2",):
        (tree["lib"] / name).unlink()
    result = present(tree)
    assert str(tree["lib"] / "libcufft.so.10") in result["removed"]
    assert not os.path.lexists(tree["root"] / "usr/lib64/libcufft.so.11")
    assert result["missing_sonames"] == ["libcufft.so.11", "libcurand.so.10"]


@needs_gcc
def test_system_dirs_switch_off(tree):
    result = present(tree, mirrors=[])
    assert not any("/usr/lib64/" in p or "/usr/include/" in p for p in result["created"])
    assert os.listdir(tree["root"] / "usr/lib64") == []


@needs_gcc
def test_aliases_across_majors_are_refused_by_default_and_warned_about(tree):
    before = listing(tree["root"])
    result = present(tree, expected_aliases=False)
    assert not os.path.lexists(tree["lib"] / "libcufft.so.11")
    alias = next(a for a in result["aliases"] if a["reason"] == "expected")
    assert alias["created"] is False and alias["cross_major"] is True
    assert "libcufft.so.11 is missing: libcufft.so.10 has major 10, a different ABI" in alias["note"]
    assert "no alias was made" in alias["note"]
    assert [w for w in result["warnings"] if "no alias was made" in w]
    again = present(tree, expected_aliases=False)
    assert not again["changed"] and [w for w in again["warnings"] if "no alias was made" in w]
    assert listing(tree["root"]) != before  # the other links were made


@needs_gcc
def test_an_enabled_alias_across_majors_is_warned_about_on_every_run(tree):
    present(tree)
    again = present(tree)
    assert not again["changed"]
    assert [w for w in again["warnings"] if "libcufft.so.11" in w and "a different ABI" in w]


@needs_gcc
def test_disabling_expected_aliases_removes_ours(tree):
    present(tree)
    result = present(tree, expected_aliases=False)
    assert str(tree["lib"] / "libcufft.so.11") in result["removed"]
    assert not os.path.lexists(tree["lib"] / "libcufft.so.11")
    assert not os.path.lexists(tree["root"] / "usr/lib64/libcufft.so.11")


@needs_gcc
def test_a_declared_alias_across_majors_is_refused_before_writing(tree):
    before = listing(tree["root"])
    aliases = [{"name": "libcufft.so.11", "target": "libcufft.so.10"}]
    with pytest.raises(
        sl.PlanError,
        match=r"alias libcufft.so.11 -> libcufft.so.10 links major 11 to a library "
        r"of major 10 \(libcufft.so.10\): a different major is a different ABI.*cross_major: true",
    ):
        present(tree, aliases=aliases, expected_aliases=False)
    assert listing(tree["root"]) == before


@needs_gcc
def test_a_declared_alias_to_a_real_file_of_another_major_is_refused(tree):
    # the target's own SONAME decides, not its file name
    os.symlink("libcufft.so.10.1.2", tree["lib"] / "libcufft-latest.so")
    with pytest.raises(sl.PlanError, match="links major 11 to a library of major 10"):
        present(tree, aliases=[{"name": "libcufft.so.11", "target": "libcufft-latest.so"}])


@needs_gcc
def test_a_declared_alias_across_majors_with_cross_major_is_made_and_warned(tree):
    aliases = [{"name": "libcufft.so.11", "target": "libcufft.so.10", "cross_major": True}]
    result = present(tree, aliases=aliases, expected_aliases=False)
    assert os.readlink(tree["lib"] / "libcufft.so.11") == "libcufft.so.10"
    assert [w for w in result["warnings"] if "a declared alias across majors (11 -> 10)" in w]
    assert [
        w for w in present(tree, aliases=aliases, expected_aliases=False)["warnings"] if "(11 -> 10)" in w
    ]


@needs_gcc
def test_a_same_major_expected_alias_is_suggested_as_a_declaration(tree):
    result = present(tree, expected_sonames=["libcublas.so.10.0"], aliases=[], expected_aliases=False)
    alias = next(a for a in result["aliases"] if a["reason"] == "expected")
    assert alias["cross_major"] is False and not os.path.lexists(tree["lib"] / "libcublas.so.10.0")
    assert "declare {name: libcublas.so.10.0, target: libcublas.so.10} in cuda_links_aliases" in alias["note"]


@pytest.mark.parametrize(
    ("name", "major"),
    [("libcufft.so.11", 11), ("libcublas.so.10.0", 10), ("libcublas.so", None), ("x", None)],
)
def test_major_of(name, major):
    assert sl.major_of(name) == major


@needs_gcc
@pytest.mark.parametrize(
    "bad",
    [
        {"name": "libx.so.1"},
        {"name": "a/b", "target": "x"},
        {"name": "libx.so.1", "target": "y", "abi": "same"},
    ],
)
def test_bad_alias_items_are_refused(tree, bad):
    with pytest.raises(sl.PlanError, match="needs a plain file name 'name' and a 'target'"):
        present(tree, aliases=[bad])


@needs_gcc
def test_an_old_directory_link_becomes_a_real_directory(tree):
    """Earlier versions linked header directories whole; such a link of ours is replaced, children made."""
    root, home = tree["root"], tree["home"]
    old_link = root / "usr/include/crt"
    os.symlink(str(home / "include/crt"), old_link)
    manifest = Path(tree["params"]["manifest"])
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "schema": 1,
                "role": "cuda_links",
                "state": "applied",
                "created_dirs": [],
                "entries": [
                    {
                        "path": str(old_link),
                        "kind": "link",
                        "reason": "mirror",
                        "target": str(home / "include/crt"),
                    }
                ],
            }
        )
    )
    result = present(tree)
    assert str(old_link) in result["created"] and result["foreign"] == []
    assert old_link.is_dir() and not old_link.is_symlink()
    assert os.readlink(old_link / "host_config.h") == str(home / "include/crt/host_config.h")
    assert (tree["inc"] / "crt/host_config.h").read_text() == "// h\n"  # NVIDIA's tree untouched
    assert not present(tree)["changed"]


@needs_gcc
def test_a_foreign_directory_is_used_and_a_foreign_directory_link_is_left_alone(tree):
    root, home = tree["root"], tree["home"]
    (root / "usr/include/crt").mkdir()  # a package's real directory: our file links go inside
    result = present(tree)
    assert os.readlink(root / "usr/include/crt/host_config.h") == str(home / "include/crt/host_config.h")
    sl.run_absent(tree["params"], False)
    assert (root / "usr/include/crt").is_dir() and os.listdir(root / "usr/include/crt") == []
    (root / "usr/include/crt").rmdir()
    os.symlink(str(home / "include/crt"), root / "usr/include/crt")  # a user's own directory link
    result = present(tree)
    assert [f["path"] for f in result["foreign"]] == [str(root / "usr/include/crt")]
    assert (tree["inc"] / "crt/host_config.h").read_text() == "// h\n"


@needs_gcc
def test_removal_takes_away_the_directories_it_made(tree):
    present(tree)
    assert (tree["root"] / "usr/include/crt").is_dir()
    result = sl.run_absent(tree["params"], False)
    assert str(tree["root"] / "usr/include/crt") in result["removed"]
    assert not os.path.lexists(tree["root"] / "usr/include/crt")


@needs_gcc
def test_the_loader_file_of_earlier_versions_is_removed(tree):
    """Earlier versions wrote an ld.so.conf.d file duplicating NVIDIA's; it goes when still as written."""
    conf = tree["root"] / "etc/ld.so.conf.d/opensuse-gpu-stack-cuda-links.conf"
    text = "# Managed by opensuse-gpu-stack (role cuda_links)\n/usr/local/cuda/lib64\n"
    conf.write_text(text)
    manifest = Path(tree["params"]["manifest"])
    manifest.parent.mkdir(parents=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    manifest.write_text(
        json.dumps(
            {
                "schema": 1,
                "role": "cuda_links",
                "state": "applied",
                "created_dirs": [],
                "entries": [{"path": str(conf), "kind": "file", "reason": "loader", "sha256": digest}],
            }
        )
    )
    result = present(tree)
    assert str(conf) in result["removed"] and not conf.exists()


def test_missing_lib_dir_is_a_clear_error(tmp_path):
    params = {
        "lib_dirs": [str(tmp_path / "nope")],
        "dev_links": True,
        "aliases": [],
        "expected_sonames": [],
        "expected_aliases": False,
        "mirrors": [],
        "manifest": str(tmp_path / "m.json"),
        "strict": False,
    }
    with pytest.raises(sl.PlanError, match="install the CUDA toolkit first"):
        sl.run_present(params, False, owner=None)

"""Unit tests for roles/cuda_links/library/soname_links.py: ELF SONAME parsing, planning, links and removal.

Shared libraries are compiled here with gcc -shared -Wl,-soname; ELF32 and big-endian files are built
byte by byte with struct. Link trees live under tmp_path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "soname_links", REPO / "roles/cuda_links/library/soname_links.py"
)
sl = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sl)

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is needed to build test libraries")


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(soname) -> path of a real shared library with that DT_SONAME (cached per soname)."""
    out = tmp_path_factory.mktemp("elf")
    src = out / "stub.c"
    src.write_text('#include <stdio.h>\nint stub_version(void) { puts("stub"); return 90300; }\n')
    cache = {}

    def _build(soname: str | None) -> Path:
        if soname not in cache:
            target = out / f"lib_{len(cache)}.so"
            cmd = [GCC, "-shared", "-fPIC", "-o", str(target), str(src)]
            if soname:
                cmd.insert(3, "-Wl,-soname," + soname)
            subprocess.run(cmd, check=True, capture_output=True)
            cache[soname] = target
        return cache[soname]

    return _build


def synthetic_elf(cls: int, order: str, soname: str | None, needed=("libc.so.6",)) -> bytes:
    """A minimal ELF (ET_DYN) with PT_LOAD + PT_DYNAMIC, strtab at a non-zero vaddr."""
    strtab = b"\0"
    offsets = {}
    for s in ([soname] if soname else []) + list(needed):
        offsets[s] = len(strtab)
        strtab += s.encode() + b"\0"
    ehsize, phentsize = (64, 56) if cls == 2 else (52, 32)
    phoff = ehsize
    dyn_fmt = order + ("qQ" if cls == 2 else "iI")
    dyn_entries = [(1, offsets[n]) for n in needed]
    if soname:
        dyn_entries.append((14, offsets[soname]))
    strtab_off = phoff + 2 * phentsize
    vaddr_base = 0x400000
    dyn_entries += [(5, vaddr_base + strtab_off), (10, len(strtab)), (0, 0)]
    dyn_off = strtab_off + len(strtab)
    dynamic = b"".join(struct.pack(dyn_fmt, t, v) for t, v in dyn_entries)
    total = dyn_off + len(dynamic)
    ident = b"\x7fELF" + bytes([cls, 1 if order == "<" else 2, 1]) + b"\0" * 9
    if cls == 2:
        header = struct.pack(
            order + "HHIQQQIHHHHHH", 3, 62, 1, 0, phoff, 0, 0, ehsize, phentsize, 2, 64, 0, 0
        )
        load = struct.pack(order + "IIQQQQQQ", 1, 5, 0, vaddr_base, vaddr_base, total, total, 0x1000)
        dyn = struct.pack(
            order + "IIQQQQQQ", 2, 6, dyn_off, vaddr_base + dyn_off, 0, len(dynamic), len(dynamic), 8
        )
    else:
        header = struct.pack(order + "HHIIIIIHHHHHH", 3, 3, 1, 0, phoff, 0, 0, ehsize, phentsize, 2, 40, 0, 0)
        load = struct.pack(order + "IIIIIIII", 1, 0, vaddr_base, vaddr_base, total, total, 5, 0x1000)
        dyn = struct.pack(
            order + "IIIIIIII", 2, dyn_off, vaddr_base + dyn_off, 0, len(dynamic), len(dynamic), 6, 4
        )
    return ident + header + load + dyn + strtab + dynamic


# --- ELF


@needs_gcc
def test_reads_soname_of_a_compiled_library(build):
    info = sl.read_elf_dynamic(str(build("libcudnn.so.9")))
    assert info["soname"] == "libcudnn.so.9" and info["class"] == 64
    assert "libc.so.6" in info["needed"]


@needs_gcc
def test_library_without_soname(build):
    assert sl.read_soname(str(build(None))) is None


@needs_gcc
def test_object_file_has_no_dynamic_section(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    subprocess.run([GCC, "-c", "-o", str(tmp_path / "x.o"), str(src)], check=True)
    assert sl.read_elf_dynamic(str(tmp_path / "x.o"))["soname"] is None


def test_system_libc_soname():
    for candidate in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib64/libc.so.6"):
        if os.path.exists(candidate):
            assert sl.read_soname(os.path.realpath(candidate)) == "libc.so.6"
            return
    pytest.skip("no libc.so.6 at a known path")


@pytest.mark.parametrize("cls, order", [(2, "<"), (2, ">"), (1, "<"), (1, ">")])
def test_synthetic_elf_classes_and_byte_orders(tmp_path, cls, order):
    path = tmp_path / "libfoo.so.3.1"
    path.write_bytes(synthetic_elf(cls, order, "libfoo.so.3", needed=("libbar.so.1", "libc.so.6")))
    info = sl.read_elf_dynamic(str(path))
    assert info == {
        "class": 64 if cls == 2 else 32,
        "soname": "libfoo.so.3",
        "needed": ["libbar.so.1", "libc.so.6"],
    }


@pytest.mark.parametrize(
    "data", [b"", b"\x7fEL", b"#!/bin/sh\n", b"INPUT(libfoo.so.1)\n", b"\x7fELF\x09\x01" + b"\0" * 60]
)
def test_non_elf_and_garbage(tmp_path, data):
    path = tmp_path / "libjunk.so"
    path.write_bytes(data)
    assert sl.read_soname(str(path)) is None
    with pytest.raises((sl.ElfError, struct.error)):
        sl.read_elf_dynamic(str(path))


def test_truncated_dynamic_section_is_an_error(tmp_path):
    data = synthetic_elf(2, "<", "libfoo.so.3")
    path = tmp_path / "libfoo.so.3"
    path.write_bytes(data[:-20])
    with pytest.raises(sl.ElfError):
        sl.read_elf_dynamic(str(path))


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
                {"src": str(home / "include"), "dest": str(root / "usr/include"), "dirs": True},
                {"src": str(home / "lib64"), "dest": str(root / "usr/lib64"), "patterns": ["*.so*"]},
            ],
            "loader_conf": str(root / "etc/ld.so.conf.d/opensuse-gpu-stack-cuda-links.conf"),
            "loader_dirs": ["/usr/local/cuda/lib64"],
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
def test_creates_soname_dev_alias_mirror_and_loader_entries(tree):
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
    reasons = {(a["path"].split("/")[-1], a["reason"], a["created"]) for a in result["aliases"]}
    assert {
        ("libcublas.so.10.0", "declared", True),
        ("libcufft.so.11", "expected", True),
        ("libnope.so.1.0", "declared", False),
    } == reasons
    assert result["missing_sonames"] == ["libcurand.so.10"]
    assert any("libcufft.so.11" in w for w in result["warnings"])
    # mirrors: absolute links through /usr/local/cuda, including links created above and header dirs
    assert os.readlink(root / "usr/lib64/libcudnn.so.9") == str(tree["home"] / "lib64/libcudnn.so.9")
    assert os.readlink(root / "usr/lib64/libcufft.so.11") == str(tree["home"] / "lib64/libcufft.so.11")
    assert os.readlink(root / "usr/include/cudnn.h") == str(tree["home"] / "include/cudnn.h")
    assert os.readlink(root / "usr/include/crt") == str(tree["home"] / "include/crt")
    assert not (root / "usr/lib64/libcudnn_static.a").exists()
    assert not (root / "usr/lib64/stubs").exists()
    for entry in os.listdir(root / "usr/lib64"):
        assert os.path.exists(root / "usr/lib64" / entry), "dangling " + entry
    conf = Path(tree["params"]["loader_conf"]).read_text()
    assert conf.endswith("/usr/local/cuda/lib64\n")
    manifest = json.loads(Path(tree["params"]["manifest"]).read_text())
    assert manifest["state"] == "applied"
    assert sorted(e["path"] for e in manifest["entries"]) == sorted(result["created"])


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
def test_foreign_file_is_skipped_listed_and_kept(tree):
    foreign = tree["root"] / "usr/lib64/libcudnn.so.9"
    foreign.write_bytes(b"a user's own library")
    result = present(tree)
    assert [s["path"] for s in result["skipped"]] == [str(foreign)]
    assert "not created by this project" in result["skipped"][0]["reason"]
    assert foreign.read_bytes() == b"a user's own library"
    assert any("skipped 1 path" in w for w in result["warnings"])
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
    assert result["skipped"][0]["owner"] == "package libcudnn9-devel-cuda-12"


@needs_gcc
def test_existing_equivalent_links_are_accepted(tree):
    # a link made by hand that resolves to the same file is fine: not touched, not recorded
    os.symlink(str(tree["lib"] / "libcudnn.so.9.3.0"), tree["root"] / "usr/lib64/libcudnn.so.9.3.0")
    result = present(tree)
    assert result["skipped"] == []
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
    assert [s["path"] for s in result["skipped"]] == [str(link)]
    assert "changed since this project created it" in result["skipped"][0]["reason"]
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
    result = present(tree, mirrors=[], loader_conf=None)
    assert not any("/usr/lib64/" in p or "/usr/include/" in p for p in result["created"])
    assert os.listdir(tree["root"] / "usr/lib64") == []


@needs_gcc
def test_expected_aliases_can_be_report_only(tree):
    result = present(tree, expected_aliases=False)
    assert not os.path.lexists(tree["lib"] / "libcufft.so.11")
    alias = next(a for a in result["aliases"] if a["reason"] == "expected")
    assert alias["created"] is False and "ABI may differ" in alias["note"]


def test_missing_lib_dir_is_a_clear_error(tmp_path):
    params = {
        "lib_dirs": [str(tmp_path / "nope")],
        "dev_links": True,
        "aliases": [],
        "expected_sonames": [],
        "expected_aliases": True,
        "mirrors": [],
        "loader_conf": None,
        "loader_dirs": [],
        "manifest": str(tmp_path / "m.json"),
        "strict": False,
    }
    with pytest.raises(sl.ElfError, match="install the CUDA toolkit first"):
        sl.run_present(params, False, owner=None)

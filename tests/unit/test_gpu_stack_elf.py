"""Unit tests for plugins/module_utils/gpu_stack_elf.py: DT_SONAME reading and the shared-object check.

Shared libraries are compiled here with gcc -shared -Wl,-soname; ELF32, big-endian, other-architecture and
truncated files are built byte by byte (elf_samples.synthetic_elf).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_elf as elf
from elf_samples import X86_64, synthetic_elf

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is needed to build test libraries")


# --- DT_SONAME


@needs_gcc
def test_reads_soname_of_a_compiled_library(build):
    info = elf.read_elf_dynamic(str(build("libcudnn.so.9")))
    assert info["soname"] == "libcudnn.so.9" and info["class"] == 64
    assert "libc.so.6" in info["needed"]


@needs_gcc
def test_library_without_soname(build):
    assert elf.read_soname(str(build(None))) is None


@needs_gcc
def test_object_file_has_no_dynamic_section(tmp_path):
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    subprocess.run([GCC, "-c", "-o", str(tmp_path / "x.o"), str(src)], check=True)
    assert elf.read_elf_dynamic(str(tmp_path / "x.o"))["soname"] is None


def test_system_libc_soname():
    for candidate in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib64/libc.so.6"):
        if os.path.exists(candidate):
            assert elf.read_soname(os.path.realpath(candidate)) == "libc.so.6"
            return
    pytest.skip("no libc.so.6 at a known path")


@pytest.mark.parametrize(("cls", "order"), [(2, "<"), (2, ">"), (1, "<"), (1, ">")])
def test_synthetic_elf_classes_and_byte_orders(tmp_path, cls, order):
    path = tmp_path / "libfoo.so.3.1"
    path.write_bytes(synthetic_elf(cls, order, "libfoo.so.3", needed=("libbar.so.1", "libc.so.6")))
    info = elf.read_elf_dynamic(str(path))
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
    assert elf.read_soname(str(path)) is None
    with pytest.raises((elf.ElfError, struct.error)):
        elf.read_elf_dynamic(str(path))


def test_truncated_dynamic_section_is_an_error(tmp_path):
    data = synthetic_elf(2, "<", "libfoo.so.3")
    path = tmp_path / "libfoo.so.3"
    path.write_bytes(data[:-20])
    with pytest.raises(elf.ElfError):
        elf.read_elf_dynamic(str(path))


# --- shared objects for this host


def _problem(data: bytes, host=X86_64):
    return elf.shared_object_problem(data[: elf.HEAD_BYTES], len(data), host)


@needs_gcc
def test_a_compiled_library_is_a_shared_object_of_this_host(build):
    data = build("libcudnn.so.9").read_bytes()
    assert elf.shared_object_problem(data[: elf.HEAD_BYTES], len(data)) is None  # the real host
    assert _problem(synthetic_elf(2, "<", "libcudnn.so.9")) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x7fELF", "is only 4 bytes long: a truncated ELF header, not a library"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00", "is only 18 bytes long: a truncated ELF header"),
        (b"!<arch>\n", "is not an ELF file"),
        (b"", "is not an ELF file"),
        (b"\x7fELF\x09\x01" + b"\0" * 60, "has an unknown ELF class (9) or byte order (1)"),
        (synthetic_elf(2, "<", "libx.so.1", machine=183), "is built for aarch64, this host is x86_64"),
        (synthetic_elf(1, "<", "libx.so.1"), "is built for i386, this host is x86_64"),
        (synthetic_elf(1, "<", "libx.so.1", machine=62), "is 32-bit little-endian, this host is 64-bit"),
        (synthetic_elf(2, ">", "libx.so.1"), "is 64-bit big-endian, this host is 64-bit little-endian"),
        (synthetic_elf(2, "<", "libx.so.1", etype=2), "is an executable, not a shared object"),
        (synthetic_elf(2, "<", "libx.so.1", etype=1), "is a relocatable object, not a shared object"),
        (synthetic_elf(2, "<", "libx.so.1")[:100], "has no program headers inside its 100 bytes"),
        (synthetic_elf(2, "<", "libx.so.1")[:-8], "is truncated: its dynamic section ends beyond"),
    ],
    ids=[
        "4-bytes",
        "18-bytes",
        "ar-archive",
        "empty",
        "bad-class",
        "aarch64",
        "i386",
        "elf32-x86-64",
        "big-endian",
        "executable",
        "object",
        "no-phdrs",
        "truncated-dynamic",
    ],
)
def test_what_is_not_a_shared_object_of_this_host(data, problem):
    assert problem in (_problem(data) or "")


@needs_gcc
def test_an_executable_is_not_a_shared_object(tmp_path):
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    subprocess.run([GCC, "-no-pie", "-o", str(tmp_path / "exe"), str(tmp_path / "main.c")], check=True)
    assert _problem((tmp_path / "exe").read_bytes()) == "is an executable, not a shared object"


def test_host_machine_knows_this_machine():
    machine, cls, order = elf.host_machine()
    if os.uname().machine == "x86_64":
        assert (machine, cls, order) == X86_64
    assert elf.machine_name(183) == "aarch64" and elf.machine_name(999) == "machine 999"

"""The ELF SONAME of a shared library, read the way the loader reads it (standard library only).

program headers -> PT_DYNAMIC -> DT_STRTAB (a virtual address, mapped to a file offset through the
PT_LOAD segments) -> the DT_SONAME string. The file name is never used to guess it: a link named
libcufft.so.11 that points at a file whose SONAME is libcufft.so.10 is an alias across majors.
"""

from __future__ import annotations

import os
import re
import struct
from typing import BinaryIO

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 5, 10, 14


class ElfError(Exception):
    """Not an ELF file, or a malformed one."""


def _vaddr_to_offset(vaddr: int, loads: list[tuple[int, int, int]]) -> int | None:
    for p_vaddr, p_offset, p_filesz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return None


def parse_soname(handle: BinaryIO) -> str | None:
    """DT_SONAME of the ELF file open in handle, None when it has none; ElfError when not ELF."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    ident = handle.read(16)
    if len(ident) < 16 or ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfError(f"unknown ELF class {cls!r} or byte order {data!r}")
    order = "<" if data == 1 else ">"
    if cls == 2:
        header, phdr, dyn = (struct.Struct(order + f) for f in ("HHIQQQIHHHHHH", "IIQQQQQQ", "qQ"))
    else:
        header, phdr, dyn = (struct.Struct(order + f) for f in ("HHIIIIIHHHHHH", "IIIIIIII", "iI"))
    raw = handle.read(header.size)
    if len(raw) < header.size:
        raise ElfError("truncated ELF header")
    fields = header.unpack(raw)
    phoff, phentsize, phnum = fields[4], fields[8], fields[9]
    if phnum == 0 or phentsize < phdr.size or phoff + phnum * phentsize > size:
        return None
    loads, dynamic = [], None
    for i in range(phnum):
        handle.seek(phoff + i * phentsize)
        values = phdr.unpack(handle.read(phdr.size))
        if cls == 2:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = values[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = values[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None or dynamic[0] + dynamic[1] > size:
        return None
    handle.seek(dynamic[0])
    blob = handle.read(dynamic[1])
    tags: dict[int, int] = {}
    for pos in range(0, len(blob) - dyn.size + 1, dyn.size):
        tag, value = dyn.unpack_from(blob, pos)
        if tag == DT_NULL:
            break
        tags.setdefault(tag, value)
    if DT_SONAME not in tags or DT_STRTAB not in tags:
        return None
    strtab = _vaddr_to_offset(tags[DT_STRTAB], loads)
    if strtab is None:
        raise ElfError("DT_STRTAB is outside every PT_LOAD segment")
    index = tags[DT_SONAME]
    strsz = tags.get(DT_STRSZ, size - strtab)
    if index >= strsz or strtab + index >= size:
        raise ElfError("DT_SONAME beyond the string table")
    handle.seek(strtab + index)
    chunk = handle.read(min(4096, strsz - index))
    end = chunk.find(b"\0")
    if end < 0:
        raise ElfError("unterminated DT_SONAME string")
    return chunk[:end].decode("utf-8", "replace")


def read_soname(path: str) -> str | None:
    """SONAME of the file at path (links followed), None for non-ELF files and ELF files without one."""
    try:
        with open(path, "rb") as handle:
            return parse_soname(handle)
    except (ElfError, struct.error, OSError):
        return None


def soname_stem(soname: str) -> str:
    """'libcudart.so.12' -> 'libcudart.so'."""
    head, sep, _ = soname.partition(".so")
    return head + sep


def soname_major(soname: str) -> str | None:
    """'libcudart.so.12' -> '12', 'libcudart.so.10.0' -> '10.0'."""
    _, sep, tail = soname.partition(".so.")
    return tail if sep else None


def file_major(name: str) -> str | None:
    """First version number after '.so.' in a file name: 'libcufft.so.10.9.0.58' -> '10'."""
    m = re.search(r"\.so\.(\d+)", os.path.basename(name))
    return m.group(1) if m else None

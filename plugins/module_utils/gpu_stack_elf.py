"""ELF shared objects as the dynamic loader sees them: header, architecture, DT_SONAME and DT_NEEDED.

Parsed with the standard library's struct, following the ELF specification (program headers ->
PT_DYNAMIC -> DT_STRTAB, a virtual address mapped to a file offset through the PT_LOAD segments).
Shared by the soname_links, cudnn_archive and gpu_stack_loader_cache modules, imported as
ansible_collections.gpu_stack.opensuse.plugins.module_utils.gpu_stack_elf.
"""

import os
import platform
import struct
import sys

ET_DYN = 3
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14
# e_machine values (ELF specification, <elf.h>) and how they are called
MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 21: "ppc64", 22: "s390x", 40: "arm", 243: "riscv64"}
# platform.machine() -> e_machine
HOST_MACHINES = {
    "x86_64": 62,
    "amd64": 62,
    "aarch64": 183,
    "arm64": 183,
    "ppc64le": 21,
    "ppc64": 21,
    "s390x": 22,
    "i686": 3,
    "i386": 3,
    "riscv64": 243,
}
ET_NAMES = {
    0: "no file type",
    1: "a relocatable object",
    2: "an executable",
    3: "a shared object",
    4: "a core dump",
}
# Enough of a file's start to hold the ELF header and the program headers of any real library
HEAD_BYTES = 64 * 1024


class ElfError(Exception):
    """Not an ELF file, or a malformed one."""


def _structs(cls, order):
    if cls == 2:
        return (
            struct.Struct(order + "HHIQQQIHHHHHH"),
            struct.Struct(order + "IIQQQQQQ"),
            struct.Struct(order + "qQ"),
        )
    return (
        struct.Struct(order + "HHIIIIIHHHHHH"),
        struct.Struct(order + "IIIIIIII"),
        struct.Struct(order + "iI"),
    )


def parse_header(head):
    """The ELF header of a file's start: class (32|64), order, type, machine, phoff, phentsize, phnum."""
    if len(head) < 16 or head[:4] != b"\x7fELF":
        raise ElfError(
            "not an ELF file" if head[:4] != b"\x7fELF" else f"truncated ELF header ({len(head)} bytes)"
        )
    cls, data = head[4], head[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfError(f"unknown ELF class {cls!r} or byte order {data!r}")
    order = "<" if data == 1 else ">"
    header = _structs(cls, order)[0]
    if len(head) < 16 + header.size:
        raise ElfError(f"truncated ELF header ({len(head)} bytes)")
    fields = header.unpack_from(head, 16)
    return {
        "class": 64 if cls == 2 else 32,
        "order": order,
        "type": fields[0],
        "machine": fields[1],
        "phoff": fields[4],
        "phentsize": fields[8],
        "phnum": fields[9],
    }


def host_machine():
    """(e_machine, ELF class, byte order) of the running Python's host; e_machine None when unknown."""
    return (
        HOST_MACHINES.get(platform.machine().lower()),
        64 if sys.maxsize > 2**32 else 32,
        "<" if sys.byteorder == "little" else ">",
    )


def machine_name(machine):
    return MACHINES.get(machine, f"machine {machine}")


def shared_object_problem(head, size, host=None):
    """Why a file (its first HEAD_BYTES and its size) is not an ELF shared object for this host, or None.

    Checks the header, the type (ET_DYN), the architecture, the class and byte order, that the program
    headers lie inside the file and that a PT_DYNAMIC segment lies inside it. The text reads after
    "<file> ...": "is not an ELF file", "is built for aarch64, this host is x86_64".
    """
    machine, cls, order = host or host_machine()
    if head[:4] != b"\x7fELF":
        return "is not an ELF file"
    try:
        info = parse_header(head)
    except ElfError:
        if len(head) < 20 or (head[4] in (1, 2) and head[5] in (1, 2)):
            return f"is only {size} bytes long: a truncated ELF header, not a library"
        return f"has an unknown ELF class ({head[4]}) or byte order ({head[5]})"
    if info["type"] != ET_DYN:
        return "is {}, not a shared object".format(ET_NAMES.get(info["type"], f"ELF type {info['type']}"))
    if machine is not None and info["machine"] != machine:
        return f"is built for {machine_name(info['machine'])}, this host is {machine_name(machine)}"
    if (info["class"], info["order"]) != (cls, order):
        endian = {"<": "little", ">": "big"}
        return (
            f"is {info['class']}-bit {endian[info['order']]}-endian, "
            f"this host is {cls}-bit {endian[order]}-endian"
        )
    phdr = _structs(2 if info["class"] == 64 else 1, info["order"])[1]
    end = info["phoff"] + info["phnum"] * info["phentsize"]
    if info["phnum"] == 0 or info["phentsize"] < phdr.size or end > size:
        return f"has no program headers inside its {size} bytes (truncated, or not a real library)"
    if end > len(head):
        return None  # program headers beyond the first HEAD_BYTES: unusual, but the header is sound
    for i in range(info["phnum"]):
        values = phdr.unpack_from(head, info["phoff"] + i * info["phentsize"])
        if values[0] == PT_DYNAMIC:
            offset, filesz = (values[2], values[5]) if info["class"] == 64 else (values[1], values[4])
            if offset + filesz > size:
                return f"is truncated: its dynamic section ends beyond its {size} bytes"
            return None
    return "has no dynamic section (PT_DYNAMIC), so the loader cannot use it as a shared library"


def read_elf_dynamic(path):
    """{'class': 32|64, 'soname': str|None, 'needed': [str]} from an ELF file's dynamic section.

    Raises ElfError for anything that is not a well-formed ELF file.
    """
    with open(path, "rb") as handle:
        return parse_elf_dynamic(handle)


def parse_elf_dynamic(handle):
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    try:
        info = parse_header(handle.read(64))
    except struct.error as exc:
        raise ElfError(f"truncated ELF header ({exc})") from exc
    cls = 2 if info["class"] == 64 else 1
    _, phdr, dyn = _structs(cls, info["order"])
    result = {"class": info["class"], "soname": None, "needed": []}
    phoff, phentsize, phnum = info["phoff"], info["phentsize"], info["phnum"]
    if phnum == 0 or phentsize < phdr.size or phoff + phnum * phentsize > size:
        return result
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
    if dynamic is None:
        return result
    offset, length = dynamic
    if offset + length > size:
        raise ElfError("dynamic section beyond the end of the file")
    handle.seek(offset)
    blob = handle.read(length)
    tags = {}
    needed = []
    for pos in range(0, len(blob) - dyn.size + 1, dyn.size):
        tag, value = dyn.unpack_from(blob, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(value)
        else:
            tags.setdefault(tag, value)
    if DT_STRTAB not in tags:
        return result
    strtab = _vaddr_to_offset(tags[DT_STRTAB], loads)
    if strtab is None:
        raise ElfError("DT_STRTAB is outside every PT_LOAD segment")
    strsz = tags.get(DT_STRSZ, size - strtab)

    def string(index):
        if index >= strsz or strtab + index >= size:
            raise ElfError(f"string index {index} beyond the string table")
        handle.seek(strtab + index)
        chunk = handle.read(min(4096, strsz - index))
        end = chunk.find(b"\0")
        if end < 0:
            raise ElfError("unterminated string in the string table")
        return chunk[:end].decode("utf-8", "replace")

    if DT_SONAME in tags:
        result["soname"] = string(tags[DT_SONAME])
    result["needed"] = [string(i) for i in needed]
    return result


def _vaddr_to_offset(vaddr, loads):
    for p_vaddr, p_offset, p_filesz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return None


def read_soname(path):
    """SONAME of an ELF shared library (links followed), or None for non-ELF files and those without one."""
    try:
        return read_elf_dynamic(path)["soname"]
    except (ElfError, struct.error, OSError):
        return None


def read_machine(path):
    """e_machine of an ELF file (links followed), or None."""
    try:
        with open(path, "rb") as handle:
            return parse_header(handle.read(64))["machine"]
    except (ElfError, struct.error, OSError):
        return None

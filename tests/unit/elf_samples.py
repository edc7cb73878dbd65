"""ELF files built byte by byte with struct, for the tests of the ELF reader and of the modules using it."""

from __future__ import annotations

import struct

# What gpu_stack_elf.host_machine() returns on an x86_64 Linux host: (e_machine, class, byte order)
X86_64 = (62, 64, "<")


def synthetic_elf(
    cls: int,
    order: str,
    soname: str | None,
    needed=("libc.so.6",),
    machine: int | None = None,
    etype: int = 3,
) -> bytes:
    """A minimal ELF (ET_DYN unless etype says otherwise): PT_LOAD + PT_DYNAMIC, strtab at a non-zero vaddr.

    machine defaults to x86_64 (62) for 64-bit and i386 (3) for 32-bit files.
    """
    if machine is None:
        machine = 62 if cls == 2 else 3
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
            order + "HHIQQQIHHHHHH", etype, machine, 1, 0, phoff, 0, 0, ehsize, phentsize, 2, 64, 0, 0
        )
        load = struct.pack(order + "IIQQQQQQ", 1, 5, 0, vaddr_base, vaddr_base, total, total, 0x1000)
        dyn = struct.pack(
            order + "IIQQQQQQ", 2, 6, dyn_off, vaddr_base + dyn_off, 0, len(dynamic), len(dynamic), 8
        )
    else:
        header = struct.pack(
            order + "HHIIIIIHHHHHH", etype, machine, 1, 0, phoff, 0, 0, ehsize, phentsize, 2, 40, 0, 0
        )
        load = struct.pack(order + "IIIIIIII", 1, 0, vaddr_base, vaddr_base, total, total, 5, 0x1000)
        dyn = struct.pack(
            order + "IIIIIIII", 2, dyn_off, vaddr_base + dyn_off, 0, len(dynamic), len(dynamic), 6, 4
        )
    return ident + header + load + dyn + strtab + dynamic

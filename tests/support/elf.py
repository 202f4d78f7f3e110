"""Small ELF files made by hand: the headers and dynamic section a loader reads, nothing else.

Real libraries from the host cover what compilers write; these cover what the host lacks
(32-bit, big-endian, RPATH beside RUNPATH, $ORIGIN) and give the resolver tests a whole image
of libraries in a few hundred bytes each.
"""

from __future__ import annotations

import struct

X86_64 = 62
AARCH64 = 183
I386 = 3
ET_EXEC, ET_DYN = 2, 3
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME, _DT_RPATH, _DT_RUNPATH = 1, 5, 10, 14, 15, 29


def make_elf(
    *,
    needed: tuple[str, ...] = (),
    soname: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    interpreter: str | None = None,
    bits: int = 64,
    little: bool = True,
    machine: int = X86_64,
    type: int = ET_DYN,
    dynamic: bool = True,
) -> bytes:
    """An ELF file with a PT_LOAD over all of it, a PT_DYNAMIC, and a PT_INTERP when ``interpreter`` is given."""
    order = "<" if little else ">"
    word = "Q" if bits == 64 else "I"
    ehdr_size = 64 if bits == 64 else 52
    phdr_size = 56 if bits == 64 else 32
    phnum = 1 + int(dynamic) + int(interpreter is not None)

    strtab = b"\0"
    offsets: dict[str, int] = {}

    def string(text: str) -> int:
        nonlocal strtab
        if text not in offsets:
            offsets[text] = len(strtab)
            strtab += text.encode() + b"\0"
        return offsets[text]

    entries = [(_DT_NEEDED, string(n)) for n in needed]
    if soname is not None:
        entries.append((_DT_SONAME, string(soname)))
    if rpath is not None:
        entries.append((_DT_RPATH, string(rpath)))
    if runpath is not None:
        entries.append((_DT_RUNPATH, string(runpath)))
    interp = interpreter.encode() + b"\0" if interpreter is not None else b""
    interp_at = ehdr_size + phnum * phdr_size
    strtab_at = interp_at + len(interp)
    dynamic_at = strtab_at + len(strtab)
    entries += [(_DT_STRTAB, strtab_at), (_DT_STRSZ, len(strtab)), (0, 0)]
    dynamic_bytes = b"".join(struct.pack(order + word * 2, tag, value) for tag, value in entries)
    total = dynamic_at + (len(dynamic_bytes) if dynamic else 0)

    def phdr(p_type: int, offset: int, size: int) -> bytes:
        if bits == 64:
            return struct.pack(order + "IIQQQQQQ", p_type, 4, offset, offset, offset, size, size, 8)
        return struct.pack(order + "IIIIIIII", p_type, offset, offset, offset, size, size, 4, 4)

    phdrs = phdr(_PT_LOAD, 0, total)
    if dynamic:
        phdrs += phdr(_PT_DYNAMIC, dynamic_at, len(dynamic_bytes))
    if interpreter is not None:
        phdrs += phdr(_PT_INTERP, interp_at, len(interp))
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1]) + bytes(9)
    rest = struct.pack(
        order + "HHI" + word * 3 + "IHHHHHH",
        type, machine, 1, 0, ehdr_size, 0, 0, ehdr_size, phdr_size, phnum, 0, 0, 0,
    )  # fmt: skip
    body = ident + rest + phdrs + interp + strtab + (dynamic_bytes if dynamic else b"")
    assert len(body) == total, (len(body), total)
    return body

"""Reading what the dynamic loader reads from an ELF file: its interpreter and its dynamic section.

:func:`read_elf` follows the program headers as ld.so does (a stripped library has no section
headers to go by): PT_INTERP names the interpreter; PT_DYNAMIC holds DT_NEEDED, DT_SONAME,
DT_RPATH and DT_RUNPATH, whose strings are in the DT_STRTAB table, an address that a PT_LOAD
segment maps to a file offset. Only the few bytes of those structures are read: a CUDA library
of a gigabyte costs a handful of reads. A file that is not ELF is None; an ELF file that is
cut short or inconsistent is an :class:`ElfError`.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import BinaryIO

from envbuild.errors import EnvbuildError

MAGIC = b"\x7fELF"
ET_EXEC = 2
ET_DYN = 3
_PT_LOAD = 1
_PT_DYNAMIC = 2
_PT_INTERP = 3
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_DT_STRSZ = 10
_DT_SONAME = 14
_DT_RPATH = 15
_DT_RUNPATH = 29
# Bounds that no real file reaches and that keep a hostile one from costing memory or time.
_MAX_HEADERS = 4096
_MAX_DYNAMIC = 1 << 16
_MAX_STRING = 1 << 16


class ElfError(EnvbuildError):
    """An ELF file that is cut short or whose headers contradict themselves."""


@dataclass(frozen=True, kw_only=True)
class Elf:
    """What the dynamic loader needs of one ELF file."""

    bits: int  # 32 or 64
    little_endian: bool
    machine: int  # e_machine: 62 is x86-64, 183 AArch64
    type: int  # e_type: ET_EXEC, ET_DYN (libraries and PIE executables), ...
    interpreter: str | None = None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
    soname: str | None = None
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()  # DT_RPATH, split at ':'
    runpath: tuple[str, ...] = ()  # DT_RUNPATH, split at ':'
    dynamic: bool = False  # has a dynamic section (a static executable has none)

    @property
    def loadable(self) -> bool:
        """An executable or shared object (not a relocatable object or a core file)."""
        return self.type in (ET_EXEC, ET_DYN)

    def compatible(self, other: Elf) -> bool:
        """Whether the loader of ``self`` can load ``other``: the same class, byte order and machine."""
        return (self.bits, self.little_endian, self.machine) == (other.bits, other.little_endian, other.machine)


def is_elf(head: bytes) -> bool:
    """Whether a file's first bytes are ELF's magic number."""
    return head[:4] == MAGIC


def read_elf(f: BinaryIO, *, name: str = "the file") -> Elf | None:
    """The loader's view of the ELF file ``f`` (seekable), None when it is not ELF; :class:`ElfError` if broken."""
    ident = _read(f, 0, 16, name, "the identification", allow_short=True)
    if not is_elf(ident):
        return None
    if len(ident) < 16:
        raise ElfError(f"{name}: ELF identification cut short")
    bits = {1: 32, 2: 64}.get(ident[4])
    order = {1: "<", 2: ">"}.get(ident[5])
    if bits is None or order is None:
        raise ElfError(f"{name}: unknown ELF class {ident[4]} or byte order {ident[5]}")
    reader = _Reader(f, name, bits, order)
    return reader.read()


@dataclass(frozen=True)
class _Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int


class _Reader:
    def __init__(self, f: BinaryIO, name: str, bits: int, order: str):
        self.f = f
        self.name = name
        self.bits = bits
        self.order = order
        self.word = "Q" if bits == 64 else "I"

    def unpack(self, fmt: str, offset: int, what: str) -> tuple[int, ...]:
        fmt = self.order + fmt
        return struct.unpack(fmt, _read(self.f, offset, struct.calcsize(fmt), self.name, what))

    def read(self) -> Elf:
        w = self.word
        e_type, e_machine = self.unpack("HH", 16, "the ELF header")
        # e_phoff, then e_phentsize and e_phnum: at 32 and 54 in a 64-bit header, at 28 and 42 in a 32-bit one
        (phoff,) = self.unpack(w, 32 if self.bits == 64 else 28, "the ELF header")
        phentsize, phnum = self.unpack("HH", 54 if self.bits == 64 else 42, "the ELF header")
        base = Elf(bits=self.bits, little_endian=self.order == "<", machine=e_machine, type=e_type)
        if phnum == 0:
            return base  # a relocatable object: nothing for the loader
        segment_size = 56 if self.bits == 64 else 32
        if phentsize < segment_size or phnum > _MAX_HEADERS:
            raise ElfError(f"{self.name}: program headers of {phentsize} bytes x {phnum}")
        segments = [self.segment(phoff + i * phentsize) for i in range(phnum)]
        interpreter = None
        for s in segments:
            if s.type == _PT_INTERP:
                raw = _read(self.f, s.offset, min(s.filesz, _MAX_STRING), self.name, "PT_INTERP")
                interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        dynamic = next((s for s in segments if s.type == _PT_DYNAMIC), None)
        if dynamic is None:
            return dataclasses.replace(base, interpreter=interpreter)
        entries = self.dynamic_entries(dynamic)
        strtab = next((v for tag, v in entries if tag == _DT_STRTAB), None)
        strsz = next((v for tag, v in entries if tag == _DT_STRSZ), None)
        strings = [(tag, v) for tag, v in entries if tag in (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH)]
        if not strings:  # a static-pie executable: a dynamic section that names nothing
            return dataclasses.replace(base, interpreter=interpreter, dynamic=True)
        if strtab is None or strsz is None:
            raise ElfError(f"{self.name}: a dynamic section without its string table")
        table = self.file_offset(segments, strtab)

        def text(tag: int) -> list[str]:
            assert strsz is not None
            out = []
            for t, v in strings:
                if t == tag:
                    if v >= strsz:
                        raise ElfError(f"{self.name}: a dynamic string at {v}, beyond the table's {strsz} bytes")
                    out.append(self.string(table + v, min(strsz - v, _MAX_STRING)))
            return out

        def paths(tag: int) -> tuple[str, ...]:
            return tuple(p for value in text(tag) for p in value.split(":"))

        sonames = text(_DT_SONAME)
        return dataclasses.replace(
            base,
            interpreter=interpreter,
            soname=sonames[0] if sonames else None,
            needed=tuple(text(_DT_NEEDED)),
            rpath=paths(_DT_RPATH),
            runpath=paths(_DT_RUNPATH),
            dynamic=True,
        )

    def segment(self, at: int) -> _Segment:
        if self.bits == 64:
            p_type, _flags, offset, vaddr, _paddr, filesz = self.unpack("IIQQQQ", at, "a program header")
        else:
            p_type, offset, vaddr, _paddr, filesz = self.unpack("IIIII", at, "a program header")
        return _Segment(p_type, offset, vaddr, filesz)

    def dynamic_entries(self, dynamic: _Segment) -> list[tuple[int, int]]:
        size = 16 if self.bits == 64 else 8
        count = min(dynamic.filesz // size, _MAX_DYNAMIC)
        raw = _read(self.f, dynamic.offset, count * size, self.name, "the dynamic section")
        entries = []
        for tag, value in struct.iter_unpack(self.order + self.word * 2, raw):
            if tag == _DT_NULL:
                break
            entries.append((tag, value))
        return entries

    def file_offset(self, segments: list[_Segment], address: int) -> int:
        for s in segments:
            if s.type == _PT_LOAD and s.vaddr <= address < s.vaddr + s.filesz:
                return address - s.vaddr + s.offset
        raise ElfError(f"{self.name}: the dynamic string table ({address:#x}) is in no loaded segment")

    def string(self, offset: int, limit: int) -> str:
        raw = b""
        while b"\0" not in raw and len(raw) < limit:
            piece = _read(
                self.f, offset + len(raw), min(256, limit - len(raw)), self.name, "a string", allow_short=True
            )
            if not piece:
                break
            raw += piece
        if b"\0" not in raw:
            raise ElfError(f"{self.name}: an unterminated dynamic string")
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read(f: BinaryIO, offset: int, size: int, name: str, what: str, *, allow_short: bool = False) -> bytes:
    if offset < 0 or size < 0:
        raise ElfError(f"{name}: {what} at a negative offset")
    try:
        f.seek(offset)
        data = f.read(size)
    except (OSError, OverflowError, ValueError) as exc:
        raise ElfError(f"{name}: cannot read {what}: {exc}") from exc
    if len(data) < size and not allow_short:
        raise ElfError(f"{name}: {what} is cut short (the file ends before byte {offset + size})")
    return data

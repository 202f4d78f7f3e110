"""The ELF reader (envbuild.image.checks.elf) on the host's real files and on cut, corrupt and hand-made ones."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from envbuild.image.checks.elf import ET_DYN, ET_EXEC, ElfError, is_elf, read_elf
from support.elf import AARCH64, I386, make_elf

HOST_LIBS = Path("/usr/lib/x86_64-linux-gnu") if Path("/usr/lib/x86_64-linux-gnu").is_dir() else Path("/usr/lib")


def host_file(*names: str) -> Path:
    """The first of ``names`` under the host's library directory (or an absolute path) that exists."""
    for name in names:
        path = Path(name) if name.startswith("/") else HOST_LIBS / name
        if path.is_file():
            return path.resolve()
    pytest.fail(f"none of {names} on this machine")


def read(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as f:
        return read_elf(f, name=str(path))


def test_a_host_library_names_its_soname_and_needs() -> None:
    elf = read(host_file("libstdc++.so.6"))
    assert elf is not None and elf.loadable and elf.dynamic and elf.type == ET_DYN
    assert elf.soname == "libstdc++.so.6"
    assert "libc.so.6" in elf.needed and "libm.so.6" in elf.needed
    assert elf.bits == 64 and elf.little_endian


def test_an_executable_names_its_interpreter() -> None:
    elf = read(Path(os.path.realpath(sys.executable)))
    assert elf is not None and elf.interpreter is not None and elf.interpreter.startswith("/")
    assert elf.type in (ET_EXEC, ET_DYN) and elf.soname is None


def test_a_static_executable_needs_nothing() -> None:
    elf = read(host_file("/sbin/ldconfig", "/usr/sbin/ldconfig"))
    assert elf is not None and elf.interpreter is None and elf.needed == ()


def test_every_host_library_reads() -> None:
    """Whatever compilers and linkers wrote on this machine: no error, and the same soname ldconfig knows."""
    count = 0
    for path in sorted(HOST_LIBS.glob("*.so.*"))[:400]:
        if path.is_symlink() or not path.is_file():
            continue
        elf = read(path)
        assert elf is not None, path
        count += 1
    assert count > 50


def test_not_elf_is_none() -> None:
    for data in (b"", b"\x7fEL", b"#!/bin/sh\n", b"PK\x03\x04" + bytes(100)):
        assert read_elf(io.BytesIO(data)) is None
    assert not is_elf(b"\x7fEL") and is_elf(b"\x7fELF\x02")


def test_cut_files_are_elf_errors() -> None:
    """A library cut anywhere before its dynamic strings end: a clear error, never a struct error."""
    data = make_elf(needed=("libfoo.so.1", "libbar.so.2"), soname="libx.so.1", runpath="$ORIGIN")
    assert read_elf(io.BytesIO(data)) is not None
    for end in range(4, len(data) - 1):
        try:
            read_elf(io.BytesIO(data[:end]))
        except ElfError as exc:
            assert "cut short" in exc.message or "unterminated" in exc.message or "table" in exc.message
    with pytest.raises(ElfError, match="identification cut short"):
        read_elf(io.BytesIO(data[:10]))


def test_a_real_library_cut_short() -> None:
    data = host_file("libz.so.1").read_bytes()
    with pytest.raises(ElfError, match="cut short"):
        read_elf(io.BytesIO(data[:200]), name="libz")


def test_garbage_after_the_magic_is_an_elf_error() -> None:
    with pytest.raises(ElfError, match="unknown ELF class"):
        read_elf(io.BytesIO(b"\x7fELF" + b"\x09\x09" + bytes(100)))
    bad_strtab = bytearray(make_elf(needed=("libfoo.so.1",)))
    # point DT_STRTAB (the second-to-last entry before DT_STRSZ and DT_NULL) far outside the file
    at = len(bad_strtab) - 3 * 16 + 8
    bad_strtab[at : at + 8] = (10**9).to_bytes(8, "little")
    with pytest.raises(ElfError, match="in no loaded segment"):
        read_elf(io.BytesIO(bytes(bad_strtab)))


def test_hand_made_files_of_every_class_and_order() -> None:
    for bits in (32, 64):
        for little in (True, False):
            data = make_elf(
                needed=("libc.so.6",), soname="libx.so.1", rpath="/opt/a:$ORIGIN/../b", bits=bits, little=little,
                machine=I386 if bits == 32 else AARCH64, interpreter="/lib/ld-linux.so.2",
            )  # fmt: skip
            elf = read_elf(io.BytesIO(data))
            assert elf is not None
            assert (elf.bits, elf.little_endian, elf.soname, elf.needed) == (bits, little, "libx.so.1", ("libc.so.6",))
            assert elf.rpath == ("/opt/a", "$ORIGIN/../b") and elf.runpath == ()
            assert elf.interpreter == "/lib/ld-linux.so.2"


def test_compatibility_is_class_order_and_machine() -> None:
    a = read_elf(io.BytesIO(make_elf()))
    b = read_elf(io.BytesIO(make_elf(machine=AARCH64)))
    c = read_elf(io.BytesIO(make_elf(bits=32, machine=I386)))
    assert a is not None and b is not None and c is not None
    assert a.compatible(a) and not a.compatible(b) and not a.compatible(c)


def test_a_relocatable_object_is_not_loadable() -> None:
    elf = read_elf(io.BytesIO(make_elf(type=1, dynamic=False)))
    assert elf is not None and not elf.loadable and not elf.dynamic

"""Whether this machine runs a platform's programs (envbuild.image.emulation), on hand-made binfmt_misc trees.

The entries are copies of what the kernel prints for Debian's qemu-user-static (aarch64) and
for an x86_64 handler an arm64 machine would have; each case changes one field.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.image.emulation import handler, native, require_runnable

AARCH64 = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""
X86_64 = AARCH64.replace("aarch64", "x86_64").replace("0200b700", "02003e00")
# This machine's platform, and the other one: the one that needs emulation here.
HERE, OTHER = (
    ("linux/amd64", "linux/arm64") if platform.machine() == "x86_64" else ("linux/arm64", "linux/amd64")
)  # fmt: skip


def binfmt(root: Path, status: str = "enabled", **entries: str) -> Path:
    root.mkdir()
    (root / "status").write_text(status + "\n")
    (root / "register").write_text("")
    for name, text in entries.items():
        (root / name).write_text(text)
    return root


def entry_for(platform_: str) -> str:
    return AARCH64 if platform_ == "linux/arm64" else X86_64


def test_this_machines_platform_needs_no_emulation(tmp_path: Path) -> None:
    assert native(HERE) and not native(OTHER)
    require_runnable(HERE, binfmt(tmp_path / "empty"))


def test_an_enabled_entry_with_the_f_flag_runs_the_other_platform(tmp_path: Path) -> None:
    root = binfmt(tmp_path / "b", **{"qemu-other": entry_for(OTHER), "python3.11": "enabled\nmagic a70d0d0a\n"})
    assert handler(OTHER, root) == "qemu-other"
    require_runnable(OTHER, root)


@pytest.mark.parametrize(
    ("case", "edit"),
    [
        ("disabled entry", lambda t: t.replace("enabled", "disabled", 1)),
        ("no F flag: not found inside a chroot", lambda t: t.replace("flags: PF", "flags: P")),
        ("another architecture", lambda t: t.replace("0200b700", "02002800").replace("02003e00", "02002800")),
        ("a 32-bit magic", lambda t: t.replace("7f454c4602", "7f454c4601")),
        ("an offset", lambda t: t.replace("offset 0", "offset 4")),
        ("empty", lambda t: ""),
    ],
)
def test_an_entry_that_would_not_run_it_is_not_taken(tmp_path: Path, case: str, edit: Callable[[str], str]) -> None:
    root = binfmt(tmp_path / "b", **{"qemu-other": edit(entry_for(OTHER))})
    assert handler(OTHER, root) is None, case


def test_binfmt_misc_switched_off_or_not_mounted(tmp_path: Path) -> None:
    assert handler(OTHER, binfmt(tmp_path / "off", status="disabled", **{"qemu-other": entry_for(OTHER)})) is None
    assert handler(OTHER, tmp_path / "not-mounted") is None


def test_without_a_handler_the_error_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        require_runnable(OTHER, binfmt(tmp_path / "b"))
    arch = "aarch64" if OTHER == "linux/arm64" else "x86_64"
    assert OTHER in str(raised.value) and f"runs {arch} programs" in str(raised.value)
    assert "qemu-user-static" in (raised.value.hint or "") and f"--enable qemu-{arch}" in (raised.value.hint or "")
    assert "--platform" in (raised.value.hint or "")

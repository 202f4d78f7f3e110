"""Whether this machine runs a platform's programs: natively, or handed to qemu-user by binfmt_misc.

Building another architecture's image here runs that architecture's programs: mmdebstrap runs
the base's maintainer scripts, the builder its RUN steps, and the image checks its Python. The
kernel's binfmt_misc hands each such program to an emulator (Debian's qemu-user-static), and
with the F flag it does so inside chroots and containers too, where the emulator's own path
does not exist. :func:`require_runnable` asks before that work starts, so a machine without
emulation is told what to install instead of failing minutes later inside mmdebstrap or buildah.
"""

from __future__ import annotations

import platform as host
from pathlib import Path

from envbuild.errors import UsageError
from envbuild.lock.spec import PLATFORMS

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# An ELF64 little-endian executable's header, as binfmt_misc prints a magic: its ident (16 bytes),
# e_type (2), then e_machine, which names the architecture.
_ELF64_LE = "7f454c460201"
_MACHINE = {"x86_64": "3e00", "aarch64": "b700"}  # e_machine, little-endian: EM_X86_64, EM_AARCH64


def native(platform: str) -> bool:
    """Whether ``platform`` (``linux/arm64``) is this machine's own."""
    return PLATFORMS[platform] == host.machine()


def handler(platform: str, binfmt: Path = BINFMT_MISC) -> str | None:
    """The name of the enabled binfmt_misc entry that runs ``platform``'s executables everywhere (flag F), if any."""
    try:
        if binfmt.joinpath("status").read_text().strip() != "enabled":
            return None
        entries = sorted(p for p in binfmt.iterdir() if p.name not in ("register", "status"))
    except OSError:
        return None
    machine = _MACHINE[PLATFORMS[platform]]
    for entry in entries:
        try:
            fields = _fields(entry.read_text())
        except OSError:
            continue
        magic = fields.get("magic", "")
        if (
            fields.get("enabled") is not None
            and fields.get("offset", "0") == "0"
            and magic.startswith(_ELF64_LE)
            and magic[36:40] == machine
            and "F" in fields.get("flags:", "")
        ):
            return entry.name
    return None


def _fields(text: str) -> dict[str, str]:
    """An entry's lines as ``{first word: the rest}`` (``enabled`` has no rest)."""
    fields = {}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        fields[word] = rest.strip()
    return fields


def require_runnable(platform: str, binfmt: Path = BINFMT_MISC) -> None:
    """Nothing when this machine runs ``platform``'s programs; else a UsageError saying how to let it."""
    if native(platform) or handler(platform, binfmt) is not None:
        return
    arch = PLATFORMS[platform]
    raise UsageError(
        f"{platform} needs its programs run on this {host.machine()} machine (the base's maintainer scripts, "
        f"the build's RUN steps, the image checks), and no binfmt_misc entry runs {arch} programs here "
        f"(enabled, with the F flag, under {binfmt})",
        hint=(
            f"as root: apt-get install qemu-user-static binfmt-support arch-test, then "
            f"update-binfmts --enable qemu-{arch} (docs/platforms.md); or build only this machine's platform "
            f"with --platform"
        ),
    )

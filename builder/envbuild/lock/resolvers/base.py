"""What every resolver adapter takes and returns, and the requirements-file parser they share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.utils import canonicalize_name

from envbuild.errors import ResolutionError
from envbuild.lock.spec import PLATFORMS, Index


@dataclass(frozen=True, kw_only=True)
class ResolveRequest:
    """Everything that determines one resolution (and nothing that does not)."""

    requirements: tuple[str, ...]
    python: str
    platform: str  # OCI platform
    glibc: str
    exclude_newer: str | None  # None: exact pins of envbuild's own tools, which no cutoff bounds
    index_url: str | None
    indexes: tuple[Index, ...]
    constraints: tuple[str, ...] = ()
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    previous: str | None = None  # the current lock's text: its pins are preferred

    @property
    def wheel_platform(self) -> str:
        """The manylinux platform tag the resolver targets, e.g. x86_64-manylinux_2_28."""
        return f"{PLATFORMS[self.platform]}-manylinux_{self.glibc.replace('.', '_')}"


@dataclass(frozen=True, kw_only=True)
class Pin:
    """One locked package: an exact version and every acceptable file hash."""

    name: str  # canonical
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>", sorted
    via: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """A resolver's answer to a :class:`ResolveRequest`."""

    pins: tuple[Pin, ...]  # sorted by name
    resolver: str
    resolver_version: str


class Resolver(Protocol):
    """A resolver adapter (uv, pip-tools)."""

    name: str

    def version(self) -> str:
        """The resolver's version, recorded in the lock metadata."""
        ...

    def resolve(self, request: ResolveRequest, *, workdir: Path) -> Resolution:
        """Resolve ``request`` with hashes; ``workdir`` is a private scratch directory."""
        ...


def _replace_via(pin: Pin) -> Pin:
    """Name the spec, not the resolver's scratch input file, as the origin of direct requirements."""
    via = {
        "spec" if v.startswith(("envbuild-variant", "-r ")) else "constraint" if v.startswith("-c ") else v
        for v in pin.via
    }
    return Pin(name=pin.name, version=pin.version, hashes=pin.hashes, via=tuple(sorted(via)))


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>\S+?)\s*(\\)?$")
_HASH = re.compile(r"--hash=(?P<algo>sha256):(?P<hex>[0-9a-f]{64})")
_VIA = re.compile(r"^\s+#\s+via\s*(?P<rest>.*)$")


def parse_requirements(text: str, *, source: str) -> tuple[Pin, ...]:
    """Parse hash-pinned requirements (as uv and pip-compile write them) into :class:`Pin` values."""
    pins: dict[str, Pin] = {}
    current: dict[str, object] | None = None
    via: list[str] = []
    in_via = False

    def flush() -> None:
        if current is not None:
            name = str(current["name"])
            pins[name] = Pin(
                name=name,
                version=str(current["version"]),
                hashes=tuple(sorted(set(current["hashes"]))),  # type: ignore[call-overload]
                via=tuple(sorted(set(via))),
            )

    for line in text.splitlines():
        if not line.strip():
            continue
        match = _PIN.match(line)
        if match:
            flush()
            current = {"name": canonicalize_name(match["name"]), "version": match["version"], "hashes": []}
            via, in_via = [], False
            continue
        if line.startswith(("-", "#")):  # options and comments outside a pin
            continue
        if current is None:
            raise ResolutionError(
                f"{source}: cannot read line {line!r}", hint="this is a bug in envbuild: please report it"
            )
        for h in _HASH.finditer(line):
            current["hashes"].append(f"{h['algo']}:{h['hex']}")  # type: ignore[attr-defined]
        via_match = _VIA.match(line)
        if via_match:
            in_via = True
            if via_match["rest"]:  # "# via a, b" (envbuild's one-line form) or "# via a" (uv, pip-compile)
                via.extend(v.strip() for v in via_match["rest"].split(", "))
        elif in_via and line.strip().startswith("#"):
            via.append(line.strip().lstrip("#").strip())
    flush()
    pins = {name: _replace_via(pin) for name, pin in pins.items()}
    for pin in pins.values():
        if not pin.hashes:
            raise ResolutionError(
                f"{source}: {pin.name}=={pin.version} has no hash", hint="the index must publish sha256 hashes"
            )
    return tuple(sorted(pins.values(), key=lambda p: p.name))

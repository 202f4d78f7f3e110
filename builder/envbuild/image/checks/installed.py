"""The distributions installed in an image's venv, read from their ``.dist-info`` directories.

Each distribution's RECORD lists the files it installed: they name which distribution a file
belongs to, and its top-level modules (what ``import`` can name). top_level.txt is only a
fallback: setuptools writes it from the source tree, and it lists names a wheel may not ship.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from envbuild.image.checks.rootfs import RootFS

# An extension module at the top of site-packages: name.cpython-311-x86_64-linux-gnu.so, name.abi3.so, name.so.
_EXTENSION = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z0-9_-]+)?\.(so|pyd)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Directories some distributions install at the top by mistake: never an API to import.
_NOT_MODULES = frozenset({"tests", "test", "docs", "doc", "examples", "benchmarks"})


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """One installed distribution: its canonical name, version, files (image paths) and top-level modules."""

    name: str
    version: str
    files: frozenset[str]
    modules: tuple[str, ...]


def site_packages(root: RootFS, venv: str) -> str | None:
    """The venv's site-packages directory (``<venv>/lib/pythonX.Y/site-packages``), None when it has none."""
    lib = posixpath.join(venv, "lib")
    for name in sorted(root.directory_names(lib)):
        candidate = posixpath.join(lib, name, "site-packages")
        if name.startswith("python") and root.resolve(candidate) is not None:
            return candidate
    return None


def distributions(root: RootFS, site: str) -> list[Distribution]:
    """Every distribution installed into ``site`` (an image path), sorted by name."""
    found = []
    for entry in sorted(root.directory_names(site)):
        if not entry.endswith(".dist-info"):
            continue
        name, _, version = entry[: -len(".dist-info")].partition("-")
        record = _read(root, posixpath.join(site, entry, "RECORD"))
        paths = [row[0] for row in csv.reader(io.StringIO(record)) if row] if record else []
        files = frozenset(posixpath.normpath(posixpath.join(site, p)) for p in paths)
        modules = top_level_modules(paths)
        if not paths:
            top = _read(root, posixpath.join(site, entry, "top_level.txt")) or ""
            modules = tuple(sorted({m.strip() for m in top.splitlines() if _IDENTIFIER.fullmatch(m.strip())}))
        found.append(Distribution(name=canonicalize_name(name), version=version, files=files, modules=modules))
    return sorted(found, key=lambda d: d.name)


def top_level_modules(record_paths: list[str]) -> tuple[str, ...]:
    """The importable top-level modules among a RECORD's paths (relative to site-packages).

    Packages, modules and extension modules at the top; a namespace package (no __init__.py)
    stands for its first regular subpackages. Left out: the dist-info and .data directories,
    ``*.libs`` (vendored shared libraries), ``__pycache__``, files outside site-packages, and
    names starting with '_' unless the distribution has nothing else.
    """
    paths = [posixpath.normpath(p) for p in record_paths]
    inits = {posixpath.dirname(p) for p in paths if posixpath.basename(p) == "__init__.py"}
    names: set[str] = set()
    for path in paths:
        parts = path.split("/")
        top = parts[0]
        if top in ("..", "__pycache__") or top.endswith((".dist-info", ".data", ".libs")) or top in _NOT_MODULES:
            continue
        if len(parts) == 1:
            module = _module_file(top)
            if module is not None:
                names.add(module)
        elif _IDENTIFIER.fullmatch(top):
            names.add(_package(parts, inits))
    names.discard("")
    public = {n for n in names if not n.split(".")[-1].startswith("_")}
    return tuple(sorted(public or names))


def _module_file(name: str) -> str | None:
    if name.endswith(".py") and _IDENTIFIER.fullmatch(name[:-3]):
        return name[:-3]
    match = _EXTENSION.fullmatch(name)
    return match["name"] if match else None


def _package(parts: list[str], inits: set[str]) -> str:
    """The package a file under ``parts[0]`` belongs to at the first level that has an __init__.py."""
    for depth in range(1, len(parts)):
        directory = "/".join(parts[:depth])
        if directory in inits:
            return directory.replace("/", ".")
        if not _IDENTIFIER.fullmatch(parts[depth - 1]):
            return ""
    return ""  # data files of a namespace directory: nothing to import


def _read(root: RootFS, path: str) -> str | None:
    resolved = root.resolve(path)
    if resolved is None:
        return None
    try:
        return root.host(resolved).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def owners(dists: list[Distribution]) -> dict[str, str]:
    """Image path -> the name of the distribution that installed it."""
    return {path: d.name for d in dists for path in d.files}

"""The spec's ``[checks]`` table: what the checks of a built image (envbuild.image.checks) may leave out.

    [checks]
    skip-import = ["tensorrt"]        # distributions whose modules are not imported
    allow-missing = ["libfoo.so.1"]   # shared libraries that may be missing from the image

Distribution names are checked against the lock when an image is built
(:func:`unknown_distributions`): a name no variant locks is a typo, not an opt-out.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from envbuild.tomlread import Table

_KEYS = ("skip-import", "allow-missing")
# A distribution name as PEP 508 spells one; a soname is a file name (no '/').
_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_SONAME = re.compile(r"[A-Za-z0-9_.+-]+")


@dataclass(frozen=True, kw_only=True)
class ChecksSpec:
    """Opt-outs of the image checks; both empty by default (everything is checked)."""

    skip_import: tuple[str, ...] = ()  # canonical distribution names whose modules are not imported
    allow_missing: tuple[str, ...] = ()  # sonames a needed-library miss is allowed for


def parse_checks(t: Table) -> ChecksSpec:
    """The ``[checks]`` table of ``t``."""
    table = t.table("checks", _KEYS)
    if table is None:
        return ChecksSpec()
    skip = []
    for name in table.strings("skip-import", example='"tensorrt"'):
        if not _DIST_NAME.fullmatch(name):
            table.fail(
                "skip-import", f"{name!r} is not a distribution name", 'write the name pip installs, e.g. "tensorrt"'
            )
        skip.append(canonicalize_name(name))
    allowed = []
    for soname in table.strings("allow-missing", example='"libfoo.so.1"'):
        if not _SONAME.fullmatch(soname) or soname in (".", ".."):
            table.fail(
                "allow-missing", f"{soname!r} is not a library file name",
                'write the name the error gave, without a directory, e.g. "libfoo.so.1"',
            )  # fmt: skip
        allowed.append(soname)
    return ChecksSpec(skip_import=tuple(sorted(set(skip))), allow_missing=tuple(sorted(set(allowed))))


def unknown_distributions(checks: ChecksSpec, locked: Iterable[str]) -> list[tuple[str, str | None]]:
    """The ``skip-import`` names no lock holds, each with the nearest locked name (or None)."""
    names = sorted({canonicalize_name(n) for n in locked})
    return [
        (name, next(iter(difflib.get_close_matches(name, names, n=1, cutoff=0.6)), None))
        for name in checks.skip_import
        if name not in names
    ]

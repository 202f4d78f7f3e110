"""The names nearest to a package name an index does not know, for "did you mean ...?".

The candidates are every project the index lists at its root, fetched only on this error
path (through :mod:`envbuild.lock.simple_index`, with the index's credentials) and kept in
the user cache for a day: a large index lists hundreds of thousands of names, tens of MB,
and a typo should not cost that twice. When the index cannot be read (offline, or it
refuses to list), the names the lock and the spec already hold are the candidates.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name

from envbuild.errors import EnvbuildError
from envbuild.fsutil import atomic_write
from envbuild.lock.simple_index import IndexReadError, index_projects, session
from envbuild.lock.spec import Index
from envbuild.workspace import default_cache

# The index uv and pip use when the spec names none (envbuild isolates both from any other setting).
DEFAULT_INDEX = "https://pypi.org/simple"
CACHE_SECONDS = 24 * 3600
_fetching = threading.Lock()  # variants fail in parallel with the same typo: fetch the list once


def cache_dir() -> Path:
    """Where project lists are kept: ``<envbuild cache>/index-projects``."""
    return default_cache() / "index-projects"


def nearest_names(
    name: str, *, index_url: str | None, index: Index | None = None, known: Iterable[str] = (), n: int = 3
) -> tuple[str, ...]:
    """Up to ``n`` project names close to ``name``: the index's, else ``known`` (the lock's and the spec's)."""
    names = project_names(index_url or DEFAULT_INDEX, index)
    return closest(name, names if names is not None else known, n=n)


def closest(name: str, candidates: Iterable[str], *, n: int = 3) -> tuple[str, ...]:
    """The ``n`` candidates nearest to ``name``; separators and case never count as a difference.

    "scikitlearn" finds "scikit-learn" first: names equal once '-', '_' and '.' are dropped
    come before the ones difflib finds similar.
    """
    wanted = canonicalize_name(name)
    squashed = _squash(wanted)
    # Filtered on length first: a large index lists 700,000 names, and difflib over all of them
    # takes seconds. Index lists are canonical already; lower() is enough for the others.
    slack = max(2, len(wanted) // 3)
    near = sorted({c.lower() for c in candidates if abs(len(c) - len(wanted)) <= slack} - {wanted})
    same = [c for c in near if _squash(c) == squashed]
    similar = difflib.get_close_matches(wanted, near, n=n, cutoff=0.75)
    return tuple(dict.fromkeys([*same, *similar]))[:n]


def project_names(index_url: str, index: Index | None = None) -> list[str] | None:
    """Every name ``index_url`` lists, from the day-old cache or the index; None when it cannot be read."""
    with _fetching:
        cached = _read_cache(_cache_file(index_url), index_url)
        if cached is not None:
            return cached
        try:
            names = index_projects(session(), index_url, index=index)
        except IndexReadError:
            return None
        if names:
            with contextlib.suppress(EnvbuildError):  # an unwritable cache costs the next typo a fetch, no more
                remember_projects(index_url, names)
        return names


def remember_projects(index_url: str, names: list[str]) -> None:
    """Keep ``names`` as the project list of ``index_url`` for a day, from now."""
    payload = {"index": index_url, "fetched": int(time.time()), "names": sorted(names)}
    atomic_write(_cache_file(index_url), json.dumps(payload, separators=(",", ":")) + "\n")


def _cache_file(index_url: str) -> Path:
    return cache_dir() / f"{hashlib.sha256(index_url.encode()).hexdigest()[:16]}.json"


def _read_cache(path: Path, index_url: str) -> list[str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fresh = isinstance(data, dict) and time.time() - float(data.get("fetched", 0)) < CACHE_SECONDS
    names = data.get("names") if fresh and data.get("index") == index_url else None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _squash(name: str) -> str:
    return re.sub(r"[-_.]+", "", name.lower())

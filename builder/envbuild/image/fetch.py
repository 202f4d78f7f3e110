"""``fetch``: every wheel a build installs, downloaded on the host and hash-checked before the build.

Wheels land in a content-addressed cache (``<cache>/wheels/<sha256>/<file>``, in the cache
of the :class:`envbuild.workspace.Workspace`) and are staged, by hard link, into
``.envbuild/stage/<variant>/wheels/`` for the build context. For each pin the file is
chosen among those whose sha256 the lock lists, by the target's wheel tags (Python, ABI,
manylinux platform), so the build never needs the network and can only install what the
lock allows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from envbuild.errors import EnvbuildError, UsageError, strip_url_credentials
from envbuild.fsutil import atomic_write
from envbuild.image import projectfiles
from envbuild.lock.resolvers.base import Pin, parse_requirements
from envbuild.lock.simple_index import index_auth, index_files, session
from envbuild.lock.spec import PLATFORMS, Index
from envbuild.progress import Phase
from envbuild.workspace import Workspace

# The resolvers' default index; a spec's index-url replaces it.
DEFAULT_INDEX = "https://pypi.org/simple"


class FetchError(EnvbuildError):
    """A locked file could not be found or downloaded, or its bytes did not match the lock."""


@dataclass(frozen=True, kw_only=True)
class Wheel:
    """A wheel chosen for one pin: where it came from and what it is."""

    name: str
    version: str
    filename: str
    url: str  # credentials stripped
    sha256: str
    path: Path  # in the cache

    def to_json(self) -> dict[str, str]:
        """The record provenance and audits use."""
        return {
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "url": self.url,
            "sha256": self.sha256,
        }


def wheel_dir(cache: Path, sha256: str) -> Path:
    """Where the envbuild cache ``cache`` keeps the wheel whose sha256 is ``sha256`` (and the URL it came from)."""
    return cache / "wheels" / sha256


def target_tags(python: str, platform: str, glibc: str) -> list[Tag]:
    """The wheel tags a CPython ``python`` on ``platform`` with ``glibc`` accepts, best first."""
    major, minor = (int(x) for x in python.split(".")[:2])
    arch = PLATFORMS[platform]
    glibc_minor = int(glibc.split(".")[1])
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms += [
        f"{legacy[m]}_{arch}" for m in (17, 12, 5) if m <= glibc_minor and ((m != 12 and m != 5) or arch == "x86_64")
    ]
    tags = list(cpython_tags((major, minor), abis=[f"cp{major}{minor}", "abi3", "none"], platforms=platforms))
    tags += list(compatible_tags((major, minor), f"cp{major}{minor}", platforms))
    return tags


def choose_file(files: list[dict[str, Any]], pin: Pin, tags: list[Tag]) -> dict[str, Any]:
    """The best wheel among ``files`` whose hash the pin lists and whose tags the target accepts."""
    rank = {tag: i for i, tag in enumerate(tags)}
    allowed = {h.split(":", 1)[1] for h in pin.hashes}
    best: tuple[int, dict[str, Any]] | None = None
    for file in files:
        filename = file["filename"]
        if not filename.endswith(".whl") or file["sha256"] not in allowed:
            continue
        *_, file_tags = parse_wheel_filename(filename)
        score = min((rank[t] for t in file_tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, file)
    if best is None:
        raise FetchError(
            f"{pin.name}=={pin.version}: none of its locked files is a wheel for this target",
            hint="the lock and the target disagree: run 'envbuild lock' again",
        )
    return best[1]


def fetch_lockfile(
    lockfile: Path,
    *,
    cache: Path,
    python: str,
    platform: str,
    glibc: str,
    index_url: str | None,
    indexes: tuple[Index, ...],
    jobs: int = 4,
    progress: Phase | None = None,
) -> list[Wheel]:
    """Download (or find in ``cache``) one wheel per pin of ``lockfile``, each checked against the lock.

    ``progress`` counts the wheels, and the bytes of those downloaded.
    """
    pins = parse_requirements(lockfile.read_text(encoding="utf-8"), source=str(lockfile))
    tags = target_tags(python, platform, glibc)
    routes = {p: i for i in indexes for p in i.packages}
    # A routed index's credentials are the ones lock used (UV_INDEX_<NAME>_*), else ~/.netrc.
    auths = {i.name: index_auth(i) for i in indexes}
    http = session()

    def one(pin: Pin) -> Wheel:
        routed = routes.get(pin.name)
        index = routed.url if routed else index_url or DEFAULT_INDEX
        auth = auths[routed.name] if routed else None
        cached = _cached(pin, tags, cache)
        if cached is None:
            chosen = choose_file(index_files(http, index, pin.name, index=routed), pin, tags)
            path = wheel_dir(cache, chosen["sha256"]) / chosen["filename"]
            _download(http, chosen["url"], path, chosen["sha256"], auth=auth, progress=progress)
            cached = _wheel(pin, path, strip_url_credentials(chosen["url"]))
        if progress is not None:
            progress.item()
        return cached

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, pins))


def _cached(pin: Pin, tags: list[Tag], cache: Path) -> Wheel | None:
    """A wheel already in ``cache`` for one of the pin's hashes, with its recorded URL."""
    files = []
    for h in pin.hashes:
        hexdigest = h.split(":", 1)[1]
        for path in wheel_dir(cache, hexdigest).glob("*.whl"):
            files.append({"filename": path.name, "sha256": hexdigest, "path": path})
    if not files:
        return None
    try:
        chosen = choose_file(files, pin, tags)
    except FetchError:
        return None
    path = Path(chosen["path"])
    url_file = path.with_name("url")
    url = url_file.read_text(encoding="utf-8").strip() if url_file.is_file() else ""
    return _wheel(pin, path, url)


def _wheel(pin: Pin, path: Path, url: str) -> Wheel:
    return Wheel(name=pin.name, version=pin.version, filename=path.name, url=url, sha256=path.parent.name, path=path)


def download(url: str, path: Path, sha256: str) -> None:
    """Download ``url`` into ``path`` (its ``url`` file beside it), refusing bytes that do not hash to ``sha256``."""
    _download(session(), url, path, sha256)


def _download(
    http: requests.Session,
    url: str,
    path: Path,
    sha256: str,
    *,
    auth: requests.auth.AuthBase | None = None,
    progress: Phase | None = None,
) -> None:
    """Stream ``url`` into ``path`` through a temporary file, refusing bytes that do not hash to ``sha256``.

    ``progress`` learns the length the server announces and advances by every chunk.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    hasher = hashlib.sha256()
    try:
        with http.get(url, stream=True, timeout=300, auth=auth) as response:
            if response.status_code != 200:
                raise FetchError(f"{strip_url_credentials(url)} answered HTTP {response.status_code}")
            length = response.headers.get("Content-Length", "")
            if progress is not None and length.isdigit():
                progress.add_total(int(length))
            with tmp.open("wb") as f:
                for chunk in response.iter_content(1 << 20):
                    hasher.update(chunk)
                    f.write(chunk)
                    if progress is not None:
                        progress.advance(len(chunk))
    except requests.RequestException as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"download of {strip_url_credentials(url)} failed ({type(exc).__name__})", hint="run the command again"
        ) from None
    if hasher.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"{strip_url_credentials(url)} has sha256 {hasher.hexdigest()}, but the lock expects {sha256}",
            hint="the index serves other bytes than when the project was locked; do not build from it",
        )
    tmp.replace(path)
    atomic_write(path.with_name("url"), strip_url_credentials(url) + "\n")


def stage(workspace: Workspace, variant: str, wheels: list[Wheel]) -> Path:
    """Link ``wheels`` into ``.envbuild/stage/<variant>/wheels/``, and nothing else.

    (Which wheel came from where is recorded once, in the image's build.json.)
    """
    directory = workspace.stage / variant / "wheels"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for wheel in wheels:
        _link(wheel.path, directory / wheel.filename)
    return directory


def stage_project(workspace: Workspace, files: tuple[str, ...]) -> Path:
    """Copy the project files an image takes into ``.envbuild/stage/project/``."""
    return projectfiles.stage(workspace.stage / "project", projectfiles.collect(workspace.root, files))


def stage_uv(workspace: Workspace, wheel: Wheel) -> Path:
    """Extract the uv binary from its (hash-checked) wheel to ``.envbuild/stage/tools/uv``."""
    target = workspace.stage / "tools" / "uv"
    with zipfile.ZipFile(wheel.path) as zf:
        member = next((n for n in zf.namelist() if n.endswith(".data/scripts/uv")), None)
        if member is None:
            raise UsageError(f"{wheel.filename} holds no uv binary", hint="the tools lock names the wrong package")
        atomic_write(target, zf.read(member))
    target.chmod(0o755)
    return target


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)

"""Vendor archives: every input of one image's build in one file, so it can be rebuilt offline years later.

An archive is an uncompressed tar (wheels and layers are compressed already) written
deterministically, holding::

    envbuild-vendor.json           what it is: the image, its digest, variant and commit
    bundles/<sha256>.sigstore.json every Sigstore bundle attached to the image (provenance among them)
    source/...                     the project's files at the recorded commit
    cache/wheels/<sha256>/<file>   every wheel and tool wheel the build installed, with its URL
    base/                          the base image as an OCI layout, found by its recorded digest

``envbuild rebuild --from ARCHIVE`` reads nothing else: no index, no registry, no git.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild import __version__
from envbuild.errors import EnvbuildError, UsageError
from envbuild.image.fetch import download, wheel_dir
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.supply.provenance import RecordedBuild

FORMAT = "envbuild-vendor/1"
MANIFEST = "envbuild-vendor.json"
# Project directories that are never part of the source: outputs, environments, caches.
_NOT_SOURCE = {".git", ".envbuild", ".venv", ".tools", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


class VendorError(EnvbuildError):
    """An input cannot be found or archived, or an archive cannot be read. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class Vendored:
    """An archive unpacked into a directory: its manifest and where each part is."""

    root: Path
    manifest: dict[str, Any]

    @property
    def source(self) -> Path:
        """The project at the recorded commit."""
        return self.root / "source"

    @property
    def cache(self) -> Path:
        """An envbuild cache directory holding exactly the image's wheels."""
        return self.root / "cache"

    @property
    def base(self) -> Path:
        """The base image's OCI layout."""
        return self.root / "base"

    def bundles(self) -> list[bytes]:
        """Every bundle the image had attached when it was vendored."""
        return [p.read_bytes() for p in sorted((self.root / "bundles").glob("*.sigstore.json"))]


def copy_worktree(checkout: Path, dest: Path) -> None:
    """The checkout's files as they are on disk, without outputs, environments and caches."""
    shutil.copytree(checkout, dest, ignore=lambda _dir, names: [n for n in names if n in _NOT_SOURCE])


def find_base(digest: Digest, cache: Path, *, extra: tuple[Path, ...] = ()) -> Path | None:
    """An OCI layout whose image has manifest ``digest``: in ``extra``, else among the bases in the cache ``cache``."""
    candidates = [*extra, *sorted((cache / "bases").glob("*")), *sorted((cache / "pulled").glob("*"))]
    for path in candidates:
        try:
            if Layout.open(path).select().digest == digest:
                return path
        except (OSError, ValueError, EnvbuildError):
            continue
    return None


def collect_wheels(record: RecordedBuild, cache: Path, dest_cache: Path) -> int:
    """Copy every wheel and tool of ``record`` into ``dest_cache`` (the cache's layout); return how many.

    Each comes from the envbuild cache ``cache`` when it is there (else it is downloaded into
    it from its recorded URL), checked against its recorded sha256 either way.
    """
    count = 0
    for wheel in (*record.wheels, *record.tools):
        cached = wheel_dir(cache, wheel.sha256) / wheel.filename
        if not cached.is_file():
            if not wheel.url:
                raise VendorError(f"{wheel.filename} is not in the cache and its URL was not recorded")
            download(wheel.url, cached, wheel.sha256)
        target = wheel_dir(dest_cache, wheel.sha256)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, target / wheel.filename)
        (target / "url").write_text(wheel.url + "\n", encoding="utf-8")
        count += 1
    return count


def write_archive(staged: Path, output: Path) -> int:
    """Write the directory ``staged`` as a deterministic tar at ``output`` (atomically); return its size."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in _walk(staged):
                info = tar.gettarinfo(str(path), arcname=path.relative_to(staged).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o755 if path.is_dir() or info.mode & 0o111 else 0o644
                if path.is_file():
                    with path.open("rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the archive holds no secret
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output.stat().st_size


def open_archive(archive: Path, dest: Path) -> Vendored:
    """Unpack a vendor archive into ``dest`` and check what it says it is."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise UsageError(
            f"{archive} is not an envbuild vendor archive: {exc}", hint="make one with 'envbuild vendor'"
        ) from exc
    if manifest.get("format") != FORMAT:
        raise UsageError(
            f"{archive} is of format {manifest.get('format')!r}; this envbuild reads {FORMAT}",
            hint="rebuild it with the envbuild version that made the archive",
        )
    return Vendored(root=dest, manifest=manifest)


def manifest_for(*, image: str, digest: Digest, record: RecordedBuild, wheels: int) -> bytes:
    """The archive's envbuild-vendor.json."""
    data = {
        "format": FORMAT,
        "image": image,
        "digest": str(digest),
        "variant": record.variant,
        "revision": record.revision,
        "base": str(record.base.digest),
        "wheels": wheels,
        "envbuild": __version__,
    }
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if here != root:
            yield here
        for name in sorted(filenames):
            yield here / name

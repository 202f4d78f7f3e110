"""``[image] files``: what an image takes from the project, checked, staged and digested from one walk.

:func:`collect` walks the listed paths once and returns every directory, file and link the
image will copy, with the path it has in the staged project. Staging
(:func:`stage`, into ``.envbuild/stage/project/``) and the build-input digest
(:func:`digest`) both work from that list, so what the digest covers is exactly what the
build copies. The walk refuses what must never reach an image: a link that leaves the
project (its target would be host content, or a host path), and files that are neither
regular files, directories nor links.

Links inside a listed directory stay links (buildah and BuildKit copy them as links); a
listed path that is itself a link within the project is copied as its target, as a
Dockerfile COPY of a link does. ``"."`` is the whole project minus version-control
directories, envbuild's own outputs and the project's virtual environment. ``[image] exclude``
patterns (:func:`excluded`) remove more from what the listed directories hold.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from envbuild.errors import UsageError
from envbuild.lock.spec import Spec
from envbuild.workspace import IMAGES_DIR, LOCK_DIR

# Skipped wherever they are: version control and bytecode the host left behind.
SKIPPED = frozenset({".git", ".hg", ".svn", "__pycache__"})
# Skipped at the project root only: envbuild's outputs (the stage itself is under .envbuild/),
# and uv's project environment, whose links point at the host's Python.
SKIPPED_AT_ROOT = frozenset({".envbuild", LOCK_DIR, IMAGES_DIR, ".dockerignore", ".venv"})

Kind = Literal["dir", "file", "link"]


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One directory, file or link an image copies, at its path in the staged project."""

    path: str  # relative to the staged project, POSIX
    kind: Kind
    source: Path  # on the host: the directory, the file (a listed link: its target) or the link
    target: str = ""  # a link's target, as written
    executable: bool = False


def project_files(spec: Spec) -> tuple[Entry, ...]:
    """What ``spec``'s images copy from its project; a :class:`UsageError` naming the spec for what they must not."""
    return collect(spec.root, spec.image.files, where=f"{spec.file}: image.files", exclude=spec.image.exclude)


def collect(
    root: Path, files: tuple[str, ...], *, where: str = "image.files", exclude: tuple[str, ...] = ()
) -> tuple[Entry, ...]:
    """Every entry the listed ``files`` of the project in ``root`` stand for, sorted by staged path.

    What a listed directory holds is filtered by the ``exclude`` patterns; a listed path itself is
    always taken (listing it is asking for it).
    """
    root = root.resolve()
    entries: list[Entry] = []
    for rel in files:
        if rel == ".":
            entries += _walk(root, root, "", where, exclude)
            continue
        source = root / rel
        if not os.path.lexists(source):
            raise UsageError(
                f"{where}: {rel!r} does not exist in {root}", hint="fix the path in the spec, or create it"
            )
        _check_path(root, rel, where)
        real = source.resolve()
        mode = real.stat().st_mode
        if stat.S_ISDIR(mode):
            entries.append(Entry(path=rel, kind="dir", source=real))
            entries += _walk(root, real, rel + "/", where, exclude)
        elif stat.S_ISREG(mode):
            entries.append(Entry(path=rel, kind="file", source=real, executable=bool(mode & 0o100)))
        else:
            _special(rel, where)
    return tuple(sorted(entries, key=lambda e: e.path))


def _check_path(root: Path, rel: str, where: str) -> None:
    """Every link on the way from ``root`` to ``rel`` (the last component included) stays in the project."""
    current = root
    for part in Path(rel).parts:
        current = current / part
        if current.is_symlink():
            _check_link(root, current, where)


def _check_link(root: Path, link: Path, where: str) -> str:
    """The target of ``link``, refused when it is absolute or leads out of the project."""
    target = os.readlink(link)
    name = link.relative_to(root).as_posix()
    # Lexically (what the link says) and on disk (through any further links): both must stay inside.
    lexical = os.path.normpath(os.path.join(os.path.dirname(name), target))
    leaves = (
        os.path.isabs(target)
        or lexical == ".."
        or lexical.startswith("../")
        or not Path(os.path.realpath(link)).is_relative_to(root)
    )
    if leaves:
        raise UsageError(
            f"{where}: the link {name!r} -> {target!r} points outside the project",
            hint="copy what it points to into the project, or make it a relative link to a path inside the project",
        )
    return target


def excluded(path: str, *, is_dir: bool, patterns: tuple[str, ...]) -> bool:
    """Whether ``path`` (relative to the project, POSIX) is removed by one of the ``[image] exclude`` patterns.

    A pattern without '/' is matched against the last name of the path (a file or directory
    of that name at any depth); one with '/' against the whole path, where '*' also matches '/'
    (fnmatch, case-sensitive). A trailing '/' matches directories only. A directory that
    matches is removed with everything in it (its contents are never walked).
    """
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        core = pattern.rstrip("/")
        if pattern.endswith("/") and not is_dir:
            continue
        if fnmatch.fnmatchcase(path if "/" in core else name, core):
            return True
    return False


def _walk(root: Path, directory: Path, prefix: str, where: str, exclude: tuple[str, ...] = ()) -> list[Entry]:
    """The entries under ``directory`` (staged under ``prefix``) but the excluded; links are kept, not followed."""
    out: list[Entry] = []
    with os.scandir(directory) as it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        if child.name in SKIPPED or child.name.endswith(".pyc"):
            continue
        if directory == root and child.name in SKIPPED_AT_ROOT:
            continue
        path, source = prefix + child.name, Path(child.path)
        if exclude and excluded(path, is_dir=child.is_dir(follow_symlinks=False), patterns=exclude):
            continue
        if child.is_symlink():
            out.append(Entry(path=path, kind="link", source=source, target=_check_link(root, source, where)))
        elif child.is_dir(follow_symlinks=False):
            out.append(Entry(path=path, kind="dir", source=source))
            out += _walk(root, source, path + "/", where, exclude)
        elif child.is_file(follow_symlinks=False):
            mode = child.stat(follow_symlinks=False).st_mode
            out.append(Entry(path=path, kind="file", source=source, executable=bool(mode & 0o100)))
        else:
            _special(source.relative_to(root).as_posix(), where)
    return out


def _special(rel: str, where: str) -> None:
    raise UsageError(
        f"{where}: {rel!r} is not a regular file, directory or link (a FIFO, socket or device)",
        hint="move it out of the listed paths: an image cannot copy it",
    )


def digest(entries: tuple[Entry, ...]) -> str:
    """A digest of what the entries copy: paths, kinds, executability, link targets, contents."""
    hasher = hashlib.sha256()
    for entry in entries:
        hasher.update(f"{entry.kind}\0{entry.path}\0{entry.executable}\0{entry.target}\0".encode())
        if entry.kind == "file":
            hasher.update(hashlib.sha256(entry.source.read_bytes()).digest())
    return hasher.hexdigest()


def stage(directory: Path, entries: tuple[Entry, ...]) -> Path:
    """Write the entries into ``directory`` (``.envbuild/stage/project/``, replacing it): the snapshot the build copies.

    The build copies this snapshot, not the working tree, so what running the project on
    the host leaves behind (__pycache__) never reaches an image. Modes are normalised
    (directories 0755, files 0644 or 0755): the layers are normalised later anyway, but
    buildah names a COPY in the image's history by a hash of the source that covers modes,
    so a checkout made under umask 077 would otherwise change the config, and so the digest
    (seen in an audit rebuild).
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for entry in entries:
        path = directory / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        elif entry.kind == "link":
            os.symlink(entry.target, path)
        else:
            shutil.copy2(entry.source, path)
            path.chmod(0o755 if entry.executable else 0o644)
    for parent in directory.rglob("*"):  # the parents of listed files ("config" of "config/serve.toml")
        if parent.is_dir() and not parent.is_symlink():
            parent.chmod(0o755)
    return directory

"""Writing files so that a reader never sees half of one; reading small files with a size cap."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from envbuild.errors import EnvbuildError, UsageError


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    A path that cannot be written (its parent a file, itself a directory, a read-only place)
    is a :class:`UsageError` naming it; see :func:`cannot_write`.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from exc
        raise


def rename_into_place(directory: Path, target: Path) -> None:
    """Rename the finished ``directory`` to the cache entry ``target``, or keep the one already there.

    Another process on the same cache may have made ``target`` from the same inputs meanwhile:
    its copy is kept whole (this one is left for the caller's temporary directory to remove).
    """
    try:
        os.rename(directory, target)
    except OSError:
        if not target.is_dir():  # not another process's entry: a real failure
            raise


# Errors that say the path is wrong (the user can pick another); any other (a full disk) is a failure.
_PATH_ERRORS = {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT}


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Make ``target`` the file ``source``: a hard link, or a copy on another file system; kept if it exists.

    A copy is written beside ``target`` and renamed into place, so a killed copy never looks whole.
    """
    target = Path(target)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


def cannot_write(path: Path, exc: OSError) -> EnvbuildError:
    """The error for an output that could not be written: a :class:`UsageError` when the path is the problem."""
    message = f"cannot write {path}: {exc.strerror or exc}"
    if exc.errno in _PATH_ERRORS:
        return UsageError(message, hint=f"choose another path, or make {path.parent} a writable directory")
    return EnvbuildError(message, hint="check the disk: free space, quotas, errors in the system log")


def read_limited(path: Path, *, limit: int, what: str) -> bytes:
    """Read at most ``limit`` bytes of ``path`` (a key, a policy): more is a :class:`UsageError`.

    The cap is why this exists: ``--key /dev/zero`` or a FIFO would otherwise be read forever,
    until memory runs out. ``what`` names the file in messages ("the signing key").
    """
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}", hint="check the path") from exc
    if len(data) > limit:
        raise UsageError(
            f"{what} {path} is too large (over {limit // 1024} KiB): it cannot be one",
            hint=f"pass the file that holds {what}",
        )
    return data


def check_output(path: Path) -> None:
    """Refuse an output path that cannot be written, before the work that would fill it.

    Catches what modes cannot (envbuild may run as root): the path is a directory, or a
    parent is a regular file. Called first by commands whose work is long (a rebuild, an
    archive), so a bad ``-o`` costs nothing.
    """
    if path.is_dir():
        raise cannot_write(path, IsADirectoryError(errno.EISDIR, "it is a directory"))
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise cannot_write(path, NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory"))

"""Scratch directories that a later run can tell apart: in use, or left behind by a killed run.

A run that is killed (SIGKILL, OOM, a lost machine) cannot remove its temporary directories, and
builder storage in them can be gigabytes. Each directory made here holds an exclusive ``flock``
on its ``.envbuild-lock`` file for as long as it lives; the kernel drops the lock when the process
dies, however it dies. :func:`clean` removes the directories whose lock nobody holds, and never one
that a running envbuild (in this or another process or pid namespace) still uses. A directory is
removed only once nothing is mounted inside it (:func:`remove`): a builder killed half way can
leave mounts in its storage.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
LOCK = ".envbuild-lock"
_MNT_DETACH = 2


@contextlib.contextmanager
def scratch_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A new directory under ``parent`` (default: the temporary directory), removed on exit, locked while in use."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    # The lock file appears under its final name already locked (made under another name, then
    # renamed), so no cleaner can find it unlocked while its directory is in use.
    fd, pending = tempfile.mkstemp(dir=path, prefix=".envbuild-lock-")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(pending, path / LOCK)
        yield path
    finally:
        remove(path)  # still locked until the directory is gone
        os.close(fd)


def clean(parent: Path, prefix: str = "", *, unlocked_before: float | None = None) -> list[Path]:
    """Remove the directories under ``parent`` named ``prefix*`` that no process uses; return them.

    A directory is removed when it carries a lock file nobody holds. One with no lock file is
    someone else's, and stays — unless ``unlocked_before`` is given (a place only envbuild writes
    to, like a project's ``.envbuild/work``) and it was last changed before that time.
    """
    removed: list[Path] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            lock = os.open(entry / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if unlocked_before is not None and _changed_before(entry, unlocked_before):
                remove(entry)
                removed.append(entry)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            continue  # in use
        try:
            remove(entry)
            removed.append(entry)
        finally:
            os.close(lock)
    return removed


def remove(path: Path) -> None:
    """Remove the tree at ``path``, after unmounting whatever is mounted inside it.

    buildah's overlay driver mounts its storage and each container's root file system under its
    ``--root``; a build killed half way leaves those mounts where they are. rmtree would then
    fail on the mount points and, worse, delete through them into what they show (another
    layer, or a bind-mounted directory of the host). A mount that cannot be detached (not root)
    keeps the whole tree, with a warning: a leak of disk is better than a deleted host file.
    """
    for mount in mounts_under(path):
        _detach(mount)
    left = mounts_under(path)
    if left:
        log.warning("%s stays: %s is mounted inside it and could not be unmounted (umount -R it)", path, left[0])
        return
    shutil.rmtree(path, ignore_errors=True)


def mounts_under(path: Path) -> list[Path]:
    """The mount points at or below ``path`` in this process's mount namespace, deepest first.

    A point with mounts stacked on it appears once per mount, as many unmounts as it needs.
    """
    try:
        root = Path(os.path.realpath(path))
        table = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return []
    found = []
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            # proc(5): field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
            if point == root or root in point.parents:
                found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _detach(mount: Path) -> None:
    """Lazily unmount ``mount`` (``umount -l``): gone from the tree now, released when no longer busy."""
    ctypes.CDLL(None, use_errno=True).umount2(os.fsencode(mount), _MNT_DETACH)


def _changed_before(path: Path, when: float) -> bool:
    try:
        return os.stat(path).st_mtime < when
    except OSError:
        return False

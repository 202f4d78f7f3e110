"""Scratch directories that a later run can tell apart: in use, or left behind by a killed run.

A run that is killed (SIGKILL, OOM, a lost machine) cannot remove its temporary directories, and
builder storage in them can be gigabytes. Each directory made here holds an exclusive ``flock``
on its ``.envbuild-lock`` file for as long as it lives; the kernel drops the lock when the process
dies, however it dies. :func:`clean` removes the directories whose lock nobody holds, and never one
that a running envbuild (in this or another process or pid namespace) still uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK = ".envbuild-lock"


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
        shutil.rmtree(path, ignore_errors=True)  # still locked until the directory is gone
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
                shutil.rmtree(entry, ignore_errors=True)
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
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(lock)
    return removed


def _changed_before(path: Path, when: float) -> bool:
    try:
        return os.stat(path).st_mtime < when
    except OSError:
        return False

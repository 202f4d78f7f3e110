"""A project's built images (``.envbuild/images/<variant>``): replaced whole, trusted only when whole.

A full disk, a killed run or a lost machine must never leave half an image where the last good one
was, nor a half image that the next run takes for a cache hit:

- :func:`replace` writes the new image completely beside the final path (on its file system), syncs
  it to disk and swaps it in with one rename, so the final path always holds a whole image.
- :func:`cached_digest` checks the image (every manifest, config and layer: present, its size, its
  digest) before a build trusts it; a broken one is rebuilt, with a one-line warning.
- :func:`recover` puts back a whole ``<variant>.old`` when the final path is missing or broken.
- :func:`clean_leftovers` removes what killed runs left behind, and nothing a running one uses.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from envbuild.errors import EnvbuildError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.scratch import clean, scratch_dir
from envbuild.workspace import Workspace

log = logging.getLogger(__name__)
# Per blob file, what it was (inode, size, mtime, ctime) when it last hashed to its name: the check
# before a cache hit re-hashes only files that changed since (ctime cannot be set back by hand).
VERIFIED = ".verified.json"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class ImageWriteError(EnvbuildError):
    """The new image could not be written (a full disk, a read-only directory); the old one is unchanged."""


def replace(staged: Path, out: Path) -> None:
    """Put the complete image ``staged`` at ``out``: at every instant ``out`` holds the old or the new image, whole.

    The new image goes beside ``out`` first (a rename when ``staged`` is on the same file system, a
    copy otherwise, which a full disk fails without touching ``out``), is synced to disk, and is
    swapped in with one rename (``renameat2(RENAME_EXCHANGE)``). Where the file system cannot
    exchange, two renames through ``<out>.old``, which :func:`recover` puts back if a run dies
    between them.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)
    with writing_image(out), scratch_dir(out.parent, f".{out.name}.new-") as beside:
        new = beside / "image"
        try:
            os.rename(staged, new)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_tree(staged, new)
        _sync_tree(new)
        _swap(new, out)
        # ``new`` now holds the previous image, if any: it goes with the scratch directory.


def cached_digest(out: Path, key: str) -> Digest | None:
    """The digest of the image at ``out`` if it was built with ``key`` and is whole, else None (rebuild)."""
    recover(out)
    try:
        if (out / "build-key").read_text(encoding="utf-8").strip() != key:
            return None
    except OSError:
        return None
    try:
        digest = Layout.open(out).select().digest
        _verify(out)
    except UsageError as exc:
        log.warning("%s; rebuilding it", exc.message.replace("\n", " "))
        return None
    return digest


def recover(out: Path) -> None:
    """Put a whole ``<out>.old`` back at ``out`` if ``out`` is missing or broken; drop it otherwise."""
    old = out.with_name(out.name + ".old")
    if not old.is_dir():
        return
    if _whole(out) or not _whole(old):
        shutil.rmtree(old, ignore_errors=True)
        return
    log.warning("%s is missing or broken: putting back the previous image from %s", out, old.name)
    if out.exists():
        broken = out.with_name(f".{out.name}.broken-{os.getpid()}")
        out.rename(broken)
        old.rename(out)
        shutil.rmtree(broken, ignore_errors=True)
    else:
        old.rename(out)


def clean_leftovers(workspace: Workspace) -> None:
    """Remove what killed runs left: work directories, images half copied, ``envbuild-*`` temporary dirs.

    Only what no running envbuild holds (see :mod:`envbuild.scratch`): a concurrent build keeps its own.
    """
    images = workspace.images
    for old in sorted(images.glob("*.old")):
        recover(old.with_name(old.name.removesuffix(".old")))
    removed = clean(workspace.work, unlocked_before=_process_start())
    removed += clean(images, ".")
    for tmp in sorted({Path(tempfile.gettempdir()), Path("/tmp")}):
        removed += clean(tmp, "envbuild-")
    for tmp in sorted({Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")}):  # buildah's link_dir()
        removed += _dead_links(tmp)
    for path in removed:
        log.info("removed %s, left behind by a run that was killed", path)


def _verify(out: Path) -> None:
    try:
        known = json.loads((out / VERIFIED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):  # not what this module writes: hash everything again
        known = {}
    seen: dict[str, list[int]] = {}

    def hash_blob(path: Path) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return True  # missing: the check names it
        seen[path.name] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        return bool(known.get(path.name) != seen[path.name])

    Layout(out).verify(hash_blob=hash_blob)
    if seen != known:
        # Only a saving of work: an image on a read-only or full disk is still checked, every time.
        with contextlib.suppress(OSError, EnvbuildError):
            atomic_write(out / VERIFIED, json.dumps(seen, sort_keys=True))


def _whole(path: Path) -> bool:
    try:
        Layout.open(path).verify()
    except UsageError:
        return False
    return True


@contextlib.contextmanager
def writing_image(out: Path) -> Iterator[None]:
    """Turn a failed write (a full disk, a read-only directory) into an :class:`ImageWriteError` for ``out``."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or out.parent
        hint = (
            f"free space where {out.parent} is (df -h {out.parent}) and run again"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else f"check that {out.parent} is writable and run again"
        )
        raise ImageWriteError(
            f"could not write the image {out.name}: {exc.strerror} ({where}); the previous image is unchanged",
            hint=hint,
        ) from exc


def _swap(new: Path, out: Path) -> None:
    """Make ``new`` be ``out``; afterwards ``new`` holds the previous ``out`` (if there was one)."""
    if not out.exists():
        os.rename(new, out)
    elif not _exchange(new, out):
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
        os.rename(new, out)
        _sync_dir(out.parent)
        os.rename(old, new)
    _sync_dir(out.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a directory tree, stopping at the first error (shutil.copytree copies on and reports all at the end)."""
    target.mkdir()
    for entry in os.scandir(source):
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(Path(entry.path), target / entry.name)
        else:
            shutil.copy2(entry.path, target / entry.name, follow_symlinks=False)


def _sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root``: what is renamed into place is on the disk."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _sync_dir(Path(directory))


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_start() -> float:
    """When this process started (a directory changed before then is not one it is making)."""
    try:
        # /proc/self/stat field 22: the start time in clock ticks after boot (proc(5)).
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if "btime" in line)
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _dead_links(tmp: Path) -> list[Path]:
    """The ``envbuild-base-<pid>-*`` links the buildah adapter makes, of processes that are gone."""
    removed = []
    for link in sorted(tmp.glob("envbuild-base-*")):
        pid = link.name.split("-")[2]
        if link.is_symlink() and pid.isdigit() and not _alive(int(pid)):
            link.unlink(missing_ok=True)
            removed.append(link)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

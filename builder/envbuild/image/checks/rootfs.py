"""An image's root file system, unpacked into a directory and read as a process inside it would.

:func:`unpack` writes the layers of an image, in order, into a directory: OCI whiteouts remove
what lower layers held, owners and modes are kept (set-id bits dropped), device nodes are left
out. Every path is resolved *inside* the root, as ``chroot`` would: an absolute symlink such as
``/var/run -> /run`` points into the root, ``..`` stops at it, so no entry of a layer can write
outside the directory, whatever its links say. :class:`RootFS` answers the same questions
afterwards (does this path exist in the image, what does it resolve to) without leaving the root.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.oci.compress import detect
from envbuild.oci.imagefs import ImageReadError, LayerMember, LayerReader
from envbuild.oci.layout import Descriptor, Layout

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_LINKS = 40  # what the kernel follows in one lookup (MAXSYMLINKS) before ELOOP
_ROOT = os.geteuid() == 0  # only root gives files other owners; others unpack everything as their own


class RootFS:
    """The unpacked root file system at ``path``; image paths are absolute POSIX paths inside it."""

    def __init__(self, path: Path):
        self.path = path
        self._dirs: dict[str, str | None] = {"/": "/"}  # image directory -> where it resolves (None: missing)
        self._listings: dict[str, frozenset[str]] = {}

    def host(self, image_path: str) -> Path:
        """Where the image path ``image_path`` (already resolved, or not to be followed) is on this machine."""
        return self.path / image_path.lstrip("/")

    def resolve(self, image_path: str) -> str | None:
        """``image_path`` with every symlink followed inside the root; None when it leads nowhere."""
        return self._resolve(image_path_of(image_path), 0, create=False)

    def directory_names(self, directory: str) -> frozenset[str]:
        """The names in the image directory ``directory`` (resolved first); empty when it is no directory."""
        resolved = self.resolve(directory)
        if resolved is None:
            return frozenset()
        if resolved not in self._listings:
            try:
                self._listings[resolved] = frozenset(os.listdir(self.host(resolved)))
            except OSError:
                self._listings[resolved] = frozenset()
        return self._listings[resolved]

    def forget(self) -> None:
        """Drop what was learnt about the tree (it changed: a directory became a link, a tree was removed)."""
        self._dirs = {"/": "/"}
        self._listings.clear()

    def _resolve(self, path: str, depth: int, *, create: bool) -> str | None:
        if path == "/":
            return "/"
        parent = self._directory(posixpath.dirname(path), depth, create=create)
        if parent is None:
            return None
        candidate = posixpath.join(parent, posixpath.basename(path))
        try:
            st = os.lstat(self.host(candidate))
        except FileNotFoundError:
            return candidate if create else None
        except NotADirectoryError:
            return None
        if stat.S_ISLNK(st.st_mode):
            if depth >= _MAX_LINKS:
                return None
            target = os.readlink(self.host(candidate))
            return self._resolve(image_path_of(posixpath.join(parent, target)), depth + 1, create=create)
        return candidate

    def _directory(self, path: str, depth: int, *, create: bool) -> str | None:
        """Where the directory ``path`` resolves; with ``create``, made (mode 0755) when missing."""
        if depth == 0 and path in self._dirs:
            known = self._dirs[path]
            if known is not None or not create:
                return known
        resolved = self._resolve(path, depth, create=create)
        if resolved is not None:
            host = self.host(resolved)
            if create and not os.path.lexists(host):
                os.mkdir(host)
                os.chmod(host, 0o755)  # not the caller's umask: the image's user must get through
            elif not os.path.isdir(host):
                resolved = None
        if depth == 0:
            self._dirs[path] = resolved
        return resolved


def image_path_of(path: str) -> str:
    """``path`` as an absolute, normal image path: ``a/./b``, ``/a/b/`` and ``//a/b`` are all ``/a/b``."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


@dataclass(kw_only=True)
class Unpacked:
    """An unpacked image: its root, and the regular files its upper layers (from ``first_new``) hold."""

    root: RootFS
    new_files: set[str] = field(default_factory=set)


def unpack(layout: Layout, layers: list[Descriptor], into: Path, *, first_new: int) -> Unpacked:
    """Unpack ``layers`` of ``layout`` in order into the directory ``into`` (empty, or an overlay of the lower ones).

    The regular files of layers ``first_new`` and after that remain at the end are collected in
    :attr:`Unpacked.new_files`: the files the image adds to its base.
    """
    into.mkdir(parents=True, exist_ok=True)
    into.chmod(0o755)  # the image's /, whatever the umask (a tar's own "./" entry is not applied)
    result = Unpacked(root=RootFS(into))
    for index, layer in enumerate(layers):
        _Layer(result, new=index >= first_new).unpack(layout, layer)
    result.root.forget()
    return result


class _Layer:
    def __init__(self, unpacked: Unpacked, *, new: bool):
        self.unpacked = unpacked
        self.root = unpacked.root
        self.new = new
        self.written: set[str] = set()  # paths this layer wrote: an opaque whiteout keeps them

    def unpack(self, layout: Layout, layer: Descriptor) -> None:
        blob = layout.blob_path(layer.digest)
        try:
            with blob.open("rb") as f:
                plain = detect(f.read(4)) == "none"
        except OSError as exc:
            raise ImageReadError(f"{layout.path} lacks layer {layer.digest}", hint="write the layout again") from exc
        if plain:
            self.unpack_plain(blob, str(layer.digest))
            return
        # A compressed layer (a builder that compresses) streams through; its files are copied in Python.
        for member in LayerReader(layout, layer, verify=False).members():
            self.entry(member.info, member.path, lambda out, m=member: _copy_chunks(m, out))  # type: ignore[misc]

    def unpack_plain(self, blob: Path, digest: str) -> None:
        """A plain tar (buildah's raw output): headers read by tarfile, contents copied by the kernel."""
        try:
            with blob.open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                source = f.fileno()
                for info in tar:
                    self.entry(
                        info, image_path_of(info.name),
                        lambda out, i=info: _copy_range(source, out, i.offset_data, i.size),  # type: ignore[misc]
                    )  # fmt: skip
        except (tarfile.TarError, EOFError) as exc:
            raise ImageReadError(f"layer {digest} is not a readable tar: {exc}", hint="write the layout again") from exc

    def entry(self, info: tarfile.TarInfo, path: str, copy: Callable[[int], None]) -> None:
        if path == "/":
            return
        directory, name = posixpath.split(path)
        if name == _OPAQUE:
            self.clear(directory)
        elif name.startswith(_WHITEOUT):
            self.remove(posixpath.join(directory, name[len(_WHITEOUT) :]))
        else:
            self.write(info, path, copy)

    def write(self, info: tarfile.TarInfo, image_path: str, copy: Callable[[int], None]) -> None:
        parent = self.root._directory(posixpath.dirname(image_path), 0, create=True)
        if parent is None:
            raise ImageReadError(
                f"{image_path}: its parent is not a directory in the image", hint="write the layout again"
            )
        path = posixpath.join(parent, posixpath.basename(image_path))
        host = self.root.host(path)
        self.written.add(path)
        existing = _lstat(host)
        if info.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                self.delete(path)
                existing = None
            if existing is None:
                os.mkdir(host, 0o700)
            _own(host, info.uid, info.gid, info.mode)
            return
        if existing is not None:
            self.delete(path)
        if info.issym():
            os.symlink(info.linkname, host)
            if _ROOT:
                os.lchown(host, info.uid, info.gid)
            self.root.forget()  # a link where a directory may have been resolved before
        elif info.islnk():
            target = self.root.resolve(info.linkname)
            if target is None or not os.path.isfile(self.root.host(target)):
                raise ImageReadError(f"{image_path}: a hard link to {info.linkname}, which is not a file here")
            os.link(self.root.host(target), host)
            self.note_file(path)
        elif info.isreg():
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                copy(fd)
                _own(fd, info.uid, info.gid, info.mode)
            finally:
                os.close(fd)
            self.note_file(path)
        # Device nodes and fifos: nothing a check reads, and nothing to create outside a container.

    def note_file(self, path: str) -> None:
        if self.new:
            self.unpacked.new_files.add(path)

    def remove(self, path: str) -> None:
        resolved_parent = self.root._directory(posixpath.dirname(path), 0, create=False)
        if resolved_parent is not None:
            self.delete(posixpath.join(resolved_parent, posixpath.basename(path)))

    def clear(self, directory: str) -> None:
        resolved = self.root.resolve(directory)
        if resolved is None or not os.path.isdir(self.root.host(resolved)):
            return
        for name in os.listdir(self.root.host(resolved)):
            path = posixpath.join(resolved, name)
            if path not in self.written:
                self.delete(path)

    def delete(self, path: str) -> None:
        """Remove ``path`` (a resolved image path, its last component not followed) and all it holds."""
        host = self.root.host(path)
        existing = _lstat(host)
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(host)
            self.root.forget()
        else:
            os.unlink(host)
        files = self.unpacked.new_files
        if files:
            self.unpacked.new_files = {f for f in files if f != path and not f.startswith(path + "/")}


def _copy_range(source: int, out: int, offset: int, size: int) -> None:
    """Copy ``size`` bytes at ``offset`` of ``source`` into ``out``, in the kernel (no pass through Python)."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(source, out, size - done, offset + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(out, source, offset + done, size - done)  # across file systems, on older kernels
        if n == 0:
            raise ImageReadError(f"a layer ends inside a file ({done} of {size} bytes)", hint="write the layout again")
        done += n


def _copy_chunks(member: LayerMember, out: int) -> None:
    for piece in member.chunks():
        view = memoryview(piece)
        while view:
            view = view[os.write(out, view) :]


def _lstat(host: Path) -> os.stat_result | None:
    try:
        return os.lstat(host)
    except FileNotFoundError:
        return None


def _own(target: Path | int, uid: int, gid: int, mode: int) -> None:
    """Give ``target`` (a file descriptor, or a directory) the entry's mode without set-id bits, and its owner.

    Without root, the owner stays the caller, who keeps the right to write each directory (to fill and
    remove it).
    """
    if isinstance(target, int):
        if _ROOT:
            os.fchown(target, uid, gid)
        os.fchmod(target, mode & 0o1777)
    else:
        if _ROOT:
            os.chown(target, uid, gid)
        os.chmod(target, mode & 0o1777 if _ROOT else mode & 0o1777 | 0o700)


__all__ = ["RootFS", "Unpacked", "image_path_of", "unpack"]

"""Where the dynamic loader of an image would find each library an ELF file needs.

:class:`Resolver` searches as glibc's ld.so does (ld.so(8)), inside the image's root: the
object's DT_RPATH (only when it has no DT_RUNPATH), LD_LIBRARY_PATH from the image's
environment, its DT_RUNPATH, the directories of the image's /etc/ld.so.conf (what
/etc/ld.so.cache lists), then the default directories /lib/<triplet>, /usr/lib/<triplet>, /lib,
/usr/lib. ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` are expanded; a candidate of another ELF class
or machine is passed over, as ld.so passes it over. The hwcaps subdirectories are not searched:
they hold faster builds of libraries that are also in the directory itself.

The tables here name what a miss means: the NVIDIA driver's libraries, which the container
runtime injects into GPU containers, and the Debian package of common libraries.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from envbuild.image.checks.elf import Elf, ElfError, is_elf, read_elf
from envbuild.image.checks.rootfs import RootFS

# The NVIDIA container toolkit mounts the driver's user-space libraries into a GPU container at
# run time (libnvidia-container's list of "utility" and "compute" libraries): an image has none.
_DRIVER_PREFIXES = ("libcuda.so", "libcudadebugger.so", "libnvidia-", "libnvcuvid.so", "libnvoptix.so")
_DRIVER_SUFFIX = re.compile(r"_nvidia\.so(\.\d+)*$")  # libEGL_nvidia.so.0, libGLX_nvidia.so.0, ...

# The Debian package (bookworm and trixie) that ships a library wheels commonly need but do not
# bundle; for any other, ``apt-file search`` finds it.
DEBIAN_PACKAGES = {
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libgomp.so.1": "libgomp1",
    "libatomic.so.1": "libatomic1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libz.so.1": "zlib1g",
    "libbz2.so.1.0": "libbz2-1.0",
    "liblzma.so.5": "liblzma5",
    "libzstd.so.1": "libzstd1",
    "libexpat.so.1": "libexpat1",
    "libffi.so.8": "libffi8",
    "libssl.so.3": "libssl3",
    "libcrypto.so.3": "libssl3",
    "libsqlite3.so.0": "libsqlite3-0",
    "libuuid.so.1": "libuuid1",
    "libnuma.so.1": "libnuma1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLdispatch.so.0": "libglvnd0",
    "libGLX.so.0": "libglx0",
    "libgbm.so.1": "libgbm1",
    "libdrm.so.2": "libdrm2",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgio-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libXi.so.6": "libxi6",
    "libXfixes.so.3": "libxfixes3",
    "libXau.so.6": "libxau6",
    "libxcb.so.1": "libxcb1",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libpng16.so.16": "libpng16-16",
    "libjpeg.so.62": "libjpeg62-turbo",
    "libsndfile.so.1": "libsndfile1",
    "libasound.so.2": "libasound2",
    "libportaudio.so.2": "libportaudio2",
    "libopenblas.so.0": "libopenblas0",
    "libblas.so.3": "libblas3",
    "liblapack.so.3": "liblapack3",
    "libxml2.so.2": "libxml2",
    "libxslt.so.1": "libxslt1.1",
    "libcurl.so.4": "libcurl4",
    "libpq.so.5": "libpq5",
    "libmagic.so.1": "libmagic1",
    "libgssapi_krb5.so.2": "libgssapi-krb5-2",
    "libkrb5.so.3": "libkrb5-3",
    "libibverbs.so.1": "libibverbs1",
    "librdmacm.so.1": "librdmacm1",
    "libltdl.so.7": "libltdl7",
    "libdbus-1.so.3": "libdbus-1-3",
    "libcrypt.so.1": "libcrypt1",
    "libnsl.so.2": "libnsl2",
}
# glibc itself: in every Debian base, so a miss of one means a base without libc6 (or not Debian).
_LIBC = re.compile(r"(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|libmvec)\.so\.\d+|ld-linux.*\.so\.\d+")
_DEFAULT_PATH_TOKENS = re.compile(r"\$(\{)?(ORIGIN|LIB|PLATFORM)(?(1)\})")


def is_driver_library(soname: str) -> bool:
    """Whether ``soname`` is one of the NVIDIA driver's libraries, present only in a GPU container."""
    return soname.startswith(_DRIVER_PREFIXES) or bool(_DRIVER_SUFFIX.search(soname))


def debian_package(soname: str) -> str | None:
    """The Debian package that ships ``soname``, when the table knows it."""
    if _LIBC.fullmatch(soname):
        return "libc6"
    return DEBIAN_PACKAGES.get(soname)


@dataclass(frozen=True, kw_only=True)
class SearchPath:
    """The directories every lookup shares, and what the dynamic string tokens expand to."""

    ld_library_path: tuple[str, ...]
    configured: tuple[str, ...]  # /etc/ld.so.conf and what it includes
    default: tuple[str, ...]
    lib: str  # $LIB, e.g. lib/x86_64-linux-gnu
    platform: str  # $PLATFORM, e.g. x86_64


def search_path(root: RootFS, *, env: Mapping[str, str], machine: str) -> SearchPath:
    """The search path of the image at ``root`` for a process with ``env``, on ``machine`` (``x86_64``)."""
    triplet = f"{machine}-linux-gnu"
    # ld.so splits LD_LIBRARY_PATH at ':' and ';'; an empty entry means the working directory.
    ld_library_path = tuple(d for d in re.split("[:;]", env.get("LD_LIBRARY_PATH", "")) if d.startswith("/"))
    return SearchPath(
        ld_library_path=ld_library_path,
        configured=tuple(_configured(root, "/etc/ld.so.conf", set())),
        default=(f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib"),
        lib=f"lib/{triplet}",
        platform=machine,
    )


def _configured(root: RootFS, conf: str, seen: set[str]) -> list[str]:
    """The directories a ld.so.conf file names, its ``include`` globs followed (each file once)."""
    resolved = root.resolve(conf)
    if resolved is None or resolved in seen:
        return []
    seen.add(resolved)
    try:
        text = root.host(resolved).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    dirs: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("hwcap "):
            continue
        if line.startswith("include "):
            for pattern in line.split()[1:]:
                # Relative: to the including file's directory. Wildcards only in the last component
                # (/etc/ld.so.conf.d/*.conf), matched inside the image, never on this machine.
                directory, names = posixpath.split(posixpath.join(posixpath.dirname(conf), pattern))
                for name in sorted(fnmatch.filter(root.directory_names(directory), names)):
                    dirs += _configured(root, posixpath.join(directory, name), seen)
            continue
        dirs += [d for d in re.split(r"[\s:,=]+", line) if d.startswith("/")]
    return dirs


@dataclass(frozen=True, kw_only=True)
class Need:
    """One library an ELF file needs, and where the loader would find it (None: nowhere)."""

    soname: str
    found: str | None


class Resolver:
    """Resolves the needed libraries of ELF files inside one image."""

    def __init__(self, root: RootFS, search: SearchPath):
        self.root = root
        self.search = search
        self._elves: dict[str, Elf | None] = {}

    def elf(self, path: str) -> Elf | None:
        """The ELF file at the resolved image path ``path`` (None: not ELF, or unreadable), read once."""
        if path not in self._elves:
            try:
                with self.root.host(path).open("rb") as f:
                    self._elves[path] = read_elf(f, name=path) if is_elf(f.read(4)) else None
            except (OSError, ElfError):
                self._elves[path] = None
        return self._elves[path]

    def directories(self, path: str, elf: Elf) -> list[str]:
        """The directories searched for the needs of the ELF file at ``path``, in ld.so's order."""
        origin = posixpath.dirname(path)
        own_rpath = () if elf.runpath else elf.rpath  # DT_RUNPATH, when present, disables DT_RPATH
        dirs = [
            *self._expand(own_rpath, origin),
            *self.search.ld_library_path,
            *self._expand(elf.runpath, origin),
            *self.search.configured,
            *self.search.default,
        ]
        return list(dict.fromkeys(dirs))

    def needs(self, path: str, elf: Elf) -> list[Need]:
        """Every DT_NEEDED of ``elf`` (the file at image path ``path``), each with where it was found."""
        dirs = self.directories(path, elf)
        return [Need(soname=name, found=self.find(name, elf, dirs)) for name in elf.needed]

    def find(self, name: str, elf: Elf, dirs: list[str]) -> str | None:
        """Where ``name`` is found for ``elf`` in ``dirs`` (a name with a '/' is a path), or None."""
        if "/" in name:
            found = self.root.resolve(name)
            return found if found is not None and self._compatible(found, elf) else None
        for directory in dirs:
            if name not in self.root.directory_names(directory):
                continue
            found = self.root.resolve(posixpath.join(directory, name))
            if found is not None and self._compatible(found, elf):
                return found
        return None

    def interpreter(self, elf: Elf) -> Need | None:
        """The program interpreter an executable names (PT_INTERP), and whether the image has it."""
        if elf.interpreter is None:
            return None
        found = self.root.resolve(elf.interpreter)
        ok = found is not None and self.elf(found) is not None
        return Need(soname=elf.interpreter, found=found if ok else None)

    def _compatible(self, path: str, elf: Elf) -> bool:
        candidate = self.elf(path)
        return candidate is not None and candidate.compatible(elf)

    def _expand(self, entries: tuple[str, ...], origin: str) -> list[str]:
        values = {"ORIGIN": origin, "LIB": self.search.lib, "PLATFORM": self.search.platform}
        out = []
        for entry in entries:
            expanded = _DEFAULT_PATH_TOKENS.sub(lambda m: values[m.group(2)], entry)
            if expanded.startswith("/") and "$" not in expanded:  # ld.so drops entries it cannot expand
                out.append(posixpath.normpath(expanded))
        return out

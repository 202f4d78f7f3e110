"""Resolving needed libraries inside an image as ld.so would (envbuild.image.checks.ldso), on hand-made roots."""

from __future__ import annotations

import os
from pathlib import Path

from envbuild.image.checks.elf import Elf
from envbuild.image.checks.ldso import Resolver, debian_package, is_driver_library, search_path
from envbuild.image.checks.rootfs import RootFS
from support.elf import AARCH64, I386, make_elf

LIB = "/usr/lib/x86_64-linux-gnu"
SITE = "/opt/venv/lib/python3.11/site-packages"


def put(root: Path, path: str, data: bytes | str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        target.write_text(data)
    else:
        target.write_bytes(data)


def link(root: Path, path: str, to: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(to, target)


def resolver(root: Path, env: dict[str, str] | None = None) -> Resolver:
    tree = RootFS(root)
    return Resolver(tree, search_path(tree, env=env or {}, machine="x86_64"))


def needs(r: Resolver, path: str) -> dict[str, str | None]:
    elf = r.elf(path)
    assert isinstance(elf, Elf), path
    return {n.soname: n.found for n in r.needs(path, elf)}


def debian(root: Path) -> None:
    """What a Debian base has: libc in the multiarch directory, /lib a link to usr/lib, the loader."""
    put(root, f"{LIB}/libc.so.6", make_elf(soname="libc.so.6"))
    put(root, f"{LIB}/ld-linux-x86-64.so.2", make_elf(soname="ld-linux-x86-64.so.2"))
    link(root, "/lib", "usr/lib")
    link(root, "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")


def test_default_directories_and_a_missing_library(tmp_path: Path) -> None:
    debian(tmp_path)
    umath = f"{SITE}/numpy/_core/_umath.cpython-311-x86_64-linux-gnu.so"
    put(tmp_path, umath, make_elf(needed=("libc.so.6", "libstdc++.so.6")))
    r = resolver(tmp_path)
    assert needs(r, umath) == {
        "libc.so.6": f"{LIB}/libc.so.6",
        "libstdc++.so.6": None,
    }


def test_origin_rpath_and_runpath(tmp_path: Path) -> None:
    """$ORIGIN is the object's directory; DT_RUNPATH, when present, turns DT_RPATH off."""
    debian(tmp_path)
    put(tmp_path, f"{SITE}/pkg.libs/libgfortran-abc.so.5", make_elf(soname="libgfortran-abc.so.5"))
    put(tmp_path, f"{SITE}/other/libhidden.so.1", make_elf(soname="libhidden.so.1"))
    put(tmp_path, f"{SITE}/pkg/a.so", make_elf(needed=("libgfortran-abc.so.5",), rpath="$ORIGIN/../pkg.libs"))
    put(tmp_path, f"{SITE}/pkg/b.so", make_elf(needed=("libgfortran-abc.so.5",), runpath="${ORIGIN}/../pkg.libs"))
    put(
        tmp_path, f"{SITE}/pkg/c.so",
        make_elf(needed=("libhidden.so.1",), rpath=f"{SITE}/other", runpath="$ORIGIN"),
    )  # fmt: skip
    r = resolver(tmp_path)
    assert needs(r, f"{SITE}/pkg/a.so") == {"libgfortran-abc.so.5": f"{SITE}/pkg.libs/libgfortran-abc.so.5"}
    assert needs(r, f"{SITE}/pkg/b.so") == {"libgfortran-abc.so.5": f"{SITE}/pkg.libs/libgfortran-abc.so.5"}
    assert needs(r, f"{SITE}/pkg/c.so") == {"libhidden.so.1": None}  # its RPATH is ignored beside a RUNPATH


def test_ld_library_path_and_ld_so_conf(tmp_path: Path) -> None:
    debian(tmp_path)
    put(tmp_path, f"{SITE}/nvidia/cu13/lib/libcublas.so.13", make_elf(soname="libcublas.so.13"))
    put(tmp_path, "/usr/local/lib/libthing.so.2", make_elf(soname="libthing.so.2"))
    put(tmp_path, "/opt/conf/libconf.so.1", make_elf(soname="libconf.so.1"))
    put(tmp_path, "/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    put(tmp_path, "/etc/ld.so.conf.d/local.conf", "# local\n/usr/local/lib\n")
    put(tmp_path, "/etc/ld.so.conf.d/z.conf", "/opt/conf\n")
    put(tmp_path, "/etc/ld.so.conf.d/ignored.txt", "/nowhere\n")
    put(tmp_path, "/app/ext.so", make_elf(needed=("libcublas.so.13", "libthing.so.2", "libconf.so.1")))
    env = {"LD_LIBRARY_PATH": f"{SITE}/nvidia/cu13/lib:relative/dir"}
    r = resolver(tmp_path, env)
    assert r.search.configured == ("/usr/local/lib", "/opt/conf")
    assert r.search.ld_library_path == (f"{SITE}/nvidia/cu13/lib",)
    assert needs(r, "/app/ext.so") == {
        "libcublas.so.13": f"{SITE}/nvidia/cu13/lib/libcublas.so.13",
        "libthing.so.2": "/usr/local/lib/libthing.so.2",
        "libconf.so.1": "/opt/conf/libconf.so.1",
    }
    assert needs(resolver(tmp_path), "/app/ext.so")["libcublas.so.13"] is None  # without LD_LIBRARY_PATH


def test_symlinks_resolve_in_the_image_not_on_this_machine(tmp_path: Path) -> None:
    """An absolute link to a library points into the image: the host's file of that path does not count."""
    debian(tmp_path)
    link(tmp_path, f"{LIB}/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1.3")  # exists on the host, not here
    put(tmp_path, "/app/ext.so", make_elf(needed=("libz.so.1",)))
    r = resolver(tmp_path)
    assert needs(r, "/app/ext.so") == {"libz.so.1": None}
    put(tmp_path, f"{LIB}/libz.so.1.3", make_elf(soname="libz.so.1"))
    assert needs(resolver(tmp_path), "/app/ext.so") == {"libz.so.1": f"{LIB}/libz.so.1.3"}


def test_a_library_of_another_machine_is_passed_over(tmp_path: Path) -> None:
    debian(tmp_path)
    put(tmp_path, "/opt/first/libdual.so.1", make_elf(soname="libdual.so.1", machine=AARCH64))
    put(tmp_path, "/opt/second/libdual.so.1", make_elf(soname="libdual.so.1", bits=32, machine=I386))
    put(tmp_path, f"{LIB}/libdual.so.1", make_elf(soname="libdual.so.1"))
    put(tmp_path, "/app/ext.so", make_elf(needed=("libdual.so.1",), runpath="/opt/first:/opt/second"))
    assert needs(resolver(tmp_path), "/app/ext.so") == {"libdual.so.1": f"{LIB}/libdual.so.1"}


def test_the_interpreter_of_an_executable(tmp_path: Path) -> None:
    debian(tmp_path)
    put(tmp_path, "/opt/venv/bin/tool", make_elf(needed=("libc.so.6",), interpreter="/lib64/ld-linux-x86-64.so.2"))
    put(tmp_path, "/opt/venv/bin/musl-tool", make_elf(interpreter="/lib/ld-musl-x86_64.so.1"))
    r = resolver(tmp_path)
    tool, musl = r.elf("/opt/venv/bin/tool"), r.elf("/opt/venv/bin/musl-tool")
    assert tool is not None and musl is not None
    found = r.interpreter(tool)
    assert found is not None and found.found == f"{LIB}/ld-linux-x86-64.so.2"
    missing = r.interpreter(musl)
    assert missing is not None and missing.found is None


def test_what_a_miss_means() -> None:
    assert debian_package("libstdc++.so.6") == "libstdc++6"
    assert debian_package("libgomp.so.1") == "libgomp1"
    assert debian_package("libGL.so.1") == "libgl1"
    assert debian_package("libglib-2.0.so.0") == "libglib2.0-0"
    assert debian_package("libm.so.6") == "libc6" and debian_package("ld-linux-x86-64.so.2") == "libc6"
    assert debian_package("libsomething-odd.so.7") is None
    for driver in ("libcuda.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1", "libEGL_nvidia.so.0"):
        assert is_driver_library(driver), driver
    for other in ("libcudart.so.13", "libcublas.so.13", "libnvrtc.so.13", "libnvinfer.so.10"):
        assert not is_driver_library(other), other

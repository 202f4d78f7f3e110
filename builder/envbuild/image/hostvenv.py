"""The venv built on the host (``[image] venv = "host"``): no emulation for the heavy part of a foreign build.

In the builder stage, uv installs the locked wheels into ``/opt/venv`` and the image's Python
compiles them; for another architecture both run under qemu-user, several times slower than
natively. Here envbuild does that part on this machine instead, for the target platform:

- uv (the host's, pinned to the tools lock's version) installs the target's wheels with
  ``--python-platform`` into a venv made at ``/opt/venv`` itself (a mount namespace puts the
  stage directory there), so scripts' shebangs, RECORD and ``.pth`` paths are the image's;
- a CPython of the image's minor version on this machine compiles every module, hash-checked
  (PEP 552): bytecode depends on the minor version only, not on the architecture, and
  ``co_filename`` is the path in the image.

What goes to the image is that venv minus what ``uv venv`` makes in the builder stage itself
(pyvenv.cfg and bin/python name the image's interpreter): ``.envbuild/stage/<variant>/venv/``,
which the Dockerfile copies over the venv the builder stage made. Every file is written with
umask 022, whatever the caller's. The interpreter that compiled is part of the build record.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import EnvbuildError, UsageError
from envbuild.lock.spec import PLATFORMS
from envbuild.proc import run, tail

log = logging.getLogger(__name__)

# What 'uv venv' writes that the builder stage's own 'uv venv' writes for the image's interpreter.
_MADE_IN_STAGE = ("pyvenv.cfg", "lib64", "CACHEDIR.TAG", ".gitignore")


class HostVenvError(EnvbuildError):
    """The venv could not be built on the host."""


@dataclass(frozen=True, kw_only=True)
class HostPython:
    """A CPython on this machine of the image's minor version: what compiles the bytecode."""

    path: str
    version: str  # e.g. 3.11.7

    @property
    def description(self) -> str:
        """What the build record says compiled the image's bytecode."""
        return f"CPython {self.version}"


def host_python(minor: str) -> HostPython:
    """A CPython ``minor`` (``3.11``) here: envbuild's own, else ``python<minor>`` on PATH; else a usage error."""
    candidates = [sys.executable] if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor else []
    candidates += [p for p in (shutil.which(f"python{minor}"),) if p]
    for path in candidates:
        try:
            version = subprocess.run(
                [path, "-c", "import platform; print(platform.python_implementation(), platform.python_version())"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout.split()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        if len(version) == 2 and version[0] == "CPython" and version[1].startswith(f"{minor}."):
            return HostPython(path=path, version=version[1])
    raise UsageError(
        f'[image] venv = "host" needs a CPython {minor} on this machine to compile the image\'s bytecode',
        hint=f'install python{minor} (or run envbuild with it), or write venv = "builder" in [image]',
    )


def python_platform(platform: str, glibc: str) -> str:
    """uv's ``--python-platform`` for an OCI platform and the spec's glibc: ``aarch64-manylinux_2_28``."""
    return f"{PLATFORMS[platform]}-manylinux_{glibc.replace('.', '_')}"


def build_venv(
    out: Path,
    *,
    venv: str,
    uv: str,
    python: HostPython,
    platform: str,
    glibc: str,
    lockfile: Path,
    wheels: Path,
    package: Path | None = None,
) -> None:
    """Write into ``out`` the venv ``venv`` (``/opt/venv``) holds after the locked wheels are installed and compiled.

    ``package`` is the staged directory of the project's wheel (its requirements.txt pins it), if any.
    """
    if os.geteuid() != 0:
        raise UsageError(
            '[image] venv = "host" builds the venv in a mount namespace, which needs root',
            hint='run envbuild as root (as buildah does here), or write venv = "builder" in [image]',
        )
    parent = Path(venv).parent
    if not parent.is_dir():
        raise UsageError(
            f'[image] venv = "host" mounts a scratch directory over {parent}, which this machine does not have',
            hint=f'create an empty {parent} (mkdir {parent}), or write venv = "builder" in [image]',
        )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {
        "UV_NO_INSTALLER_METADATA": "1", "UV_NO_CACHE": "1", "UV_LINK_MODE": "copy", "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1", "PYTHONDONTWRITEBYTECODE": "1",
    }  # fmt: skip
    _in_venv(out, venv, [uv, "venv", "--quiet", "--python", python.path, venv], env)
    made = {p.name for p in (out / "bin").iterdir()}
    install = [
        uv, "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
        "--python-platform", python_platform(platform, glibc),
        "--offline", "--no-index", "--require-hashes", "--no-deps", "--only-binary", ":all:",
    ]  # fmt: skip
    _in_venv(out, venv, [*install, "--find-links", str(wheels), "-r", str(lockfile)], env)
    if package is not None:
        _in_venv(out, venv, [*install, "--find-links", str(package), "-r", str(package / "requirements.txt")], env)
    # compileall exits 1 when a source does not compile on this Python (a file in another version's
    # syntax): that file gets no .pyc, as in the builder stage.
    _in_venv(
        out, venv, [python.path, "-B", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash",
                    f"{venv}/lib"], env, allow=(0, 1),
    )  # fmt: skip
    for name in made:
        _remove(out / "bin" / name)
    for name in _MADE_IN_STAGE:
        _remove(out / name)
    log.info("built the venv on the host for %s (%s compiled it) in %s", platform, python.description, out)


def _in_venv(out: Path, venv: str, argv: list[str], env: dict[str, str], *, allow: tuple[int, ...] = (0,)) -> None:
    """Run ``argv`` in a mount namespace where ``out`` is ``venv``, over a scratch tmpfs of its parent, umask 022."""
    parent = str(Path(venv).parent)
    script = "\n".join(
        [
            "set -e",
            "umask 022",
            f"mount -t tmpfs -o mode=0755 envbuild-venv {shlex.quote(parent)}",
            f"mkdir {shlex.quote(venv)}",
            f'mount --bind "$0" {shlex.quote(venv)}',
            'exec "$@"',
        ]
    )
    done = run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(out), *argv],
        tool=Path(argv[0]).name, env={**os.environ, **env}, timeout=3600, check=False,
    )  # fmt: skip
    if done.returncode not in allow:
        raise HostVenvError(
            f"building the venv on the host failed: {shlex.join(argv[:3])} ... exited {done.returncode}",
            details=tail(done.stderr),
            hint='write venv = "builder" in [image] to build it in the builder stage instead',
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

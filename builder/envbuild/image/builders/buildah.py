"""The buildah adapter: daemonless Dockerfile builds, in private storage, with no network.

Each build gets fresh storage (``--root`` under its scratch directory, vfs driver),
so no state leaks between builds; envbuild's own cache decides when not to build.
buildah 1.28 cannot combine ``--isolation chroot`` with ``--network none``, so the
whole build runs in a new, empty network namespace (``unshare --net``): the RUN
steps see only a loopback interface.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from pathlib import Path

from envbuild.errors import UsageError
from envbuild.image.builders.base import BuildRequest
from envbuild.oci.layout import Layout
from envbuild.proc import run, which

HINT = "apt-get install buildah (Debian) — envbuild drives it as a subprocess"
BUILT = "envbuild.local/build/image:latest"
# A path buildah accepts as the name of an image (distribution/reference's path components).
_PLAIN_PATH = re.compile(r"(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")


class Buildah:
    """Build with buildah."""

    name = "buildah"

    def version(self) -> str:
        """buildah's version, e.g. 1.28.2."""
        return _version(which("buildah", hint=HINT))

    def build(self, request: BuildRequest) -> Layout:
        """Build and export the raw image to ``workdir/raw`` (uncompressed layers)."""
        buildah = which("buildah", hint=HINT)
        unshare = which("unshare", hint="apt-get install util-linux")
        storage = request.workdir / "storage"
        common = [
            buildah, "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs",
        ]  # fmt: skip
        env = _env(request.workdir)
        if request.base_layout is not None:
            image_id = pull_layout(common, env, request.base_layout)
            # Give the base the name the Dockerfile's FROM uses.
            run([*common, "tag", image_id, request.base_name], tool="buildah tag", env=env)
        args = [
            unshare, "--net", "--", *common, "bud",
            "--isolation", "chroot", "--pull-never", "--layers=false", "--quiet",
            "--timestamp", str(request.epoch),
            "--build-arg", f"SOURCE_DATE_EPOCH={request.epoch}",
            *(f"--build-arg={k}={v}" for k, v in sorted(request.build_args.items())),
            "--file", str(request.dockerfile), "--tag", BUILT, str(request.context),
        ]  # fmt: skip
        run(args, tool="buildah bud", env=env, cwd=request.context, timeout=7200)
        raw = request.workdir / "raw"
        run(
            [*common, "push", "--quiet", "--format", "oci", "--disable-compression", BUILT, f"oci:{raw}:raw"],
            tool="buildah push",
            env=env,
            timeout=1800,
        )
        return Layout.open(raw)


def pull_layout(common: list[str], env: dict[str, str], layout: Path, name: str = "base") -> str:
    """Pull the image ``name`` of the OCI layout at ``layout`` into buildah's storage; return its image id.

    buildah names a pulled layout after its path, which must then be a valid image name (no
    upper case, no component starting with a dot): pull through a link with a plain name, in a
    temporary directory whose path is plain too (see :func:`link_dir`).
    """
    link = link_dir() / f"envbuild-base-{os.getpid()}-{threading.get_ident():x}"
    link.unlink(missing_ok=True)
    link.symlink_to(layout.resolve())
    try:
        pulled = run([*common, "pull", "--quiet", f"oci:{link}:{name}"], tool="buildah pull", env=env, timeout=1800)
    finally:
        link.unlink(missing_ok=True)
    return pulled.stdout.split()[-1]


def link_dir() -> Path:
    """A writable temporary directory whose path buildah accepts inside an image name.

    $TMPDIR comes first; one with upper case or a dot directory (``/home/Ann/.cache/tmp``) made
    buildah fail with "invalid reference format", so the standard places are tried after it.
    """
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if _PLAIN_PATH.fullmatch(candidate) and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return Path(candidate)
    raise UsageError(
        f"no temporary directory buildah can use: {tempfile.gettempdir()} has upper case or a dot directory, "
        "and /tmp and /var/tmp are not writable",
        hint="set TMPDIR to a writable directory with a plain lower-case path, e.g. TMPDIR=/tmp",
    )


@functools.cache
def _version(binary: str) -> str:
    return run([binary, "--version"], tool="buildah").stdout.split()[2]


def _env(workdir: os.PathLike[str]) -> dict[str, str]:
    env = dict(os.environ)
    # The image's timestamps come from --timestamp; TZ and locale must not matter, and do not.
    env["TMPDIR"] = os.path.join(os.fspath(workdir), "tmp")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return env

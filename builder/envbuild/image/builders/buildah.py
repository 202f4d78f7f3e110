"""The buildah adapter: daemonless Dockerfile builds, in private storage, with no network.

Each build gets fresh storage (``--root`` under its scratch directory), so no state
leaks between builds; envbuild's own cache decides when not to build. ``buildah bud``
writes the image straight into an OCI layout (uncompressed layers), and the storage is
removed right after, before envbuild writes the final image: the two never take disk at
the same time.

The storage driver is overlay where kernel overlay mounts work (root, and a file system
that can hold an overlay's upper directory), else vfs, which copies the whole root file
system at every step; ``ENVBUILD_BUILDAH_DRIVER=vfs|overlay`` forces one. The image does
not depend on it: envbuild rewrites every new layer canonically. Every buildah command
runs in a mount namespace of its own (``unshare --mount``), so the overlay mounts die
with it, even when it is killed.

buildah 1.28 cannot combine ``--isolation chroot`` with ``--network none``, so the
whole build runs in a new, empty network namespace (``unshare --net``): the RUN
steps see only a loopback interface.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

from envbuild.errors import UsageError
from envbuild.image.builders.base import BuildRequest
from envbuild.oci.layout import Layout
from envbuild.proc import run, which
from envbuild.progress import Phase
from envbuild.scratch import remove

log = logging.getLogger(__name__)
HINT = "apt-get install buildah (Debian) — envbuild drives it as a subprocess"
DRIVERS = ("overlay", "vfs")
DRIVER_VARIABLE = "ENVBUILD_BUILDAH_DRIVER"
# A path buildah accepts as the name of an image (distribution/reference's path components).
_PLAIN_PATH = re.compile(r"(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")


class Buildah:
    """Build with buildah."""

    name = "buildah"

    def version(self) -> str:
        """buildah's version, e.g. 1.28.2."""
        return _version(which("buildah", hint=HINT))

    def build(self, request: BuildRequest, *, progress: Phase | None = None) -> Layout:
        """Build and export the raw image to ``workdir/raw`` (uncompressed layers); then drop buildah's storage.

        buildah's output (its steps, and what they print) goes to ``progress`` line by line.
        """
        buildah = which("buildah", hint=HINT)
        unshare = which("unshare", hint="apt-get install util-linux")
        storage = request.workdir / "storage"
        driver = storage_driver(storage)
        common = [
            unshare, "--mount", "--", buildah,
            "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", driver,
        ]  # fmt: skip
        env = _env(request.workdir)
        raw = request.workdir / "raw"
        if request.base_layout is not None:
            image_id = pull_layout(common, env, request.base_layout)
            # Give the base the name the Dockerfile's FROM uses.
            run([*common, "tag", image_id, request.base_name], tool="buildah tag", env=env)
        args = [
            unshare, "--net", "--", *common, "bud",
            "--isolation", "chroot", "--pull-never", "--layers=false",
            "--timestamp", str(request.epoch),
            "--build-arg", f"SOURCE_DATE_EPOCH={request.epoch}",
            *(f"--build-arg={k}={v}" for k, v in sorted(request.build_args.items())),
            # Committed straight into the OCI layout, uncompressed: the image never enters buildah's
            # storage, which for a GPU image saves two copies of the venv (the stored layer and the
            # pending blob it is made from) at the build's peak, and a push that copies it again.
            "--format", "oci", "--disable-compression", "--tag", f"oci:{raw}:raw",
            "--file", str(request.dockerfile), str(request.context),
        ]  # fmt: skip
        run(
            args, tool="buildah bud", env=env, cwd=request.context, timeout=7200,
            lines=progress.say if progress is not None else None,
        )  # fmt: skip
        remove(storage)  # gigabytes for a GPU image, no longer needed: free them before the image is written
        return Layout.open(raw)


def storage_driver(storage: Path) -> str:
    """The storage driver for buildah storage at ``storage``: ``$ENVBUILD_BUILDAH_DRIVER``, else overlay if it works.

    overlay needs root (rootless buildah would need fuse-overlayfs) and a file system under
    ``storage`` that takes an overlay's upper directory (not another overlay, not NFS): a real
    overlay mount there, in a throwaway mount namespace, is the probe.
    """
    forced = os.environ.get(DRIVER_VARIABLE, "")
    if forced:
        if forced not in DRIVERS:
            raise UsageError(
                f"{DRIVER_VARIABLE}={forced} is not a buildah storage driver envbuild uses",
                hint=f"set it to one of: {', '.join(DRIVERS)}, or unset it to let envbuild choose",
            )
        log.info("buildah: %s storage driver (%s)", forced, DRIVER_VARIABLE)
        return forced
    problem = overlay_problem(storage)
    driver = "vfs" if problem else "overlay"
    log.info("buildah: %s storage driver%s", driver, f" ({problem})" if problem else "")
    return driver


def overlay_problem(storage: Path) -> str | None:
    """Why an overlay mount cannot be made under ``storage``, or None when it can."""
    if os.geteuid() != 0:
        return "not root: overlay mounts need root"
    probe = storage / "overlay-probe"
    dirs = [probe / name for name in ("lower", "upper", "work", "merged")]
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    lower, upper, work, merged = dirs
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    try:
        result = run(
            [which("unshare", hint="apt-get install util-linux"), "--mount", "--",
             "mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            tool="mount", check=False, timeout=60,
        )  # fmt: skip
    finally:
        remove(probe)
    if result.returncode != 0:
        return f"no overlay mount under {storage}: {result.stderr.strip() or f'exit status {result.returncode}'}"
    return None


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

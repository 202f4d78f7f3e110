"""The Docker adapter: BuildKit builds through a Docker daemon.

The daemon is reached with the docker SDK (docker-py) to load the base and save
the result; the build itself goes through ``docker buildx build`` when the buildx
plugin is there, else through ``DOCKER_BUILDKIT=1 docker build`` (the BuildKit that
is built into dockerd). BuildKit learned SOURCE_DATE_EPOCH in 0.11 and
rewrite-timestamp in 0.13: below that, BuildKit's own output is not reproducible.
envbuild rewrites every new layer canonically anyway (mtimes clamped, owners and
modes fixed), so the final image usually is; envbuild says which case applies.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import IO, Any

from envbuild.errors import ToolError, ToolMissingError
from envbuild.image.builders.base import BuildRequest
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.proc import run, which
from envbuild.progress import Phase

log = logging.getLogger(__name__)
HINT = "install Docker (apt-get install docker.io) and start dockerd; set DOCKER_HOST if it listens elsewhere"
BUILT = "envbuild.local/build/image:latest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# dockerd embeds BuildKit; the releases that matter here (moby's vendor.conf / go.mod).
_EMBEDDED_BUILDKIT = ((20, "0.8"), (23, "0.10"), (24, "0.11"), (25, "0.12"), (26, "0.13"))


class Docker:
    """Build with BuildKit through a Docker daemon: ``endpoint`` (``tcp://arm-builder:2375``), else ``DOCKER_HOST``'s.

    An endpoint per platform is how a team builds each platform on a machine of that
    architecture, the way buildx's remote driver does: the build context goes to that daemon,
    the result comes back and envbuild writes the final image here.
    """

    name = "docker"

    def __init__(self, endpoint: str | None = None):
        self.endpoint = endpoint

    @functools.cached_property
    def _client(self) -> Any:
        return docker_client(base_url=self.endpoint)

    def _env(self) -> dict[str, str]:
        """The docker CLI's environment: this adapter's daemon."""
        return {**os.environ, **({"DOCKER_HOST": self.endpoint} if self.endpoint else {})}

    def version(self) -> str:
        """The daemon's version and the BuildKit it builds with, e.g. ``20.10.24 (BuildKit 0.8)``."""
        return f"{self._client.version()['Version']} (BuildKit {self.buildkit_version()})"

    def buildkit_version(self) -> str:
        """BuildKit's version: from buildx when installed, else the one dockerd embeds."""
        if self._has_buildx():
            out = run(
                [_docker(), "buildx", "inspect", "--bootstrap"], tool="docker buildx", timeout=300, env=self._env()
            ).stdout
            found = re.search(r"Buildkit:\s*v?(\d+\.\d+)", out)
            if found:
                return found.group(1)
        major = int(str(self._client.version()["Version"]).split(".")[0])
        embedded = [v for m, v in _EMBEDDED_BUILDKIT if m <= major]
        return embedded[-1] if embedded else "0.0"

    def reproducible(self) -> tuple[bool, str]:
        """Whether BuildKit itself writes reproducible output, and why not when it does not."""
        version = tuple(int(x) for x in self.buildkit_version().split("."))
        if version >= (0, 13) and self._has_buildx():
            return True, "BuildKit >= 0.13 with rewrite-timestamp"
        return False, (
            f"BuildKit {self.buildkit_version()} has no rewrite-timestamp (0.13) "
            f"{'and no SOURCE_DATE_EPOCH (0.11) ' if version < (0, 11) else ''}"
            "so its own layers carry build times; envbuild rewrites the layers it writes, "
            "so compare the digests of two builds before relying on them"
        )

    @functools.cache  # noqa: B019 — one adapter per process; the answer does not change
    def _has_buildx(self) -> bool:
        return (
            run([_docker(), "buildx", "version"], tool="docker", check=False, timeout=60, env=self._env()).returncode
            == 0
        )

    def build(self, request: BuildRequest, *, progress: Phase | None = None) -> Layout:
        """Load the base, build with no network, save the result and turn it into an OCI layout."""
        reproducible, why = self.reproducible()
        if not reproducible:
            log.warning("docker: %s", why)
        if request.base_layout is not None:
            self._client.images.load(docker_archive(Layout.open(request.base_layout), request.base_name))
        output = None
        if self._has_buildx():
            # Into the daemon's image store; BuildKit >= 0.13 also clamps file times in its layers.
            output = f"type=docker,name={BUILT}" + (",rewrite-timestamp=true" if reproducible else "")
        args = build_command(request, docker=_docker(), tag=BUILT, output=output)
        env = {**self._env(), **build_env(request)}
        try:
            run(
                args, tool="docker build", env=env, cwd=request.context, timeout=7200,
                lines=progress.say if progress is not None else None,
            )  # fmt: skip
        except ToolError as exc:
            if "buildx component is missing" in (exc.details or ""):
                raise ToolMissingError(
                    "this docker CLI builds with BuildKit only through the buildx plugin, which is not installed",
                    hint="install docker-buildx, or set ENVBUILD_DOCKER to a docker CLI that has the built-in "
                    "BuildKit builder (20.10 to 22)",
                ) from None
            raise
        saved = request.workdir / "saved.tar"
        with saved.open("wb") as f:
            for chunk in self._client.images.get(BUILT).save(named=True):
                f.write(chunk)
        layout = from_docker_archive(saved, request.workdir / "raw")
        saved.unlink()
        return layout


def build_command(
    request: BuildRequest, *, docker: str, tag: str, output: str | None = None, contexts: tuple[str, ...] = ()
) -> list[str]:
    """The BuildKit build of ``request``, to run with :func:`build_env` in the context directory.

    With ``output`` it is ``docker buildx build --output OUTPUT`` (``contexts``: its
    ``--build-context NAME=SOURCE`` values), else ``docker build``, which builds with the
    BuildKit inside dockerd when DOCKER_BUILDKIT=1. The platform is always named: a daemon of
    another architecture (an endpoint, or emulation) builds the request's, not its own.
    ``envbuild dockerfile --print-build-command`` prints this same command, so what it prints
    is what envbuild runs.
    """
    args = [docker, "buildx", "build", "--output", output] if output is not None else [docker, "build"]
    args += [
        "--network=none", "--pull=false", f"--platform={request.platform}",
        *(f"--build-context={c}" for c in contexts),
        "--build-arg", f"SOURCE_DATE_EPOCH={request.epoch}",
        *(a for k, v in sorted(request.build_args.items()) for a in ("--build-arg", f"{k}={v}")),
        "--file", str(request.dockerfile), "--tag", tag, str(request.context),
    ]  # fmt: skip
    return args


def build_env(request: BuildRequest) -> dict[str, str]:
    """The environment :func:`build_command` needs: BuildKit on, and SOURCE_DATE_EPOCH for buildx to pass on."""
    return {"DOCKER_BUILDKIT": "1", "SOURCE_DATE_EPOCH": str(request.epoch)}


def _docker() -> str:
    """The docker CLI: ``$ENVBUILD_DOCKER``, else docker on PATH."""
    return os.environ.get("ENVBUILD_DOCKER") or which("docker", hint=HINT)


def docker_client(timeout: int = 600, *, base_url: str | None = None) -> Any:
    """A docker SDK client of the daemon at ``base_url``, else ``DOCKER_HOST``'s (else the default socket).

    Checked to answer.
    """
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ToolMissingError("the docker SDK is not installed", hint="pip install 'envbuild[docker]'") from exc
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
        )
        client.ping()
    except docker.errors.DockerException as exc:
        where = f" at {base_url}" if base_url else ""
        raise ToolMissingError(f"no Docker daemon answers{where} ({exc})", hint=HINT) from None
    return client


def docker_archive(layout: Layout, name: str) -> bytes:
    """The single image of ``layout`` as a `docker save` archive named ``name`` (for images.load)."""
    buffer = io.BytesIO()
    write_docker_archive(layout, name, buffer)
    return buffer.getvalue()


def write_docker_archive(layout: Layout, name: str, out: IO[bytes]) -> None:
    """Write the single image of ``layout`` into ``out`` as a `docker save` archive named ``name``."""
    top = layout.select()
    manifest = json.loads(layout.read_blob(top.digest))
    config = Digest.parse(manifest["config"]["digest"])
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(layout.blob_path(config), arcname=f"{config.hex}.json")
        layers = []
        for layer in manifest["layers"]:
            digest = Digest.parse(layer["digest"])
            tar.add(layout.blob_path(digest), arcname=f"{digest.hex}/layer.tar")  # dockerd detects gzip
            layers.append(f"{digest.hex}/layer.tar")
        index = json.dumps([{"Config": f"{config.hex}.json", "RepoTags": [name], "Layers": layers}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(index)
        tar.addfile(info, io.BytesIO(index))


def from_docker_archive(archive: Path, out: Path) -> Layout:
    """An OCI layout (uncompressed layers) of the image in a `docker save` archive."""
    layout = Layout.create(out)
    with tarfile.open(archive) as tar:
        index = json.loads(_read(tar, "manifest.json"))
        if len(index) != 1:
            raise ToolError(f"docker save wrote {len(index)} images, expected one")
        config = _read(tar, index[0]["Config"])
        layers = []
        for name in index[0]["Layers"]:
            member = tar.extractfile(name)
            if member is None:
                raise ToolError(f"docker save archive lacks {name}")
            tmp = out / "layer.tmp"
            hasher, size = hashlib.sha256(), 0
            with tmp.open("wb") as f:
                while chunk := member.read(1 << 20):
                    hasher.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
            digest = Digest.parse(f"sha256:{hasher.hexdigest()}")
            tmp.replace(layout.blob_path(digest))
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(digest), "size": size})
    config_digest = layout.write_blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config_digest),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    digest = layout.write_blob(manifest)
    layout.add_manifest(Descriptor(media_type=OCI_MANIFEST, digest=digest, size=len(manifest)), name="raw")
    return layout


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise ToolError(f"docker save archive lacks {name}")
    return member.read()

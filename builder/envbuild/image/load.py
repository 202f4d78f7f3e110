"""Loading a built image into the machine's own image stores, where podman, buildah and docker run it.

The tools cannot run envbuild's layouts in place: podman's and buildah's ``oci:`` references
refuse a path with a dot-directory such as ``.envbuild/`` (an invalid reference), and docker has
no ``oci:`` reference at all. So an image is copied into:

- ``containers-storage`` (podman, buildah, CRI-O): ``skopeo copy`` from the layout, named
  ``localhost/<project>:<variant>`` (the name podman gives a local image, so ``podman run
  <project>:<variant>`` finds it), into the storage that storage.conf names
  (``CONTAINERS_STORAGE_CONF`` for another one);
- ``docker``: through the daemon's API (the docker SDK) as a ``docker save`` archive, tagged
  ``<project>:<variant>``.

Both keep the image's config, so its image ID is the config digest, as in the layout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import ToolError, ToolMissingError, UsageError
from envbuild.image.builders.docker import HINT as DOCKER_HINT
from envbuild.image.builders.docker import docker_client, write_docker_archive
from envbuild.image.record import BUILD_RECORD, BuiltImage
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.proc import run, which
from envbuild.scratch import scratch_dir

log = logging.getLogger(__name__)

CONTAINERS_STORAGE = "containers-storage"
DOCKER = "docker"
STORES = (CONTAINERS_STORAGE, DOCKER)
SKOPEO_HINT = "install skopeo (apt-get install skopeo): it copies images into podman's and buildah's storage"
# Where dockerd listens unless DOCKER_HOST says otherwise.
DOCKER_SOCKET = Path("/var/run/docker.sock")


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """An image put into a local store: the store, the name it has there, its image ID (the config digest)."""

    variant: str
    store: str
    name: str
    image_id: str

    def to_json(self) -> dict[str, str]:
        """The fields, for --json output."""
        return {"variant": self.variant, "store": self.store, "name": self.name, "image_id": self.image_id}


def local_name(project: str, variant: str) -> str:
    """The name an image is loaded under: ``<project>:<variant>`` (containers-storage adds ``localhost/``)."""
    return f"{project}:{variant}"


def default_stores() -> tuple[str, ...]:
    """The stores a plain ``--load`` fills: containers-storage if skopeo is installed, docker if its socket is there."""
    found = []
    if shutil.which("skopeo"):
        found.append(CONTAINERS_STORAGE)
    if os.environ.get("DOCKER_HOST") or DOCKER_SOCKET.exists():
        found.append(DOCKER)
    if not found:
        raise ToolMissingError(
            "nothing to load the image into: skopeo is not installed (podman and buildah) and no Docker daemon "
            f"listens ({DOCKER_SOCKET} is not there and DOCKER_HOST is not set)",
            hint=f"{SKOPEO_HINT}; or start dockerd, or set DOCKER_HOST",
        )
    return tuple(found)


def built_images(images: Path, variants: Iterable[str]) -> list[BuiltImage]:
    """The local builds of ``variants`` in ``images`` (a workspace's), or every build there when none is named."""
    found = {}
    for out in sorted(p.parent for p in images.glob(f"*/{BUILD_RECORD}")):
        image = BuiltImage.open(out)
        if image is not None:
            found[image.variant] = image
    # A variant built for several platforms (an index) loads as each platform's image: <variant>-<arch>.
    per_platform = {v: [name for name, i in found.items() if i.record.variant == v and name != v] for v in variants}
    wanted = tuple(dict.fromkeys(n for v in variants for n in ([v] if v in found else per_platform[v] or [v])))
    wanted = wanted or tuple(found)
    missing = [v for v in wanted if v not in found]
    if missing or not wanted:
        have = ", ".join(found) or "none"
        raise UsageError(
            f"no local build of {missing[0] if missing else 'any variant'} in {images} (built: {have})",
            hint=f"run 'envbuild image --variant {missing[0] if missing else 'VARIANT'}' first",
        )
    return [found[v] for v in wanted]


def load_images(images: Iterable[BuiltImage], project: str, stores: Iterable[str], *, scratch: Path) -> list[Loaded]:
    """Put each of ``images`` into each of ``stores``, named :func:`local_name`; ``scratch`` holds docker's archive."""
    chosen = tuple(dict.fromkeys(stores))
    unknown = [s for s in chosen if s not in STORES]
    if unknown:
        raise UsageError(f"unknown image store {unknown[0]!r}", hint=f"use one of: {', '.join(STORES)}")
    loaded = []
    for image in images:
        name = local_name(project, image.variant)
        for store in chosen:
            if store == CONTAINERS_STORAGE:
                loaded.append(load_into_containers_storage(image, name))
            else:
                loaded.append(load_into_docker(image, name, scratch=scratch))
    return loaded


def load_into_containers_storage(image: BuiltImage, name: str) -> Loaded:
    """Copy ``image`` into containers-storage as ``localhost/<name>`` with skopeo."""
    skopeo = which("skopeo", hint=SKOPEO_HINT)
    target = f"localhost/{name}"
    # Relative to the layout's directory: an oci: reference ends its path at the first ':',
    # and the project's path may hold one; the variant's directory name cannot.
    source = f"oci:{image.layout.name}:{image.name}"
    run(
        [skopeo, "copy", "--quiet", source, f"{CONTAINERS_STORAGE}:{target}"],
        tool="skopeo copy", cwd=image.layout.parent, timeout=3600,
    )  # fmt: skip
    log.info("%s: loaded into %s as %s", image.variant, CONTAINERS_STORAGE, target)
    return Loaded(variant=image.variant, store=CONTAINERS_STORAGE, name=target, image_id=_config_digest(image))


def load_into_docker(image: BuiltImage, name: str, *, scratch: Path) -> Loaded:
    """Load ``image`` into the Docker daemon (``DOCKER_HOST``, else its socket) as ``name``, streamed from a file."""
    client = docker_client(timeout=3600)
    import docker  # type: ignore[import-untyped]  # docker_client checked that the SDK is installed

    with scratch_dir(scratch, "load-") as tmp:
        archive = tmp / "image.tar"
        with archive.open("wb") as out:
            write_docker_archive(Layout.open(image.layout), name, out)
        try:
            with archive.open("rb") as data:
                images = client.images.load(data)
        except docker.errors.DockerException as exc:
            raise ToolError(
                f"docker could not load {image.variant} ({exc})",
                hint=_zstd_hint(image) or DOCKER_HINT,
            ) from None
    image_id = images[0].id if images else _config_digest(image)
    log.info("%s: loaded into docker as %s (%s)", image.variant, name, image_id)
    return Loaded(variant=image.variant, store=DOCKER, name=name, image_id=str(image_id))


def _manifest(image: BuiltImage) -> dict[str, object]:
    return dict(json.loads(Layout.open(image.layout).read_blob(image.digest)))


def _config_digest(image: BuiltImage) -> str:
    config = _manifest(image)["config"]
    assert isinstance(config, dict)
    return str(Digest.parse(str(config["digest"])))


def _zstd_hint(image: BuiltImage) -> str | None:
    """A hint when the image has zstd layers, which docker before 23 cannot read."""
    layers = _manifest(image).get("layers")
    if isinstance(layers, list) and any("zstd" in str(layer.get("mediaType", "")) for layer in layers):
        return "its layers are zstd, which docker before 23.0 cannot read: build with --compression gzip"
    return None

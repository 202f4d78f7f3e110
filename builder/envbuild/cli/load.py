"""``envbuild load`` and ``envbuild image --load``: built images into podman's, buildah's and docker's storage.

The library side is :mod:`envbuild.image.load`; cli.py adds the command to the ``envbuild`` group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from envbuild.cli.console import Context, pass_ctx
from envbuild.image.load import STORES

# ``envbuild image --load`` without a store: every store there is (envbuild.image.load.default_stores).
EVERY_STORE = "every"

if TYPE_CHECKING:
    from envbuild.image.load import Loaded
    from envbuild.image.record import BuiltImage
    from envbuild.lock.spec import Spec


@click.command("load")
@click.argument("variants", nargs=-1, metavar="[VARIANT...]")
@click.option(
    "--into", "stores", multiple=True, type=click.Choice(STORES),
    help="Where to load (repeatable). Default: containers-storage (podman, buildah; needs skopeo) when skopeo "
    "is installed, and docker when a daemon's socket is there (DOCKER_HOST, else /var/run/docker.sock).",
)  # fmt: skip
@pass_ctx
def load_command(ctx: Context, variants: tuple[str, ...], stores: tuple[str, ...]) -> None:
    """Put built images (every local build by default) into the local image stores, as NAME:VARIANT."""
    from envbuild.image.load import built_images
    from envbuild.lock.spec import load_spec
    from envbuild.workspace import Workspace

    spec = load_spec(ctx.directory)
    images = built_images(Workspace.at(spec.root).images, variants)
    loaded = load_built(ctx, spec, images, stores)
    if ctx.json:
        ctx.emit({"loaded": [entry.to_json() for entry in loaded]})


def load_built(ctx: Context, spec: Spec, images: Iterable[BuiltImage], stores: tuple[str, ...] = ()) -> list[Loaded]:
    """Load ``images`` into ``stores`` (default: :func:`envbuild.image.load.default_stores`); say where each went."""
    from envbuild.image.load import default_stores, load_images
    from envbuild.workspace import Workspace

    loaded = load_images(images, spec.name, stores or default_stores(), scratch=Workspace.at(spec.root).work)
    for entry in loaded:
        ctx.say(f"{entry.variant}: loaded into {entry.store} as {entry.name} (image ID {entry.image_id})")
    return loaded

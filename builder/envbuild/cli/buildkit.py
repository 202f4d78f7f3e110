"""BuildKit outside envbuild, on the command line: ``envbuild dockerfile --print-build-command`` and
``envbuild normalize`` (the library is :mod:`envbuild.image.buildkit`).

Kept out of cli.py, which adds :data:`print_build_options` to its ``dockerfile`` command and
:func:`normalize_command` to the group; the shared :class:`envbuild.cli.console.Context` arrives
through ``click.pass_obj``, so this module never imports cli.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from envbuild.cli import options
from envbuild.cli.progress import progress

if TYPE_CHECKING:
    from envbuild.cli.console import Context

F = TypeVar("F", bound=Callable[..., Any])

source_date_epoch = click.option(
    "--source-date-epoch", type=options.EPOCH, envvar="SOURCE_DATE_EPOCH", show_envvar=True,
    help="Default: the commit time of the last change to the image's inputs (as 'envbuild image').",
)  # fmt: skip
print_build_command = click.option(
    "--print-build-command", "print_build", is_flag=True,
    help="Stage the inputs of the chosen variants as 'envbuild image' does and print the exact BuildKit "
    "commands that build them (same SOURCE_DATE_EPOCH, REVISION and base), then the 'envbuild normalize' "
    "that gives envbuild's image and digest.",
)  # fmt: skip
buildx = click.option(
    "--buildx", is_flag=True,
    help="With --print-build-command: the 'docker buildx build' form (the base as a build context, an OCI "
    "archive out) instead of 'DOCKER_BUILDKIT=1 docker build' with dockerd's BuildKit.",
)  # fmt: skip
variant = click.option(
    "--variant", "variants", multiple=True, metavar="NAME",
    help="With --print-build-command: this variant (repeatable); default: the CPU variants, as 'envbuild image'.",
)  # fmt: skip

platform = click.option(
    "--platform", "platforms", multiple=True, metavar="OS/ARCH",
    help="With --print-build-command: for this platform of the spec's (default: its first); with normalize, "
    "the platform SOURCE was built for. One: a variant's inputs are staged for one platform at a time.",
)  # fmt: skip


def print_build_options(command: F) -> F:
    """--print-build-command, --buildx, --variant, --platform, --source-date-epoch and --allow-dirty."""
    return print_build_command(buildx(variant(platform(source_date_epoch(options.allow_dirty(command))))))


def print_build_commands(
    ctx: Context,
    *,
    variants: tuple[str, ...],
    platforms: tuple[str, ...],
    buildx: bool,
    source_date_epoch: int | None,
    allow_dirty: bool,
) -> None:
    """Stage the chosen variants' inputs; print their BuildKit commands as a shell script (or JSON)."""
    from envbuild.image.build import ImageOptions
    from envbuild.image.buildkit import build_recipes, script
    from envbuild.lock.spec import load_spec
    from envbuild.lock.variants import select

    spec = load_spec(ctx.directory)
    form = "buildx" if buildx else "docker"
    chosen = select(spec, variants) if variants else ()  # none named: the CPU variants, as 'envbuild image'
    settings = ImageOptions(
        variants=chosen, platforms=platforms, source_date_epoch=source_date_epoch,
        allow_dirty=allow_dirty,
    )  # fmt: skip
    with progress(ctx) as report:
        recipes = build_recipes(spec, settings, form=form, progress=report)
    text = script(spec, recipes, form=form)
    if ctx.json:
        ctx.emit({"form": form, "script": text, "recipes": [r.to_json() for r in recipes]})
    else:
        click.echo(text, nl=False)


@click.command("normalize")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", "variant_name", required=True, metavar="NAME", help="The variant SOURCE was built as.")
@click.option(
    "-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="The OCI layout to write (replaced if it is one).",
)  # fmt: skip
@platform
@source_date_epoch
@options.allow_dirty
@click.pass_obj
def normalize_command(
    ctx: Context,
    source: Path,
    variant_name: str,
    output: Path,
    platforms: tuple[str, ...],
    source_date_epoch: int | None,
    allow_dirty: bool,
) -> None:
    """Write envbuild's canonical image of a variant BuildKit built; print its digest.

    SOURCE is what the commands of 'envbuild dockerfile --print-build-command' wrote: a
    'docker save' archive, an OCI archive (buildx --output type=oci) or an OCI layout.
    The image is the one 'envbuild image --builder docker' writes, digest for digest.
    """
    from envbuild.image.build import ImageOptions
    from envbuild.image.buildkit import normalize
    from envbuild.lock.spec import load_spec

    spec = load_spec(ctx.directory)
    settings = ImageOptions(  # normalize selects the variant
        platforms=platforms, source_date_epoch=source_date_epoch, allow_dirty=allow_dirty
    )
    descriptor = normalize(spec, variant_name, source, output, settings)
    if ctx.json:
        ctx.emit({"variant": variant_name, "digest": str(descriptor.digest), "layout": str(output)})
    else:
        click.echo(str(descriptor.digest))
    ctx.say(f"{variant_name}: {descriptor.digest} in {output}")

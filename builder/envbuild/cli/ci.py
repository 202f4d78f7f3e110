"""``envbuild ci``: write CI pipelines for the project (the library is :mod:`envbuild.ci.github`).

Kept out of cli.py so that file stays a list of the day-to-day commands; cli.py adds this
group with ``cli.add_command(ci_group)``. The shared :class:`envbuild.cli.console.Context` arrives
through ``click.pass_obj``, so this module never imports cli.py (which imports it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from envbuild.ci.github import (
    DEFAULT_REPOSITORY,
    FromRequirements,
    FromSource,
    GithubOptions,
    Install,
    KeyFromSecrets,
    Keyless,
    Signing,
    check_github_workflows,
    project_dir,
    write_github_workflows,
)
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.cli.console import Context


@click.group("ci")
def ci_group() -> None:
    """Write CI pipelines that release the images: lock check, build, push, sign, verify."""


@ci_group.command("github")
@click.option(
    "--registry",
    "--repository",
    "repository",
    default=DEFAULT_REPOSITORY,
    show_default=True,
    metavar="REGISTRY/REPO",
    help="Where to push: each variant becomes REGISTRY/REPO:<variant>. May use ${{ github.repository }}, "
    "${{ github.repository_owner }} or ${{ vars.NAME }}. ghcr.io is reached with the run's GITHUB_TOKEN, "
    "other registries with the secrets ENVBUILD_REGISTRY_USERNAME and ENVBUILD_REGISTRY_PASSWORD.",
)
@click.option(
    "--variant", "variants", multiple=True, metavar="NAME", help="Release this variant (repeatable); default: all."
)
@click.option(
    "--key-env",
    is_flag=True,
    help="Sign with the key in the secrets ENVBUILD_SIGNING_KEY and ENVBUILD_SIGNING_KEY_PASSWORD "
    "instead of keyless with the workflow's GitHub identity.",
)
@click.option(
    "--public-key",
    default=KeyFromSecrets().public_key,
    show_default=True,
    metavar="FILE",
    help="With --key-env: the committed public key that verification uses.",
)
@click.option(
    "--envbuild-requirements",
    "requirements",
    default=FromRequirements().file,
    show_default=True,
    metavar="FILE",
    help="Install envbuild on the runner from this hash-pinned requirements file.",
)
@click.option(
    "--envbuild-source",
    "source",
    metavar="DIR",
    help="Instead: install envbuild from the source checkout DIR in the repository (its scripts/setup.sh).",
)
@click.option("--name", default="envbuild release", show_default=True, help="The release workflow's name.")
@click.option(
    "--tag", "tags", multiple=True, metavar="PATTERN", help="Release on tags matching this (repeatable); default: v*."
)
@click.option("--runs-on", default="ubuntu-latest", show_default=True, metavar="LABEL", help="The runner label.")
@click.option("--environment", metavar="NAME", help="Run the signing job in this GitHub environment.")
@click.option("--release-file", default="envbuild-release.yml", show_default=True, metavar="NAME")
@click.option("--verify-file", default="envbuild-verify.yml", show_default=True, metavar="NAME")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The repository root to write .github/workflows/ under; default: the git work tree holding the project.",
)
@click.option("--force", is_flag=True, help="Overwrite workflows that differ.")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if the workflows differ from a fresh render.")
@click.pass_obj
def github_command(
    ctx: Context,
    repository: str,
    variants: tuple[str, ...],
    key_env: bool,
    public_key: str,
    requirements: str,
    source: str | None,
    name: str,
    tags: tuple[str, ...],
    runs_on: str,
    environment: str | None,
    release_file: str,
    verify_file: str,
    output_dir: Path | None,
    force: bool,
    check_only: bool,
) -> None:
    """Write the GitHub Actions release workflow and the verify workflow a deploy pipeline calls."""
    from envbuild.git import repository_root
    from envbuild.lock.spec import load_spec
    from envbuild.lock.variants import select

    if source is not None and requirements != FromRequirements().file:
        raise UsageError(
            "--envbuild-source and --envbuild-requirements both say how to install envbuild",
            hint="pass one of them",
        )
    spec = load_spec(ctx.directory)
    root = output_dir if output_dir is not None else repository_root(spec.root)
    install: Install = FromSource(path=source) if source is not None else FromRequirements(file=requirements)
    signing: Signing = KeyFromSecrets(public_key=public_key) if key_env else Keyless()
    options = GithubOptions(
        variants=select(spec, variants),
        spec_variants=select(spec),
        platforms=spec.platforms,
        repository=repository,
        signing=signing,
        install=install,
        project_dir=project_dir(root, spec.root),
        name=name,
        tags=tags or ("v*",),
        runs_on=runs_on,
        environment=environment,
        release_file=release_file,
        verify_file=verify_file,
    )
    if check_only:
        check_github_workflows(root, options)
        ctx.say("the workflows are current")
        return
    written = write_github_workflows(root, options, force=force)
    if ctx.json:
        ctx.emit(
            {
                "files": [str(p) for p in written.files],
                "changed": [str(p) for p in written.changed],
                "warnings": list(written.warnings),
            }
        )
    for path in written.files:
        ctx.say(f"{path}{'' if path in written.changed else ' (unchanged)'}")
    for warning in written.warnings:
        ctx.say(f"warning: {warning}")

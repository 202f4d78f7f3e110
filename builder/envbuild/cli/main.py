"""The ``envbuild`` command: parse options, call one library function, map errors to exit codes.

Logs and progress go to stderr; data (JSON, digests) to stdout, so
``envbuild --json lock | jq`` works.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.markup import escape

from envbuild import __version__
from envbuild.cli import options
from envbuild.cli.buildkit import normalize_command, print_build_commands, print_build_options
from envbuild.cli.ci import ci_group
from envbuild.cli.console import ConsoleHandler, Context, err, pass_ctx
from envbuild.cli.load import EVERY_STORE, load_built, load_command
from envbuild.cli.progress import DEFAULT_HEARTBEAT, progress
from envbuild.cli.supply import SUPPLY_COMMANDS, say_kept_attached
from envbuild.errors import EXIT_FAILURE, EnvbuildError, StaleLockError, UsageError, redact
from envbuild.image.load import STORES
from envbuild.oci.ref import ImageRef
from envbuild.registry.options import RegistryOptions
from envbuild.words import plural


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="envbuild")
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    envvar="ENVBUILD_DIR",
    show_envvar=True,
    help="Run as if started in DIR.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="ENVBUILD_JSON",
    show_envvar=True,
    help="Machine-readable output on stdout.",
)
@click.option(
    "-v", "--verbose", count=True,
    help="More detail on stderr: -v each tool's command and output, and what envbuild decides; -vv debug.",
)  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option(
    "--heartbeat", type=click.FloatRange(min=0), default=DEFAULT_HEARTBEAT, envvar="ENVBUILD_HEARTBEAT",
    show_envvar=True, show_default=True, metavar="SECONDS",
    help="When stderr is not a terminal (CI): a progress line this often during a long step (0: none).",
)  # fmt: skip
@click.pass_context
def cli(click_ctx: click.Context, directory: Path, as_json: bool, verbose: int, quiet: bool, heartbeat: float) -> None:
    """Lock, build, sign and verify reproducible images for an ML project."""
    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="-C")
    verbosity = -1 if quiet else verbose
    handler = ConsoleHandler()  # through the console: log lines print above progress bars, not into them
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING,
        handlers=[handler],
    )
    click_ctx.obj = Context(directory=directory, json=as_json, verbosity=verbosity, heartbeat=heartbeat)


@cli.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing envbuild.toml.")
@pass_ctx
def init_command(ctx: Context, force: bool) -> None:
    """Write a starter envbuild.toml for the Python project in this directory."""
    from envbuild.lock.starter import init_spec

    starter = init_spec(ctx.directory, force=force)
    if ctx.json:
        ctx.emit({"spec": str(starter.spec), "gitignore": str(starter.gitignore) if starter.gitignore else None})
    if starter.gitignore is not None:
        ctx.say(f"added .envbuild/ (envbuild's outputs) to {starter.gitignore}")
    ctx.say(f"wrote {starter.spec}: review it ('envbuild docs spec' explains every key), then run 'envbuild lock'")


@cli.command("docs")
@click.argument("topic", required=False)
@pass_ctx
def docs_command(ctx: Context, topic: str | None) -> None:
    """Print the reference documentation TOPIC (e.g. spec); without TOPIC, list the topics."""
    from envbuild.workspace import doc_topics, read_doc

    if topic is None:
        topics = doc_topics()
        if ctx.json:
            ctx.emit({"topics": topics})
            return
        width = max(map(len, topics))
        click.echo("\n".join(f"{name:<{width}}  {title}" for name, title in topics.items()))
        return
    text = read_doc(topic)
    ctx.emit({"topic": topic, "text": text}) if ctx.json else click.echo(text, nl=False)


@cli.command("lock")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if any lock is stale against the spec (offline).")
@click.option("--upgrade", "-U", is_flag=True, help="Move every package to its newest version before the cutoff.")
@click.option(
    "--upgrade-package", "-P", "upgrade_packages", multiple=True, metavar="NAME", help="Move one package (repeatable)."
)
@click.option(
    "--resolver",
    type=click.Choice(["uv", "pip-tools"]),
    default="uv",
    envvar="ENVBUILD_RESOLVER",
    show_envvar=True,
    show_default=True,
    help="Which resolver to run.",
)
@options.registry_options
@pass_ctx
def lock_command(
    ctx: Context,
    check_only: bool,
    upgrade: bool,
    upgrade_packages: tuple[str, ...],
    resolver: str,
    registry: RegistryOptions,
) -> None:
    """Resolve and hash-pin every variant into lockfiles/."""
    from envbuild.lock.resolve import LockOptions, lock
    from envbuild.lock.spec import load_spec
    from envbuild.lock.staleness import check

    spec = load_spec(ctx.directory)
    if check_only:
        stale = check(spec)
        if ctx.json:
            ctx.emit({"stale": [{"target": s.target, "reasons": list(s.reasons)} for s in stale]})
        if stale:
            raise StaleLockError(
                "stale locks:\n" + "\n".join(f"  {s}" for s in stale),
                hint="run 'envbuild lock' and commit lockfiles/",
            )
        ctx.say("all locks are current")
        return
    with progress(ctx) as report:
        settings = LockOptions(
            resolver=resolver,
            upgrade=upgrade,
            upgrade_packages=upgrade_packages,
            registry=registry,  # for base images given by tag
        )
        result = lock(spec, settings, progress=report)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if ctx.json:
        ctx.emit(
            {
                "locks": {
                    e.name: {"file": f"lockfiles/{e.file}", "sha256": e.sha256, "packages": len(e.packages)}
                    for e in result.lockset.entries
                },
                "changed": [str(p.relative_to(spec.root)) for p in result.changed],
                "removed": [str(p.relative_to(spec.root)) for p in result.removed],
                "warnings": list(result.warnings),
            }
        )
    for entry in result.lockset.entries:
        ctx.say(f"{entry.name:<24} {plural(len(entry.packages), 'package'):>12}  lockfiles/{entry.file}")
    removed = f", {len(result.removed)} removed ({', '.join(p.name for p in result.removed)})" if result.removed else ""
    ctx.say(f"{plural(len(result.changed), 'file')} written, {len(result.unchanged)} unchanged{removed}")


@cli.command("dockerfile")
@click.option(
    "--check", "check_only", is_flag=True, help="Exit 1 if images/ or .dockerignore differ from a fresh render."
)
@print_build_options
@pass_ctx
def dockerfile_command(
    ctx: Context,
    check_only: bool,
    print_build: bool,
    buildx: bool,
    variants: tuple[str, ...],
    platforms: tuple[str, ...],
    source_date_epoch: int | None,
    allow_dirty: bool,
) -> None:
    """Render images/<variant>.Dockerfile and .dockerignore from the spec and the locks.

    With --print-build-command, also stage the inputs and print the BuildKit commands that build them.
    """
    if print_build and check_only:
        raise UsageError("--print-build-command and --check do different things", hint="run them one at a time")
    if print_build:
        print_build_commands(
            ctx, variants=variants, platforms=platforms, buildx=buildx, source_date_epoch=source_date_epoch,
            allow_dirty=allow_dirty,
        )  # fmt: skip
        return
    if variants or buildx or platforms:
        raise UsageError(
            "--variant, --platform and --buildx go with --print-build-command", hint="add --print-build-command"
        )
    from envbuild.image.build import current_lock
    from envbuild.image.projectfiles import project_files
    from envbuild.image.render import render, stale_rendered, write_rendered
    from envbuild.lock.spec import load_spec

    spec = load_spec(ctx.directory)
    project_files(spec)  # the files the Dockerfiles copy must exist and stay in the project
    # The check 'envbuild lock --check' runs, guards included: nothing renders from a stale lock.
    rendered = render(spec, current_lock(spec))
    if check_only:
        stale = stale_rendered(spec, rendered)
        if stale:
            raise StaleLockError(
                f"out of date: {', '.join(stale)}", hint="run 'envbuild dockerfile' and commit the result"
            )
        ctx.say("Dockerfiles are current")
        return
    changed = write_rendered(spec, rendered)
    if ctx.json:
        ctx.emit(
            {"files": [rel for rel, _ in rendered.files], "changed": [str(p.relative_to(spec.root)) for p in changed]}
        )
    for rel, _ in rendered.files:
        ctx.say(rel)
    ctx.say(f"{plural(len(changed), 'file')} written")


@cli.command("image")
@options.variant_options
@click.option(
    "--builder",
    type=click.Choice(["buildah", "docker"]),
    default="buildah",
    envvar="ENVBUILD_BUILDER",
    show_envvar=True,
    show_default=True,
)
@click.option(
    "--source-date-epoch",
    type=options.EPOCH,
    envvar="SOURCE_DATE_EPOCH",
    show_envvar=True,
    help="Default: the commit time of the last change to the image's inputs.",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd"]),
    envvar="ENVBUILD_COMPRESSION",
    show_envvar=True,
    help="How the new layers are compressed. Default: the spec's [image] compression (gzip).",
)
@click.option(
    "--push",
    "push_to",
    metavar="REGISTRY/REPO[:PREFIX]",
    help="Push each image as REPO:<variant> (or REPO:<PREFIX>-<variant>).",
)
@click.option(
    "--sign",
    is_flag=True,
    help="Also make the SBOM and provenance and sign them and the image (kept beside the layout, attached on push).",
)
@options.signing_options
@options.source_repository
@options.allow_dirty
@options.disk_check
@click.option(
    "--load", type=click.Choice([EVERY_STORE, *STORES]), is_flag=False, flag_value=EVERY_STORE, metavar="[STORE]",
    envvar="ENVBUILD_LOAD", show_envvar=True,
    help="Also put each image into the local image stores as NAME:VARIANT: every store there is, or only STORE "
    "(containers-storage, docker); see 'envbuild load'.",
)  # fmt: skip
@options.platforms
@options.endpoints
@options.registry_options
@options.jobs
@pass_ctx
def image_command(
    ctx: Context,
    variants: options.VariantChoice,
    builder: str,
    source_date_epoch: int | None,
    compression: str | None,
    push_to: str | None,
    sign: bool,
    signing: options.SigningChoice,
    source_repository: str | None,
    allow_dirty: bool,
    disk_check: bool,
    load: str | None,
    platforms: tuple[str, ...],
    endpoints: tuple[tuple[str, str], ...],
    registry: RegistryOptions,
    jobs: int,
) -> None:
    """Build the images (CPU by default) reproducibly; print each manifest digest.

    A spec of several platforms gives each variant an image per platform and one image index over them.
    """
    from envbuild.image.build import ImageOptions, build_images
    from envbuild.image.record import BuiltIndex
    from envbuild.lock.spec import load_spec
    from envbuild.supply.release import release

    if not sign and signing.given:
        raise UsageError("--key, --keyless and --identity-token sign: they need --sign", hint="add --sign")
    # The signer is checked before the build: a wrong key password should not cost a build.
    signer = signing.signer() if sign else None
    target = ImageRef.parse(push_to) if push_to else None  # a bad reference should not cost a build either
    spec = load_spec(ctx.directory)
    settings = ImageOptions(
        variants=variants.select(spec), builder=builder, source_date_epoch=source_date_epoch, allow_dirty=allow_dirty,
        registry=registry, compression=compression, disk_check=disk_check, platforms=platforms,
        endpoints=endpoints,
    )  # fmt: skip
    results = []
    with progress(ctx) as report:
        built = build_images(spec, settings, progress=report)
        for done in release(
            built, signer=signer, push_to=target, registry=registry, jobs=jobs,
            source_repository=source_repository, progress=report,
        ):  # fmt: skip
            results.append(done.to_json())
            image = done.image
            ctx.say(f"{image.variant}: {image.digest}{' (unchanged)' if image.cached else ''}")
            # A variant built for several platforms is an index over one image each.
            parts = image.platforms if isinstance(image, BuiltIndex) else (image,)
            for each in parts if len(parts) > 1 else ():
                ctx.say(f"  {each.record.platform}: {each.digest}")
            if signer is None and done.ref is not None:
                fix = f"envbuild sign {done.ref} --key KEY (or --keyless)"
                say_kept_attached(ctx, image.variant, done.attached or [], done.skipped, fix)
            if load is not None:
                stores = () if load == EVERY_STORE else (load,)
                loaded = load_built(ctx, spec, parts, stores)
                results[-1]["loaded"] = [entry.to_json() for entry in loaded]
    if ctx.json:
        ctx.emit({"images": results})
    else:
        for entry in results:
            click.echo(entry.get("ref") or f"{entry['variant']} {entry['digest']}")


@cli.command("push")
@click.argument("layout", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("ref")
@click.option(
    "--name", help="Which image of the layout (its org.opencontainers.image.ref.name); default: the only one."
)
@options.registry_options
@options.jobs
@pass_ctx
def push_command(ctx: Context, layout: Path, ref: str, name: str | None, registry: RegistryOptions, jobs: int) -> None:
    """Push an OCI image layout to REF (REGISTRY/REPO[:TAG]); print REF@DIGEST."""
    from envbuild.oci.layout import Layout
    from envbuild.registry.transfer import push_layout

    target = ImageRef.parse(ref)
    source = Layout.open(layout)
    if not (layout / "oci-layout").is_file():  # what tells a layout from a directory that happens to hold blobs
        raise UsageError(
            f"{layout} is not an OCI image layout (no oci-layout file)",
            hint="push a directory written by 'envbuild image', 'envbuild pull' or 'skopeo copy ... oci:DIR'",
        )
    from envbuild.registry.client import RegistryClient
    from envbuild.supply.release import attach_kept

    client = RegistryClient.for_ref(target, registry)
    with progress(ctx) as report, report.phase("push", f"pushing to {target}", items="blobs") as phase:
        result = push_layout(source, target, client, name=name, jobs=jobs, progress=phase)
    # What 'envbuild sign VARIANT' signed is kept in the layout's directory until the image is pushed.
    attached, skipped = attach_kept(client, target.repository, layout, result.digest)
    if ctx.json:
        ctx.emit({
            "ref": str(result.ref), "digest": str(result.digest), "bytes_uploaded": result.bytes_uploaded,
            "uploaded": len(result.uploaded), "existed": len(result.existed), "mounted": len(result.mounted),
            "attached": attached, "not_attached": list(skipped),
        })  # fmt: skip
    else:
        click.echo(str(result.ref))
    ctx.say(
        f"{plural(len(result.uploaded), 'blob')} uploaded ({plural(result.bytes_uploaded, 'byte')}), "
        f"{len(result.existed)} already there"
    )
    say_kept_attached(ctx, str(result.ref), attached, skipped, f"envbuild sign {result.ref} --key KEY (or --keyless)")


@cli.command("pull")
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The OCI layout to write.",
)
@options.registry_options
@options.jobs
@pass_ctx
def pull_command(ctx: Context, ref: str, output: Path, registry: RegistryOptions, jobs: int) -> None:
    """Pull REF@DIGEST with every blob into an OCI layout, checking every digest."""
    from envbuild.registry.client import RegistryClient
    from envbuild.registry.transfer import pull_image

    source = ImageRef.parse(ref)
    with progress(ctx) as report, report.phase("pull", f"pulling {source}", items="blobs") as phase:
        top = pull_image(source, RegistryClient.for_ref(source, registry), output, jobs=jobs, progress=phase)
    if ctx.json:
        ctx.emit({"ref": str(source), "digest": str(top.digest), "layout": str(output)})
    else:
        click.echo(str(top.digest))


@cli.group("registry")
def registry_group() -> None:
    """Resolve tags, list tags, delete images."""


@registry_group.command("resolve")
@click.argument("ref")
@options.registry_options
@pass_ctx
def resolve_command(ctx: Context, ref: str, registry: RegistryOptions) -> None:
    """Print REF's digest (REF@sha256:...): what the tag points at now."""
    from envbuild.registry.client import RegistryClient

    source = ImageRef.parse(ref)
    digest = RegistryClient.for_ref(source, registry).resolve(source.repository, source.reference)
    pinned = source.with_digest(digest)
    ctx.emit({"ref": str(pinned), "digest": str(digest)}) if ctx.json else click.echo(str(pinned))


@registry_group.command("tags")
@click.argument("repository")
@options.registry_options
@pass_ctx
def tags_command(ctx: Context, repository: str, registry: RegistryOptions) -> None:
    """List the tags of REGISTRY/REPO."""
    from envbuild.registry.client import RegistryClient

    source = ImageRef.parse(repository)
    tags = RegistryClient.for_ref(source, registry).list_tags(source.repository, missing_ok=False)
    ctx.emit({"tags": tags}) if ctx.json else click.echo("\n".join(tags)) if tags else None


@registry_group.command("delete")
@click.argument("ref")
@options.registry_options
@pass_ctx
def delete_command(ctx: Context, ref: str, registry: RegistryOptions) -> None:
    """Delete the manifest REF@DIGEST (the registry must allow deletes)."""
    source = ImageRef.parse(ref)
    if source.digest is None:
        raise UsageError(f"{ref} has no digest: deletes are by digest", hint=f"envbuild registry resolve {ref}")
    from envbuild.registry.client import RegistryClient

    RegistryClient.for_ref(source, registry).delete_manifest(source.repository, source.digest)
    ctx.say(f"deleted {source}")


for command in (ci_group, normalize_command, load_command, *SUPPLY_COMMANDS):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (tests call this in-process)."""
    try:
        cli.main(args=argv, prog_name="envbuild", standalone_mode=False)
    except EnvbuildError as exc:
        _print_error(exc)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:  # the last resort: every known cause has its own EnvbuildError
        return _internal_error(exc, argv)
    return 0


def _internal_error(exc: Exception, argv: list[str] | None) -> int:
    """A bug, not a user error: one short line and where to report it; the traceback only with -vv."""
    import traceback

    err.print(f"[bold red]internal error:[/] {escape(redact(f'{type(exc).__name__}: {exc}'))}")
    if _verbosity(sys.argv[1:] if argv is None else argv) >= 2:
        err.print(redact("".join(traceback.format_exception(exc))), markup=False, end="")
    else:
        err.print(
            "[bold]hint:[/] this is a bug in envbuild: please report it with the output of the command run with -vv"
        )
    return EXIT_FAILURE


def _verbosity(argv: list[str]) -> int:
    """How many -v the global options hold (the parsed context is gone once a command failed)."""
    count, args = 0, iter(argv)
    for arg in args:
        if arg == "-C":
            next(args, None)  # its value
            continue
        if not arg.startswith("-") or arg == "--":
            break  # the command name: the global options end here
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def _print_error(exc: EnvbuildError) -> None:
    # Messages quote user input back (a bad URL, a requirement): strip credentials once more here.
    err.print(f"[bold red]error:[/] {escape(redact(exc.message))}")
    if exc.details:
        for line in redact(exc.details).splitlines():
            err.print(f"  {line}", markup=False)
    if exc.hint:
        err.print(f"[bold]hint:[/] {escape(redact(exc.hint))}")

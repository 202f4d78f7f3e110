"""The ``envbuild`` command: parse options, call one library function, map errors to exit codes.

Logs and progress go to stderr; data (JSON, digests) to stdout, so
``envbuild --json lock | jq`` works.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from envbuild import __version__, options
from envbuild.errors import EnvbuildError, SpecError, StaleLockError, UsageError, redact
from envbuild.registry.options import RegistryOptions
from envbuild.registry.ref import ImageRef

err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Context:
    """Options every command shares."""

    directory: Path
    json: bool
    verbosity: int

    def say(self, text: str) -> None:
        """A human line on stderr, unless --quiet."""
        if self.verbosity >= 0:
            err.print(escape(text))

    def emit(self, data: Any) -> None:
        """Machine-readable output on stdout."""
        click.echo(json.dumps(data, indent=2, sort_keys=True))


pass_ctx = click.make_pass_decorator(Context)


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
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv: every tool command).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def cli(click_ctx: click.Context, directory: Path, as_json: bool, verbose: int, quiet: bool) -> None:
    """Lock, build, sign and verify reproducible images for an ML project."""
    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="-C")
    verbosity = -1 if quiet else verbose
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    click_ctx.obj = Context(directory=directory, json=as_json, verbosity=verbosity)


@cli.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing envbuild.toml.")
@pass_ctx
def init_command(ctx: Context, force: bool) -> None:
    """Write a starter envbuild.toml for the Python project in this directory."""
    from envbuild.init import init_spec

    path = init_spec(ctx.directory, force=force)
    if ctx.json:
        ctx.emit({"spec": str(path)})
    ctx.say(f"wrote {path}: review it, then run 'envbuild lock'")


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
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Resolve and hash-pin every variant into lockfiles/."""
    from envbuild.lock import LockOptions, check, lock
    from envbuild.spec import load_spec

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
    with _progress(ctx) as report:
        settings = LockOptions(
            resolver=resolver,
            upgrade=upgrade,
            upgrade_packages=upgrade_packages,
            registry=RegistryOptions(insecure=insecure, ca_file=ca_file),  # for base images given by tag
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
                "warnings": list(result.warnings),
            }
        )
    for entry in result.lockset.entries:
        ctx.say(f"{entry.name:<24} {len(entry.packages):>3} packages  lockfiles/{entry.file}")
    ctx.say(f"{len(result.changed)} file(s) written, {len(result.unchanged)} unchanged")


@cli.command("dockerfile")
@click.option(
    "--check", "check_only", is_flag=True, help="Exit 1 if images/ or .dockerignore differ from a fresh render."
)
@pass_ctx
def dockerfile_command(ctx: Context, check_only: bool) -> None:
    """Render images/<variant>.Dockerfile and .dockerignore from the spec and the locks."""
    from envbuild.lockfile import read_lockset
    from envbuild.render import render, stale_rendered, write_rendered
    from envbuild.spec import load_spec

    spec = load_spec(ctx.directory)
    rendered = render(spec, read_lockset(spec.root))
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
    ctx.say(f"{len(changed)} file(s) written")


@cli.command("image")
@click.option(
    "--variant", "variants", multiple=True, metavar="NAME", help="Build this variant (repeatable), e.g. gpu-infer."
)
@click.option("--gpu", is_flag=True, help="The GPU variants instead of the CPU ones.")
@click.option("--role", type=click.Choice(["train", "infer"]), help="Only this role.")
@click.option("--all", "all_variants", is_flag=True, help="Every variant.")
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
    type=int,
    envvar="SOURCE_DATE_EPOCH",
    show_envvar=True,
    help="Default: the commit time of the last change to the image's inputs.",
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
@options.registry_options
@options.jobs
@pass_ctx
def image_command(
    ctx: Context,
    variants: tuple[str, ...],
    gpu: bool,
    role: str | None,
    all_variants: bool,
    builder: str,
    source_date_epoch: int | None,
    push_to: str | None,
    sign: bool,
    key_file: Path | None,
    keyless: bool,
    identity_token: str | None,
    source_repository: str | None,
    insecure: bool,
    ca_file: Path | None,
    jobs: int,
) -> None:
    """Build the images (CPU by default) reproducibly; print each manifest digest."""
    from envbuild.attest import find_build, make_attestations
    from envbuild.image import ImageOptions, build_images
    from envbuild.signing.signer import signer_from_options
    from envbuild.spec import load_spec
    from envbuild.variants import variants as all_of

    if not sign and (key_file or keyless or identity_token):
        raise UsageError("--key, --keyless and --identity-token sign: they need --sign", hint="add --sign")
    # The signer is checked before the build: a wrong key password should not cost a build.
    signer = signer_from_options(key_file=key_file, keyless=keyless, identity_token=identity_token) if sign else None
    spec = load_spec(ctx.directory)
    names = list(variants)
    if not names:
        names = [
            v.name for v in all_of(spec)
            if (all_variants or v.accelerator == ("gpu" if gpu else "cpu")) and (role is None or v.role == role)
        ]  # fmt: skip
    target = ImageRef.parse(push_to) if push_to else None
    settings = ImageOptions(
        variants=tuple(names), builder=builder, source_date_epoch=source_date_epoch,
        registry=RegistryOptions(insecure=insecure, ca_file=ca_file),
    )  # fmt: skip
    with _progress(ctx) as report:
        built = build_images(spec, settings, progress=report)
    results = []
    client = options.client_for(target, insecure=insecure, ca_file=ca_file) if target else None
    for image in built:
        entry: dict[str, Any] = {
            "variant": image.variant,
            "digest": str(image.digest),
            "layout": str(image.layout),
            "cached": image.cached,
        }
        attestations = None
        if signer is not None:
            attestations = make_attestations(
                find_build(spec.root, variant=image.variant), signer, source_repository=source_repository
            )
            entry["signed"] = sorted(attestations.bundles)
        if target is not None and client is not None:
            from envbuild.attest import attach_attestations
            from envbuild.registry.layout import Layout
            from envbuild.registry.transfer import push_layout

            tag = f"{target.tag}-{image.variant}" if target.tag else image.variant
            pushed = push_layout(Layout.open(image.layout), target.with_tag(tag), client, jobs=jobs)
            entry["ref"] = str(pushed.ref)
            if attestations is not None:
                entry["attached"] = attach_attestations(client, target.repository, image.digest, attestations)
        results.append(entry)
        ctx.say(f"{image.variant}: {image.digest}{' (unchanged)' if image.cached else ''}")
    if ctx.json:
        ctx.emit({"images": results})
    else:
        for entry in results:
            click.echo(entry.get("ref") or f"{entry['variant']} {entry['digest']}")


@cli.command("keygen")
@click.option(
    "--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
    help="Where to write NAME.key and NAME.pub.",
)  # fmt: skip
@click.option("--name", default="envbuild", show_default=True, help="The files' base name.")
@click.option("--no-password", is_flag=True, help="Leave the private key unencrypted (for throwaway keys only).")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@pass_ctx
def keygen_command(ctx: Context, output_dir: Path, name: str, no_password: bool, force: bool) -> None:
    """Make an ECDSA P-256 signing key pair: NAME.key (PKCS#8 PEM, 0600) and NAME.pub.

    The password comes from ENVBUILD_SIGNING_KEY_PASSWORD, else it is asked for on a terminal.
    """
    import os

    from envbuild.signing.keys import PASSWORD_ENV, generate_keypair, write_keypair

    password: str | None = None if no_password else os.environ.get(PASSWORD_ENV) or None
    if password is None and not no_password:
        if not sys.stdin.isatty():
            raise UsageError(
                "no password for the new signing key",
                hint=f"set {PASSWORD_ENV}, or pass --no-password for an unencrypted key",
            )
        password = click.prompt("Password for the new key", hide_input=True, confirmation_prompt=True, err=True)
    files = write_keypair(output_dir, name, generate_keypair(password.encode() if password else None), overwrite=force)
    if ctx.json:
        ctx.emit({"private": str(files.private), "public": str(files.public), "encrypted": password is not None})
    ctx.say(f"wrote {files.private} (keep it secret) and {files.public} (give it to verifiers)")


@cli.command("sign")
@click.argument("targets", nargs=-1, required=True, metavar="VARIANT|REF...")
@options.signing_options
@options.registry_options
@pass_ctx
def sign_command(
    ctx: Context,
    targets: tuple[str, ...],
    key_file: Path | None,
    keyless: bool,
    identity_token: str | None,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Sign images: a local build (by variant) or an image in a registry (attached as a referrer)."""
    _attest(ctx, targets, ("signature",), key_file, keyless, identity_token, None, insecure, ca_file, sign=True)


@cli.command("attest")
@click.argument("targets", nargs=-1, required=True, metavar="VARIANT|REF...")
@click.option(
    "--type", "kinds", multiple=True, type=click.Choice(["sbom", "provenance"]),
    help="Which attestation (repeatable); default both.",
)  # fmt: skip
@options.signing_options
@options.source_repository
@options.registry_options
@pass_ctx
def attest_command(
    ctx: Context,
    targets: tuple[str, ...],
    kinds: tuple[str, ...],
    key_file: Path | None,
    keyless: bool,
    identity_token: str | None,
    source_repository: str | None,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Make the SBOM and provenance of built images and sign them; attach them to images in a registry."""
    chosen = kinds or ("sbom", "provenance")
    _attest(ctx, targets, chosen, key_file, keyless, identity_token, source_repository, insecure, ca_file, sign=True)


@cli.command("sbom")
@click.argument("target", metavar="VARIANT|REF")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Also write the SBOM here.")
@click.option("--attach", is_flag=True, help="Attach it (unsigned) to REF as an OCI referrer.")
@options.registry_options
@pass_ctx
def sbom_command(
    ctx: Context, target: str, output: Path | None, attach: bool, insecure: bool, ca_file: Path | None
) -> None:
    """Write the CycloneDX 1.6 SBOM of a built image (beside its layout); print it without -o."""
    from envbuild.fsutil import atomic_write

    if attach and "/" not in target:
        raise UsageError(
            f"--attach needs an image in a registry, not the variant {target!r}", hint="pass REG/REPO@sha256:..."
        )
    made = _attest(ctx, (target,), ("sbom",), None, False, None, None, insecure, ca_file, sign=False, attach=attach)
    sbom = made[0]
    if output is not None:
        atomic_write(output, sbom)
        ctx.say(f"wrote {output}")
    elif not ctx.json:
        click.echo(sbom.decode("utf-8"), nl=False)


@cli.command("verify")
@click.argument("ref")
@options.trust_options
@click.option("--no-layers", is_flag=True, help="Do not fetch and hash the layers (manifest and config only).")
@click.option(
    "--validate-sbom", is_flag=True, help="Also check the SBOM against the CycloneDX 1.6 JSON schema (about 2 s)."
)
@options.registry_options
@options.jobs
@pass_ctx
def verify_command(
    ctx: Context,
    ref: str,
    keys: tuple[Path, ...],
    certificate_identity: str | None,
    certificate_oidc_issuer: str | None,
    policy_file: Path | None,
    no_layers: bool,
    validate_sbom: bool,
    insecure: bool,
    ca_file: Path | None,
    jobs: int,
) -> None:
    """Verify an image before deploying it: signature, SBOM, provenance, all for exactly this digest.

    Exit 0 only when everything holds.
    """
    from envbuild.verify import VerificationFailed, policy_from, render_report, verify_image

    rules = policy_from(
        keys=keys, identity=certificate_identity, issuer=certificate_oidc_issuer, policy_file=policy_file
    )
    if validate_sbom:
        rules = dataclasses.replace(rules, validate_sbom=True)
    source = ImageRef.parse(ref)
    client = options.client_for(source, insecure=insecure, ca_file=ca_file)
    report = verify_image(client, source, rules, check_layers=not no_layers, jobs=jobs)
    if ctx.json:
        ctx.emit(report.to_json())
    else:
        click.echo(render_report(report))
    if not report.ok:
        raise VerificationFailed(
            f"{ref} did not verify: " + "; ".join(f"{c.name}: {c.detail}" for c in report.failures()),
            hint="do not deploy it; the report above says which check failed and why",
        )


@cli.command("rebuild")
@click.argument("ref", metavar="REF@DIGEST")
@options.trust_options
@click.option(
    "--source", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A checkout of the project holding the recorded commit (default: -C's directory).",
)  # fmt: skip
@click.option("--worktree", is_flag=True, help="Build the checkout as it is on disk instead of the recorded commit.")
@click.option(
    "--from", "archive", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A vendor archive (envbuild vendor): every input from it, nothing from the network.",
)  # fmt: skip
@click.option("--source-date-epoch", type=int, help="Replace the recorded SOURCE_DATE_EPOCH (to see what it changes).")
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report (.json or .html).",
)
@options.registry_options
@pass_ctx
def rebuild_command(
    ctx: Context,
    ref: str,
    keys: tuple[Path, ...],
    certificate_identity: str | None,
    certificate_oidc_issuer: str | None,
    policy_file: Path | None,
    source: Path | None,
    worktree: bool,
    archive: Path | None,
    source_date_epoch: int | None,
    report_file: Path | None,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Audit: rebuild REF@DIGEST from its signed provenance and compare digests; explain any difference.

    Exit 0 when the rebuild is identical, 1 when it differs.
    """
    from envbuild.rebuild import RebuildOptions, rebuild, render_result, write_result
    from envbuild.verify import policy_from

    if archive is not None and (source is not None or worktree):
        raise UsageError("--from takes the source from the archive", hint="drop --source / --worktree")
    rules = policy_from(
        keys=keys, identity=certificate_identity, issuer=certificate_oidc_issuer, policy_file=policy_file
    )
    settings = RebuildOptions(
        source=(source or ctx.directory).resolve(), worktree=worktree, archive=archive,
        source_date_epoch=source_date_epoch, registry=RegistryOptions(insecure=insecure, ca_file=ca_file),
    )  # fmt: skip
    with _progress(ctx) as report:
        result = rebuild(
            ImageRef.parse(ref), rules, settings, lambda r: options.client_for(r, insecure=insecure, ca_file=ca_file),
            progress=report,
        )  # fmt: skip
    if report_file is not None:
        write_result(result, report_file)
    if ctx.json:
        ctx.emit(result.to_json())
    else:
        click.echo(render_result(result), nl=False)
    if not result.identical:
        raise EnvbuildError(
            f"the rebuild differs from {ref}",
            hint="the report says which inputs and which files differ" + (f" ({report_file})" if report_file else ""),
        )


@cli.command("vendor")
@click.argument("ref", metavar="REF@DIGEST")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The archive to write."
)
@options.trust_options
@click.option(
    "--source", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A checkout of the project holding the recorded commit (default: -C's directory).",
)  # fmt: skip
@options.registry_options
@pass_ctx
def vendor_command(
    ctx: Context,
    ref: str,
    output: Path,
    keys: tuple[Path, ...],
    certificate_identity: str | None,
    certificate_oidc_issuer: str | None,
    policy_file: Path | None,
    source: Path | None,
    insecure: bool,
    ca_file: Path | None,
) -> None:
    """Archive every input of REF@DIGEST's build, so 'envbuild rebuild --from ARCHIVE' works offline."""
    from envbuild.rebuild import vendor
    from envbuild.verify import policy_from

    rules = policy_from(
        keys=keys, identity=certificate_identity, issuer=certificate_oidc_issuer, policy_file=policy_file
    )
    result = vendor(
        ImageRef.parse(ref), rules, (source or ctx.directory).resolve(), output,
        lambda r: options.client_for(r, insecure=insecure, ca_file=ca_file),
    )  # fmt: skip
    if ctx.json:
        ctx.emit(
            {"archive": str(result.path), "bytes": result.size, "wheels": result.wheels, "digest": str(result.digest)}
        )
    ctx.say(f"wrote {result.path}: {result.size / 1e6:.1f} MB, {result.wheels} wheels, the base and the source")


def _attest(
    ctx: Context,
    targets: tuple[str, ...],
    kinds: tuple[str, ...],
    key_file: Path | None,
    keyless: bool,
    identity_token: str | None,
    source_repository: str | None,
    insecure: bool,
    ca_file: Path | None,
    *,
    sign: bool,
    attach: bool = True,
) -> list[bytes]:
    """sign / attest / sbom: make what ``kinds`` names for each target, keep it, and attach it to registry refs.

    Returns the SBOM of each target when ``kinds`` has it (for ``envbuild sbom``).
    """
    from envbuild.attest import (
        Attestations,
        attach_attestations,
        make_attestations,
        resolve_target,
    )
    from envbuild.signing.signer import signer_from_options
    from envbuild.spec import find_spec

    signer = signer_from_options(key_file=key_file, keyless=keyless, identity_token=identity_token) if sign else None
    try:
        root = find_spec(ctx.directory.resolve()).parent
    except SpecError:
        root = ctx.directory.resolve()  # signing an image in a registry needs no project
    clients: dict[str, Any] = {}

    def client_for(ref: ImageRef) -> Any:
        if ref.registry not in clients:
            clients[ref.registry] = options.client_for(ref, insecure=insecure, ca_file=ca_file)
        return clients[ref.registry]

    results, sboms = [], []
    for text in targets:
        target = resolve_target(root, text, client_for)
        if target.warning:
            err.print(f"[yellow]warning:[/] {escape(target.warning)}")
        if target.build is None:
            if kinds != ("signature",):
                # Provenance and SBOM come from the build record, which only the build has.
                from envbuild.attest import find_build

                find_build(root, digest=target.digest)
            from envbuild.attest import SIGN_PREDICATE
            from envbuild.signing.dsse import statement

            assert signer is not None and target.ref is not None
            payload = statement(target.ref.repository, str(target.digest), SIGN_PREDICATE, {})
            made = Attestations(sbom=None, provenance=None, bundles={"signature": signer.sign(payload)})
        else:
            made = make_attestations(target.build, signer, kinds=kinds, source_repository=source_repository)
        entry: dict[str, Any] = {"target": text, "digest": str(target.digest), "signed": sorted(made.bundles)}
        if target.build is not None:
            entry["layout"] = str(target.build.path)
        if target.ref is not None and attach:
            entry["attached"] = attach_attestations(client_for(target.ref), target.ref.repository, target.digest, made)
        if made.sbom is not None:
            sboms.append(made.sbom)
        results.append(entry)
        what = ", ".join(sorted(made.bundles)) or "SBOM"
        where = f"attached to {entry['target']}" if "attached" in entry else f"in {entry.get('layout')}"
        ctx.say(f"{text}: {what} {'signed and ' if made.bundles else ''}{where}")
    if ctx.json:
        ctx.emit({"images": results})
    return sboms


@cli.command("push")
@click.argument("layout", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("ref")
@click.option(
    "--name", help="Which image of the layout (its org.opencontainers.image.ref.name); default: the only one."
)
@options.registry_options
@options.jobs
@pass_ctx
def push_command(
    ctx: Context, layout: Path, ref: str, name: str | None, insecure: bool, ca_file: Path | None, jobs: int
) -> None:
    """Push an OCI image layout to REF (REGISTRY/REPO[:TAG]); print REF@DIGEST."""
    from envbuild.registry.layout import Layout
    from envbuild.registry.transfer import push_layout

    target = ImageRef.parse(ref)
    client = options.client_for(target, insecure=insecure, ca_file=ca_file)
    result = push_layout(Layout.open(layout), target, client, name=name, jobs=jobs)
    if ctx.json:
        ctx.emit({
            "ref": str(result.ref), "digest": str(result.digest), "bytes_uploaded": result.bytes_uploaded,
            "uploaded": len(result.uploaded), "existed": len(result.existed), "mounted": len(result.mounted),
        })  # fmt: skip
    else:
        click.echo(str(result.ref))
    ctx.say(
        f"{len(result.uploaded)} blob(s) uploaded ({result.bytes_uploaded} bytes), {len(result.existed)} already there"
    )


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
def pull_command(ctx: Context, ref: str, output: Path, insecure: bool, ca_file: Path | None, jobs: int) -> None:
    """Pull REF@DIGEST with every blob into an OCI layout, checking every digest."""
    from envbuild.registry.transfer import pull_image

    source = ImageRef.parse(ref)
    top = pull_image(source, options.client_for(source, insecure=insecure, ca_file=ca_file), output, jobs=jobs)
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
def resolve_command(ctx: Context, ref: str, insecure: bool, ca_file: Path | None) -> None:
    """Print REF's digest (REF@sha256:...): what the tag points at now."""
    source = ImageRef.parse(ref)
    digest = options.client_for(source, insecure=insecure, ca_file=ca_file).resolve(source.repository, source.reference)
    pinned = source.with_digest(digest)
    ctx.emit({"ref": str(pinned), "digest": str(digest)}) if ctx.json else click.echo(str(pinned))


@registry_group.command("tags")
@click.argument("repository")
@options.registry_options
@pass_ctx
def tags_command(ctx: Context, repository: str, insecure: bool, ca_file: Path | None) -> None:
    """List the tags of REGISTRY/REPO."""
    source = ImageRef.parse(repository)
    tags = options.client_for(source, insecure=insecure, ca_file=ca_file).list_tags(source.repository)
    ctx.emit({"tags": tags}) if ctx.json else click.echo("\n".join(tags)) if tags else None


@registry_group.command("delete")
@click.argument("ref")
@options.registry_options
@pass_ctx
def delete_command(ctx: Context, ref: str, insecure: bool, ca_file: Path | None) -> None:
    """Delete the manifest REF@DIGEST (the registry must allow deletes)."""
    source = ImageRef.parse(ref)
    if source.digest is None:
        raise UsageError(f"{ref} has no digest: deletes are by digest", hint=f"envbuild registry resolve {ref}")
    options.client_for(source, insecure=insecure, ca_file=ca_file).delete_manifest(source.repository, source.digest)
    ctx.say(f"deleted {source}")


from envbuild.ci_cli import ci_group  # noqa: E402 (the group needs `cli` defined above)

cli.add_command(ci_group)


@contextmanager
def _progress(ctx: Context) -> Iterator[Callable[[str, str], None]]:
    """A live per-target status on stderr; silent with --quiet or when stderr is not a terminal."""
    if ctx.verbosity < 0 or not err.is_terminal:
        yield lambda target, status: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        tasks: dict[str, Any] = {}

        def report(target: str, status: str) -> None:
            if target not in tasks:
                tasks[target] = bar.add_task(f"{target}: {status}", total=1)
            bar.update(tasks[target], description=f"{target}: {status}", completed=1 if status == "resolved" else 0)

        yield report


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
    return 0


def _print_error(exc: EnvbuildError) -> None:
    # Messages quote user input back (a bad URL, a requirement): strip credentials once more here.
    err.print(f"[bold red]error:[/] {escape(redact(exc.message))}")
    if exc.details:
        for line in redact(exc.details).splitlines():
            err.print(f"  {line}", markup=False)
    if exc.hint:
        err.print(f"[bold]hint:[/] {escape(redact(exc.hint))}")

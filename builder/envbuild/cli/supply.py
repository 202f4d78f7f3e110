"""The supply-chain commands: keygen, sign, attest, sbom, verify, rebuild and vendor.

Each parses its options and calls one library function (:mod:`envbuild.supply.attest`,
:mod:`envbuild.supply.verify`, :mod:`envbuild.audit.rebuild`); cli.py adds them to the ``envbuild`` group.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from envbuild.cli import options
from envbuild.cli.console import Context, err, pass_ctx
from envbuild.cli.progress import progress
from envbuild.errors import EnvbuildError, SpecError, UsageError
from envbuild.fsutil import check_output
from envbuild.oci.ref import ImageRef
from envbuild.registry.options import RegistryOptions
from envbuild.words import plural

if TYPE_CHECKING:
    from envbuild.supply.signing.signer import Signer  # imports cryptography: only the commands that sign load it


@click.command("keygen")
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

    from envbuild.supply.signing.keys import PASSWORD_ENV, generate_keypair, write_keypair

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


@click.command("sign")
@click.argument("targets", nargs=-1, required=True, metavar="VARIANT|REF...")
@options.signing_options
@options.registry_options
@pass_ctx
def sign_command(
    ctx: Context, targets: tuple[str, ...], signing: options.SigningChoice, registry: RegistryOptions
) -> None:
    """Sign images: a local build (by variant) or an image in a registry (attached as a referrer)."""
    _attest(ctx, targets, ("signature",), signing.signer(), None, registry)


@click.command("attest")
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
    signing: options.SigningChoice,
    source_repository: str | None,
    registry: RegistryOptions,
) -> None:
    """Make the SBOM and provenance of built images and sign them; attach them to images in a registry."""
    chosen = kinds or ("sbom", "provenance")
    _attest(ctx, targets, chosen, signing.signer(), source_repository, registry)


@click.command("sbom")
@click.argument("target", metavar="VARIANT|REF")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Also write the SBOM here.")
@click.option("--attach", is_flag=True, help="Attach it (unsigned) to REF as an OCI referrer.")
@options.registry_options
@pass_ctx
def sbom_command(ctx: Context, target: str, output: Path | None, attach: bool, registry: RegistryOptions) -> None:
    """Write the CycloneDX 1.6 SBOM of a built image (beside its layout); print it without -o."""
    from envbuild.fsutil import atomic_write

    if output is not None:
        check_output(output)
    if attach and "/" not in target:
        raise UsageError(
            f"--attach needs an image in a registry, not the variant {target!r}", hint="pass REG/REPO@sha256:..."
        )
    made = _attest(ctx, (target,), ("sbom",), None, None, registry, attach=attach)
    sbom = made[0]
    if output is not None:
        atomic_write(output, sbom)
        ctx.say(f"wrote {output}")
    elif not ctx.json:
        click.echo(sbom.decode("utf-8"), nl=False)


@click.command("verify")
@click.argument("ref")
@options.trust_options
@click.option("--no-layers", is_flag=True, help="Do not fetch and hash the layers (manifest and config only).")
@click.option(
    "--validate-sbom", is_flag=True, help="Also check the SBOM against the CycloneDX 1.6 JSON schema (about 2 s)."
)
@click.option(
    "--platform", metavar="OS/ARCH",
    help="Of an image index, verify the index and only this platform's image (default: every platform's).",
)  # fmt: skip
@options.registry_options
@options.jobs
@pass_ctx
def verify_command(
    ctx: Context,
    ref: str,
    trust: options.TrustChoice,
    no_layers: bool,
    validate_sbom: bool,
    platform: str | None,
    registry: RegistryOptions,
    jobs: int,
) -> None:
    """Verify an image before deploying it: signature, SBOM, provenance, all for exactly this digest.

    An image index (built for several platforms) is verified with every platform's image, or the
    one --platform names. Exit 0 only when everything holds.
    """
    from envbuild.registry.client import RegistryClient
    from envbuild.supply.verify import VerificationFailed, publisher_hint, render_report, verify_image

    rules = trust.policy()
    if validate_sbom:
        rules = dataclasses.replace(rules, validate_sbom=True)
    source = ImageRef.parse(ref)
    client = RegistryClient.for_ref(source, registry)
    report = verify_image(client, source, rules, check_layers=not no_layers, jobs=jobs, platform=platform)
    if ctx.json:
        ctx.emit(report.to_json())
    else:
        click.echo(render_report(report))
    if not report.ok:
        raise VerificationFailed(
            f"{ref} did not verify: " + "; ".join(f"{c.name}: {c.detail}" for c in report.failures()),
            hint=publisher_hint(report, source, rules)
            or "do not deploy it; the report above says which check failed and why",
        )


@click.command("rebuild")
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
@click.option(
    "--source-date-epoch", type=options.EPOCH, help="Replace the recorded SOURCE_DATE_EPOCH (to see what it changes)."
)
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
    trust: options.TrustChoice,
    source: Path | None,
    worktree: bool,
    archive: Path | None,
    source_date_epoch: int | None,
    report_file: Path | None,
    registry: RegistryOptions,
) -> None:
    """Audit: rebuild REF@DIGEST from its signed provenance and compare digests; explain any difference.

    Exit 0 when the rebuild is identical, 1 when it differs.
    """
    from envbuild.audit.rebuild import RebuildOptions, rebuild, render_result, write_result

    if archive is not None and (source is not None or worktree):
        raise UsageError("--from takes the source from the archive", hint="drop --source / --worktree")
    if report_file is not None:  # found now, not after a rebuild of many minutes
        if report_file.suffix not in (".json", ".html"):
            raise UsageError(f"cannot write a report to {report_file}", hint="name the report file with .json or .html")
        check_output(report_file)
    rules = trust.policy()
    settings = RebuildOptions(
        source=(source or ctx.directory).resolve(), worktree=worktree, archive=archive,
        source_date_epoch=source_date_epoch, registry=registry,
    )  # fmt: skip
    with progress(ctx) as report:
        result = rebuild(ImageRef.parse(ref), rules, settings, progress=report)
    # The verdict first: a report that cannot be written must not lose a finished rebuild's result.
    if ctx.json:
        ctx.emit(result.to_json())
    else:
        click.echo(render_result(result), nl=False)
    if report_file is not None:
        write_result(result, report_file)
    if not result.identical:
        raise EnvbuildError(
            f"the rebuild differs from {ref}",
            hint="the report says which inputs and which files differ" + (f" ({report_file})" if report_file else ""),
        )


@click.command("vendor")
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
    trust: options.TrustChoice,
    source: Path | None,
    registry: RegistryOptions,
) -> None:
    """Archive every input of REF@DIGEST's build, so 'envbuild rebuild --from ARCHIVE' works offline."""
    from envbuild.audit.rebuild import vendor

    check_output(output)
    rules = trust.policy()
    result = vendor(ImageRef.parse(ref), rules, (source or ctx.directory).resolve(), output, registry)
    if ctx.json:
        ctx.emit(
            {"archive": str(result.path), "bytes": result.size, "wheels": result.wheels, "digest": str(result.digest)}
        )
    ctx.say(
        f"wrote {result.path}: {result.size / 1e6:.1f} MB, {plural(result.wheels, 'wheel')}, the base and the source"
    )


def _attest(
    ctx: Context,
    targets: tuple[str, ...],
    kinds: tuple[str, ...],
    signer: Signer | None,
    source_repository: str | None,
    registry: RegistryOptions,
    *,
    attach: bool = True,
) -> list[bytes]:
    """sign / attest / sbom: make what ``kinds`` names for each target, keep it, and attach it to registry refs.

    Returns the SBOM of each target when ``kinds`` has it (for ``envbuild sbom``).
    """
    from envbuild.lock.spec import find_spec
    from envbuild.supply.attest import attach_attestations, attestations_for, resolve_target

    try:
        root = find_spec(ctx.directory.resolve()).parent
    except SpecError:
        root = ctx.directory.resolve()  # signing an image in a registry needs no project
    client_for = registry.clients()
    results, sboms = [], []
    for text in targets:
        target = resolve_target(root, text, client_for)
        if target.warning:
            err.print(f"[yellow]warning:[/] {escape(target.warning)}")
        made = attestations_for(target, root, signer, kinds=kinds, source_repository=source_repository)
        entry: dict[str, Any] = {"target": text, "digest": str(target.digest), "signed": sorted(made.bundles)}
        if target.build is not None:
            entry["layout"] = str(target.build.layout)
        if target.ref is not None and attach:
            entry["attached"] = attach_attestations(client_for(target.ref), target.ref.repository, target.digest, made)
        if made.sbom is not None:
            sboms.append(made.sbom)
        results.append(entry)
        ctx.say(f"{text}: {_made(made.bundles, sbom=made.sbom is not None)}; {_kept(entry, signed=bool(made.bundles))}")
    if ctx.json:
        ctx.emit({"images": results})
    return sboms


def say_kept_attached(
    ctx: Context, what: str, attached: list[dict[str, str]], skipped: tuple[str, ...], fix: str
) -> None:
    """After a push without --sign: which kept signatures went with the image, and which did not (and why).

    ``fix`` is the command that signs the pushed image when a kept signature was about another build.
    """
    kinds = [a["kind"] for a in attached if a["kind"] in _SIGNED]
    if kinds:
        ctx.say(f"{what}: attached the kept {', '.join(kinds)} (made by an earlier 'envbuild sign' or 'attest')")
    for reason in skipped:
        err.print(f"[yellow]warning:[/] {escape(what)}: not attached: {escape(reason)}; sign it again: {escape(fix)}")


_SIGNED = {"signature": "the image", "sbom": "its SBOM", "provenance": "its provenance"}


def _made(bundles: dict[str, bytes], *, sbom: bool) -> str:
    """What was made, in words: "signed the image and its SBOM", or "made the SBOM" (unsigned)."""
    if not bundles:
        return "made the SBOM" if sbom else "made nothing"
    signed = [_SIGNED[kind] for kind in sorted(bundles, key=list(_SIGNED).index)]
    return "signed " + (", ".join(signed[:-1]) + " and " + signed[-1] if len(signed) > 1 else signed[0])


def _kept(entry: dict[str, Any], *, signed: bool) -> str:
    """Where it went: attached in the registry, or kept beside a local build (signed: until its next push)."""
    if "attached" in entry:
        return f"attached to {entry['target']}"
    if not signed:
        return f"kept in {entry['layout']}"
    return f"kept in {entry['layout']}; the next 'envbuild push' or 'envbuild image --push' of it attaches it"


SUPPLY_COMMANDS = (
    keygen_command,
    sign_command,
    attest_command,
    sbom_command,
    verify_command,
    rebuild_command,
    vendor_command,
)

"""Audit rebuilds: prove an image was built from what its provenance says, or explain why not.

:func:`rebuild` starts from an image digest and its signed provenance (from the registry, or
from a vendor archive), takes the source at the recorded commit, finds every recorded input
by digest or hash (base image, wheels, tool wheels), builds again with the recorded
SOURCE_DATE_EPOCH, revision and builder, and compares manifest digests. When they differ,
it says which recorded inputs differ from the rebuild's and, with the original image at hand,
how the two images differ (:mod:`envbuild.audit.imagediff`).

:func:`vendor` gathers those same inputs into one archive (:mod:`envbuild.audit.vendor`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuild.audit.imagediff import ImageDiff, diff_images
from envbuild.audit.vendor import (
    MANIFEST,
    VendorError,
    collect_wheels,
    copy_worktree,
    find_base,
    manifest_for,
    open_archive,
    write_archive,
)
from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write
from envbuild.git import export_commit
from envbuild.image.build import ImageOptions, build_images
from envbuild.image.debian import build_debian_base, epoch_of
from envbuild.image.record import BuiltImage
from envbuild.lock.lockfile import DebianBase, read_lockset
from envbuild.lock.spec import load_spec
from envbuild.lock.variants import select
from envbuild.oci.layout import INDEX_TYPES, Layout, children
from envbuild.oci.ref import Digest, ImageRef
from envbuild.progress import SILENT, Progress
from envbuild.registry.client import RegistryClient, RegistryError
from envbuild.registry.options import ClientFor, RegistryOptions
from envbuild.registry.transfer import pull_image
from envbuild.scratch import scratch_dir
from envbuild.supply.policy import Policy
from envbuild.supply.provenance import InputChange, RecordedBuild, provenance_predicate, recorded_build
from envbuild.supply.verify import attached_bundles, verified_provenance
from envbuild.words import plural
from envbuild.workspace import Workspace, default_cache


@dataclass(frozen=True, kw_only=True)
class RebuildOptions:
    """Where the source and inputs come from, and what to change on purpose."""

    source: Path  # a checkout of the project; ignored with an archive
    worktree: bool = False  # build the checkout as it is on disk, not the recorded commit
    archive: Path | None = None  # vendored inputs: no index, registry or git needed
    source_date_epoch: int | None = None  # replace the recorded one (to see what it changes)
    registry: RegistryOptions = field(default_factory=RegistryOptions)


@dataclass(frozen=True, kw_only=True)
class RebuildResult:
    """The outcome: both digests, the inputs that differ, how the images differ, and how long it took."""

    image: str
    variant: str
    expected: Digest
    rebuilt: Digest
    inputs: tuple[InputChange, ...]
    diff: ImageDiff | None
    notes: tuple[str, ...]
    seconds: float

    @property
    def identical(self) -> bool:
        """True when the rebuild has the original's manifest digest."""
        return self.expected == self.rebuilt

    def to_json(self) -> dict[str, Any]:
        """The result as plain data (with the image diff when there is one)."""
        from envbuild.audit.report import render_json

        return {
            "image": self.image,
            "variant": self.variant,
            "expected": str(self.expected),
            "rebuilt": str(self.rebuilt),
            "identical": self.identical,
            "seconds": round(self.seconds, 1),
            "inputs": [{"name": c.name, "recorded": c.recorded, "rebuilt": c.rebuilt} for c in self.inputs],
            "notes": list(self.notes),
            "diff": render_json(self.diff) if self.diff is not None else None,
        }


def rebuild(ref: ImageRef, policy: Policy, options: RebuildOptions, *, progress: Progress = SILENT) -> RebuildResult:
    """Rebuild ``ref`` (which must name a digest) from its provenance and compare."""
    client_for = options.registry.clients()
    digest = _digest_of(ref)
    started = time.monotonic()
    notes: list[str] = []
    with scratch_dir(None, "envbuild-rebuild-") as tmp:
        work = Path(tmp)
        progress.status("rebuild", "checking the provenance")
        if options.archive is not None:
            vendored = open_archive(options.archive, work / "archive")
            if vendored.manifest["digest"] != str(digest):
                raise UsageError(
                    f"{options.archive} holds the inputs of {vendored.manifest['digest']}, not {digest}",
                    hint="pass the archive made for this image",
                )
            bundles = vendored.bundles()
        else:
            _one_image(ref, digest, client_for(ref), "an audit rebuild")
            bundles = attached_bundles(client_for(ref), ref.repository, digest)
        recorded = recorded_build(dict(verified_provenance(bundles, digest, policy).predicate))
        if recorded.dirty:
            notes.append(
                f"the original was built with uncommitted changes to {', '.join(recorded.dirty.paths)}, "
                f"which commit {recorded.revision} does not hold"
            )

        source = work / "source"
        checkout = None  # the project's wheel is built from the commit in this checkout (it needs the history)
        if options.archive is not None:
            copy_worktree(vendored.source, source)
        elif options.worktree:
            copy_worktree(options.source, source)
            notes.append(f"built {options.source} as it is on disk, not commit {recorded.revision}")
        else:
            export_commit(options.source, _recorded_commit(recorded, digest), source)
            checkout = options.source

        base_digest = recorded.base.digest
        # From a vendor archive, the archive's cache (its wheels) stands in for the user's.
        cache = vendored.cache if options.archive is not None else default_cache()
        base = find_base(base_digest, cache, extra=(vendored.base,) if options.archive is not None else ())
        if base is None:
            notes.append(f"the base {base_digest} is not at hand: it is made or pulled again from its recipe")
        epoch = options.source_date_epoch if options.source_date_epoch is not None else recorded.source_date_epoch
        spec = load_spec(source)
        progress.status("rebuild", f"building {recorded.variant}")
        built = build_images(
            spec,
            ImageOptions(
                variants=select(spec, (recorded.variant,)), platforms=(recorded.platform,),
                builder=recorded.builder.name, source_date_epoch=epoch,
                revision=recorded.revision, base_layout=base, check_locks=False, registry=options.registry,
                workspace=Workspace.at(spec.root, cache=cache), compression=_recorded_compression(recorded.compressor),
                package_checkout=checkout,
            ),
            progress=progress,
        )[0]  # fmt: skip
        assert isinstance(built, BuiltImage), "one platform is built: an image, not an index"
        again = recorded_build(provenance_predicate(built.record, source_repository=recorded.source_repository))
        inputs = tuple(recorded.changes(again))
        if recorded.project and again.project and recorded.project.sha256 != again.project.sha256:
            notes.append(
                f"the project's wheel differs: {recorded.project.filename} was rebuilt at commit "
                f"{recorded.revision} as {again.project.filename} with other bytes, so the project's layer differs; "
                "its build backend or build requirements (resolved at the spec's cutoff) did not reproduce it"
            )
        diff = None
        if built.digest != digest:
            with progress.phase("rebuild", "comparing with the original"):
                diff = _diff_with_original(ref, digest, built.layout, work, client_for, notes)
    return RebuildResult(
        image=str(ref), variant=recorded.variant, expected=digest, rebuilt=built.digest, inputs=inputs,
        diff=diff, notes=tuple(notes), seconds=time.monotonic() - started,
    )  # fmt: skip


def _recorded_compression(compressor: str) -> str:
    """The layer compression a build record names ("envbuild-zstd/1 libzstd ..." is zstd; anything else gzip)."""
    return "zstd" if compressor.split("/", 1)[0].endswith("zstd") else "gzip"


@dataclass(frozen=True, kw_only=True)
class VendorResult:
    """A written vendor archive."""

    path: Path
    size: int
    wheels: int
    digest: Digest


def vendor(ref: ImageRef, policy: Policy, source: Path, output: Path, registry: RegistryOptions) -> VendorResult:
    """Archive every input of ``ref``'s build (found by digest and hash, checked) into ``output``."""
    client_for = registry.clients()
    digest = _digest_of(ref)
    client = client_for(ref)
    _one_image(ref, digest, client, "vendor")
    bundles = attached_bundles(client, ref.repository, digest)
    recorded = recorded_build(dict(verified_provenance(bundles, digest, policy).predicate))
    cache = default_cache()
    with scratch_dir(None, "envbuild-vendor-") as tmp:
        staged = Path(tmp) / "archive"
        export_commit(source, _recorded_commit(recorded, digest), staged / "source")
        wheels = collect_wheels(recorded, cache, staged / "cache")
        base_digest = recorded.base.digest
        _vendor_base(recorded, base_digest, staged / "source", staged / "base", client_for, cache)
        (staged / "bundles").mkdir()
        for bundle in bundles:
            (staged / "bundles" / f"{Digest.of(bundle).hex}.sigstore.json").write_bytes(bundle)
        atomic_write(staged / MANIFEST, manifest_for(image=str(ref), digest=digest, record=recorded, wheels=wheels))
        size = write_archive(staged, output)
    return VendorResult(path=output, size=size, wheels=wheels, digest=digest)


def render_result(result: RebuildResult) -> str:
    """The terminal report: the verdict, then differing inputs, then how the images differ."""
    from envbuild.audit.report import render_text

    if result.identical:
        lines = [
            f"identical: the rebuild of {result.variant} is {result.rebuilt}, bit for bit ({result.seconds:.0f} s)"
        ]
    else:
        lines = [f"DIFFERENT: {result.image} is {result.expected}; the rebuild of {result.variant} is {result.rebuilt}"]
    if result.inputs:
        lines.append("inputs that differ from the provenance:")
        lines += [f"  {c.name}: {c.recorded} -> {c.rebuilt}" for c in result.inputs]
    lines += [f"note: {n}" for n in result.notes]
    if result.diff is not None:
        lines.append(render_text(result.diff).rstrip("\n"))
    return "\n".join(lines) + "\n"


def write_result(result: RebuildResult, path: Path) -> None:
    """The report as JSON (``.json``) or one HTML page (``.html``), written atomically."""
    if path.suffix == ".json":
        atomic_write(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        return
    if path.suffix == ".html":
        from html import escape

        from envbuild.audit.report import render_html

        rows = "".join(
            f"<tr><td>{escape(c.name)}</td><td>{escape(c.recorded)}</td><td>{escape(c.rebuilt)}</td></tr>"
            for c in result.inputs
        )
        verdict = "identical" if result.identical else "DIFFERENT"
        table = "<tr><th>input</th><th>recorded</th><th>rebuilt</th></tr>" + rows
        head = (
            f"<h1>Rebuild of {escape(result.image)}: {verdict}</h1>"
            f"<p>original {escape(str(result.expected))}, rebuilt {escape(str(result.rebuilt))}</p>"
            + (f"<h2>Inputs that differ</h2><table>{table}</table>" if rows else "")
            + "".join(f"<p>note: {escape(n)}</p>" for n in result.notes)
        )
        page = render_html(result.diff) if result.diff is not None else "<!doctype html><html><body></body></html>"
        atomic_write(path, page.replace("<body>", f"<body>{head}", 1))
        return
    raise UsageError(f"cannot write a report to {path}", hint="name the report file with .json or .html")


def _digest_of(ref: ImageRef) -> Digest:
    if ref.digest is None:
        raise UsageError(
            f"{ref} names no digest: an audit starts from the exact image",
            hint=f"envbuild registry resolve {ref}, then pass REF@sha256:...",
        )
    return ref.digest


def _one_image(ref: ImageRef, digest: Digest, client: RegistryClient, what: str) -> None:
    """Refuse an image index (a variant built for several platforms): an audit works on one platform's image.

    Each platform's image has its own provenance; the index is the canonical one over them
    (:func:`envbuild.oci.writer.write_index`), so rebuilding each platform's image audits it.
    """
    manifest = client.get_manifest(ref.repository, str(digest))
    if manifest.media_type not in INDEX_TYPES:
        return
    _blobs, images = children(manifest.json())
    each = "; ".join(f"{d.platform or 'unknown platform'}: {ref.with_digest(d.digest)}" for d in images)
    raise UsageError(
        f"{ref} is an image index of {plural(len(images), 'platform')}: {what} works on one platform's image",
        hint=f"{what} each platform's image by its digest: {each}",
    )


def _recorded_commit(recorded: RecordedBuild, digest: Digest) -> str:
    """The commit the provenance names; one built outside git names none, and only its files can rebuild it."""
    if not recorded.revision:
        raise UsageError(
            f"the provenance of {digest} names no commit: it was built outside git",
            hint="rebuild from a copy of its source with --worktree",
        )
    return recorded.revision


def _diff_with_original(
    ref: ImageRef, digest: Digest, rebuilt: Path, work: Path, client_for: ClientFor, notes: list[str]
) -> ImageDiff | None:
    try:
        pull_image(ref.with_digest(digest), client_for(ref), work / "original")
    except (RegistryError, OSError) as exc:
        notes.append(f"the original image could not be fetched for a file-by-file comparison: {exc}")
        return None
    diff = diff_images(Layout.open(work / "original"), Layout.open(rebuilt))
    # The layouts live in a temporary directory: name the images for what they are instead.
    return dataclasses.replace(
        diff,
        a=dataclasses.replace(diff.a, label=f"original {ref.repository}"),
        b=dataclasses.replace(diff.b, label="rebuilt"),
    )


def _vendor_base(
    recorded: RecordedBuild, digest: Digest, source: Path, dest: Path, client_for: ClientFor, cache: Path
) -> None:
    """Copy the base image with ``digest`` into ``dest``: from ``cache``, its registry, or made again and checked."""
    found = find_base(digest, cache)
    if found is None and not recorded.base.name.startswith("envbuild.local/"):
        ref = ImageRef.parse(recorded.base.name).with_digest(digest)
        pull_image(ref, client_for(ref), dest)
        return
    if found is None:
        spec = load_spec(source)
        lockset = read_lockset(spec.root)
        accelerator = select(spec, (recorded.variant,))[0].accelerator
        pinned = lockset.bases[accelerator] if lockset else None
        if isinstance(pinned, DebianBase):
            epoch = epoch_of(spec.exclude_newer)
            layout = build_debian_base(pinned.recipe(), platform=recorded.platform, epoch=epoch, cache=cache)
            if layout.select().digest == digest:
                found = layout.path
    if found is None:
        raise VendorError(
            f"the base image {digest} is neither cached here nor can it be made again with that digest",
            hint="vendor on the machine that built the image, whose cache holds its base",
        )
    shutil.copytree(found, dest)

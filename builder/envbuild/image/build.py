"""``build_images``: locked spec -> Dockerfile -> builder -> canonical OCI image on disk.

For each variant: the lock must be current; every input (base, wheels, uv) is
fetched and hash-checked on the host; the build key (a digest of every input) is
compared with the last build's, and an unchanged variant returns its digest at
once; otherwise the builder runs with no network and envbuild writes the final
image (:mod:`envbuild.oci.writer`) into ``.envbuild/images/<variant>/``, replacing
the previous one only when everything succeeded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild import __version__
from envbuild.errors import StaleLockError, UsageError
from envbuild.fsutil import atomic_write, link_or_copy
from envbuild.git import SourceState, source_state
from envbuild.image import checks, disk, hostvenv, projectfiles, projectwheel
from envbuild.image import store as imagestore
from envbuild.image.builders import BuildRequest, get_builder
from envbuild.image.debian import build_debian_base, epoch_of
from envbuild.image.emulation import native, require_runnable
from envbuild.image.fetch import Wheel, fetch_lockfile, stage, stage_uv
from envbuild.image.hostvenv import host_python
from envbuild.image.layerplan import LayerSettings, plan_layers
from envbuild.image.projectwheel import ProjectWheel, WheelSource
from envbuild.image.record import (
    BUILD_RECORD,
    BaseRecord,
    BuilderRecord,
    BuildRecord,
    BuiltImage,
    BuiltIndex,
    DirtyRecord,
    WheelRecord,
)
from envbuild.image.render import UID, VENV, base_reference, dockerfile_path, home_directory, render, write_rendered
from envbuild.lock.assemble import tools_filename
from envbuild.lock.lockfile import DebianBase, LayoutBase, LockSet, read_lockset
from envbuild.lock.resolvers.uv import uv_binary, uv_version
from envbuild.lock.spec import Spec
from envbuild.lock.staleness import check
from envbuild.lock.variants import LockTarget, Variant, select, targets
from envbuild.oci.compress import Compression, compression
from envbuild.oci.layers import LayerCache, LayerCounts
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest, ImageRef
from envbuild.oci.writer import assemble, write_index
from envbuild.progress import SILENT, Phase, Progress, size_text
from envbuild.registry.options import RegistryOptions
from envbuild.scratch import scratch_dir
from envbuild.words import plural
from envbuild.workspace import LOCK_DIR, Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ImageOptions:
    """Which variants to build, with what, and when."""

    variants: tuple[Variant, ...] = ()  # chosen by envbuild.lock.variants.select; empty: the CPU variants
    # Of a spec's platforms, the ones to build (each its own image, no index); empty: every one, and
    # for several an index per variant.
    platforms: tuple[str, ...] = ()
    # Per platform, the daemon that builds it (the docker builder only): (("linux/arm64", "tcp://arm:2375"),).
    endpoints: tuple[tuple[str, str], ...] = ()
    builder: str = "buildah"
    source_date_epoch: int | None = None  # default: the commit time of the last change to the inputs
    registry: RegistryOptions | None = None  # to pull bases given as registry images
    # Audit rebuilds (envbuild.audit.rebuild) replay a recorded build: its revision, the base layout
    # found by its recorded digest, and the lockfile as it is (the rebuild compares digests itself).
    revision: str | None = None
    base_layout: Path | None = None
    check_locks: bool = True
    # Build inputs with uncommitted changes: refused, unless allowed (then recorded as dirty).
    allow_dirty: bool = False
    # The project and the cache (wheels, bases): default Workspace.at(spec.root), the user's cache.
    workspace: Workspace | None = None
    # Layer compression, "gzip" or "zstd": default the spec's [image] compression.
    compression: str | None = None
    # Refuse a build whose scratch space estimate exceeds the free space of .envbuild/work (image.disk).
    disk_check: bool = True
    # The git checkout whose ``revision`` the project's wheel is built from, when the project's own
    # files are not a checkout (an audit rebuild's export); default: the project's repository.
    package_checkout: Path | None = None


def build_images(spec: Spec, options: ImageOptions, *, progress: Progress = SILENT) -> list[BuiltImage | BuiltIndex]:
    """Build the chosen variants of ``spec`` (all or nothing per image), each step a phase of ``progress``.

    A spec of one platform gives one image per variant; of several, each variant's image for each
    platform (``.envbuild/images/<variant>-<arch>``) and the variant's index over them.
    """
    unknown = sorted((set(options.platforms) | {p for p, _url in options.endpoints}) - set(spec.platforms))
    if unknown:
        raise UsageError(
            f"the spec does not build for {', '.join(unknown)}",
            hint=f"its platforms are {', '.join(spec.platforms)}: add it to 'platforms' in {spec.file.name} and lock",
        )
    if options.endpoints:
        get_builder(options.builder, endpoint=options.endpoints[0][1])  # buildah has none: said before any work
    options = dataclasses.replace(options, workspace=workspace_of(spec, options))  # one cache for every step
    imagestore.clean_leftovers(workspace_of(spec, options))  # what killed runs left behind; never a running build's
    # One walk: a missing file or a link out of the project is refused before anything, and what is
    # digested into the build key is exactly what is staged.
    entries = projectfiles.project_files(spec)
    lockset = current_lock(spec) if options.check_locks else _read_lock(spec)
    checks.check_opt_outs(spec, lockset)  # a typo in [checks] fails now, not after the first build
    # One per platform (its endpoint's daemon), each asked once: one that is not there fails here, before
    # any download.
    endpoints = dict(options.endpoints)
    builders = {p: get_builder(options.builder, endpoint=endpoints.get(p)) for p in options.platforms or spec.platforms}
    records = {p: BuilderRecord(name=b.name, version=b.version()) for p, b in builders.items()}
    rendered = render(spec, lockset)
    write_rendered(spec, rendered)
    built: list[BuiltImage | BuiltIndex] = []
    for variant in chosen_variants(spec, options):
        images = tuple(
            _build_one(
                spec, lockset, target, rendered.text(dockerfile_path(variant)), builders[target.platform],
                records[target.platform], entries, options, progress,
            )
            for target in targets(spec, (variant,))
            if not options.platforms or target.platform in options.platforms
        )  # fmt: skip
        if len(images) > 1 and len(images) == len(spec.platforms):
            built.append(_write_index(spec, variant, images, options, progress))
        else:
            built.extend(images)
    return built


def _write_index(
    spec: Spec, variant: Variant, images: tuple[BuiltImage, ...], options: ImageOptions, progress: Progress
) -> BuiltIndex:
    """The variant's image index over its platforms' ``images`` in ``.envbuild/images/<variant>``, replaced whole."""
    out = workspace_of(spec, options).images / variant.name
    name = f"{spec.name}-{variant.name}"
    key = hashlib.sha256("".join(f"{i.record.platform} {i.digest}\n" for i in images).encode()).hexdigest()
    cached = _cached(out, key)
    if cached is not None:
        progress.status(variant.name, f"index unchanged ({plural(len(images), 'platform')})")
        return BuiltIndex(variant=variant.name, layout=out, name=name, digest=cached, platforms=images, cached=True)
    work_root = workspace_of(spec, options).work
    work_root.mkdir(parents=True, exist_ok=True)
    with imagestore.writing_image(out), scratch_dir(work_root, f"{variant.name}-index-") as work:
        staged = work / "image"
        layouts = [Layout.open(i.layout) for i in images]
        descriptor = write_index(staged, [(layout, layout.select()) for layout in layouts], name=name)
        atomic_write(staged / "build-key", key + "\n")
        _replace(staged, out)
    progress.status(variant.name, f"index of {plural(len(images), 'platform')}: {descriptor.digest}")
    return BuiltIndex(variant=variant.name, layout=out, name=name, digest=descriptor.digest, platforms=images)


def _read_lock(spec: Spec) -> LockSet:
    lockset = read_lockset(spec.root)
    if lockset is None:
        raise StaleLockError("the project is not locked", hint="run 'envbuild lock' first")
    return lockset


def current_lock(spec: Spec) -> LockSet:
    """The project's lock, refused when it is stale against the spec."""
    lockset = _read_lock(spec)
    stale = check(spec)
    if stale:
        raise StaleLockError("stale locks:\n" + "\n".join(f"  {s}" for s in stale), hint="run 'envbuild lock' first")
    return lockset


def _build_one(
    spec: Spec,
    lockset: LockSet,
    target: LockTarget,
    dockerfile: str,
    builder: Any,
    builder_record: BuilderRecord,
    entries: tuple[projectfiles.Entry, ...],
    options: ImageOptions,
    progress: Progress,
) -> BuiltImage:
    variant = target.name  # the variant, or for a spec of several platforms the variant and architecture
    workspace = workspace_of(spec, options)
    source = build_source(spec, target, options)
    epoch = source.epoch
    with progress.phase(variant, "preparing the base") as phase:
        base_layout, base_name = base_image(spec, lockset, target, options, progress=phase)
    with progress.phase(variant, "fetching wheels", items="wheels") as phase:
        wheels, tools = fetch_wheels(spec, target, cache=workspace.cache, progress=phase)
    package = build_project_wheel(spec, target, source, tools, options, progress=progress)
    record = BuildRecord(
        envbuild=__version__,
        variant=target.variant.name,
        platform=target.platform,
        builder=builder_record,
        compressor=layer_compression(spec, options).description,
        source_date_epoch=epoch,
        revision=source.commit,
        dirty=DirtyRecord(paths=source.dirty, sha256=source.dirty_sha256 or "") if source.dirty else None,
        spec=spec.file.relative_to(spec.root).as_posix(),
        spec_sha256=spec.digest,  # hashed once, when the spec was loaded
        base=BaseRecord(name=base_name, digest=base_layout.select().digest),
        dockerfile=dockerfile_path(target.variant),
        dockerfile_sha256=hashlib.sha256(dockerfile.encode()).hexdigest(),
        lockfile=f"{LOCK_DIR}/{target.filename}",
        lockfile_sha256=hashlib.sha256((spec.root / LOCK_DIR / target.filename).read_bytes()).hexdigest(),
        wheels=tuple(WheelRecord(**w.to_json()) for w in wheels),
        tools=tuple(WheelRecord(**w.to_json()) for w in tools),
        files=tuple(sorted(spec.image.files)),
        files_sha256=projectfiles.digest(entries),
        project=package.record() if package is not None else None,
        checks=checks.checks_record(spec),
        venv_python=host_python(minor_version(spec.python)).description if spec.image.venv == "host" else None,
    )
    key = record.key()
    out = workspace.images / variant
    name = f"{spec.name}-{target.variant.name}"
    cached = _cached(out, key)
    if cached is not None:
        progress.status(variant, "unchanged")
        return BuiltImage(
            variant=variant, layout=out, name=name, digest=cached, record=record.with_digest(cached), cached=True
        )

    require_runnable(target.platform)  # another architecture's RUN steps and checks run under emulation
    stage_inputs(spec, target, wheels, tools, entries, workspace=workspace, package=package)
    if spec.image.venv == "host":
        with progress.phase(variant, "building the venv on the host"):
            build_host_venv(spec, target, workspace, package=package)
    work_root = workspace.work
    work_root.mkdir(parents=True, exist_ok=True)
    check_disk(
        variant, [w.path for w in wheels], base_layout, work_root, enabled=options.disk_check, builder=builder.name
    )
    with imagestore.writing_image(out), scratch_dir(work_root, f"{variant}-") as work:
        dockerfile_file = work / "Dockerfile"
        dockerfile_file.write_text(dockerfile, encoding="utf-8")
        with progress.phase(variant, f"building with {builder.name}") as phase:
            raw = builder.build(
                BuildRequest(
                    context=spec.root, dockerfile=dockerfile_file, base_name=base_name,
                    base_layout=base_layout.path, epoch=epoch, platform=target.platform,
                    build_args=build_args(source.revision_label, package), workdir=work,
                ),
                progress=phase,
            )  # fmt: skip
        _keep_raw(raw, variant)
        staged = work / "image"
        with progress.phase(variant, "writing layers", items="layers") as phase:
            descriptor = write_final_image(
                spec, options, built=raw, base=base_layout, out=staged, epoch=epoch, name=name, progress=phase
            )
        # Before the image replaces the previous one: a failure leaves that one in place (docs/checks.md).
        with progress.phase(variant, "checking the image") as phase:
            checks.check_image(
                spec, target, raw=raw, base=base_layout, image=Layout.open(staged), work=work,
                cache=workspace.cache, progress=phase,
            )  # fmt: skip
        record = record.with_digest(descriptor.digest)
        atomic_write(staged / BUILD_RECORD, record.file_text())
        atomic_write(staged / "build-key", key + "\n")
        _replace(staged, out)
    return BuiltImage(variant=variant, layout=out, name=name, digest=descriptor.digest, record=record)


def layer_compression(spec: Spec, options: ImageOptions) -> Compression:
    """How the image's new layers are compressed: ``options.compression``, else the spec's."""
    return compression(options.compression or spec.image.compression)


def write_final_image(
    spec: Spec,
    options: ImageOptions,
    *,
    built: Layout,
    base: Layout,
    out: Path,
    epoch: int,
    name: str,
    progress: Phase | None = None,
) -> Descriptor:
    """Write the image of what the builder ``built`` into ``out``, in the layers of the plan (docs/layers.md).

    Layers written before (by any build that used this cache) are taken from the cache, not
    compressed again; how many of each is logged, and said at the end of ``progress``.
    """
    settings = LayerSettings(threshold=spec.image.layer_threshold, cap=spec.image.layer_cap)
    python = minor_version(spec.python)
    counts = LayerCounts()
    descriptor = assemble(
        built=built, base=base, out=out, epoch=epoch, name=name,
        plan=lambda files: plan_layers(
            files, venv=VENV, python=python, workdir=spec.image.workdir, settings=settings,
            project=spec.package.name if spec.package else None,
        ),
        compression=layer_compression(spec, options),
        cache=LayerCache(workspace_of(spec, options).cache / "layers"),
        counts=counts,
        progress=progress,
        owners={home_directory(spec).strip("/"): UID},
    )  # fmt: skip
    summary = f"layers: {len(counts.compressed)} compressed, {len(counts.cached)} from the cache"
    log.info("%s %s (compressed: %s)", name, summary, ", ".join(counts.compressed) or "none")
    if progress is not None:
        fresh = f", {size_text(counts.compressed_bytes)} compressed" if counts.compressed else ""
        progress.finish(
            f"{plural(progress.count, 'layer')} ({len(counts.compressed)} compressed, "
            f"{len(counts.cached)} from the cache), "
            f"{size_text(counts.tar_bytes)} of tars{fresh}"
        )
    return descriptor


def check_disk(variant: str, wheels: list[Path], base: Layout, work: Path, *, enabled: bool, builder: str) -> None:
    """Refuse a build whose scratch space (:mod:`envbuild.image.disk`) the file system of ``work`` cannot hold."""
    need = disk.estimate(wheels, base)
    free = disk.free_space(work)
    log.info("%s: scratch space needed %s; %s free in %s", variant, need.describe(), size_text(free), work)
    if builder != "buildah":
        return  # docker builds in the daemon's data root, which envbuild neither sees nor measured
    if enabled:
        disk.check_space(need, work, variant=variant)
    elif free < need.needed:
        log.warning("%s: the build may need more scratch space than %s has (the disk check is off)", variant, work)


def _keep_raw(raw: Layout, variant: str) -> None:
    """With ENVBUILD_KEEP_RAW=DIR, keep what the builder wrote in DIR/<variant>, to compare with the final image."""
    keep = os.environ.get("ENVBUILD_KEEP_RAW")
    if keep:
        target = Path(keep) / variant
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(raw.path, target, copy_function=link_or_copy)


def chosen_variants(spec: Spec, options: ImageOptions) -> tuple[Variant, ...]:
    """The variants ``options`` names, else the CPU ones (as ``envbuild image`` without options)."""
    return options.variants or select(spec, accelerator="cpu")


def build_targets(spec: Spec, chosen: tuple[Variant, ...], platform: str | None = None) -> tuple[LockTarget, ...]:
    """The lock targets that build the ``chosen`` variants: one each, on ``platform`` (default: the spec's first)."""
    if platform is not None and platform not in spec.platforms:
        raise UsageError(
            f"the spec does not build for {platform}",
            hint=f"its platforms are {', '.join(spec.platforms)}: add it to 'platforms' in {spec.file.name} and lock",
        )
    return tuple(t for t in targets(spec, chosen) if t.platform == (platform or spec.platforms[0]))


def build_date(spec: Spec, target: LockTarget, options: ImageOptions) -> tuple[int, str]:
    """SOURCE_DATE_EPOCH and the revision label of a build (see :func:`build_source`)."""
    source = build_source(spec, target, options)
    return source.epoch, source.revision_label


def build_source(spec: Spec, target: LockTarget, options: ImageOptions) -> SourceState:
    """The source of a build: replayed (an audit rebuild), or the last commit of its inputs, checked clean.

    An input with uncommitted changes is refused unless ``options.allow_dirty``
    (:func:`envbuild.git.source_state`); the tools' lockfile counts as an input too.
    """
    if options.revision is not None and options.source_date_epoch is not None:
        return SourceState(epoch=options.source_date_epoch, commit=options.revision)
    dated_by = _input_paths(spec, target)
    return source_state(
        spec.root, sorted({*dated_by, f"{LOCK_DIR}/{tools_filename(spec, target.platform)}"}), dated_by=dated_by,
        epoch=options.source_date_epoch, allow_dirty=options.allow_dirty,
    )  # fmt: skip


def workspace_of(spec: Spec, options: ImageOptions) -> Workspace:
    """Where a build of ``spec`` writes and caches: ``options.workspace``, else its project with the user's cache."""
    return options.workspace or Workspace.at(spec.root)


def fetch_wheels(
    spec: Spec, target: LockTarget, *, cache: Path, progress: Phase | None = None
) -> tuple[list[Wheel], list[Wheel]]:
    """The variant's locked wheels and the tools' (uv), downloaded or found in ``cache``, hash-checked."""
    routed = tuple(i for i in spec.indexes if target.variant.accelerator in i.accelerators)
    wheels = fetch_lockfile(
        spec.root / LOCK_DIR / target.filename, cache=cache, python=spec.python, platform=target.platform,
        glibc=spec.glibc, index_url=spec.index_url, indexes=routed, progress=progress,
    )  # fmt: skip
    tools = fetch_lockfile(
        spec.root / LOCK_DIR / tools_filename(spec, target.platform), cache=cache, python=spec.python,
        platform=target.platform, glibc=spec.glibc, index_url=spec.index_url, indexes=(), progress=progress,
    )  # fmt: skip
    if progress is not None and not progress.done:
        progress.finish(f"{plural(progress.count, 'wheel')} (all from the cache)")
    return wheels, tools


def stage_inputs(
    spec: Spec,
    target: LockTarget,
    wheels: list[Wheel],
    tools: list[Wheel],
    entries: tuple[projectfiles.Entry, ...],
    *,
    workspace: Workspace,
    package: ProjectWheel | None = None,
) -> None:
    """Put what the Dockerfile copies into .envbuild/stage/: the wheels, uv, the project's files (``entries``),
    and the project's own wheel (``package``)."""
    stage(workspace, target.variant.name, wheels)
    lock = workspace.stage / target.variant.name / "lock.txt"
    if len(spec.platforms) > 1:  # one Dockerfile for every platform: it installs the lockfile staged for this one
        shutil.copyfile(spec.root / LOCK_DIR / target.filename, lock)
    else:
        lock.unlink(missing_ok=True)
    stage_uv(workspace, tools[0])
    projectfiles.stage(workspace.stage / "project", entries)
    projectwheel.stage(workspace.stage / "package", package)


def build_project_wheel(
    spec: Spec,
    target: LockTarget,
    source: SourceState,
    tools: list[Wheel],
    options: ImageOptions,
    *,
    progress: Progress = SILENT,
) -> ProjectWheel | None:
    """The project's wheel (:mod:`envbuild.image.projectwheel`) for a build from ``source``; None when it is no package.

    Built with the uv of the tools lock when that one runs here (the target's machine is this
    one's), else with envbuild's own uv, which the tools lock pins to the same version.
    """
    if spec.package is None:
        return None
    workspace = workspace_of(spec, options)
    if native(target.platform):
        uv, uv_id = str(stage_uv(workspace, tools[0])), tools[0].sha256
    else:
        uv = uv_binary()
        uv_id = f"uv {uv_version(uv)}"
    with progress.phase(target.variant.name, "building the project's wheel"):
        wheel = projectwheel.project_wheel(
            spec,
            WheelSource(
                epoch=source.epoch, commit=source.commit, dirty=source.dirty, dirty_sha256=source.dirty_sha256,
                checkout=options.package_checkout,
            ),
            uv=uv, uv_id=uv_id, cache=workspace.cache, work=workspace.work,
        )  # fmt: skip
    log.info("%s: the project's wheel is %s (sha256 %s)", target.variant.name, wheel.filename, wheel.sha256)
    return wheel


def build_host_venv(spec: Spec, target: LockTarget, workspace: Workspace, *, package: ProjectWheel | None) -> None:
    """``.envbuild/stage/<variant>/venv``: the venv built on the host for the target (:mod:`envbuild.image.hostvenv`).

    With the uv of the tools lock when that one runs here, else envbuild's own (the same version).
    """
    staged = workspace.stage / target.variant.name
    uv = str(workspace.stage / "tools" / "uv") if native(target.platform) else uv_binary()
    hostvenv.build_venv(
        staged / "venv", venv=VENV, uv=uv, python=host_python(minor_version(spec.python)), platform=target.platform,
        glibc=spec.glibc, lockfile=spec.root / LOCK_DIR / target.filename, wheels=staged / "wheels",
        package=workspace.stage / "package" if package is not None else None,
    )  # fmt: skip


def build_args(revision: str, package: ProjectWheel | None) -> dict[str, str]:
    """The Dockerfile's build arguments: REVISION, and VERSION (the version label) when the project is a package."""
    args = {"REVISION": revision}
    if package is not None:
        args["VERSION"] = package.version
    return args


def minor_version(python: str) -> str:
    """``3.11`` of a spec's ``python`` (``3.11`` or ``3.11.7``)."""
    return ".".join(python.split(".")[:2])


def _input_paths(spec: Spec, target: LockTarget) -> list[str]:
    """The project paths whose last change dates the image (SOURCE_DATE_EPOCH): the package's directory too."""
    paths = {spec.file.relative_to(spec.root).as_posix(), f"{LOCK_DIR}/{target.filename}", *spec.image.files}
    if spec.package is not None:
        paths.add(os.path.relpath(spec.package.directory, spec.root).replace(os.sep, "/"))
    return sorted(paths)


def base_image(
    spec: Spec, lockset: LockSet, target: LockTarget, options: ImageOptions, *, progress: Phase | None = None
) -> tuple[Layout, str]:
    """The base as a layout on disk, and the FROM name the Dockerfile gives it; ``progress`` sees it made or pulled."""
    pinned = lockset.bases[target.variant.accelerator]
    name = base_reference(spec.name, target.variant.accelerator, pinned)
    if options.base_layout is not None:
        return Layout.open(options.base_layout), name.split("@", 1)[0]
    cache = workspace_of(spec, options).cache
    if isinstance(pinned, DebianBase):
        recipe = pinned.recipe()
        epoch = epoch_of(spec.exclude_newer)
        return build_debian_base(recipe, platform=target.platform, epoch=epoch, cache=cache, progress=progress), name
    if isinstance(pinned, LayoutBase):
        layout = Layout.open(spec.root / pinned.path)
        if str(layout.select().digest) != pinned.digest:
            raise StaleLockError(f"the base layout {pinned.path} changed since the lock", hint="run 'envbuild lock'")
        return layout, name
    from envbuild.registry.client import RegistryClient
    from envbuild.registry.transfer import pull_image

    ref = ImageRef.parse(name)
    destination = cache / "pulled" / Digest.parse(str(pinned.digest)).hex
    if not _pulled(destination):
        pull_image(ref, RegistryClient.for_ref(ref, options.registry), destination, name="base", progress=progress)
    return Layout.open(destination), name.split("@", 1)[0]


def _pulled(destination: Path) -> bool:
    """Whether the pull of a base into ``destination`` finished (a killed one leaves index.json without it)."""
    try:
        layout = Layout.open(destination)
        layout.verify(layout.select("base"), hash_blob=lambda _path: False)  # blobs arrive digest-checked
    except UsageError:
        return False
    return True


def _cached(out: Path, key: str) -> Digest | None:
    return imagestore.cached_digest(out, key)  # checked whole first: a broken image is rebuilt


def _replace(staged: Path, out: Path) -> None:
    imagestore.replace(staged, out)  # at every instant, the old image or the new one, whole


__all__ = ["BuiltImage", "ImageOptions", "build_images"]

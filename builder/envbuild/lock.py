"""``lock``: resolve every variant of a spec in parallel, guard the result, write it atomically.

``check`` answers, offline, whether the locks on disk still match the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envbuild import __version__
from envbuild.bases import describe_base, pin_bases
from envbuild.errors import LockGuardError, ResolutionError, strip_url_credentials
from envbuild.fsutil import atomic_write
from envbuild.guards import cpu_violations, gpu_violations, skew
from envbuild.lockfile import (
    LOCK_DIR,
    META_FILE,
    LockEntry,
    LockSet,
    canonical_json,
    pins_only,
    read_lockset,
    render_lockfile,
    request_inputs,
    sha256_text,
)
from envbuild.registry.options import RegistryOptions
from envbuild.resolvers import get_resolver
from envbuild.resolvers.base import Pin, Resolution, ResolveRequest, parse_requirements
from envbuild.resolvers.uv import UvResolver
from envbuild.scratch import scratch_dir
from envbuild.simple_index import check_routed_pins
from envbuild.spec import PLATFORMS, Spec
from envbuild.variants import LockTarget, indexes, requirements, targets

Progress = Callable[[str, str], None]


@dataclass(frozen=True, kw_only=True)
class LockOptions:
    """How to lock: which resolver, and what may move."""

    resolver: str = "uv"
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    registry: RegistryOptions | None = None  # how to reach registries of base images given by tag


@dataclass(frozen=True, kw_only=True)
class LockResult:
    """What ``lock`` did."""

    lockset: LockSet
    changed: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Staleness:
    """Why one lock target no longer matches the spec."""

    target: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.target}: " + "; ".join(self.reasons)


def request_for(
    spec: Spec, target: LockTarget, *, previous: str | None = None, options: LockOptions | None = None
) -> ResolveRequest:
    """The resolution request of one lock target."""
    options = options or LockOptions()
    return ResolveRequest(
        requirements=requirements(spec, target.variant),
        python=spec.python,
        platform=target.platform,
        glibc=spec.glibc,
        exclude_newer=spec.exclude_newer,
        index_url=spec.index_url,
        indexes=indexes(spec, target.variant),
        upgrade=options.upgrade,
        upgrade_packages=options.upgrade_packages,
        previous=None if options.upgrade else previous,
    )


def lock(spec: Spec, options: LockOptions | None = None, *, progress: Progress | None = None) -> LockResult:
    """Resolve every lock target of ``spec`` and write lockfiles/ (all or nothing)."""
    options = options or LockOptions()
    report = progress or (lambda target, status: None)
    resolver = get_resolver(options.resolver)
    previous = read_lockset(spec.root)
    bases = pin_bases(spec, options.registry, keep=None if options.upgrade or previous is None else previous.bases)
    lock_dir = spec.root / LOCK_DIR
    all_targets = targets(spec)
    requests = {
        t.name: request_for(spec, t, previous=_previous_pins(lock_dir / t.filename), options=options)
        for t in all_targets
    }

    def resolve(target: LockTarget, request: ResolveRequest) -> Resolution:
        report(target.name, "resolving")
        with scratch_dir(None, "envbuild-lock-") as tmp:
            try:
                resolution = resolver.resolve(request, workdir=Path(tmp))
            except ResolutionError as exc:
                exc.message = f"{target.name}: {exc.message}"
                raise
        report(target.name, "resolved")
        return resolution

    uv = UvResolver()  # the builder stage installs with uv, whatever resolved the project
    tool_requests = {platform: tools_request(spec, platform, uv.version()) for platform in spec.platforms}

    def resolve_tools(platform: str) -> Resolution:
        with scratch_dir(None, "envbuild-lock-") as tmp:
            return uv.resolve(tool_requests[platform], workdir=Path(tmp))

    with ThreadPoolExecutor(max_workers=max(1, len(all_targets) + len(spec.platforms))) as pool:
        futures = {t.name: pool.submit(resolve, t, requests[t.name]) for t in all_targets}
        tool_futures = {p: pool.submit(resolve_tools, p) for p in spec.platforms}
        resolutions = {name: f.result() for name, f in futures.items()}
        tool_resolutions = {p: f.result() for p, f in tool_futures.items()}

    _align_train_and_infer(all_targets, requests, resolutions, resolve)
    warnings = _check_cuda(spec, all_targets, resolutions)
    check_routed_pins({t.name: (resolutions[t.name].pins, requests[t.name].indexes) for t in all_targets})

    texts: dict[str, str] = {}
    entries = []
    for target in all_targets:
        request, resolution = requests[target.name], resolutions[target.name]
        title = target.variant.name if len(spec.platforms) == 1 else f"{target.variant.name} ({target.platform})"
        text = render_lockfile(title=title, request=request, pins=resolution.pins)
        texts[target.filename] = text
        entries.append(_entry(target, request, resolution, text, resolver.name))

    tools = []
    for platform, tool_request in tool_requests.items():
        filename = tools_filename(spec, platform)
        text = render_lockfile(title=f"tools ({platform})", request=tool_request, pins=tool_resolutions[platform].pins)
        texts[filename] = text
        tools.append(
            LockEntry(
                name=filename.removesuffix(".txt"), variant="tools", platform=platform, file=filename,
                sha256=sha256_text(text), inputs=request_inputs(tool_request, uv.name),
                packages={p.name: {"version": p.version, "index": "default"} for p in tool_resolutions[platform].pins},
            )
        )  # fmt: skip

    first = next(iter(resolutions.values()))
    lockset = LockSet(
        envbuild_version=__version__,
        resolver=resolver.name,
        resolver_version=first.resolver_version,
        spec_file=spec.file.relative_to(spec.root).as_posix(),
        spec_sha256=spec.digest,
        python=spec.python,
        exclude_newer=spec.exclude_newer,
        index_url=strip_url_credentials(spec.index_url) if spec.index_url else None,
        indexes=request_inputs(requests[all_targets[0].name], resolver.name)["indexes"] if spec.indexes else [],
        bases=bases,
        entries=tuple(entries),
        tools=tuple(tools),
    )
    texts[META_FILE] = lockset.to_json()
    changed, unchanged = _write_all(lock_dir, texts)
    return LockResult(lockset=lockset, changed=changed, unchanged=unchanged, warnings=tuple(warnings))


def tools_request(spec: Spec, platform: str, uv_version: str) -> ResolveRequest:
    """The request that hash-locks envbuild's build tools (uv) for one platform.

    The spec's cutoff does not apply: the version is envbuild's exact pin, not a choice.
    """
    return ResolveRequest(
        requirements=(f"uv=={uv_version}",),
        python=spec.python,
        platform=platform,
        glibc=spec.glibc,
        exclude_newer=None,
        index_url=spec.index_url,
        indexes=(),
    )


def tools_filename(spec: Spec, platform: str) -> str:
    """``tools.txt``, or ``tools-<arch>.txt`` for a multi-platform spec."""
    return "tools.txt" if len(spec.platforms) == 1 else f"tools-{PLATFORMS[platform]}.txt"


def _previous_pins(path: Path) -> str | None:
    try:
        return pins_only(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def _entry(target: LockTarget, request: ResolveRequest, resolution: Resolution, text: str, resolver: str) -> LockEntry:
    routes = {p: i.name for i in request.indexes for p in i.packages}
    return LockEntry(
        name=target.name,
        variant=target.variant.name,
        platform=target.platform,
        file=target.filename,
        sha256=sha256_text(text),
        inputs=request_inputs(request, resolver),
        packages={p.name: {"version": p.version, "index": routes.get(p.name, "default")} for p in resolution.pins},
    )


def _check_cuda(spec: Spec, all_targets: tuple[LockTarget, ...], resolutions: dict[str, Resolution]) -> list[str]:
    warnings = []
    for target in all_targets:
        pins = resolutions[target.name].pins
        if target.variant.accelerator == "cpu":
            leaked = cpu_violations(pins)
            if leaked:
                raise LockGuardError(
                    f"{target.name}: the CPU lock contains CUDA packages: {', '.join(map(str, leaked))}",
                    hint="a GPU build was resolved for a CPU image: route the framework to its CPU index "
                    '([[indexes]] with accelerators = ["cpu"]) or move the package to [accelerators.gpu]',
                )
            continue
        cuda = spec.accelerator("gpu").cuda
        assert cuda is not None
        wrong, any_cuda = gpu_violations(pins, cuda)
        if wrong:
            raise LockGuardError(
                f"{target.name}: the spec says CUDA {cuda}, but the lock has {', '.join(map(str, wrong))}",
                hint=f"pin packages built for CUDA {cuda.split('.')[0]} (route them to the matching index), "
                "or change cuda in the spec",
            )
        if not any_cuda:
            warnings.append(f"{target.name}: no CUDA library in the lock; the base image must provide CUDA {cuda}")
    return warnings


def _align_train_and_infer(
    all_targets: tuple[LockTarget, ...],
    requests: dict[str, ResolveRequest],
    resolutions: dict[str, Resolution],
    resolve: Callable[[LockTarget, ResolveRequest], Resolution],
) -> None:
    """Make every package shared by train and infer one version, taking training's as the reference."""
    for infer in (t for t in all_targets if t.variant.role == "infer"):
        train = next(
            (
                t
                for t in all_targets
                if t.variant.role == "train"
                and t.variant.accelerator == infer.variant.accelerator
                and t.platform == infer.platform
            ),
            None,
        )
        if train is None:
            continue
        found = skew(resolutions[train.name].pins, resolutions[infer.name].pins)
        if not found:
            continue
        constrained = replace(
            requests[infer.name], constraints=tuple(f"{p.name}=={p.version}" for p in resolutions[train.name].pins)
        )
        try:
            resolutions[infer.name] = resolve(infer, constrained)
        except ResolutionError as exc:
            raise LockGuardError(
                f"{infer.name} cannot use the versions {train.name} was locked with: {', '.join(map(str, found))}",
                details=exc.details,
                hint="a model must be served with the library versions it was trained with: relax the "
                "inference requirement shown above, or pin the package in the shared dependencies",
            ) from None
        requests[infer.name] = constrained
        left = skew(resolutions[train.name].pins, resolutions[infer.name].pins)
        if left:
            raise LockGuardError(f"{infer.name} and {train.name} still disagree: {', '.join(map(str, left))}")


def _write_all(lock_dir: Path, texts: dict[str, str]) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Write every file that changed; the metadata goes last, so it never describes unwritten locks."""
    changed, unchanged = [], []
    for name in sorted(texts, key=lambda n: n == META_FILE):
        path = lock_dir / name
        try:
            same = path.read_text(encoding="utf-8") == texts[name]
        except OSError:
            same = False
        if same:
            unchanged.append(path)
        else:
            atomic_write(path, texts[name])
            changed.append(path)
    return tuple(changed), tuple(unchanged)


def check(spec: Spec) -> tuple[Staleness, ...]:
    """Why each lock target is stale against ``spec`` (empty when all are current); offline."""
    lock_dir = spec.root / LOCK_DIR
    lockset = read_lockset(spec.root)
    all_targets = targets(spec)
    if lockset is None:
        return tuple(Staleness(target=t.name, reasons=("never locked",)) for t in all_targets)
    stale: list[Staleness] = []
    pins: dict[str, tuple[Pin, ...]] = {}
    # Offline: compare what the spec says (kind, reference or recipe, layout path), not resolved digests.
    bases = {a.name: describe_base(a.base) for a in spec.accelerators}
    for target in all_targets:
        reasons = []
        entry = lockset.entry(target.name)
        if entry is None:
            stale.append(Staleness(target=target.name, reasons=("not in the lock (new variant or platform)",)))
            continue
        reasons += _input_changes(entry.inputs, request_inputs(request_for(spec, target), lockset.resolver))
        path = lock_dir / entry.file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            reasons.append(f"{LOCK_DIR}/{entry.file} is missing")
        else:
            if sha256_text(text) != entry.sha256:
                reasons.append(f"{LOCK_DIR}/{entry.file} was edited since it was locked")
            else:
                pins[target.name] = parse_requirements(text, source=str(path))
        accel = target.variant.accelerator
        recorded = {k: v for k, v in lockset.bases.get(accel, {}).items() if k != "digest"}
        if bases.get(accel) != recorded:
            was, now = _describe_base(recorded), _describe_base(bases.get(accel))
            reasons.append(f"the {accel} base changed: {was} -> {now}")
        if reasons:
            stale.append(Staleness(target=target.name, reasons=tuple(reasons)))
    stale += _check_tools(spec, lockset, lock_dir)
    for name in sorted({e.name for e in lockset.entries} - {t.name for t in all_targets}):
        stale.append(Staleness(target=name, reasons=("locked, but no longer in the spec",)))
    for target in all_targets:
        if target.variant.role != "infer" or target.name not in pins:
            continue
        train = target.name.replace("-infer", "-train", 1)
        if train in pins:
            found = skew(pins[train], pins[target.name])
            if found:
                stale.append(
                    Staleness(
                        target=target.name, reasons=(f"versions differ from {train}: {', '.join(map(str, found))}",)
                    )
                )
    return tuple(stale)


def _check_tools(spec: Spec, lockset: LockSet, lock_dir: Path) -> list[Staleness]:
    """The tools lock must exist per platform, be unedited, and pin the uv envbuild runs."""
    out = []
    uv_version = UvResolver().version()
    for platform in spec.platforms:
        name = tools_filename(spec, platform).removesuffix(".txt")
        entry = lockset.tool(platform)
        if entry is None:
            out.append(Staleness(target=name, reasons=("not in the lock",)))
            continue
        reasons = _input_changes(entry.inputs, request_inputs(tools_request(spec, platform, uv_version), "uv"))
        path = lock_dir / entry.file
        if not path.is_file():
            reasons.append(f"{LOCK_DIR}/{entry.file} is missing")
        elif sha256_text(path.read_text(encoding="utf-8")) != entry.sha256:
            reasons.append(f"{LOCK_DIR}/{entry.file} was edited since it was locked")
        if reasons:
            out.append(Staleness(target=name, reasons=tuple(reasons)))
    return out


def _describe_base(base: dict[str, Any] | None) -> str:
    if base is None:
        return "none"
    if base.get("kind") == "debian":
        return f"debian {base['suite']} [{', '.join(base['packages'])}]"
    return f"{base.get('kind')} {base.get('ref') or base.get('path')}"


def _input_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two recorded input sets."""
    if canonical_json(old) == canonical_json(new):
        return []
    out = []
    before, after = set(old.get("requirements", [])), set(new.get("requirements", []))
    out += [f"requirement added: {r}" for r in sorted(after - before)]
    out += [f"requirement removed: {r}" for r in sorted(before - after)]
    for key in sorted((set(old) | set(new)) - {"requirements"}):
        if old.get(key) != new.get(key):
            out.append(f"{key} changed: {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value: Any) -> str:
    text = canonical_json(value).strip().replace("\n", " ")
    return text if len(text) < 120 else text[:117] + "..."

"""``lock``: resolve every variant of a spec in parallel, guard the result, write it atomically.

``check`` answers, offline, whether the locks on disk still match the spec.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envbuild import __version__
from envbuild.errors import EnvbuildError, LockGuardError, ResolutionError, UsageError, strip_url_credentials
from envbuild.fsutil import atomic_write
from envbuild.image.scratch import scratch_dir
from envbuild.lock.bases import pin_bases, pin_bases_offline
from envbuild.lock.guards import gpu_violations, lock_violation, skew
from envbuild.lock.lockfile import (
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
from envbuild.lock.resolvers import get_resolver
from envbuild.lock.resolvers.base import Pin, Resolution, ResolveRequest, parse_requirements
from envbuild.lock.resolvers.uv import UvResolver
from envbuild.lock.simple_index import check_routed_pins
from envbuild.lock.spec import PLATFORMS, Spec
from envbuild.lock.variants import LockTarget, indexes, requirements, targets
from envbuild.registry.options import RegistryOptions

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
    if lock_dir.exists() and not lock_dir.is_dir():  # found now, not after minutes of resolving
        raise UsageError(f"{lock_dir} is not a directory: the locks go there", hint=f"move {lock_dir} away")
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

    lockset, texts = _assemble(
        spec,
        requests,
        {name: resolution.pins for name, resolution in resolutions.items()},
        tool_requests,
        {platform: resolution.pins for platform, resolution in tool_resolutions.items()},
        resolver=resolver.name,
        resolver_version=next(iter(resolutions.values())).resolver_version,
        bases=bases,
    )
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
    except (OSError, UnicodeDecodeError):
        return None


def _assemble(
    spec: Spec,
    requests: dict[str, ResolveRequest],
    pins: dict[str, tuple[Pin, ...]],
    tool_requests: dict[str, ResolveRequest],
    tool_pins: dict[str, tuple[Pin, ...]],
    *,
    resolver: str,
    resolver_version: str,
    bases: dict[str, dict[str, Any]],
) -> tuple[LockSet, dict[str, str]]:
    """Every file of the lock (name under lockfiles/ -> text) for these pins, and the metadata.

    ``lock`` writes what this returns from fresh pins; ``check`` compares what it returns from
    the locked pins with the files on disk. One code path, so that whatever the check accepts,
    a new lock leaves byte for byte.
    """
    all_targets = targets(spec)
    texts: dict[str, str] = {}
    entries = []
    for target in all_targets:
        request = requests[target.name]
        title = target.variant.name if len(spec.platforms) == 1 else f"{target.variant.name} ({target.platform})"
        text = render_lockfile(title=title, request=request, pins=pins[target.name])
        texts[target.filename] = text
        entries.append(_entry(target, request, pins[target.name], text, resolver))
    tools = []
    for platform, tool_request in tool_requests.items():
        filename = tools_filename(spec, platform)
        text = render_lockfile(title=f"tools ({platform})", request=tool_request, pins=tool_pins[platform])
        texts[filename] = text
        tools.append(
            LockEntry(
                name=filename.removesuffix(".txt"), variant="tools", platform=platform, file=filename,
                sha256=sha256_text(text), inputs=request_inputs(tool_request, UvResolver.name),
                packages={p.name: {"version": p.version, "index": "default"} for p in tool_pins[platform]},
            )
        )  # fmt: skip
    lockset = LockSet(
        envbuild_version=__version__,
        resolver=resolver,
        resolver_version=resolver_version,
        spec_file=spec.file.relative_to(spec.root).as_posix(),
        python=spec.python,
        exclude_newer=spec.exclude_newer,
        index_url=strip_url_credentials(spec.index_url) if spec.index_url else None,
        indexes=request_inputs(requests[all_targets[0].name], resolver)["indexes"] if spec.indexes else [],
        bases=bases,
        entries=tuple(entries),
        tools=tuple(tools),
    )
    texts[META_FILE] = lockset.to_json()
    return lockset, texts


def _entry(target: LockTarget, request: ResolveRequest, pins: tuple[Pin, ...], text: str, resolver: str) -> LockEntry:
    routes = {p: i.name for i in request.indexes for p in i.packages}
    return LockEntry(
        name=target.name,
        variant=target.variant.name,
        platform=target.platform,
        file=target.filename,
        sha256=sha256_text(text),
        inputs=request_inputs(request, resolver),
        packages={p.name: {"version": p.version, "index": routes.get(p.name, "default")} for p in pins},
    )


def _check_cuda(spec: Spec, all_targets: tuple[LockTarget, ...], resolutions: dict[str, Resolution]) -> list[str]:
    """Refuse pins the CUDA guards refuse; warn of a GPU lock that carries no CUDA library at all."""
    warnings = []
    for target in all_targets:
        pins, cuda = resolutions[target.name].pins, _cuda(spec, target)
        violation = lock_violation(pins, accelerator=target.variant.accelerator, cuda=cuda)
        if violation is not None:
            raise LockGuardError(f"{target.name}: {violation.message}", hint=violation.hint)
        if cuda is not None and not gpu_violations(pins, cuda)[1]:
            warnings.append(f"{target.name}: no CUDA library in the lock; the base image must provide CUDA {cuda}")
    return warnings


def _cuda(spec: Spec, target: LockTarget) -> str | None:
    return spec.accelerator("gpu").cuda if target.variant.accelerator == "gpu" else None


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
        except (OSError, UnicodeDecodeError):
            same = False
        if same:
            unchanged.append(path)
        else:
            atomic_write(path, texts[name])
            changed.append(path)
    return tuple(changed), tuple(unchanged)


def check(spec: Spec) -> tuple[Staleness, ...]:
    """Why the lock on disk is stale against ``spec`` (empty when it is current); offline.

    Stale is whatever ``lock`` would rewrite or refuse: a changed input or base, an edited or
    missing file, pins the guards refuse under the spec as it is now (CUDA 12 wheels when the
    spec says 13), train/infer skew, or metadata that a new lock would write otherwise. When
    nothing is stale, ``lock`` leaves every file byte for byte.
    """
    lock_dir = spec.root / LOCK_DIR
    lockset = read_lockset(spec.root)
    all_targets = targets(spec)
    if lockset is None:
        return tuple(Staleness(target=t.name, reasons=("never locked",)) for t in all_targets)
    stale: list[Staleness] = []
    pins: dict[str, tuple[Pin, ...]] = {}
    bases, base_changes = pin_bases_offline(spec, lockset.bases)
    for target in all_targets:
        entry = lockset.entry(target.name)
        if entry is None:
            stale.append(Staleness(target=target.name, reasons=("not in the lock (new variant or platform)",)))
            continue
        reasons = _input_changes(entry.inputs, request_inputs(request_for(spec, target), lockset.resolver))
        text, problem = _locked_text(lock_dir, entry)
        if problem:
            reasons.append(problem)
        else:
            pins[target.name] = parse_requirements(text, source=str(lock_dir / entry.file))
            accel = target.variant.accelerator
            violation = lock_violation(pins[target.name], accelerator=accel, cuda=_cuda(spec, target))
            if violation is not None:
                reasons.append(f"{violation.message} ('envbuild lock' refuses this: {violation.hint})")
        if target.variant.accelerator in base_changes:
            reasons.append(base_changes[target.variant.accelerator])
        if reasons:
            stale.append(Staleness(target=target.name, reasons=tuple(reasons)))
    uv_version = UvResolver().version()
    tool_pins: dict[str, tuple[Pin, ...]] = {}
    stale += _check_tools(spec, lockset, lock_dir, uv_version, tool_pins)
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
    if not stale:
        stale += _rewrites(spec, lockset, pins, tool_pins, bases=bases, uv_version=uv_version)
    return tuple(stale)


def _locked_text(lock_dir: Path, entry: LockEntry) -> tuple[str, str | None]:
    """A lockfile's text, or why it cannot be trusted: missing, or edited since it was locked."""
    try:
        text = (lock_dir / entry.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "", f"{LOCK_DIR}/{entry.file} is missing"
    if sha256_text(text) != entry.sha256:
        return "", f"{LOCK_DIR}/{entry.file} was edited since it was locked"
    return text, None


def _check_tools(
    spec: Spec, lockset: LockSet, lock_dir: Path, uv_version: str, tool_pins: dict[str, tuple[Pin, ...]]
) -> list[Staleness]:
    """The tools lock must exist per platform, be unedited, and pin the uv envbuild runs; pins go to ``tool_pins``."""
    out = []
    for platform in spec.platforms:
        name = tools_filename(spec, platform).removesuffix(".txt")
        entry = lockset.tool(platform)
        if entry is None:
            out.append(Staleness(target=name, reasons=("not in the lock",)))
            continue
        reasons = _input_changes(entry.inputs, request_inputs(tools_request(spec, platform, uv_version), "uv"))
        text, problem = _locked_text(lock_dir, entry)
        if problem:
            reasons.append(problem)
        else:
            tool_pins[platform] = parse_requirements(text, source=str(lock_dir / entry.file))
        if reasons:
            out.append(Staleness(target=name, reasons=tuple(reasons)))
    return out


def _rewrites(
    spec: Spec,
    lockset: LockSet,
    pins: dict[str, tuple[Pin, ...]],
    tool_pins: dict[str, tuple[Pin, ...]],
    *,
    bases: dict[str, dict[str, Any]],
    uv_version: str,
) -> list[Staleness]:
    """The files a new lock would still write when every input matches: what it would write from the
    locked pins (by the code that writes them) against what is on disk."""
    try:
        resolver_version = get_resolver(lockset.resolver).version()
    except EnvbuildError as exc:
        return [Staleness(target=META_FILE, reasons=(f"the lock's resolver cannot run here: {exc.message}",))]
    _, texts = _assemble(
        spec,
        {t.name: request_for(spec, t) for t in targets(spec)},
        pins,
        {platform: tools_request(spec, platform, uv_version) for platform in spec.platforms},
        tool_pins,
        resolver=lockset.resolver,
        resolver_version=resolver_version,
        bases=bases,
    )
    out = []
    for name, text in texts.items():
        try:
            current = (spec.root / LOCK_DIR / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = ""
        if current == text:
            continue
        what = "its text"
        if name == META_FILE:
            old, new = json.loads(current), json.loads(text)
            what = "its " + ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
        reason = f"would be written anew: {what} not as this envbuild writes it (another envbuild, or a hand edit)"
        out.append(Staleness(target=f"{LOCK_DIR}/{name}", reasons=(reason,)))
    return out


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

"""``lock``: resolve every variant of a spec in parallel, guard the result, write it atomically.

Whether the locks on disk still match the spec is :mod:`envbuild.lock.staleness`'s question, offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from envbuild.errors import LockGuardError, ResolutionError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.lock.assemble import assemble, request_for, target_cuda, tools_request
from envbuild.lock.bases import pin_bases
from envbuild.lock.guards import gpu_lock_warning, lock_violation, skew
from envbuild.lock.lockfile import LOCK_DIR, META_FILE, LockSet, pins_only, read_lockset
from envbuild.lock.resolvers import get_resolver
from envbuild.lock.resolvers.base import Resolution, ResolveRequest
from envbuild.lock.resolvers.uv import UvResolver
from envbuild.lock.simple_index import check_routed_pins
from envbuild.lock.spec import Spec
from envbuild.lock.variants import LockTarget, targets, variants
from envbuild.progress import SILENT, Progress
from envbuild.registry.options import RegistryOptions
from envbuild.scratch import scratch_dir


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
    removed: tuple[Path, ...] = ()  # lockfiles of targets the spec no longer has (a variant left out)
    warnings: tuple[str, ...]


def lock(spec: Spec, options: LockOptions | None = None, *, progress: Progress = SILENT) -> LockResult:
    """Resolve every lock target of ``spec`` and write lockfiles/ (all or nothing)."""
    options = options or LockOptions()
    resolver = get_resolver(options.resolver)
    previous = read_lockset(spec.root)
    bases = pin_bases(spec, options.registry, keep=None if options.upgrade or previous is None else previous.bases)
    lock_dir = spec.root / LOCK_DIR
    if lock_dir.exists() and not lock_dir.is_dir():  # found now, not after minutes of resolving
        raise UsageError(f"{lock_dir} is not a directory: the locks go there", hint=f"move {lock_dir} away")
    all_targets = targets(spec)
    requests = {
        t.name: request_for(
            spec,
            t,
            previous=_previous_pins(lock_dir / t.filename),
            upgrade=options.upgrade,
            upgrade_packages=options.upgrade_packages,
        )
        for t in all_targets
    }

    def resolve(target: LockTarget, request: ResolveRequest) -> Resolution:
        with (
            progress.phase(target.name, "resolving", items="packages") as phase,
            scratch_dir(None, "envbuild-lock-") as tmp,
        ):
            try:
                resolution = resolver.resolve(request, workdir=Path(tmp))
            except ResolutionError as exc:
                exc.message = f"{target.name}: {exc.message}"
                raise
            phase.item(len(resolution.pins))
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

    lockset, texts = assemble(
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
    removed = _remove_dropped(lock_dir, previous, texts)
    return LockResult(lockset=lockset, changed=changed, unchanged=unchanged, removed=removed, warnings=tuple(warnings))


def _previous_pins(path: Path) -> str | None:
    try:
        return pins_only(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def _check_cuda(spec: Spec, all_targets: tuple[LockTarget, ...], resolutions: dict[str, Resolution]) -> list[str]:
    """Refuse pins the CUDA guards refuse; warn of a GPU lock whose CUDA is missing or needless."""
    warnings = []
    for target in all_targets:
        pins, cuda = resolutions[target.name].pins, target_cuda(spec, target)
        violation = lock_violation(pins, accelerator=target.variant.accelerator, cuda=cuda)
        if violation is not None:
            raise LockGuardError(f"{target.name}: {violation.message}", hint=violation.hint)
        if cuda is not None:
            kept = tuple(v.name for v in variants(spec) if v != target.variant)
            warning = gpu_lock_warning(pins, cuda=cuda, base=spec.accelerator("gpu").base, kept=kept)
            if warning is not None:
                warnings.append(f"{target.name}: {warning}")
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


def _remove_dropped(lock_dir: Path, previous: LockSet | None, texts: dict[str, str]) -> tuple[Path, ...]:
    """Delete the lockfiles the previous lock wrote and this one does not (after the metadata moved on).

    Only files the previous metadata names go: anything else in lockfiles/ is not envbuild's.
    """
    if previous is None:
        return ()
    dropped = sorted({e.file for e in (*previous.entries, *previous.tools)} - set(texts))
    removed = []
    for name in dropped:
        path = lock_dir / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return tuple(removed)


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

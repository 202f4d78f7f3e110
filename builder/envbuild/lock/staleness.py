"""``check``: whether the lock on disk still matches the spec, offline.

The build asks this before every image (:mod:`envbuild.image.build`), so it reads the lock and
runs the resolvers only for their versions: it never resolves, and never loads the resolving
machinery of :mod:`envbuild.lock.resolve`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.errors import EnvbuildError
from envbuild.lock.assemble import assemble, request_for, target_cuda, tools_filename, tools_request
from envbuild.lock.bases import pin_bases_offline
from envbuild.lock.guards import lock_violation, skew
from envbuild.lock.lockfile import (
    LOCK_DIR,
    META_FILE,
    LockEntry,
    LockSet,
    PinnedBase,
    canonical_json,
    read_lockset,
    request_inputs,
    sha256_text,
)
from envbuild.lock.resolvers import get_resolver
from envbuild.lock.resolvers.base import Pin, parse_requirements
from envbuild.lock.resolvers.uv import UvResolver
from envbuild.lock.spec import Spec
from envbuild.lock.variants import targets


@dataclass(frozen=True, kw_only=True)
class Staleness:
    """Why one lock target no longer matches the spec."""

    target: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.target}: " + "; ".join(self.reasons)


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
            violation = lock_violation(pins[target.name], accelerator=accel, cuda=target_cuda(spec, target))
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
    bases: dict[str, PinnedBase],
    uv_version: str,
) -> list[Staleness]:
    """The files a new lock would still write when every input matches: what it would write from the
    locked pins (by the code that writes them) against what is on disk."""
    try:
        resolver_version = get_resolver(lockset.resolver).version()
    except EnvbuildError as exc:
        return [Staleness(target=META_FILE, reasons=(f"the lock's resolver cannot run here: {exc.message}",))]
    _, texts = assemble(
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
            out.append(f"{key} changed: {_changed(old.get(key), new.get(key))}")
    return out


def _changed(old: Any, new: Any) -> str:
    """``old -> new``, each cut to a line; two long values that begin alike are cut around where they differ."""
    a, b = (canonical_json(v).strip().replace("\n", " ") for v in (old, new))
    if len(a) < 120 and len(b) < 120:
        return f"{a} -> {b}"
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, start - 40)
    return f"{_cut(a, start)} -> {_cut(b, start)}"


def _cut(text: str, start: int) -> str:
    """About 117 characters of ``text`` from ``start``, with "..." where it was cut."""
    piece = text[start : start + 117]
    return ("..." if start else "") + piece + ("..." if start + 117 < len(text) else "")

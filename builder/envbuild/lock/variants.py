"""Variants (accelerator x role) and what each one asks the resolver for.

A variant's requirements are the shared dependencies, plus its role's, plus its
accelerator's, with the accelerator's package swaps applied
(``onnxruntime`` -> ``onnxruntime-gpu[cuda]``). A replacement without a version
specifier inherits the one it replaces, so ``onnxruntime>=1.20`` becomes
``onnxruntime-gpu[cuda]>=1.20``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbuild.errors import UsageError
from envbuild.lock.spec import ACCELERATORS, PLATFORMS, ROLES, Accelerator, Index, Role, Spec


@dataclass(frozen=True, kw_only=True, order=True)
class Variant:
    """One of the (up to) four images: cpu-train, cpu-infer, gpu-train, gpu-infer."""

    accelerator: Accelerator
    role: Role

    @property
    def name(self) -> str:
        """The variant's name, e.g. ``gpu-infer``."""
        return f"{self.accelerator}-{self.role}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, kw_only=True)
class LockTarget:
    """One lockfile: a variant resolved for one platform."""

    variant: Variant
    platform: str  # OCI platform, e.g. linux/amd64
    filename: str  # under lockfiles/

    @property
    def name(self) -> str:
        """``cpu-infer``, or ``cpu-infer-aarch64`` for a multi-platform spec."""
        return self.filename.removesuffix(".txt")


def variants(spec: Spec) -> tuple[Variant, ...]:
    """Every variant the spec defines, in a fixed order (cpu before gpu, train before infer)."""
    declared_roles = {r.name for r in spec.roles}
    declared_accels = {a.name for a in spec.accelerators}
    return tuple(
        Variant(accelerator=a, role=r)
        for a in ACCELERATORS
        if a in declared_accels
        for r in ROLES
        if r in declared_roles
    )


def select(spec: Spec, names: tuple[str, ...]) -> tuple[Variant, ...]:
    """The variants named in ``names`` (all when empty); an unknown name is a usage error."""
    every = variants(spec)
    if not names:
        return every
    by_name = {v.name: v for v in every}
    chosen = []
    for name in names:
        if name not in by_name:
            near = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise UsageError(f"unknown variant {name!r}", hint=f"{hint}this spec defines: {', '.join(by_name)}")
        chosen.append(by_name[name])
    return tuple(sorted(set(chosen), key=every.index))


def targets(spec: Spec, chosen: tuple[Variant, ...] | None = None) -> tuple[LockTarget, ...]:
    """One lock target per variant and platform; file names carry the platform only when several."""
    out = []
    for variant in chosen if chosen is not None else variants(spec):
        for platform in spec.platforms:
            suffix = "" if len(spec.platforms) == 1 else f"-{PLATFORMS[platform]}"
            out.append(LockTarget(variant=variant, platform=platform, filename=f"{variant.name}{suffix}.txt"))
    return tuple(out)


def requirements(spec: Spec, variant: Variant) -> tuple[str, ...]:
    """The requirements of ``variant``: shared + role + accelerator, swaps applied, sorted."""
    accel = spec.accelerator(variant.accelerator)
    wanted = spec.dependencies + spec.role(variant.role).dependencies + accel.dependencies
    swaps = dict(accel.replace)
    out = []
    for text in wanted:
        req = Requirement(text)
        swap = swaps.get(canonicalize_name(req.name))
        if swap is not None:
            new = Requirement(swap)
            if not new.specifier:
                new.specifier = req.specifier
            if new.marker is None:
                new.marker = req.marker
            req = new
        out.append(str(req))
    return tuple(sorted(set(out), key=lambda r: (canonicalize_name(Requirement(r).name), r)))


def indexes(spec: Spec, variant: Variant) -> tuple[Index, ...]:
    """The extra indexes that apply to ``variant``'s accelerator."""
    return tuple(i for i in spec.indexes if variant.accelerator in i.accelerators)

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
from typing import Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbuild.errors import UsageError
from envbuild.lock.spec import ACCELERATORS, PLATFORMS, ROLES, Accelerator, Index, Role, Spec, replace_key


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


# Every variant a spec can define, in the fixed order (cpu before gpu, train before infer).
ALL_VARIANTS = tuple(Variant(accelerator=a, role=r) for a in ACCELERATORS for r in ROLES)


def variants(spec: Spec) -> tuple[Variant, ...]:
    """Every variant the spec defines, in a fixed order (cpu before gpu, train before infer).

    That is every declared role x declared accelerator, less what the spec's ``variants``
    leaves out. Lock, render, build, CI and staleness all ask this, so a variant left out is
    left out everywhere.
    """
    declared_roles = {r.name for r in spec.roles}
    declared_accels = {a.name for a in spec.accelerators}
    return tuple(
        Variant(accelerator=a, role=r)
        for a in ACCELERATORS
        if a in declared_accels
        for r in ROLES
        if r in declared_roles and (spec.variants is None or f"{a}-{r}" in spec.variants)
    )


def left_out(spec: Spec) -> tuple[Variant, ...]:
    """The variants the spec's roles and accelerators define but its ``variants`` leaves out."""
    kept = variants(spec)
    declared = {(a.name, r.name) for a in spec.accelerators for r in spec.roles}
    return tuple(v for v in ALL_VARIANTS if (v.accelerator, v.role) in declared and v not in kept)


class NoVariantError(UsageError):
    """The variants asked for (by accelerator and role) are not in the spec. Exit 2."""


def select(
    spec: Spec,
    names: tuple[str, ...] = (),
    *,
    accelerator: Accelerator | Literal["all"] | None = None,
    role: Role | None = None,
) -> tuple[Variant, ...]:
    """The one place that chooses variants, in the fixed order, each once.

    ``names`` given: exactly those (an unknown name is a usage error naming the nearest).
    Otherwise the filters: ``accelerator`` "cpu" or "gpu" (``None`` or "all": every
    accelerator) and ``role``. Filters that leave nothing raise :class:`NoVariantError`
    rather than choose something else: ``envbuild image --gpu`` on a CPU-only spec builds nothing.
    """
    every = variants(spec)
    if names:
        if accelerator is not None or role is not None:
            raise ValueError("select() takes variant names or filters, not both")
        return _named(every, names, spec)
    chosen = tuple(v for v in every if accelerator in (None, "all", v.accelerator) and role in (None, v.role))
    if not chosen:
        if accelerator not in (None, "all") and accelerator not in {v.accelerator for v in every}:
            reason = f"this spec defines no {accelerator} accelerator"
        elif role is not None and role not in {v.role for v in every}:
            reason = f"this spec defines no {role} role"
        else:  # both filters match variants, but not the same one: the spec's variants left it out
            reason = f"the spec leaves {accelerator}-{role} out (variants = [{', '.join(v.name for v in every)}])"
        raise NoVariantError(
            f"no variant to build: {reason}",
            hint=f"its variants: {', '.join(v.name for v in every)}; name one with --variant, or use --all",
        )
    return chosen


def _named(every: tuple[Variant, ...], names: tuple[str, ...], spec: Spec) -> tuple[Variant, ...]:
    by_name = {v.name: v for v in every}
    omitted = {v.name for v in left_out(spec)}
    chosen = []
    for name in names:
        if name in omitted:
            raise NoVariantError(
                f"variant {name!r} is left out by the spec (variants = [{', '.join(by_name)}])",
                hint=f"add {name!r} to variants in {spec.file.name}, or build one of: {', '.join(by_name)}",
            )
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
        # "jax[cpu]" replaces the requirement with exactly those extras; a bare name, every one.
        swap = swaps.get(replace_key(req.name, req.extras)) or swaps.get(canonicalize_name(req.name))
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

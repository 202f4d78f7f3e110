"""Checks on resolved locks that no resolver makes on its own.

- A CPU lock must not carry CUDA: a GPU build of torch or onnxruntime that slipped
  into a CPU image costs gigabytes and hides a routing mistake.
- A GPU lock's CUDA major must be the spec's: wheels built for CUDA 12 do not load
  CUDA 13 libraries, and the failure shows only on a GPU, at serving time.
- A package shared by the train and infer images of one accelerator must have one
  version: a model trained with one numpy or onnxruntime and served with another is
  a classic, silent ML bug (training/serving skew).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envbuild.lock.resolvers.base import Pin

_CUDA_SUFFIX = re.compile(r"-cu(?P<major>\d{2})$")  # nvidia-cudnn-cu12, cupy-cuda12x is below
_CUPY = re.compile(r"^cupy-cuda(?P<major>\d{2})")
_JAX_PLUGIN = re.compile(r"^jax-cuda(?P<major>\d{2})-")
_LOCAL_CU = re.compile(r"\+cu(?P<digits>\d{3,})")
# Packages whose own major version is the CUDA major (the un-suffixed CUDA 13 wheels).
_VERSION_IS_CUDA = re.compile(r"^nvidia-(cuda-runtime|cuda-nvrtc|cublas|nvjitlink|cuda-cupti)$")


@dataclass(frozen=True, kw_only=True)
class CudaPackage:
    """A locked package that is CUDA-specific, and the CUDA major it targets when known."""

    name: str
    version: str
    major: int | None

    def __str__(self) -> str:
        major = f" (CUDA {self.major})" if self.major is not None else ""
        return f"{self.name}=={self.version}{major}"


def cuda_packages(pins: tuple[Pin, ...]) -> list[CudaPackage]:
    """Every pin that is CUDA-specific: nvidia-*, triton, cupy-cudaNN, jax-cudaNN-*, +cuNNN builds."""
    found = []
    for pin in pins:
        major: int | None = None
        local = _LOCAL_CU.search(pin.version)
        if local:
            major = int(local["digits"][:2])
        elif (m := _CUDA_SUFFIX.search(pin.name) or _CUPY.match(pin.name) or _JAX_PLUGIN.match(pin.name)) is not None:
            major = int(m["major"])
        elif _VERSION_IS_CUDA.match(pin.name):
            major = int(pin.version.split(".")[0])
        elif not (pin.name.startswith("nvidia-") or pin.name == "triton"):
            continue
        found.append(CudaPackage(name=pin.name, version=pin.version, major=major))
    return found


def cpu_violations(pins: tuple[Pin, ...]) -> list[CudaPackage]:
    """CUDA packages in what should be a CPU lock."""
    return cuda_packages(pins)


def gpu_violations(pins: tuple[Pin, ...], cuda: str) -> tuple[list[CudaPackage], bool]:
    """CUDA packages whose major disagrees with ``cuda``, and whether any CUDA package was seen."""
    want = int(cuda.split(".")[0])
    found = cuda_packages(pins)
    return [p for p in found if p.major is not None and p.major != want], bool(found)


@dataclass(frozen=True, kw_only=True)
class Violation:
    """Why the guards refuse one target's pins, and how to fix it."""

    message: str
    hint: str


def lock_violation(pins: tuple[Pin, ...], *, accelerator: str, cuda: str | None) -> Violation | None:
    """What the CUDA guards refuse in one target's pins, or None; ``lock`` and ``lock --check`` both ask this."""
    if accelerator == "cpu":
        leaked = cpu_violations(pins)
        if not leaked:
            return None
        return Violation(
            message=f"the CPU lock contains CUDA packages: {', '.join(map(str, leaked))}",
            hint="a GPU build was resolved for a CPU image: route the framework to its CPU index "
            '([[indexes]] with accelerators = ["cpu"]) or move the package to [accelerators.gpu]',
        )
    assert cuda is not None, "the spec requires cuda for a GPU accelerator"
    wrong, _ = gpu_violations(pins, cuda)
    if not wrong:
        return None
    return Violation(
        message=f"the spec says CUDA {cuda}, but the lock has {', '.join(map(str, wrong))}",
        hint=f"pin packages built for CUDA {cuda.split('.')[0]} (route them to the matching index), "
        "or change cuda in the spec",
    )


@dataclass(frozen=True, kw_only=True)
class Skew:
    """One package locked at different versions for training and inference."""

    name: str
    train: str
    infer: str

    def __str__(self) -> str:
        return f"{self.name}: train {self.train}, infer {self.infer}"


def skew(train: tuple[Pin, ...], infer: tuple[Pin, ...]) -> list[Skew]:
    """Packages present in both locks with different versions."""
    train_versions = {p.name: p.version for p in train}
    return [
        Skew(name=p.name, train=train_versions[p.name], infer=p.version)
        for p in infer
        if p.name in train_versions and train_versions[p.name] != p.version
    ]

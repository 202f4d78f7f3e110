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

import json
import re
from dataclasses import dataclass

from envbuild.lock.resolvers.base import Pin
from envbuild.lock.spec import Base

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
        culprits = pulled_in_by(pins, {p.name for p in leaked})
        gpu_build = next((c for c in culprits if c.endswith("-gpu")), None)
        cpu_build = gpu_build.removesuffix("-gpu") if gpu_build else None
        swap = f'"{gpu_build}" = "{cpu_build}"' if gpu_build else '"onnxruntime-gpu" = "onnxruntime"'
        through = [c for c in culprits if c not in {p.name for p in leaked}]
        return Violation(
            message=f"the CPU lock contains CUDA packages: {', '.join(map(str, leaked))}"
            + (f" (through {', '.join(through)})" if through else ""),
            hint="a GPU build was resolved for a CPU image: swap it for its CPU build in [accelerators.cpu] "
            f"with replace (e.g. replace = {{ {swap} }}), route the framework to its CPU index "
            '([[indexes]] with accelerators = ["cpu"]), or move the package to [accelerators.gpu]',
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


def pulled_in_by(pins: tuple[Pin, ...], names: set[str]) -> list[str]:
    """The spec's direct requirements that bring ``names`` into the lock (following each pin's "via")."""
    by_name = {p.name: p for p in pins}
    seen, todo, direct = set(), list(names), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        if "spec" in by_name[name].via:
            direct.add(name)
        todo += [v for v in by_name[name].via if v not in ("spec", "constraint")]
    return sorted(direct)


# Packages that run on a GPU through CUDA libraries they load at run time; without those
# libraries they fall back to the CPU or fail. Wheels of the nvidia-* family carry them, and
# so do builds with a +cuNNN local version (they bundle or pull them).
_CUDA_USERS = re.compile(
    r"^(torch|onnxruntime-gpu|tensorflow|tensorflow-gpu|paddlepaddle-gpu|mxnet-cu\d+|cupy-cuda\d+x?"
    r"|jax-cuda\d+-(plugin|pjrt)|triton)$"
)
# Debian packages that put CUDA's user-space libraries into a debian base (non-free).
_DEBIAN_CUDA = re.compile(r"^(nvidia-cuda-toolkit|nvidia-cuda-dev|libcudart\d+|libcublas\d+|libcudnn\d*)")


def gpu_users(pins: tuple[Pin, ...]) -> list[Pin]:
    """Pins that use a GPU through CUDA (a +cpu build of one does not)."""
    return [p for p in pins if _CUDA_USERS.match(p.name) and "+cpu" not in p.version]


def cuda_libraries(pins: tuple[Pin, ...]) -> list[Pin]:
    """Pins that bring CUDA's libraries: nvidia-* wheels and +cuNNN builds."""
    return [p for p in pins if p.name.startswith("nvidia-") or _LOCAL_CU.search(p.version)]


def base_provides_cuda(base: Base) -> bool:
    """Whether a base may hold CUDA's libraries: an image may (it is not looked into), a Debian
    recipe only when it installs them."""
    return base.kind != "debian" or any(_DEBIAN_CUDA.match(p) for p in base.packages)


def gpu_lock_warning(pins: tuple[Pin, ...], *, cuda: str, base: Base, kept: tuple[str, ...]) -> str | None:
    """What a GPU lock should be warned of, or None.

    Only where it means something: CUDA packages locked without CUDA's libraries, on a base
    that cannot provide them (a Debian recipe without them: an image base may well be a CUDA
    image, and envbuild does not look inside it). A lock without any GPU package needs no CUDA
    at all, so "no CUDA library" would be noise there; what it says instead is that the
    variant is the CPU image on a GPU base, which the spec can leave out (``kept``: the
    variants the spec would keep without it).
    """
    users, libraries = gpu_users(pins), cuda_libraries(pins)
    if not users and not libraries and not cuda_packages(pins):
        return (
            "no locked package is known to use a GPU: the image is the CPU one on the GPU base; if it needs no "
            f"GPU, leave it out with variants = {json.dumps(list(kept))} in the spec"
        )
    if libraries or base_provides_cuda(base):
        return None
    names = ", ".join(f"{p.name}=={p.version}" for p in users) or ", ".join(p.name for p in cuda_packages(pins))
    return (
        f"{names} load CUDA {cuda} libraries at run time, but the lock has none (no nvidia-* wheel) and the "
        "debian base installs none: install them as wheels (e.g. onnxruntime-gpu[cuda,cudnn], jax[cuda12], "
        'tensorflow[and-cuda]) or use a CUDA base image (base = { image = "..." })'
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

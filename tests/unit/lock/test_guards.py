"""Unit tests for envbuild.lock.guards: CUDA detection, CPU/GPU violations, train/infer skew."""

from __future__ import annotations

import pytest

from envbuild.lock.guards import (
    CudaPackage,
    Skew,
    cpu_violations,
    cuda_packages,
    gpu_lock_warning,
    gpu_violations,
    lock_violation,
    skew,
)
from envbuild.lock.resolvers.base import Pin
from envbuild.lock.spec import Base

HASH = "sha256:" + "0" * 64


def pin(name: str, version: str) -> Pin:
    """A pin with one dummy hash."""
    return Pin(name=name, version=version, hashes=(HASH,))


@pytest.mark.parametrize(
    ("name", "version", "major"),
    [
        pytest.param("nvidia-cudnn-cu12", "9.1.0.70", 12, id="cu12-suffix"),
        pytest.param("nvidia-nccl-cu13", "2.27.7", 13, id="cu13-suffix"),
        pytest.param("nvidia-cublas", "13.0.0.19", 13, id="unsuffixed-cuda13"),
        pytest.param("nvidia-cuda-runtime", "13.0.48", 13, id="cuda-runtime-13"),
        pytest.param("torch", "2.5.1+cu121", 12, id="torch-local-cu121"),
        pytest.param("torch", "2.4.0+cu118", 11, id="torch-local-cu118"),
        pytest.param("triton", "3.1.0", None, id="triton"),
        pytest.param("nvidia-cufft", "12.0.0.15", None, id="nvidia-unknown-major"),
        pytest.param("cupy-cuda12x", "13.3.0", 12, id="cupy"),
        pytest.param("jax-cuda12-plugin", "0.4.35", 12, id="jax-plugin"),
        pytest.param("jax-cuda12-pjrt", "0.4.35", 12, id="jax-pjrt"),
    ],
)
def test_cuda_package_detected(name: str, version: str, major: int | None) -> None:
    """Each CUDA-specific pin is found, with the CUDA major it targets."""
    assert cuda_packages((pin(name, version),)) == [CudaPackage(name=name, version=version, major=major)]


@pytest.mark.parametrize(
    ("name", "version"),
    [
        pytest.param("torch", "2.5.1+cpu", id="torch-cpu"),
        pytest.param("torch", "2.5.1", id="torch-plain"),
        pytest.param("numpy", "2.1.3", id="numpy"),
        pytest.param("onnxruntime", "1.20.1", id="onnxruntime"),
        pytest.param("jax", "0.4.35", id="jax"),
    ],
)
def test_not_cuda(name: str, version: str) -> None:
    """CPU builds and ordinary packages are not CUDA packages."""
    assert cuda_packages((pin(name, version),)) == []
    assert cpu_violations((pin(name, version),)) == []


def test_cpu_violations_lists_every_leak_in_order() -> None:
    """A CPU lock with CUDA packages reports each of them."""
    pins = (pin("numpy", "2.1.3"), pin("nvidia-cudnn-cu12", "9.1.0.70"), pin("triton", "3.1.0"))
    found = cpu_violations(pins)
    assert [str(p) for p in found] == ["nvidia-cudnn-cu12==9.1.0.70 (CUDA 12)", "triton==3.1.0"]


def test_gpu_violations_mismatched_major() -> None:
    """With cuda = "13", CUDA 12 packages are violations; unknown majors are not."""
    pins = (
        pin("nvidia-cublas", "13.0.0.19"),
        pin("nvidia-cudnn-cu12", "9.1.0.70"),
        pin("torch", "2.5.1+cu121"),
        pin("triton", "3.1.0"),
    )
    wrong, seen = gpu_violations(pins, "13")
    assert [(p.name, p.major) for p in wrong] == [("nvidia-cudnn-cu12", 12), ("torch", 12)]
    assert seen is True


def test_gpu_violations_minor_version_in_spec() -> None:
    """cuda = "12.8" compares by major: CUDA 12 packages are fine."""
    wrong, seen = gpu_violations((pin("nvidia-cudnn-cu12", "9.1.0.70"),), "12.8")
    assert wrong == []
    assert seen is True


def test_gpu_violations_no_cuda_at_all() -> None:
    """A GPU lock without any CUDA package: no violation, but nothing seen either."""
    assert gpu_violations((pin("numpy", "2.1.3"),), "12") == ([], False)


def test_skew_reports_shared_packages_with_different_versions() -> None:
    """Only packages in both locks, at different versions, are skew."""
    train = (pin("numpy", "2.1.0"), pin("onnxruntime", "1.20.1"), pin("scikit-learn", "1.5.2"))
    infer = (pin("fastapi", "0.115.0"), pin("numpy", "2.1.3"), pin("onnxruntime", "1.20.1"))
    found = skew(train, infer)
    assert found == [Skew(name="numpy", train="2.1.0", infer="2.1.3")]
    assert str(found[0]) == "numpy: train 2.1.0, infer 2.1.3"


def test_skew_none_when_aligned() -> None:
    """Identical versions (and disjoint packages) are not skew."""
    assert skew((pin("numpy", "2.1.3"),), (pin("numpy", "2.1.3"), pin("fastapi", "0.115.0"))) == []


def via(name: str, version: str, *origins: str) -> Pin:
    """A pin that came in through ``origins`` ("spec" for a direct requirement)."""
    return Pin(name=name, version=version, hashes=(HASH,), via=tuple(sorted(origins)))


def test_the_cpu_guard_names_what_pulls_cuda_in_and_suggests_replace() -> None:
    pins = (
        via("onnxruntime-gpu", "1.23.2", "spec"),
        via("nvidia-cudnn-cu12", "9.1.0.70", "onnxruntime-gpu"),
        via("nvidia-cublas-cu12", "12.4.5.8", "nvidia-cudnn-cu12"),
    )
    violation = lock_violation(pins, accelerator="cpu", cuda=None)
    assert violation is not None
    assert violation.message.endswith("(through onnxruntime-gpu)")
    assert 'replace (e.g. replace = { "onnxruntime-gpu" = "onnxruntime" })' in violation.hint
    assert "[accelerators.cpu]" in violation.hint and "CPU index" in violation.hint
    # A leak that is itself the direct requirement is not said twice; the example stays generic.
    direct = lock_violation((via("nvidia-cuda-runtime-cu12", "12.8.90", "spec"),), accelerator="cpu", cuda=None)
    assert direct is not None and "through" not in direct.message
    assert 'e.g. replace = { "onnxruntime-gpu" = "onnxruntime" }' in direct.hint


DEBIAN = Base(debian="bookworm", packages=("python3",))
KEPT = ("cpu-train", "cpu-infer", "gpu-train")


def test_no_cuda_warning_where_the_libraries_are_wheels() -> None:
    pins = (pin("onnxruntime-gpu", "1.23.2"), pin("nvidia-cudnn-cu13", "9.13.0.50"), pin("numpy", "2.3.4"))
    assert gpu_lock_warning(pins, cuda="13", base=DEBIAN, kept=KEPT) is None
    assert gpu_lock_warning((pin("torch", "2.9.0+cu128"),), cuda="12", base=DEBIAN, kept=KEPT) is None


def test_a_gpu_package_without_cuda_libraries_warns_only_on_a_base_without_them() -> None:
    pins = (pin("onnxruntime-gpu", "1.23.2"), pin("numpy", "2.3.4"))
    warning = gpu_lock_warning(pins, cuda="12", base=DEBIAN, kept=KEPT)
    assert warning is not None and warning.startswith("onnxruntime-gpu==1.23.2 load CUDA 12 libraries at run time")
    assert "onnxruntime-gpu[cuda,cudnn]" in warning and "CUDA base image" in warning
    # An image base may well be a CUDA image (envbuild does not look inside); a recipe may install CUDA.
    assert gpu_lock_warning(pins, cuda="12", base=Base(image="registry.example/cuda:12.8"), kept=KEPT) is None
    assert gpu_lock_warning(pins, cuda="12", base=Base(oci_layout="bases/cuda"), kept=KEPT) is None
    with_cuda = Base(debian="bookworm", packages=("python3", "libcudart12", "libcublas12"))
    assert gpu_lock_warning(pins, cuda="12", base=with_cuda, kept=KEPT) is None


def test_a_variant_without_any_gpu_package_is_told_it_can_be_left_out() -> None:
    pins = (pin("numpy", "2.3.4"), pin("fastapi", "0.120.0"), pin("torch", "2.9.0+cpu"))
    warning = gpu_lock_warning(pins, cuda="12", base=Base(image="registry.example/cuda:12.8"), kept=KEPT)
    assert warning is not None and "no CUDA library" not in warning
    assert warning.startswith("no locked package is known to use a GPU")
    assert 'leave it out with variants = ["cpu-train", "cpu-infer", "gpu-train"] in the spec' in warning

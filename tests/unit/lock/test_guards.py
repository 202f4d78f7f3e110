"""Unit tests for envbuild.lock.guards: CUDA detection, CPU/GPU violations, train/infer skew."""

from __future__ import annotations

import pytest

from envbuild.lock.guards import CudaPackage, Skew, cpu_violations, cuda_packages, gpu_violations, skew
from envbuild.lock.resolvers.base import Pin

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

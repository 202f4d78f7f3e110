"""Top-level modules and owners of installed distributions, from their RECORDs (envbuild.image.checks.installed)."""

from __future__ import annotations

from pathlib import Path

from envbuild.image.checks.installed import distributions, owners, site_packages, top_level_modules
from envbuild.image.checks.rootfs import RootFS

SITE = "opt/venv/lib/python3.11/site-packages"


def test_packages_modules_and_extension_modules() -> None:
    record = [
        "numpy/__init__.py", "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
        "numpy.libs/libscipy_openblas64_-ff651d7f.so", "numpy-2.4.6.dist-info/RECORD", "../../../bin/f2py",
        "__pycache__/six.cpython-311.pyc", "six.py", "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
        "typing_extensions.abi3.so", "distutils-precedence.pth", "tests/__init__.py", "numpy-2.4.6.data/x",
    ]  # fmt: skip
    assert top_level_modules(record) == ("numpy", "six", "typing_extensions")


def test_private_names_count_when_there_is_nothing_else() -> None:
    assert top_level_modules(["_cffi_backend.cpython-311-x86_64-linux-gnu.so", "_x/__init__.py"]) == (
        "_cffi_backend", "_x",
    )  # fmt: skip
    assert top_level_modules(["_distutils_hack/__init__.py", "setuptools/__init__.py"]) == ("setuptools",)


def test_namespace_packages_stand_for_their_subpackages() -> None:
    record = [
        "google/protobuf/__init__.py", "google/protobuf/message.py", "google/_upb/_message.abi3.so",
        "nvidia/cu13/lib/libcublas.so.13", "nvidia/cublas/__init__.py",
    ]  # fmt: skip
    assert top_level_modules(record) == ("google.protobuf", "nvidia.cublas")
    assert top_level_modules(["nvidia/cu13/lib/libcudart.so.13", "nvidia/cu13/include/cuda.h"]) == ()


def test_distributions_of_a_venv(tmp_path: Path) -> None:
    site = tmp_path / SITE
    (site / "Flask-3.0.0.dist-info").mkdir(parents=True)
    (site / "Flask-3.0.0.dist-info" / "RECORD").write_text(
        "flask/__init__.py,sha256=x,10\nflask-3.0.0.dist-info/RECORD,,\n../../../bin/flask,sha256=y,5\n"
    )
    (site / "legacy-1.0.dist-info").mkdir()
    (site / "legacy-1.0.dist-info" / "top_level.txt").write_text("legacy\n_legacy_c\n")
    root = RootFS(tmp_path)
    found = site_packages(root, "/opt/venv")
    assert found == "/" + SITE
    dists = distributions(root, found)
    assert [(d.name, d.version, d.modules) for d in dists] == [
        ("flask", "3.0.0", ("flask",)), ("legacy", "1.0", ("_legacy_c", "legacy")),
    ]  # fmt: skip
    assert owners(dists)["/opt/venv/bin/flask"] == "flask"
    assert owners(dists)[f"/{SITE}/flask/__init__.py"] == "flask"

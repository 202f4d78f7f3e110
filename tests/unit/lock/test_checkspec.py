"""The spec's [checks] table (envbuild.lock.checkspec): opt-outs of the image checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from envbuild.errors import SpecError
from envbuild.lock.checkspec import ChecksSpec, parse_checks, unknown_distributions
from envbuild.tomlread import Table

FILE = Path("envbuild.toml")


def checks(table: dict[str, object]) -> ChecksSpec:
    return parse_checks(Table({"checks": table}, file=FILE, path="", allowed=("checks",)))


def test_absent_and_empty() -> None:
    assert parse_checks(Table({}, file=FILE, path="", allowed=("checks",))) == ChecksSpec()
    assert checks({}) == ChecksSpec()


def test_names_are_canonical_and_sorted() -> None:
    spec = checks({"skip-import": ["TensorRT", "nvidia_dali"], "allow-missing": ["libnvinfer.so.10", "libfoo.so.1"]})
    assert spec.skip_import == ("nvidia-dali", "tensorrt")
    assert spec.allow_missing == ("libfoo.so.1", "libnvinfer.so.10")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"skip-imports": ["x"]}, "unknown key"),
        ({"skip-import": "tensorrt"}, "expected a list of non-empty strings"),
        ({"skip-import": ["numpy>=1"]}, "is not a distribution name"),
        ({"allow-missing": ["/usr/lib/libfoo.so.1"]}, "is not a library file name"),
        ({"allow-missing": [".."]}, "is not a library file name"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        checks(table)
    assert "checks" in caught.value.message and caught.value.hint


def test_unknown_distributions_get_the_nearest_locked_name() -> None:
    spec = checks({"skip-import": ["tensorrt", "onnxruntime-gpus", "numpy"]})
    assert unknown_distributions(spec, ["numpy", "onnxruntime-gpu", "Flask"]) == [
        ("onnxruntime-gpus", "onnxruntime-gpu"), ("tensorrt", None),
    ]  # fmt: skip

"""The starter ``envbuild init`` writes locks as written, with real uv against the package index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from envbuild.lock.spec import load_spec

pytestmark = pytest.mark.network


def test_starter_of_a_requirements_only_project_locks(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    """A project with a package and only requirements files: init, then lock exits 0 and pins numpy."""
    root = tmp_path / "churn"
    (root / "churn").mkdir(parents=True)
    (root / "churn" / "__init__.py").write_text("", encoding="utf-8")
    (root / "churn" / "predict.py").write_text("import numpy\n", encoding="utf-8")
    (root / "requirements.txt").write_text("numpy>=1.26  # arrays\n", encoding="utf-8")
    (root / "requirements-dev.txt").write_text("-e .\npytest\n", encoding="utf-8")

    init = cli("-C", root, "init")
    assert init.code == 0, init.err
    spec = load_spec(root)
    assert spec.dependencies == ("numpy>=1.26",)
    assert spec.role("infer").entrypoint == ("python", "-m", "churn.predict")

    lock = cli("-C", root, "lock")
    assert lock.code == 0, lock.err
    for variant in ("cpu-train", "cpu-infer"):
        text = (root / "lockfiles" / f"{variant}.txt").read_text(encoding="utf-8")
        assert "numpy==" in text and "--hash=sha256:" in text
    assert cli("-C", root, "lock", "--check").code == 0

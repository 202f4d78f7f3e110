"""Unit tests for envbuild.lock.starter: the starter spec is valid, and init refuses to clobber."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.lock.spec import load_spec
from envbuild.lock.starter import init_spec

TODAY = datetime(2026, 11, 1, 15, 30, tzinfo=UTC)


def write_pyproject(root: Path, requires_python: str = ">=3.11", extra: str = "") -> None:
    """A project with dependencies and 'train' / 'inference' groups."""
    text = f"""
    [project]
    name = "My_Model"
    version = "0.1.0"
    requires-python = "{requires_python}"
    dependencies = ["numpy>=2.0", "onnxruntime>=1.20"]

    [dependency-groups]
    train = ["scikit-learn>=1.5"]
    inference = ["fastapi>=0.110"]
    dev = ["pytest>=8"]
    """
    (root / "pyproject.toml").write_text(textwrap.dedent(text).lstrip() + extra, encoding="utf-8")


def test_starter_spec_loads(tmp_path: Path) -> None:
    """The written spec is accepted by load_spec and maps groups onto roles."""
    write_pyproject(tmp_path)
    (tmp_path / "src" / "my_model").mkdir(parents=True)

    path = init_spec(tmp_path, today=TODAY)

    assert path == tmp_path / "envbuild.toml"
    spec = load_spec(tmp_path)
    assert spec.name == "my_model"
    assert spec.python == "3.11"
    assert spec.exclude_newer == "2026-11-01T00:00:00Z"  # today, at midnight UTC
    assert spec.dependencies == ("numpy>=2.0", "onnxruntime>=1.20")
    assert spec.role("train").dependencies == ("scikit-learn>=1.5",)
    assert spec.role("infer").dependencies == ("fastapi>=0.110",)
    assert spec.role("infer").entrypoint == ("python", "-m", "my_model.predict")
    assert [a.name for a in spec.accelerators] == ["cpu"]
    assert spec.accelerator("cpu").base.debian == "bookworm"
    assert spec.image.files == ("src/my_model",)


def test_starter_without_pyproject_loads(tmp_path: Path) -> None:
    """A bare directory still gets a valid spec, named after the directory."""
    root = tmp_path / "Bare Project"
    root.mkdir()
    init_spec(root, today=TODAY)
    spec = load_spec(root)
    assert spec.name == "bare-project"
    assert spec.dependencies == ()
    assert spec.image.files == (".",)


def test_requires_python_312_picks_trixie(tmp_path: Path) -> None:
    """requires-python >=3.12 cannot use bookworm's 3.11: trixie with 3.13."""
    write_pyproject(tmp_path, requires_python=">=3.12")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.python == "3.13"
    assert spec.accelerator("cpu").base.debian == "trixie"


def test_requires_python_compatible_release(tmp_path: Path) -> None:
    """'~=3.12' means >=3.12 too: the starter must not pick Python 3.11."""
    write_pyproject(tmp_path, requires_python="~=3.12")
    init_spec(tmp_path, today=TODAY)
    assert load_spec(tmp_path).python == "3.13"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing envbuild.toml is kept unless force is given."""
    write_pyproject(tmp_path)
    existing = tmp_path / "envbuild.toml"
    existing.write_text("# mine\n", encoding="utf-8")

    with pytest.raises(UsageError) as info:
        init_spec(tmp_path, today=TODAY)
    assert info.value.exit_code == 2
    assert f"{existing} already exists" in info.value.message
    assert info.value.hint is not None and "--force" in info.value.hint
    assert existing.read_text(encoding="utf-8") == "# mine\n"

    init_spec(tmp_path, force=True, today=TODAY)
    assert existing.read_text(encoding="utf-8") != "# mine\n"
    assert load_spec(tmp_path).name == "my_model"


def test_refuses_pyproject_with_tool_envbuild(tmp_path: Path) -> None:
    """A project that already has [tool.envbuild] keeps its spec there."""
    write_pyproject(tmp_path, extra='\n[tool.envbuild]\npython = "3.11"\n')
    with pytest.raises(UsageError) as info:
        init_spec(tmp_path, today=TODAY)
    assert "already has [tool.envbuild]" in info.value.message
    assert info.value.exit_code == 2
    assert not (tmp_path / "envbuild.toml").exists()

"""``[image] exclude``: what the patterns match, what they remove from ``files``, and bad patterns refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envbuild.errors import SpecError
from envbuild.image import projectfiles
from envbuild.image.projectfiles import excluded
from envbuild.lock.spec import load_spec
from support.paths import ASSETS

FIXTURE = ASSETS / "render-project"
FILES = 'files = ["fixture_app", "config/serve.toml"]'


def with_image(root: Path, lines: str) -> Path:
    """The render fixture in ``root`` with its [image] files line replaced by ``lines``."""
    shutil.copytree(FIXTURE, root)
    spec = root / "envbuild.toml"
    text = spec.read_text(encoding="utf-8")
    assert FILES in text
    spec.write_text(text.replace(FILES, lines), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("path", "is_dir", "patterns", "expected"),
    [
        ("tests", True, ("tests",), True),  # a name, at the top
        ("src/pkg/tests", True, ("tests",), True),  # ... or at any depth
        ("src/pkg/tests.py", False, ("tests",), False),  # the whole name, not a prefix
        ("notebooks/eda.ipynb", False, ("*.ipynb",), True),
        ("notebooks", True, ("*.ipynb",), False),
        ("src/scratch", True, ("src/scratch",), True),  # with '/': the path from the spec's directory
        ("lib/src/scratch", True, ("src/scratch",), False),
        ("data/raw/a/b.csv", False, ("data/*.csv",), True),  # '*' matches '/' in a path pattern
        ("build", False, ("build/",), False),  # a trailing '/': directories only
        ("build", True, ("build/",), True),
        ("Tests", True, ("tests",), False),  # case matters
        ("a/b", False, ("a?b",), False),  # a name pattern never sees the '/' of a path
    ],
)
def test_what_a_pattern_matches(path: str, is_dir: bool, patterns: tuple[str, ...], expected: bool) -> None:
    assert excluded(path, is_dir=is_dir, patterns=patterns) is expected


def test_exclude_removes_from_listed_directories_and_from_dot(tmp_path: Path) -> None:
    root = with_image(tmp_path / "p", 'files = ["."]\nexclude = ["tests", "*.ipynb", "config/"]')
    for rel in ("tests/test_a.py", "fixture_app/tests/test_b.py", "fixture_app/eda.ipynb", "notes.ipynb"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n", encoding="utf-8")
    spec = load_spec(root)
    assert spec.image.exclude == ("tests", "*.ipynb", "config/")
    paths = {e.path for e in projectfiles.project_files(spec)}
    assert paths == {"envbuild.toml", "pyproject.toml", "fixture_app", "fixture_app/__init__.py"}
    # What is excluded is not in the files digest: changing it changes no image.
    before = projectfiles.digest(projectfiles.project_files(spec))
    (root / "fixture_app" / "eda.ipynb").write_text("changed\n", encoding="utf-8")
    (root / "tests" / "test_new.py").write_text("new\n", encoding="utf-8")
    assert projectfiles.digest(projectfiles.project_files(spec)) == before
    (root / "fixture_app" / "__init__.py").write_text("changed\n", encoding="utf-8")
    assert projectfiles.digest(projectfiles.project_files(spec)) != before


def test_a_listed_path_is_taken_even_when_a_pattern_matches_it(tmp_path: Path) -> None:
    root = with_image(tmp_path / "p", 'files = ["fixture_app", "config/serve.toml"]\nexclude = ["*.toml", "*.py"]')
    paths = {e.path for e in projectfiles.project_files(load_spec(root))}
    assert paths == {"fixture_app", "config/serve.toml"}  # listed: kept; what fixture_app holds: filtered


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ('"/etc/passwd"', "is an absolute path"),
        ('"../secrets"', "leads out of the project"),
        ('"src/../../x"', "leads out of the project"),
        ('""', "non-empty strings"),
        ('"!keep.py"', "'!' (re-include) is not supported"),
        ('"a\\\\b"', "holds '\\'"),
        ('"."', "names the whole project"),
        ('"te\\nsts"', "control character"),
    ],
)
def test_bad_patterns_are_spec_errors(tmp_path: Path, pattern: str, problem: str) -> None:
    root = with_image(tmp_path / "p", f'files = ["."]\nexclude = [{pattern}]')
    with pytest.raises(SpecError) as caught:
        load_spec(root)
    assert "image.exclude" in str(caught.value) and problem in str(caught.value)
    assert caught.value.hint


def test_patterns_are_normalised(tmp_path: Path) -> None:
    root = with_image(tmp_path / "p", 'files = ["."]\nexclude = ["./tests/", "./docs/*.md"]')
    assert load_spec(root).image.exclude == ("tests/", "docs/*.md")

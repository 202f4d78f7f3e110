"""The Workspace: a project's paths and envbuild's cache, settled in one place and passed down as a value."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import envbuild
from envbuild.workspace import LOCK_DIR, STAGE_DIR, Workspace, default_cache, templates_dir

PACKAGE = Path(envbuild.__file__).resolve().parent
# os.environ["X"] = ..., os.environ.pop/update/setdefault/clear(...), os.putenv/unsetenv(...), del os.environ[...]
_WRITES = re.compile(
    r"os\.environ\[[^\]]+\]\s*=(?!=)|os\.environ\.(pop|update|setdefault|clear)\(|os\.(put|unset)env\(|del os\.environ"
)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"ENVBUILD_CACHE_DIR": "{tmp}/mine", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/mine"),
        ({"ENVBUILD_CACHE_DIR": "", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/envbuild"),  # empty: not set
        ({}, "{tmp}/home/.cache/envbuild"),
    ],
    ids=["envbuild-cache-dir", "xdg-cache-home", "home"],
)
def test_the_default_cache_comes_from_the_environment(
    variables: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ENVBUILD_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert default_cache() == Path(expected.format(tmp=tmp_path))
    assert Workspace.at(tmp_path / "project").cache == Path(expected.format(tmp=tmp_path))


def test_a_workspace_is_a_value_the_environment_no_longer_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(tmp_path / "first"))
    workspace = Workspace.at(tmp_path / "project")
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(tmp_path / "second"))
    assert workspace.cache == tmp_path / "first"
    with pytest.raises(dataclasses.FrozenInstanceError):
        workspace.cache = tmp_path / "other"  # type: ignore[misc]


def test_a_cache_given_wins_over_the_environment_and_with_cache_keeps_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(tmp_path / "environment"))
    workspace = Workspace.at(tmp_path / "project", cache=tmp_path / "given")
    assert workspace.cache == tmp_path / "given"
    vendored = workspace.with_cache(tmp_path / "archive" / "cache")
    assert vendored == Workspace(root=tmp_path / "project", cache=tmp_path / "archive" / "cache")
    assert workspace.cache == tmp_path / "given"  # a new value; the first is unchanged


def test_the_project_paths_are_the_ones_users_see(tmp_path: Path) -> None:
    """README and .gitignore name these paths: a change here is a change for every project."""
    workspace = Workspace(root=tmp_path, cache=tmp_path / "cache")
    assert workspace.locks == tmp_path / "lockfiles" == tmp_path / LOCK_DIR
    assert workspace.stage == tmp_path / ".envbuild" / "stage" == tmp_path / STAGE_DIR
    assert workspace.images == tmp_path / ".envbuild" / "images"
    assert workspace.work == tmp_path / ".envbuild" / "work"
    assert workspace.buildkit == tmp_path / ".envbuild" / "buildkit"


def test_templates_are_found_from_the_package() -> None:
    assert (templates_dir() / "Dockerfile.j2").is_file()
    assert (templates_dir() / "github").is_dir()


def test_only_the_workspace_reads_the_cache_variable_and_no_module_writes_the_environment() -> None:
    """The cache travels as a value: rebuild once pointed it at a vendor archive by setting ENVBUILD_CACHE_DIR."""
    readers, writers = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(PACKAGE).as_posix()
        if "ENVBUILD_CACHE_DIR" in text:
            readers.append(name)
        if _WRITES.search(text):
            writers.append(name)
    assert readers == ["workspace.py"]
    assert writers == []

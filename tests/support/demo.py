"""The demo project as a fresh git repository, and envbuild run as a subprocess on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

COMMIT_DATE = "2026-11-02T12:00:00+00:00"
PROJECT_FILES = ("envbuild.toml", "lockfiles", "images", ".dockerignore", "demo")


def make_project(path: Path, *, umask: int = 0o022) -> Path:
    """The demo project in a new git repository with one commit at COMMIT_DATE."""
    old = os.umask(umask)
    try:
        path.mkdir(parents=True)
        for name in PROJECT_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(source, path / name)
        subprocess.run(["git", "-C", str(path), "init", "-q"], check=True)
        commit(path, "demo")
    finally:
        os.umask(old)
    return path


def commit(path: Path, message: str) -> None:
    """Commit the project's files at ``path`` (a build refuses uncommitted inputs), dated COMMIT_DATE.

    Only PROJECT_FILES: what builds leave (.envbuild/) stays out of the history.
    """
    env = {**os.environ, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE}
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "add", "-A", "--", *PROJECT_FILES], check=True)
    subprocess.run([*git, "commit", "-q", "-m", message], check=True, env=env)


def cli_process(
    project: Path, cache: Path, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess (builds spawn tools; a separate process keeps the test honest)."""
    environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}  # the commit dates the build
    environ.update({"ENVBUILD_CACHE_DIR": str(cache), **(env or {})})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "envbuild", "-C", str(project), "--json", *args],
        capture_output=True, text=True, env=environ, timeout=3600,
    )  # fmt: skip


def built(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    assert result.returncode == 0, result.stderr
    return {i["variant"]: i for i in json.loads(result.stdout)["images"]}

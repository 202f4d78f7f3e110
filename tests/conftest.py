"""Shared fixtures: the demo project in a scratch directory, and the in-process CLI."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envbuild.cli.main import main
from support.paths import ASSETS, REPO

pytest_plugins = ["support.registry_fixtures", "support.demo_fixtures"]

# The session's demo builds (support.demo_fixtures): made once on each worker that uses them, minutes each.
DEMO_BUILDS = ("demo_image", "demo_train_image")


@dataclass
class CliResult:
    """Exit code and captured output of one in-process ``envbuild`` run."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process: ``cli("-C", dir, "lock")``."""

    def run(*argv: str | Path) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code=code, out=captured.out, err=captured.err)

    return run


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the embedded demo project (spec + demo/), without lockfiles."""
    root = tmp_path / "demo-project"
    root.mkdir()
    shutil.copy(REPO / "envbuild.toml", root / "envbuild.toml")
    shutil.copytree(REPO / "demo", root / "demo", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(autouse=True, scope="session")
def index_projects_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The day-old project list of the default index, seeded from tests/assets/index/projects.txt.

    A lock that fails on an unknown name suggests the nearest names from the index's list,
    which for the default index is tens of MB: every test reads this small list instead, through
    the real cache. Tests of the fetch itself use an index of their own (support.index).
    """
    from envbuild.lock import names

    directory = tmp_path_factory.mktemp("index-projects")
    lines = (ASSETS / "index" / "projects.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(names, "cache_dir", lambda: directory)
        names.remember_projects(names.DEFAULT_INDEX, listed)
        yield directory


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sigstore-online",
        action="store_true",
        help="Run the tests that sign keyless against the public Sigstore instance (GitHub Actions, id-token: write).",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (never skip) the online Sigstore tests unless asked for: this machine cannot reach Sigstore.

    Deselected tests are counted in pytest's summary line, so nobody mistakes them for passes.
    """
    if config.getoption("--sigstore-online"):
        return
    online = [item for item in items if item.get_closest_marker("sigstore_online")]
    if online:
        config.hook.pytest_deselected(items=online)
        items[:] = [item for item in items if not item.get_closest_marker("sigstore_online")]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (scripts/test.sh), but every test file that uses the session's demo builds is one unit.

    A worker takes a whole file at a time, so a module's fixtures are made once; the files
    using the demo builds go to one worker together, so those builds are made once, not once
    on each worker. (xdist's own ``loadgroup`` cannot do it: its group marks are lost on
    pytest 9.2, pytest-dev/pytest-xdist#1386.) A file counts as using them when its text
    names one; a miss costs a build's time, never a result.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    @functools.cache
    def unit(path: str) -> str:
        file = REPO / path
        uses = file.is_file() and any(name in file.read_text(errors="replace") for name in DEMO_BUILDS)
        return "demo-builds" if uses else path

    class DemoBuildsTogether(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid.split("::", 1)[0])

    return DemoBuildsTogether(config, log)

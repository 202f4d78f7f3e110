"""``envbuild docs`` prints the reference docs shipped with envbuild; ``envbuild init`` through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import CliResult
from envbuild.lock.spec import load_spec
from support.paths import REPO

Cli = Callable[..., CliResult]


def test_docs_spec_prints_the_spec_reference(cli: Cli) -> None:
    """'envbuild docs spec', which the starter points to, prints docs/spec.md as it is."""
    result = cli("docs", "spec")
    assert result.code == 0, result.err
    assert result.out == (REPO / "docs" / "spec.md").read_text(encoding="utf-8")


def test_docs_lists_every_topic(cli: Cli) -> None:
    """Without a topic: every docs/*.md by name, with its title."""
    result = cli("docs")
    assert result.code == 0, result.err
    names = [line.split()[0] for line in result.out.splitlines()]
    assert names == sorted(p.stem for p in (REPO / "docs").glob("*.md"))
    assert "spec  " in result.out and "The envbuild spec" in result.out
    listed = json.loads(cli("--json", "docs").out)["topics"]
    assert listed["spec"] == "The envbuild spec"


def test_docs_unknown_topic_lists_the_topics(cli: Cli) -> None:
    """An unknown topic: exit 2, naming it and the topics there are; nothing on stdout."""
    result = cli("docs", "../README")
    assert result.code == 2
    assert result.out == ""
    assert "no documentation topic '../README'" in result.err
    assert "spec" in result.err and "layers" in result.err


def test_init_cli_writes_spec_and_gitignore(cli: Cli, tmp_path: Path) -> None:
    """'envbuild init' writes a loadable spec, adds .envbuild/ to .gitignore and says both."""
    (tmp_path / "requirements.txt").write_text("numpy>=2\n", encoding="utf-8")
    result = cli("-C", tmp_path, "--json", "init")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "spec": str(tmp_path / "envbuild.toml"),
        "gitignore": str(tmp_path / ".gitignore"),
    }
    assert "added .envbuild/" in result.err and "envbuild docs spec" in result.err
    assert load_spec(tmp_path).dependencies == ("numpy>=2",)
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == ".envbuild/\n"


def test_init_cli_bad_requirement_exits_2(cli: Cli, tmp_path: Path) -> None:
    """A requirements line a spec cannot express: exit 2, file:line and the fix, no traceback."""
    (tmp_path / "requirements.txt").write_text("numpy\n--extra-index-url https://u:pw@host/simple\n", encoding="utf-8")
    result = cli("-C", tmp_path, "init")
    assert result.code == 2
    assert "requirements.txt:2: an extra index (--extra-index-url)" in result.err
    assert "[[indexes]]" in result.err
    assert "Traceback" not in result.err and "pw" not in result.err

"""The runner of the data-driven bad-input tables (tests/unit/test_bad_inputs.py and its registry twin).

A :class:`Case` is one bad input: the files it needs (written into a fresh project directory),
the command line, the exit code and the words stderr must hold. :func:`run_case` writes the
files, runs the CLI in-process and checks the promise every bad input must keep: a non-zero
exit with the expected code, an ``error:`` line with a ``hint:``, the expected words, and never
a traceback nor the CLI's last-resort "internal error" path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envbuild.cli.main import main

Setup = Callable[[Path], None]
FileContent = str | bytes


@dataclass(frozen=True)
class Case:
    """One bad input and what envbuild must answer.

    ``argv`` items may use ``{p}`` (the project directory, also the working directory),
    ``{reg}`` (the registry host of registry rows) and ``{digest}`` (a well-formed digest).
    """

    id: str
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...]
    files: Mapping[str, FileContent] = field(default_factory=dict)
    setup: Setup | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    hint: bool = True  # click's own usage errors carry no 'hint:' line


ZERO_DIGEST = "sha256:" + "0" * 64


def run_case(
    case: Case, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **values: str
) -> None:
    """Set up ``case`` in ``root`` and check envbuild refuses it cleanly."""
    project = root / "p"
    project.mkdir()
    for rel, content in case.files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if case.setup is not None:
        case.setup(project)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(p=project, **values))
    monkeypatch.chdir(project)
    argv = [a.format(p=project, digest=ZERO_DIGEST, **values) for a in case.argv]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    shown = f"argv={argv}\nexit={code}\nstdout={out[-2000:]}\nstderr={err[-4000:]}"
    assert "Traceback" not in err + out, shown
    assert "internal error" not in err, shown
    assert code == case.code, shown
    assert "error" in err.lower(), shown
    if case.hint:
        assert "hint:" in err, shown
    for word in case.words:
        assert word.format(p=project, **values) in err, f"missing {word!r}\n{shown}"


def clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No ambient envbuild settings, signing keys or registry credentials leak into a case."""
    for name in list(os.environ):
        if name.startswith(("ENVBUILD_", "UV_")) or name in ("SOURCE_DATE_EPOCH", "DOCKER_CONFIG"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))

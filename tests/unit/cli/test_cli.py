"""Unit tests for the CLI, run in-process: exit codes, stderr/stdout split, error rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuild import __version__
from envbuild.cli.main import main
from support.specs import MINIMAL, write_spec


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version on stdout and exits 0."""
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_no_spec_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No spec: exit 2, an error and a hint on stderr, no traceback, nothing on stdout."""
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 2
    out, err = capsys.readouterr()
    assert "error:" in err
    assert "no envbuild spec in" in err
    assert "hint:" in err and "envbuild init" in err
    assert "Traceback" not in err
    assert out == ""


def test_brackets_printed_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """[tool.envbuild] in a message is text, not rich markup."""
    write_spec(tmp_path)
    write_spec(tmp_path, '[project]\nname = "x"\n[tool.envbuild]\npython = "3.11"\n', "pyproject.toml")
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 2
    err = capsys.readouterr().err
    assert "two specs: envbuild.toml and [tool.envbuild] in pyproject.toml" in err
    assert "move everything into envbuild.toml or into [tool.envbuild]" in err


def test_hint_with_brackets_literal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hint with [[indexes]] and [accelerators.gpu] survives rich too."""
    write_spec(tmp_path, MINIMAL + 'cuda = "12"\n')
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 2
    assert "hint: move cuda to [accelerators.gpu]" in capsys.readouterr().err


def test_check_never_locked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """lock --check on a valid, never-locked spec: exit 1, 'never locked'."""
    write_spec(tmp_path)
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "error: stale locks:" in err
    assert "cpu-infer: never locked" in err
    assert "hint: run 'envbuild lock'" in err
    assert out == ""


def test_check_never_locked_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --json the staleness goes to stdout as JSON; the error still to stderr."""
    write_spec(tmp_path)
    assert main(["--json", "-C", str(tmp_path), "lock", "--check"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"stale": [{"target": "cpu-infer", "reasons": ["never locked"]}]}
    assert "never locked" in err


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-C to a directory that does not exist is a usage error, without a traceback."""
    assert main(["-C", str(tmp_path / "nope"), "lock", "--check"]) == 2
    err = capsys.readouterr().err
    assert "is not a directory" in err
    assert "Traceback" not in err


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option is exit 2 (click's usage error)."""
    assert main(["lock", "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_error_output_redacts_url_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A credential quoted back in an error message never reaches stderr."""
    write_spec(
        tmp_path,
        MINIMAL.replace('"numpy>=2.0"', '"pkg @ https://alice:hunter22@host.example/pkg.whl"'),
    )
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 2
    err = capsys.readouterr().err
    assert "is a direct URL" in err
    assert "hunter22" not in err

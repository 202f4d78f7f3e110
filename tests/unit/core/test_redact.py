"""Unit tests for redaction (errors.redact) and the tool runner (proc.run)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest

from envbuild.errors import ToolError, ToolMissingError, redact, strip_url_credentials
from envbuild.proc import run, secrets_in


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "GET https://alice:s3cr3t@pypi.example/simple/numpy/",
            "GET https://pypi.example/simple/numpy/",
            id="user-pass",
        ),
        pytest.param(
            "https://ghp_token@github.example/x and http://u:p@h.example:8080/y",
            "https://github.example/x and http://h.example:8080/y",
            id="token-only-and-two-urls",
        ),
        pytest.param(
            "https://pypi.example/simple/pkg@1.0",
            "https://pypi.example/simple/pkg@1.0",
            id="at-in-path-untouched",
        ),
        pytest.param("no url here: user@example.com", "no url here: user@example.com", id="email"),
    ],
)
def test_strip_url_credentials(text: str, expected: str) -> None:
    """user:pass@ goes; hosts, ports and paths stay."""
    assert strip_url_credentials(text) == expected
    assert redact(text) == expected


def test_redact_replaces_secrets() -> None:
    """Known secret values become ****; the longest first, so none is half-replaced."""
    text = "token=abcdef and short=abc and tiny=ab https://u:abcdef@h.example/"
    assert redact(text, ["abc", "abcdef", "ab"]) == ("token=**** and short=**** and tiny=ab https://h.example/")


def test_secrets_in_picks_secret_names() -> None:
    """Only variables whose names say 'secret' are treated as secrets."""
    env = {
        "UV_INDEX_PRIVATE_PASSWORD": "pw1",
        "MY_TOKEN": "hunter22",
        "AWS_SECRET_ACCESS_KEY": "key1",
        "API_KEY": "key2",
        "EMPTY_TOKEN": "",
        "UV_INDEX_PRIVATE_USERNAME": "alice",
        "HOME": "/root",
    }
    assert sorted(secrets_in(env)) == ["hunter22", "key1", "key2", "pw1"]


def test_run_success() -> None:
    """stdout is captured; a zero exit is a Result."""
    result = run([sys.executable, "-c", "print('hello')"], tool="python")
    assert result.returncode == 0
    assert result.stdout == "hello\n"


def test_run_failure_redacts_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A failing tool's stderr tail is in details, with the secret masked, also in logs."""
    script = "import sys; sys.stderr.write('token=hunter22\\n'); sys.exit(3)"
    env = {**os.environ, "MY_TOKEN": "hunter22"}
    caplog.set_level(logging.DEBUG, logger="envbuild.proc")
    with pytest.raises(ToolError) as info:
        run([sys.executable, "-c", script], tool="mytool", env=env)
    exc = info.value
    assert not isinstance(exc, ToolMissingError)
    assert exc.message == "mytool failed with exit status 3"
    assert exc.details is not None
    assert "token=****" in exc.details
    assert "hunter22" not in exc.details
    assert caplog.records, "stderr should be streamed to the debug log"
    assert "hunter22" not in caplog.text
    assert "****" in caplog.text


def test_run_without_check_returns_failure() -> None:
    """check=False returns the non-zero result instead of raising."""
    result = run([sys.executable, "-c", "import sys; sys.exit(4)"], tool="python", check=False)
    assert result.returncode == 4


def test_run_missing_binary() -> None:
    """A binary that does not exist is ToolMissingError (exit 2)."""
    with pytest.raises(ToolMissingError) as info:
        run(["envbuild-no-such-tool-4f1c"], tool="nosuch")
    assert "nosuch is not installed" in info.value.message
    assert info.value.exit_code == 2


def test_run_timeout() -> None:
    """A tool that outlives its timeout is stopped and reported as ToolError."""
    started = time.monotonic()
    with pytest.raises(ToolError) as info:
        run([sys.executable, "-c", "import time; time.sleep(60)"], tool="sleeper", timeout=0.5)
    assert time.monotonic() - started < 20
    assert not isinstance(info.value, ToolMissingError)
    assert "sleeper did not finish within" in info.value.message


def test_run_not_executable(tmp_path: Path) -> None:
    """A tool that cannot be started is a ToolError, not a traceback."""
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    tool.chmod(0o644)
    with pytest.raises(ToolError):
        run([str(tool)], tool="tool")


def test_run_missing_cwd_is_not_reported_as_missing_tool(tmp_path: Path) -> None:
    """A missing working directory is not a missing tool."""
    with pytest.raises(ToolError) as info:
        run([sys.executable, "-c", "pass"], tool="python", cwd=tmp_path / "gone")
    assert not isinstance(info.value, ToolMissingError)
    assert "not installed" not in info.value.message

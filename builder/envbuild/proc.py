"""One way to run external tools: argument lists, a timeout, streamed stderr, typed errors.

Every adapter (uv, pip-compile, later buildah, skopeo...) calls :func:`run`, so
every tool failure reaches the user the same way: which tool, the exit status
and the tail of its stderr, with secrets redacted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import ToolError, ToolMissingError, redact

log = logging.getLogger(__name__)

_SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|CREDENTIAL|_KEY$)", re.IGNORECASE)
STDERR_TAIL_LINES = 40


@dataclass(frozen=True, kw_only=True)
class Result:
    """What a finished tool run produced."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names say they hold a secret."""
    return [value for name, value in env.items() if value and _SECRET_NAME.search(name)]


def which(tool: str, *, hint: str) -> str:
    """Absolute path of ``tool`` on PATH, or :class:`ToolMissingError` with ``hint``."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(f"{tool} is not installed (not found on PATH)", hint=hint)
    return path


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    tool: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = True,
    lines: Callable[[str], None] | None = None,
) -> Result:
    """Run ``args`` (never through a shell), its command and its stderr lines logged (``-v``) as they come.

    With ``lines``, stdout is streamed too: each output line (stdout or stderr, redacted) is logged
    and handed to ``lines`` as it comes (a build's progress), and still collected. Without it,
    stdout is the tool's data, read whole and not logged.

    Raises :class:`ToolError` when the tool cannot start, times out, or (with
    ``check``) exits non-zero; the message carries the redacted stderr tail.
    """
    argv = [os.fspath(a) for a in args]
    environ = dict(os.environ if env is None else env)
    secrets = secrets_in(environ)
    log.info("running %s", redact(" ".join(argv), secrets))
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except FileNotFoundError as exc:
        if cwd is not None and not Path(cwd).is_dir():
            raise ToolError(f"cannot run {tool}: working directory {cwd} does not exist") from exc
        raise ToolMissingError(f"{tool} is not installed ({argv[0]} not found)") from exc
    except OSError as exc:
        raise ToolError(f"cannot run {tool} ({argv[0]}): {exc.strerror}") from exc

    stderr_lines: deque[str] = deque()
    stdout_chunks: list[str] = []

    def tell(line: str) -> None:
        text = redact(line.rstrip(), secrets)
        log.info("%s: %s", tool, text)
        if lines is not None and text:
            lines(text)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            tell(line)

    def pump_stdout() -> None:
        assert proc.stdout is not None
        if lines is None:
            stdout_chunks.append(proc.stdout.read())
            return
        for line in proc.stdout:
            stdout_chunks.append(line)
            tell(line)

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_stderr, pump_stdout)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise ToolError(
            f"{tool} did not finish within {timeout:g} s and was stopped",
            hint="check network access, or raise the timeout",
        ) from exc
    finally:
        for reader in readers:
            reader.join()
    stdout = "".join(stdout_chunks)
    stderr = "".join(stderr_lines)
    result = Result(args=tuple(argv), returncode=proc.returncode, stdout=stdout, stderr=stderr)
    if check and proc.returncode != 0:
        raise ToolError(
            f"{tool} failed with exit status {proc.returncode}",
            details=redact(tail(stderr), secrets),
        )
    return result


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])

"""The error root of envbuild, and the redaction every message goes through.

Every failure a user can cause or meet is an :class:`EnvbuildError` carrying a
``hint`` (what to do next) and an exit code; the CLI prints those and never a
traceback. Adapters wrap their tool's failures into a subclass at the boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EXIT_FAILURE = 1
EXIT_USAGE = 2

# user:password@ in any URL-ish string.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


class EnvbuildError(Exception):
    """A failure explained to the user: what went wrong and, in ``hint``, what to do."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(EnvbuildError):
    """Bad input from the user: a bad option, a bad spec, a missing file. Exit 2."""

    exit_code = EXIT_USAGE


class SpecError(UsageError):
    """The project spec is invalid; the message names file, key and problem."""


class ToolError(EnvbuildError):
    """An external tool is missing, timed out or failed."""


class ToolMissingError(ToolError):
    """A required external tool is not installed."""

    exit_code = EXIT_USAGE


class ResolutionError(EnvbuildError):
    """The resolver could not produce a lock (unsatisfiable, unreachable index, ...)."""


class LockGuardError(EnvbuildError):
    """A resolved lock breaks one of envbuild's guards (CUDA leaks, skew, ...)."""


class StaleLockError(EnvbuildError):
    """A lock no longer matches the spec it was made from."""


def strip_url_credentials(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text``."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Strip URL credentials and replace every known secret value with ``****``."""
    text = strip_url_credentials(text)
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text

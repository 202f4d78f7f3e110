"""Tests that need an external tool fail, not skip, when it is missing under CI=true."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def require_tool(name: str) -> str:
    """The path of ``name``; a missing tool fails the test under CI, skips it elsewhere."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed; .ci/run installs it")
    assert path is not None
    return path


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing: fail under CI=true (never a green skip), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)

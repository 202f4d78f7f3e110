"""pytest fixtures for real registries: import them into a conftest.py to use them.

Function-scoped ones give each test a clean registry (and may be killed or restarted by it);
``shared_registry`` is one plain-HTTP registry for the whole session, for tests that only push
and pull under their own repository names and never stop it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.registry import Registry, run_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A plain-HTTP registry without auth, with its own empty storage."""
    with run_registry(tmp_path) as running:
        yield running


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[Registry]:
    """A plain-HTTP registry with htpasswd basic auth (``.username`` / ``.password``)."""
    with run_registry(tmp_path, auth=True) as running:
        yield running


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    """An HTTPS registry whose certificate is signed by ``.ca_file`` (``.other_ca_file`` is unrelated)."""
    with run_registry(tmp_path, tls=True) as running:
        yield running


@pytest.fixture(scope="session")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One plain-HTTP registry for the session; tests must use unique repository names and not stop it."""
    with run_registry(tmp_path_factory.mktemp("shared-registry")) as running:
        yield running

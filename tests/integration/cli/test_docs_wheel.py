"""The wheel envbuild ships holds its reference docs, and ``envbuild docs`` reads them from there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envbuild.lock.resolvers.uv import uv_binary
from support.paths import REPO

pytestmark = [pytest.mark.network, pytest.mark.slow]  # uv build fetches the build backend


def test_installed_package_prints_its_docs(tmp_path: Path) -> None:
    """Built with uv and run from the unpacked wheel, outside the checkout: every docs/*.md is a topic."""
    subprocess.run(
        [uv_binary(), "build", "--wheel", "--no-config", "-q", "-o", str(tmp_path / "dist"), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("envbuild-*.whl")
    shipped = sorted(n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("envbuild/docs/"))
    assert shipped == sorted(f"envbuild/docs/{p.name}" for p in (REPO / "docs").glob("*.md"))

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the checkout's editable install
    where = subprocess.run(
        [sys.executable, "-c", "import envbuild.workspace as w; print(w.docs_dir())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "envbuild" / "docs")
    printed = subprocess.run(
        [sys.executable, "-m", "envbuild", "docs", "spec"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert printed.stdout == (REPO / "docs" / "spec.md").read_text(encoding="utf-8")

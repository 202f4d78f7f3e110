"""The builder stage's ``compileall -j 0``: checked-hash .pyc files do not depend on the number of workers.

The Dockerfile compiles the venv on all cores (templates/Dockerfile.j2). That is safe for
reproducibility only if a .pyc written by a worker process is byte for byte the one a single
process writes: marshal's output can depend on the writing process (which objects it has seen
twice), so this is checked on real packages, with the host's Python, not assumed.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

# Pure-Python packages from the dev venv: a few hundred modules of real code (classes, closures,
# f-strings, big literal tables), enough for marshal's reference flags to show up if they varied.
PACKAGES = ("packaging", "jinja2", "click")
CHECKED_HASH = 0b11  # PEP 552 flags: hash-based, check the source


def copy_packages(dest: Path) -> Path:
    """Copy :data:`PACKAGES` (sources only) to ``dest``; every compile below sees these same paths."""
    for name in PACKAGES:
        source = Path(importlib.import_module(name).__file__ or "").parent
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def compile_tree(root: Path, jobs: int) -> dict[str, bytes]:
    """Compile ``root`` as the Dockerfile does, with ``jobs`` workers; return every .pyc's bytes, then delete them."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("PYTHONPYCACHEPREFIX", None)  # the .pyc files must land beside their sources
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", str(jobs), "--invalidation-mode", "checked-hash", str(root)],
        env=env, check=True, timeout=300,
    )  # fmt: skip
    written = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache)
    return written


def test_the_template_compiles_on_all_cores_with_checked_hashes() -> None:
    template = (REPO / "templates" / "Dockerfile.j2").read_text(encoding="utf-8")
    assert "-m compileall -q -j 0 --invalidation-mode checked-hash" in template


def test_checked_hash_pyc_files_are_identical_whatever_the_job_count(tmp_path: Path) -> None:
    root = copy_packages(tmp_path / "site-packages")
    single = compile_tree(root, 1)
    assert len(single) > 50
    assert {int.from_bytes(data[4:8], "little") for data in single.values()} == {CHECKED_HASH}
    for jobs in (0, 3):  # 0: one worker per core, as in the Dockerfile; 3: more workers than cores here
        parallel = compile_tree(root, jobs)
        assert parallel.keys() == single.keys()
        assert [name for name in single if parallel[name] != single[name]] == [], f"-j {jobs}"

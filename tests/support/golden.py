"""Golden files: rendered output compared byte for byte with files checked in under tests/assets/.

After an intended change to what is rendered, regenerate the golden files and review the diff:

    ENVBUILD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/image/test_render.py tests/unit/ci/test_ci_github.py
    git diff tests/assets .github/workflows

With ENVBUILD_UPDATE_GOLDEN=1 every golden test rewrites its files (and deletes those nothing renders
any more) instead of comparing, then compares what it wrote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

UPDATE = os.environ.get("ENVBUILD_UPDATE_GOLDEN") == "1"


def golden_files(root: Path, pattern: str = "*") -> set[str]:
    """Every golden file under ``root`` matching ``pattern``, relative to it (a README is documentation)."""
    return {p.relative_to(root).as_posix() for p in root.rglob(pattern) if p.is_file()} - {"README.md"}


def check_or_update(root: Path, rendered: Mapping[str, str], *, pattern: str = "*", update: bool = UPDATE) -> None:
    """Assert that ``rendered`` (path relative to ``root`` -> text) is exactly the golden files under ``root``.

    With ``update`` (ENVBUILD_UPDATE_GOLDEN=1) the golden files are rewritten first, so the
    comparison passes and ``git diff`` shows what changed.
    """
    if update:
        for stale in golden_files(root, pattern) - set(rendered):
            (root / stale).unlink()
        for rel, text in rendered.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(text.encode("utf-8"))
    found = golden_files(root, pattern)
    assert found == set(rendered), (
        f"rendered and golden files under {root} differ: only rendered {sorted(set(rendered) - found)}, "
        f"only golden {sorted(found - set(rendered))}; ENVBUILD_UPDATE_GOLDEN=1 regenerates them"
    )
    for rel, text in sorted(rendered.items()):
        assert (root / rel).read_bytes().decode("utf-8") == text, (
            f"{rel} differs from {root / rel}; ENVBUILD_UPDATE_GOLDEN=1 regenerates it (then review git diff)"
        )

"""The golden-file helper (support.golden) that the render and workflow golden tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.golden import check_or_update, golden_files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Golden files a.txt and sub/b.txt, and a README that is documentation, not output."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("b\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("how to regenerate\n", encoding="utf-8")
    return tmp_path


def test_the_same_files_pass(root: Path) -> None:
    """Rendered output equal to the golden files, byte for byte, passes; the README is not a golden file."""
    assert golden_files(root) == {"a.txt", "sub/b.txt"}
    check_or_update(root, {"a.txt": "a\n", "sub/b.txt": "b\n"}, update=False)


@pytest.mark.parametrize(
    ("rendered", "words"),
    [
        pytest.param({"a.txt": "a\r\n", "sub/b.txt": "b\n"}, "a.txt differs", id="changed-bytes"),
        pytest.param({"a.txt": "a\n"}, "only golden ['sub/b.txt']", id="golden-file-nothing-renders"),
        pytest.param({"a.txt": "a\n", "sub/b.txt": "b\n", "c.txt": ""}, "only rendered ['c.txt']", id="new-file"),
    ],
)
def test_a_difference_fails_naming_the_file(root: Path, rendered: dict[str, str], words: str) -> None:
    """A changed byte, a golden file nothing renders and a rendered file with no golden one all fail."""
    with pytest.raises(AssertionError, match="ENVBUILD_UPDATE_GOLDEN=1") as failed:
        check_or_update(root, rendered, update=False)
    assert words in str(failed.value)


def test_update_rewrites_and_removes_what_nothing_renders(root: Path) -> None:
    """ENVBUILD_UPDATE_GOLDEN=1 writes the rendered files as they are and deletes the stale ones, never the README."""
    check_or_update(root, {"a.txt": "new\r\n", "c/d.txt": "d"}, update=True)
    assert golden_files(root) == {"a.txt", "c/d.txt"}
    assert (root / "a.txt").read_bytes() == b"new\r\n"
    assert (root / "README.md").exists()
    check_or_update(root, {"a.txt": "new\r\n", "c/d.txt": "d"}, update=False)


def test_pattern_limits_the_golden_set(root: Path) -> None:
    """With a pattern, files that do not match it are neither compared nor deleted."""
    (root / "notes.yml").write_text("x: 1\n", encoding="utf-8")
    check_or_update(root, {"notes.yml": "x: 1\n"}, pattern="*.yml", update=False)
    check_or_update(root, {}, pattern="*.yml", update=True)
    assert (root / "a.txt").exists() and not (root / "notes.yml").exists()

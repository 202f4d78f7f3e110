"""Counts in messages read right: "1 package", "2 packages"."""

from __future__ import annotations

import pytest

from envbuild.words import counted, plural


@pytest.mark.parametrize(
    ("count", "word", "text"),
    [(0, "package", "0 packages"), (1, "package", "1 package"), (2, "library", "2 libraries"), (3, "key", "3 keys")],
)
def test_plural(count: int, word: str, text: str) -> None:
    assert plural(count, word) == text


def test_counted_takes_the_plural() -> None:
    assert [counted(1, w) for w in ("packages", "wheels", "libraries", "bytes", "blobs")] == [
        "1 package", "1 wheel", "1 library", "1 byte", "1 blob",
    ]  # fmt: skip
    assert counted(2, "wheels") == "2 wheels"

"""The smallest valid envbuild.toml, which unit tests start from (and break on purpose)."""

from __future__ import annotations

import textwrap
from pathlib import Path

# One CPU inference variant on a Debian base; nothing here needs the network to parse.
MINIMAL = """\
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
dependencies = ["numpy>=2.0"]

[roles.infer]
entrypoint = ["python", "-m", "app"]

[accelerators.cpu]
base = { debian = "bookworm" }
"""


def write_spec(root: Path, text: str = MINIMAL, name: str = "envbuild.toml") -> Path:
    """Write ``text`` (dedented) as ``root/name``; return the file."""
    path = root / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path

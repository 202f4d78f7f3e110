"""Build records for tests: the JSON ``envbuild image`` writes as build.json, and the typed value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envbuild.image.record import BuildRecord


def record_json(**overrides: Any) -> dict[str, Any]:
    """A complete build record as build.json holds it (without ``digest`` unless given)."""
    data: dict[str, Any] = {
        "base": {"digest": "sha256:" + "11" * 32, "name": "envbuild.local/demo/base-cpu:0123456789abcdef"},
        "builder": {"name": "buildah", "version": "1.28.2"},
        "compressor": "python-zlib 1.2.13 gzip -6",
        "dirty": None,
        "dockerfile": "images/cpu-infer.Dockerfile",
        "dockerfile_sha256": "22" * 32,
        "envbuild": "0.1.0",
        "files": ["demo"],
        "files_sha256": "33" * 32,
        "lockfile": "lockfiles/cpu-infer.txt",
        "lockfile_sha256": "44" * 32,
        "platform": "linux/amd64",
        "revision": "c0ffee",
        "source_date_epoch": 1793620800,
        "spec": "envbuild.toml",
        "spec_sha256": "99" * 32,
        "tools": [
            {"filename": "uv-1.whl", "name": "uv", "sha256": "55" * 32, "url": "https://files.example/uv-1.whl",
             "version": "1"},
        ],
        "variant": "cpu-infer",
        "wheels": [
            {"filename": "b-2.whl", "name": "b", "sha256": "66" * 32,
             "url": "https://bot:s3cret@private.example/b-2.whl", "version": "2"},
            {"filename": "a-1.whl", "name": "a", "sha256": "77" * 32, "url": "https://files.example/a-1.whl",
             "version": "1"},
        ],
    }  # fmt: skip
    data.update(overrides)
    return data


def build_record(data: dict[str, Any] | None = None, **overrides: Any) -> BuildRecord:
    """``data`` (default: :func:`record_json` with ``overrides``) as a typed record."""
    return BuildRecord.from_json(data if data is not None else record_json(**overrides), source=Path("build.json"))

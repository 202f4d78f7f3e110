"""Provenance: deterministic, complete for a rebuild, and free of credentials."""

from __future__ import annotations

import json
from typing import Any

from envbuild.provenance import BUILD_TYPE, PREDICATE_TYPE, provenance_statement

DIGEST = "sha256:" + "ab" * 32


def record() -> dict[str, Any]:
    return {
        "base": {"digest": "sha256:" + "11" * 32, "name": "envbuild.local/demo/base-cpu:0123456789abcdef"},
        "builder": {"name": "buildah", "version": "1.28.2"},
        "compressor": "python-zlib 1.2.13 gzip -6",
        "dockerfile_sha256": "22" * 32,
        "envbuild": "0.1.0",
        "files_sha256": "33" * 32,
        "lockfile_sha256": "44" * 32,
        "platform": "linux/amd64",
        "revision": "c0ffee",
        "source_date_epoch": 1793620800,
        "tools": [
            {
                "filename": "uv-1.whl",
                "name": "uv",
                "sha256": "55" * 32,
                "url": "https://files.example/uv-1.whl",
                "version": "1",
            }
        ],
        "variant": "cpu-infer",
        "wheels": [
            {
                "filename": "b-2.whl",
                "name": "b",
                "sha256": "66" * 32,
                "url": "https://bot:s3cret@private.example/b-2.whl",
                "version": "2",
            },
            {
                "filename": "a-1.whl",
                "name": "a",
                "sha256": "77" * 32,
                "url": "https://files.example/a-1.whl",
                "version": "1",
            },
        ],
    }


def make() -> bytes:
    return provenance_statement(
        record(),
        image_name="demo-cpu-infer",
        image_digest=DIGEST,
        spec_file="envbuild.toml",
        source_repository="https://git.example/demo.git",
    )


def test_statement_names_the_image_and_the_build_type() -> None:
    stmt = json.loads(make())
    assert stmt["_type"] == "https://in-toto.io/Statement/v1" and stmt["predicateType"] == PREDICATE_TYPE
    assert stmt["subject"] == [{"name": "demo-cpu-infer", "digest": {"sha256": "ab" * 32}}]
    definition = stmt["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["source"] == {
        "commit": "c0ffee",
        "repository": "https://git.example/demo.git",
    }
    assert definition["internalParameters"]["sourceDateEpoch"] == 1793620800


def test_every_input_a_rebuild_needs_is_there_by_digest() -> None:
    deps = {d["name"]: d for d in json.loads(make())["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["base"]["digest"] == {"sha256": "11" * 32}
    assert deps["wheel:a-1.whl"] == {
        "name": "wheel:a-1.whl",
        "uri": "https://files.example/a-1.whl",
        "digest": {"sha256": "77" * 32},
    }
    assert deps["tool:uv-1.whl"]["digest"] == {"sha256": "55" * 32}
    assert {"lockfile", "dockerfile", "files", "wheel:b-2.whl"} <= set(deps)


def test_deterministic_and_without_secrets_or_times() -> None:
    assert make() == make()
    text = make().decode()
    assert "s3cret" not in text and "bot@" not in text
    assert "startedOn" not in text and "finishedOn" not in text and "invocationId" not in text

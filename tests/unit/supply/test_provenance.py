"""Provenance: deterministic, complete for a rebuild, and free of credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envbuild.errors import UsageError
from envbuild.image.record import BaseRecord, DirtyRecord
from envbuild.oci.ref import Digest
from envbuild.supply.attest import SIGN_PREDICATE, _repository, signature_statement
from envbuild.supply.provenance import BUILD_TYPE, PREDICATE_TYPE, provenance_statement, recorded_build
from support.intoto import validated
from support.records import build_record, record_json

DIGEST = "sha256:" + "ab" * 32


def record() -> dict[str, Any]:
    return record_json()


def make(build: dict[str, Any] | None = None, repository: str | None = "https://git.example/demo.git") -> bytes:
    return provenance_statement(
        build_record(build or record()),
        image_name="demo-cpu-infer",
        image_digest=DIGEST,
        source_repository=repository,
    )


def dependencies(statement: bytes) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in json.loads(statement)["predicate"]["buildDefinition"]["resolvedDependencies"]}


def test_statement_names_the_image_and_the_build_type() -> None:
    stmt = json.loads(make())
    assert stmt["_type"] == "https://in-toto.io/Statement/v1" and stmt["predicateType"] == PREDICATE_TYPE
    assert stmt["subject"] == [{"name": "demo-cpu-infer", "digest": {"sha256": "ab" * 32}}]
    definition = stmt["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["source"] == {
        "commit": "c0ffee",
        "repository": "git+https://git.example/demo",
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


def test_the_in_toto_library_accepts_the_provenance_and_every_dependency_has_a_uri() -> None:
    stmt = validated(make())
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert all(d.get("uri") for d in deps), [d["name"] for d in deps if not d.get("uri")]
    by_name = {d["name"]: d for d in deps}
    assert by_name["lockfile"]["uri"] == "lockfiles/cpu-infer.txt"  # relative to the source commit
    assert by_name["dockerfile"]["uri"] == "images/cpu-infer.Dockerfile"
    assert by_name["base"]["uri"] == (
        f"pkg:oci/base-cpu@sha256%3A{'11' * 32}?repository_url=envbuild.local/demo/base-cpu&tag=0123456789abcdef"
    )
    # A wheel recorded without a download URL is named by its purl.
    unlinked = record()
    unlinked["wheels"][1]["url"] = ""
    assert dependencies(make(unlinked))["wheel:a-1.whl"]["uri"] == "pkg:pypi/a@1"


def test_the_source_commit_is_a_resolved_dependency_of_a_normalised_repository() -> None:
    for remote in ("git@git.example:demo.git", "https://bot:s3cret@git.example/demo.git"):
        stmt = json.loads(make(repository=remote))
        assert stmt["predicate"]["buildDefinition"]["externalParameters"]["source"]["repository"] == (
            "git+https://git.example/demo"
        )
        assert dependencies(make(repository=remote))["source"] == {
            "name": "source",
            "uri": "git+https://git.example/demo@c0ffee",
            "digest": {"gitCommit": "c0ffee"},
        }
    # A local path names no repository: no repository field, no source dependency; the commit stays.
    local = json.loads(make(repository="/home/me/src/demo"))["predicate"]["buildDefinition"]
    assert local["externalParameters"]["source"] == {"commit": "c0ffee"}
    assert "source" not in {d["name"] for d in local["resolvedDependencies"]}


def test_a_dirty_build_is_recorded_as_dirty_and_claims_no_commit_as_a_dependency() -> None:
    dirty = {**record(), "dirty": {"paths": ["demo/app.py"], "sha256": "88" * 32}}
    stmt = validated(make(dirty))
    source = stmt["predicate"]["buildDefinition"]["externalParameters"]["source"]
    assert source["dirty"] == {"paths": ["demo/app.py"], "sha256": "88" * 32}
    assert "source" not in dependencies(make(dirty))
    assert recorded_build(stmt["predicate"]).dirty == DirtyRecord(paths=("demo/app.py",), sha256="88" * 32)


def test_a_build_outside_git_claims_no_commit() -> None:
    stmt = validated(make({**record(), "revision": None}))
    definition = stmt["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"] == {"repository": "git+https://git.example/demo"}
    assert "source" not in {d["name"] for d in definition["resolvedDependencies"]}
    assert recorded_build(stmt["predicate"]).revision is None


def test_the_provenance_reads_back_for_a_rebuild() -> None:
    again = recorded_build(json.loads(make())["predicate"])
    assert again.base == BaseRecord(name=record()["base"]["name"], digest=Digest(record()["base"]["digest"]))
    assert again.source_repository == "git+https://git.example/demo"
    assert [w.filename for w in again.wheels] == ["a-1.whl", "b-2.whl"]
    assert again.spec_sha256 == record()["spec_sha256"] and again.builder.version == "1.28.2"
    assert list(again.changes(again)) == []


def test_the_image_signature_statement_validates() -> None:
    stmt = validated(signature_statement("demo-cpu-infer", Digest.parse(DIGEST)))
    assert stmt["predicateType"] == SIGN_PREDICATE
    assert stmt["subject"] == [{"name": "demo-cpu-infer", "digest": {"sha256": "ab" * 32}}]
    assert stmt["predicate"]["critical"]["image"] == {"docker-manifest-digest": DIGEST}


def test_verify_says_plainly_when_provenance_claims_no_clean_commit() -> None:
    from envbuild.supply.signing.dsse import Statement
    from envbuild.supply.verify import _summary

    def summary(build: dict[str, Any]) -> str:
        return _summary("provenance", Statement.parse(make(build)))

    assert summary(record()).endswith("commit c0ffee")
    assert summary({**record(), "dirty": {"paths": ["a"], "sha256": "88" * 32}}).endswith(
        "commit c0ffee with uncommitted changes"
    )
    assert summary({**record(), "revision": None}).endswith("no commit (built outside git)")


def test_a_source_repository_that_is_a_local_path_is_refused(tmp_path: Path) -> None:
    assert _repository("git@git.example:team/iris.git", tmp_path) == "git+https://git.example/team/iris"
    with pytest.raises(UsageError, match="names no repository") as raised:
        _repository("/home/me/src/iris", tmp_path)
    assert raised.value.hint is not None and "https URL" in raised.value.hint


def test_provenance_without_a_commit_is_rebuilt_only_from_a_worktree() -> None:
    from envbuild.audit.rebuild import _recorded_commit

    recorded = recorded_build(json.loads(make({**record(), "revision": None}))["predicate"])
    with pytest.raises(UsageError, match="names no commit") as raised:
        _recorded_commit(recorded, Digest.parse(DIGEST))
    assert raised.value.hint is not None and "--worktree" in raised.value.hint
    assert _recorded_commit(recorded_build(json.loads(make())["predicate"]), Digest.parse(DIGEST)) == "c0ffee"


def test_a_rebuild_names_the_inputs_it_got_otherwise() -> None:
    recorded = recorded_build(json.loads(make())["predicate"])
    data = record()
    data["wheels"][0]["sha256"] = "00" * 32
    data["wheels"].append({**data["wheels"][1], "filename": "c-3.whl"})
    data["tools"] = []
    data["builder"] = {"name": "buildah", "version": "1.39.0"}
    data["spec_sha256"] = "aa" * 32
    rebuilt = recorded_build(json.loads(make(data))["predicate"])
    assert [(c.name, c.recorded, c.rebuilt) for c in recorded.changes(rebuilt)] == [
        ("spec", "99" * 32, "aa" * 32),
        ("wheel added", "-", "c-3.whl"),
        ("wheel b-2.whl", "66" * 32, "00" * 32),
        ("tool removed", "uv-1.whl", "-"),
        ("builder", '{"name": "buildah", "version": "1.28.2"}', '{"name": "buildah", "version": "1.39.0"}'),
    ]


PROJECT = {
    "filename": "demo-1.0-py3-none-any.whl", "name": "demo", "sha256": "aa" * 32, "url": "demo", "version": "1.0",
}  # fmt: skip


def test_the_projects_wheel_is_a_dependency_by_its_directory_and_reads_back() -> None:
    found = dependencies(make({**record(), "project": PROJECT}))["project:demo-1.0-py3-none-any.whl"]
    assert found == {"name": "project:demo-1.0-py3-none-any.whl", "uri": "demo", "digest": {"sha256": "aa" * 32}}
    recorded = recorded_build(json.loads(make({**record(), "project": PROJECT}))["predicate"])
    assert recorded.project is not None and recorded.project.sha256 == "aa" * 32
    assert recorded.wheels == recorded_build(json.loads(make())["predicate"]).wheels  # not one of the locked wheels
    assert recorded_build(json.loads(make())["predicate"]).project is None


def test_a_rebuilt_project_wheel_with_other_bytes_is_named_as_such() -> None:
    recorded = recorded_build(json.loads(make({**record(), "project": PROJECT}))["predicate"])
    rebuilt = recorded_build(json.loads(make({**record(), "project": {**PROJECT, "sha256": "bb" * 32}}))["predicate"])
    assert [(c.name, c.recorded, c.rebuilt) for c in recorded.changes(rebuilt)] == [
        (
            "the project's wheel differs",
            f"demo-1.0-py3-none-any.whl sha256:{'aa' * 32}",
            f"demo-1.0-py3-none-any.whl sha256:{'bb' * 32}",
        )
    ]

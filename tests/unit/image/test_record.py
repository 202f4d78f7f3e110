"""The typed build record: the bytes of build.json and build-key as before, and a clear error for a damaged one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envbuild.image.record import BuildRecord, BuildRecordError, BuiltImage, DirtyRecord
from envbuild.oci.ref import Digest
from support.layouts import make_layout
from support.records import build_record, record_json

DIGEST = Digest("sha256:" + "ab" * 32)


def test_json_key_and_file_bytes_are_those_of_the_record_dict() -> None:
    """build-key and build.json are what the dict envbuild wrote before the typed record gave."""
    for data in (
        record_json(),
        record_json(dirty={"paths": ["demo/a.py", "demo/b.py"], "sha256": "88" * 32}),
        record_json(revision=None, wheels=[], files=[]),
    ):
        record = build_record(data)
        assert record.to_json() == data
        assert record.key() == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        built = record.with_digest(DIGEST)
        assert built.key() == record.key()  # the image's digest is a result, never an input
        assert built.file_text() == json.dumps({**data, "digest": str(DIGEST)}, indent=2, sort_keys=True) + "\n"


def test_round_trip() -> None:
    record = build_record(dirty={"paths": ["demo/a.py"], "sha256": "88" * 32}).with_digest(DIGEST)
    again = BuildRecord.from_json(json.loads(record.file_text()), source=Path("build.json"))
    assert again == record
    assert again.dirty == DirtyRecord(paths=("demo/a.py",), sha256="88" * 32)
    assert again.wheels[0].filename == "b-2.whl" and again.base.digest == Digest("sha256:" + "11" * 32)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.pop("lockfile_sha256"), "lockfile_sha256 is missing"),
        (lambda d: d.pop("revision"), "revision is missing"),  # null is 'no commit'; absent is damage
        (lambda d: d.update(source_date_epoch="1793620800"), "source_date_epoch is str, not int"),
        (lambda d: d.update(source_date_epoch=True), "source_date_epoch is bool, not int"),
        (lambda d: d.update(builder=["buildah"]), "builder is list, not an object"),
        (lambda d: d["wheels"][1].update(sha256=7), "wheels[1].sha256 is int, not str"),
        (lambda d: d["tools"][0].pop("url"), "tools[0].url is missing"),
        (lambda d: d["base"].update(digest="sha256:abc"), "base.digest is not a sha256 digest"),
        (lambda d: d.update(dirty={"paths": "demo/a.py", "sha256": "88" * 32}), "dirty.paths is str, not list"),
        (lambda d: d.update(files=["demo", None]), "files[1] is NoneType, not str"),
    ],
)
def test_a_damaged_record_names_its_file_and_key(change: Callable[[dict[str, Any]], object], named: str) -> None:
    data = record_json()
    change(data)
    with pytest.raises(BuildRecordError) as raised:
        BuildRecord.from_json(data, source=Path("/p/.envbuild/images/cpu-infer/build.json"))
    assert str(raised.value).startswith("/p/.envbuild/images/cpu-infer/build.json: " + named)
    assert raised.value.hint is not None and "envbuild image" in raised.value.hint


def test_a_damaged_build_json_stops_signing_with_its_name(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Not 'no local build of cpu-infer': the build is there, its record is what is wrong."""
    out = tmp_path / ".envbuild" / "images" / "cpu-infer"
    layout = make_layout(out, name="demo-cpu-infer")
    (out / "build.json").write_text(json.dumps({**record_json(), "digest": layout.digest})[:-40], encoding="utf-8")
    result = cli("-C", tmp_path, "sbom", "cpu-infer")
    assert result.code == 1, result.err
    assert f"{out / 'build.json'} is not a readable build record" in result.err
    assert "envbuild image" in result.err and "Traceback" not in result.err


def test_an_image_opens_from_its_directory(tmp_path: Path) -> None:
    out = tmp_path / "cpu-infer"
    assert BuiltImage.open(out) is None  # nothing there
    layout = make_layout(out, name="demo-cpu-infer")
    assert BuiltImage.open(out) is None  # a layout without a build record is not a build
    record = build_record().with_digest(Digest(layout.digest))
    (out / "build.json").write_text(record.file_text(), encoding="utf-8")
    image = BuiltImage.open(out)
    assert image == BuiltImage(
        variant="cpu-infer", layout=out, name="demo-cpu-infer", digest=Digest(layout.digest), record=record
    )
    (out / "build.json").write_text(record.with_digest(DIGEST).file_text(), encoding="utf-8")
    assert BuiltImage.open(out) is None  # the record of another image

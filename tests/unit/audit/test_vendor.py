"""Vendor archives (audit/vendor.py) without a build: deterministic bytes, the format check, the manifest."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from envbuild import __version__
from envbuild.audit.vendor import FORMAT, MANIFEST, manifest_for, open_archive, write_archive
from envbuild.errors import UsageError
from envbuild.oci.ref import Digest
from envbuild.supply.provenance import provenance_predicate, recorded_build
from support.records import build_record


def stage(root: Path, *, umask_mode: int = 0o644, mtime: int = 1_800_000_000) -> Path:
    """A staged archive directory as vendor() leaves it, with the given file modes and mtimes."""
    files = {
        MANIFEST: json.dumps({"format": FORMAT, "variant": "cpu-infer"}) + "\n",
        "source/envbuild.toml": 'name = "x"\n',
        "source/bin/run": "#!/bin/sh\n",
        "cache/wheels/ab/numpy-2.0-py3-none-any.whl": "wheel bytes",
        "bundles/cd.sigstore.json": "{}",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755 if rel == "source/bin/run" else umask_mode)
    for path in [*root.rglob("*"), root]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def test_the_same_files_give_the_same_archive_whatever_their_times_owners_and_umask(tmp_path: Path) -> None:
    first = tmp_path / "one.tar"
    size = write_archive(stage(tmp_path / "a"), first)
    second = tmp_path / "two.tar"
    write_archive(stage(tmp_path / "b", umask_mode=0o600, mtime=1_900_000_000), second)
    assert size == first.stat().st_size
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:3] == ["envbuild-vendor.json", "bundles", "bundles/cd.sigstore.json"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    modes = {m.name: m.mode for m in members}
    assert modes["source/bin/run"] == 0o755 and modes["source/envbuild.toml"] == 0o644 and modes["source"] == 0o755
    assert first.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "one.tar", "two.tar"]  # no temporary left


def test_a_failed_write_leaves_the_previous_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staged = stage(tmp_path / "staged")
    output = tmp_path / "out" / "v.tar"
    output.parent.mkdir()
    output.write_bytes(b"the previous archive")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_full)  # a full disk cannot be had on demand
    with pytest.raises(OSError, match="No space left"):
        write_archive(staged, output)
    assert output.read_bytes() == b"the previous archive"
    assert [p.name for p in output.parent.iterdir()] == ["v.tar"]  # the partial archive is gone


def test_an_archive_opens_to_what_was_staged(tmp_path: Path) -> None:
    archive = tmp_path / "v.tar"
    write_archive(stage(tmp_path / "staged"), archive)
    vendored = open_archive(archive, tmp_path / "open")
    assert vendored.manifest == {"format": FORMAT, "variant": "cpu-infer"}
    assert (vendored.source / "envbuild.toml").read_text() == 'name = "x"\n'
    assert (vendored.cache / "wheels" / "ab" / "numpy-2.0-py3-none-any.whl").read_text() == "wheel bytes"
    assert vendored.bundles() == [b"{}"]


def test_what_is_not_a_vendor_archive_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 64)
    with pytest.raises(UsageError, match="is not an envbuild vendor archive") as raised:
        open_archive(junk, tmp_path / "a")
    assert raised.value.hint == "make one with 'envbuild vendor'"
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(tmp_path / "junk.tar", arcname="junk.tar")  # a tar, but no manifest in it
    with pytest.raises(UsageError, match="is not an envbuild vendor archive"):
        open_archive(plain, tmp_path / "b")


def test_an_archive_of_another_format_names_both_formats(tmp_path: Path) -> None:
    staged = stage(tmp_path / "staged")
    (staged / MANIFEST).write_text(json.dumps({"format": "envbuild-vendor/2"}), encoding="utf-8")
    archive = tmp_path / "v2.tar"
    write_archive(staged, archive)
    with pytest.raises(UsageError, match=f"of format 'envbuild-vendor/2'; this envbuild reads {FORMAT}") as raised:
        open_archive(archive, tmp_path / "open")
    assert raised.value.hint is not None and "envbuild version that made the archive" in raised.value.hint


def test_the_manifest_names_the_image_and_what_a_rebuild_starts_from() -> None:
    digest = Digest.of(b"the image manifest")
    recorded = recorded_build(provenance_predicate(build_record(), source_repository="https://git.example/team/app"))
    text = manifest_for(image=f"registry.example/team/app@{digest}", digest=digest, record=recorded, wheels=3)
    assert json.loads(text) == {
        "format": FORMAT,
        "image": f"registry.example/team/app@{digest}",
        "digest": str(digest),
        "variant": "cpu-infer",
        "revision": "c0ffee",
        "base": "sha256:" + "11" * 32,
        "wheels": 3,
        "envbuild": __version__,
    }
    assert text == (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()  # stable bytes

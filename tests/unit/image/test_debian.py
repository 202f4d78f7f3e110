"""The Debian base in the cache: what happens when two envbuild processes on one cache make it at once."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from envbuild.image import debian
from envbuild.oci.ref import Digest
from envbuild.oci.writer import write_single_layer_image

RECIPE = {"suite": "bookworm", "packages": ["python3"]}
EPOCH = 1_700_000_000


def rootfs_tar(path: Path, text: bytes) -> Path:
    """A root file system tar of one file, as mmdebstrap --format=tar writes one."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("./etc/os-release")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return path


def test_a_base_another_process_made_meanwhile_is_taken_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process that finishes second keeps the first one's base: no copy inside it, nothing beside it."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(debian, "mmdebstrap_version", lambda: "1.3.5")
    monkeypatch.setattr(debian, "which", lambda *args, **kwargs: "mmdebstrap")
    key = debian.base_key(RECIPE, platform="linux/amd64", epoch=EPOCH)
    final = cache / "bases" / key

    def mmdebstrap(args: list[str], **kwargs: Any) -> None:  # while it runs, the other process finishes
        rootfs_tar(Path(args[-1]), b"ours\n")
        theirs = rootfs_tar(tmp_path / "theirs.tar", b"theirs\n")
        write_single_layer_image(
            layer_tar=theirs, out=final, epoch=EPOCH, name="base", created_by="other", env=[],
            architecture="amd64", keep_owners=True,
        )  # fmt: skip

    monkeypatch.setattr(debian, "run", mmdebstrap)
    base = debian.build_debian_base(RECIPE, platform="linux/amd64", epoch=EPOCH, cache=cache)
    assert base.path == final
    assert sorted(p.name for p in final.iterdir()) == ["blobs", "index.json", "oci-layout"]
    assert [p.name for p in (cache / "bases").iterdir()] == [key]  # our temporary directory is gone
    manifest = json.loads(base.read_blob(base.select().digest))
    config = json.loads(base.read_blob(Digest.parse(manifest["config"]["digest"])))
    assert [h["created_by"] for h in config["history"]] == ["other"]  # theirs, kept as it was

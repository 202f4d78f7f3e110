"""A real buildah build of what envbuild stages and renders for [image].files: links stay links, odd names survive.

One small build FROM scratch (a few seconds, no base, no wheels): the staged project is copied
with the COPY lines render writes, and the image's layer is read back with tarfile.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from envbuild.builders import BuildRequest, get_builder
from envbuild.fetch import stage_project
from envbuild.registry.ref import Digest
from envbuild.render import STAGE_DIR, copy_arguments
from support.tools import require_tool

ODD = 'it\'s "$HOME" (v2).txt'


def test_staged_project_builds_with_links_and_odd_names(tmp_path: Path) -> None:
    """buildah copies in-project links as links, a listed link as its target, and quoted names as themselves."""
    require_tool("buildah")
    require_tool("unshare")
    root = tmp_path / "project"
    (root / "app" / "data").mkdir(parents=True)
    (root / "app" / "data" / "v2.csv").write_text("a,b\n", encoding="utf-8")
    (root / "app" / "current.csv").symlink_to("data/v2.csv")
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (root / "config").mkdir()
    (root / "config" / "serve.toml").write_text("port = 8080\n", encoding="utf-8")
    (root / "serve.toml").symlink_to("config/serve.toml")
    (root / "my data.txt").write_text("spaces\n", encoding="utf-8")
    (root / ODD).write_text("quotes\n", encoding="utf-8")
    files = ("app", "serve.toml", "my data.txt", ODD)
    stage_project(root, files)
    copies = [copy_arguments(f"{STAGE_DIR}/project/{f}", f"/app/{f}") for f in files]
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n" + "".join(f"COPY {args}\n" for args in copies), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    layout = get_builder("buildah").build(
        BuildRequest(
            context=root, dockerfile=dockerfile, base_name="scratch", base_layout=None, epoch=0,
            platform="linux/amd64", workdir=work,
        )
    )  # fmt: skip
    manifest = json.loads(layout.read_blob(layout.select().digest))
    members: dict[str, tarfile.TarInfo] = {}
    contents: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(layout.read_blob(Digest.parse(layer["digest"])))) as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./").rstrip("/")
                members[name] = member
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    contents[name] = extracted.read()
    link = members["app/app/current.csv"]
    assert link.issym() and link.linkname == "data/v2.csv"
    assert contents["app/app/data/v2.csv"] == b"a,b\n"
    assert members["app/serve.toml"].isfile() and contents["app/serve.toml"] == b"port = 8080\n"
    assert contents["app/my data.txt"] == b"spaces\n"
    assert contents[f"app/{ODD}"] == b"quotes\n"
    assert not [n for n in members if "__pycache__" in n or n.endswith(".pyc")]

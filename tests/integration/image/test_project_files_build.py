"""Real buildah builds of what envbuild stages and renders for [image].files: links stay links, odd names survive.

Small builds FROM scratch (about 1.5 s each, no base, no wheels): the project is staged as
'envbuild image' stages it, copied with the COPY lines render writes for the spec, and the
image's layers are read back with tarfile.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from envbuild.image.builders import BuildRequest, get_builder
from envbuild.image.fetch import stage_project
from envbuild.image.render import copy_arguments, project_copies
from envbuild.lock.spec import load_spec
from envbuild.oci.ref import Digest
from envbuild.workspace import Workspace
from support.tools import require_tool

ODD = 'it\'s "$HOME" (v2).txt'
SPEC = """
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
[roles.infer]
entrypoint = ["python", "-m", "app"]
[accelerators.cpu]
base = { debian = "bookworm" }
[image]
files = FILES
"""


def make_project(root: Path, files: str) -> None:
    """A project with an in-project link inside a directory, a listed link, odd names, outputs and bytecode."""
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
    for output in (".git/HEAD", "lockfiles/cpu-infer.txt", "images/cpu-infer.Dockerfile"):
        (root / output).parent.mkdir(parents=True, exist_ok=True)
        (root / output).write_text("output\n", encoding="utf-8")
    (root / "envbuild.toml").write_text(SPEC.replace("FILES", files), encoding="utf-8")


def build_and_read(root: Path, work: Path) -> tuple[dict[str, tarfile.TarInfo], dict[str, bytes]]:
    """Stage and build the project's [image].files; the image's members and file contents by path."""
    spec = load_spec(root)
    stage_project(Workspace.at(spec.root), spec.image.files)
    dockerfile = work / "Dockerfile"
    copies = "".join(f"COPY {copy_arguments(source, target)}\n" for source, target in project_copies(spec))
    dockerfile.write_text("FROM scratch\n" + copies, encoding="utf-8")
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
    return members, contents


@pytest.mark.parametrize(
    ("files", "prefix"),
    [
        pytest.param(json.dumps(["app", "serve.toml", "my data.txt", ODD]), "app", id="listed"),
        pytest.param('["."]', "app", id="dot"),
    ],
)
def test_staged_project_builds(tmp_path: Path, files: str, prefix: str) -> None:
    """buildah copies in-project links as links, a listed link as its target, odd names as themselves."""
    require_tool("buildah")
    require_tool("unshare")
    root, work = tmp_path / "project", tmp_path / "work"
    work.mkdir()
    make_project(root, files)
    members, contents = build_and_read(root, work)
    link = members[f"{prefix}/app/current.csv"]
    assert link.issym() and link.linkname == "data/v2.csv"
    assert contents[f"{prefix}/app/data/v2.csv"] == b"a,b\n"
    assert contents[f"{prefix}/my data.txt"] == b"spaces\n"
    assert contents[f"{prefix}/{ODD}"] == b"quotes\n"
    assert not [n for n in members if "__pycache__" in n or n.endswith(".pyc")]
    if files == '["."]':
        # The whole project, links as links, without VCS data or envbuild's outputs.
        assert members[f"{prefix}/serve.toml"].issym()
        assert contents[f"{prefix}/config/serve.toml"] == b"port = 8080\n"
        assert not [n for n in members if n.split("/")[1:2] in (["lockfiles"], ["images"], [".git"], [".envbuild"])]
    else:
        assert members[f"{prefix}/serve.toml"].isfile() and contents[f"{prefix}/serve.toml"] == b"port = 8080\n"

"""``envbuild pull -o DIR`` and ``envbuild push`` against what is already on disk, with a real registry.

Pull keeps nothing corrupt, writes into nothing that is not an OCI layout, and adds to a layout
without dropping what it holds; push of a broken layout says what is broken. Checked with hashlib
(support.layouts) and skopeo, independently of envbuild.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from support.layouts import TestLayout, index_digest, make_layout, verify_blobs
from support.registry import Registry
from support.tools import require_tool

pytestmark = pytest.mark.registry

Cli = Callable[..., CliResult]
REF_NAME = "org.opencontainers.image.ref.name"


def pushed(registry: Registry, cli: Cli, path: Path, repository: str, tag: str = "v1") -> TestLayout:
    """A small image, pushed to ``repository:tag`` of the registry."""
    layout = make_layout(path, layer_size=32 * 1024, layers=2, seed=repository)
    result = cli("push", "--insecure", layout.path, f"{registry.host}/{repository}:{tag}")
    assert result.code == 0, result.err
    return layout


def index_entries(path: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((path / "index.json").read_text(encoding="utf-8"))["manifests"]
    return entries


def assert_refused(result: CliResult, *needles: str) -> None:
    """Exit 2 (bad input), an error and a hint naming the problem, no traceback."""
    assert result.code == 2, f"exit {result.code}:\n{result.out}{result.err}"
    assert "Traceback" not in result.err and "error:" in result.err and "hint:" in result.err, result.err
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in:\n{result.err}"


@pytest.mark.parametrize("which", ["layer", "manifest"])
def test_pull_replaces_a_corrupt_blob(which: str, shared_registry: Registry, tmp_path: Path, cli: Cli) -> None:
    source = pushed(shared_registry, cli, tmp_path / "source", f"pull-corrupt/{which}")
    ref = f"{shared_registry.host}/pull-corrupt/{which}:v1@{source.digest}"
    output = tmp_path / "pulled"
    assert cli("pull", "--insecure", ref, "-o", output).code == 0
    blob = output / "blobs" / "sha256" / (source.layers[0] if which == "layer" else source.digest).split(":")[1]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))

    again = cli("pull", "--insecure", ref, "-o", output)
    assert again.code == 0, again.err
    assert verify_blobs(output) == verify_blobs(source.path)  # every blob genuine again
    assert index_digest(output) == source.digest


@pytest.mark.parametrize(
    "contents",
    [
        {"index.json": '{"name": "my-web-app", "entry": "main.js"}', "main.js": "console.log(1)\n"},
        {"notes.txt": "mine\n"},
        {"oci-layout": '{"imageLayoutVersion":"1.0.0"}', "index.json": ""},
    ],
    ids=["foreign-index-json", "other-files", "broken-layout"],
)
def test_pull_refuses_a_directory_that_is_not_a_layout(
    contents: dict[str, str], shared_registry: Registry, tmp_path: Path, cli: Cli
) -> None:
    source = pushed(shared_registry, cli, tmp_path / "source", "pull-refuse/app")
    output = tmp_path / "mine"
    output.mkdir()
    for name, text in contents.items():
        (output / name).write_text(text, encoding="utf-8")

    result = cli("pull", "--insecure", f"{shared_registry.host}/pull-refuse/app@{source.digest}", "-o", output)
    assert_refused(result, str(output))
    assert {p.name: p.read_text(encoding="utf-8") for p in output.iterdir()} == contents  # untouched


def test_pull_adds_to_a_layout_holding_other_images(shared_registry: Registry, tmp_path: Path, cli: Cli) -> None:
    output = tmp_path / "layout"
    first = pushed(shared_registry, cli, output, "pull-add/first", tag="latest")  # the layout pushed from
    second = pushed(shared_registry, cli, tmp_path / "second", "pull-add/second", tag="latest")
    before = index_entries(output)

    for ref in (f"pull-add/second@{second.digest}", f"pull-add/second:latest@{second.digest}"):
        result = cli("pull", "--insecure", f"{shared_registry.host}/{ref}", "-o", output)
        assert result.code == 0, result.err
    entries = index_entries(output)
    # The entry already there is kept; the pulled image took the name 'latest'; its first
    # (unnamed) entry is not doubled.
    assert [e["digest"] for e in entries] == [first.digest, second.digest]
    assert entries[0]["digest"] == before[0]["digest"] and REF_NAME not in (entries[0].get("annotations") or {})
    assert (entries[1].get("annotations") or {}) == {REF_NAME: "latest"}
    assert set(verify_blobs(output)) == {first.digest, *first.blobs, second.digest, *second.blobs}
    # skopeo (1.9 reads images by name only) finds the pulled one under its name.
    inspected = subprocess.run(
        [require_tool("skopeo"), "inspect", f"oci:{output}:latest"], capture_output=True, text=True, check=False
    )
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["Digest"] == second.digest, inspected.stderr


def _empty_index(layout: TestLayout) -> str:
    (layout.path / "index.json").write_bytes(b"")
    return "index.json"


def _truncated_layer(layout: TestLayout) -> str:
    path = layout.blob_path(layout.layers[1])
    path.write_bytes(path.read_bytes()[:100])
    return layout.layers[1]


def _corrupt_layer(layout: TestLayout) -> str:
    path = layout.blob_path(layout.layers[1])
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    return layout.layers[1]


def _missing_manifest(layout: TestLayout) -> str:
    layout.blob_path(layout.digest).unlink()
    return layout.digest


@pytest.mark.parametrize("damage", [_empty_index, _truncated_layer, _corrupt_layer, _missing_manifest])
def test_push_of_a_broken_layout_says_what_is_broken(
    damage: Callable[[TestLayout], str], shared_registry: Registry, tmp_path: Path, cli: Cli
) -> None:
    layout = make_layout(tmp_path / "layout", layer_size=32 * 1024, layers=2, seed=f"broken-{damage.__name__}")
    what = damage(layout)
    repository = f"push-broken/{damage.__name__.strip('_').replace('_', '-')}"
    result = cli("push", "--insecure", layout.path, f"{shared_registry.host}/{repository}:v1")
    assert_refused(result, str(layout.path), what)
    storage = shared_registry.storage / "docker" / "registry" / "v2" / "repositories" / repository
    if damage is _corrupt_layer:  # found by hashing it before its upload: other blobs may be up, never the image
        assert not (storage / "_manifests").exists()
    else:  # found before anything was sent
        assert not storage.exists()


def test_push_of_one_image_is_not_stopped_by_another_broken_one(
    shared_registry: Registry, tmp_path: Path, cli: Cli
) -> None:
    good = make_layout(tmp_path / "layout", layer_size=1024, seed="push-one-good", name="good")
    bad = make_layout(tmp_path / "bad", layer_size=1024, seed="push-one-bad", name="bad")
    for blob in bad.blobs[:-1]:  # its last layer is missing
        shutil.copy(bad.blob_path(blob), good.blob_path(blob))
    shutil.copy(bad.blob_path(bad.digest), good.blob_path(bad.digest))
    index = json.loads((good.path / "index.json").read_text(encoding="utf-8"))
    index["manifests"] += index_entries(bad.path)
    (good.path / "index.json").write_text(json.dumps(index), encoding="utf-8")

    target = f"{shared_registry.host}/push-one/good:v1"
    result = cli("push", "--insecure", "--name", "good", good.path, target)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{target}@{good.digest}"
    assert_refused(cli("push", "--insecure", "--name", "bad", good.path, target), bad.layers[-1])

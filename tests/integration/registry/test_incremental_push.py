"""Pushing the demo's images to a real registry after a change sends only what changed.

Package layers depend only on their wheels, not on the commit (docs/layers.md): so a
commit that changes one line of the project re-uploads the project layer and the config,
and cpu-train, pushed beside cpu-infer, finds their shared layers (the base's, numpy's,
onnxruntime's, ...) already there. What is stored is counted in the registry's own storage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envbuild.oci.annotations import LAYER
from envbuild.oci.layout import Layout
from support.demo import built, cli_process, commit
from support.registry import Registry

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.registry]

BLOBS = Path("docker/registry/v2/blobs/sha256")


def push(project: Path, cache: Path, variant: str, ref: str) -> dict[str, Any]:
    """``envbuild --json push`` of the project's image of ``variant`` to ``ref``: what it reported.

    The layout is pushed from a copy (hard links) without the bundles an earlier test's 'sign'
    may have kept beside the shared build: a push attaches those, and this test counts layers.
    """
    copy = project.parent / f"push-{variant}-{ref.rsplit(':', 1)[-1]}"
    kept = shutil.ignore_patterns("*.sigstore.json", "sbom.cdx.json", "provenance.intoto.json")
    shutil.copytree(image_dir(project, variant), copy, ignore=kept, copy_function=os.link)
    result = cli_process(project, cache, "push", "--insecure", str(copy), ref)
    assert result.returncode == 0, result.stderr
    shutil.rmtree(copy)
    pushed = dict(json.loads(result.stdout))
    assert not pushed["attached"], pushed
    return pushed


def image_dir(project: Path, variant: str) -> Path:
    return project / ".envbuild" / "images" / variant


def manifest(project: Path, variant: str) -> dict[str, Any]:
    layout = Layout.open(image_dir(project, variant))
    return dict(json.loads(layout.read_blob(layout.select().digest)))


def blobs(image: dict[str, Any]) -> dict[str, int]:
    """The blobs a manifest names (config and layers): digest -> size."""
    return {d["digest"]: d["size"] for d in [image["config"], *image["layers"]]}


def named(image: dict[str, Any]) -> dict[str, str]:
    """envbuild's layers of a manifest: dev.envbuild.layer name -> digest."""
    return {d["annotations"][LAYER]: d["digest"] for d in image["layers"] if LAYER in d.get("annotations", {})}


def stored(registry: Registry) -> set[str]:
    """Every blob in the registry's storage (layers, configs and manifests), each stored once by its digest."""
    return {f"sha256:{path.name}" for path in (registry.storage / BLOBS).glob("*/*") if (path / "data").is_file()}


def test_a_commit_pushes_the_project_layer_and_the_images_share_their_package_layers(
    demo_image: tuple[Path, str],
    demo_train_image: tuple[Path, str],
    demo_cache: Path,
    registry: Registry,
    tmp_path: Path,
) -> None:
    project, digest = demo_image
    repository = f"{registry.host}/team/iris"
    first = push(project, demo_cache, "cpu-infer", f"{repository}:infer-1")
    before = manifest(project, "cpu-infer")
    assert first["digest"] == digest and first["uploaded"] == len(blobs(before)) and first["existed"] == 0

    clone = tmp_path / "demo"  # the shared project keeps its image
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    predict = clone / "demo" / "iris_demo" / "predict.py"
    text = predict.read_text(encoding="utf-8")
    assert "import sys\n" in text
    predict.write_text(text.replace("import sys\n", "import sys  # one changed line\n", 1), encoding="utf-8")
    commit(clone, "one line of predict.py")
    rebuilt = cli_process(clone, demo_cache, "-v", "image", "--variant", "cpu-infer")
    assert built(rebuilt)["cpu-infer"]["cached"] is False
    # The -v counter: only the project's layer was tarred and compressed; the others came from the cache.
    assert "iris-demo-cpu-infer layers: 1 compressed, " in rebuilt.stderr, rebuilt.stderr
    assert "(compressed: project)" in rebuilt.stderr

    after = manifest(clone, "cpu-infer")
    new = {d: size for d, size in blobs(after).items() if d not in blobs(before)}
    assert [name for name, d in named(after).items() if d in new] == ["project"]
    second = push(clone, demo_cache, "cpu-infer", f"{repository}:infer-2")
    layer_bytes = sum(d["size"] for d in after["layers"])
    assert second["uploaded"] == len(new) == 2 and second["bytes_uploaded"] == sum(new.values())  # project + config
    assert second["bytes_uploaded"] < 0.01 * layer_bytes, (second, layer_bytes)

    train_project, train_digest = demo_train_image
    train = manifest(train_project, "cpu-train")
    infer_layers, train_layers = named(after), named(train)
    for name in ("python:numpy", "python:onnxruntime", "venv", "config"):
        assert infer_layers[name] == train_layers[name], name
    there = blobs(before) | blobs(after)
    shared = {d: size for d, size in blobs(train).items() if d in there}
    third = push(train_project, demo_cache, "cpu-train", f"{repository}:train")
    assert third["digest"] == train_digest and third["existed"] == len(shared)
    assert third["bytes_uploaded"] == sum(size for d, size in blobs(train).items() if d not in shared)
    manifests = {first["digest"], second["digest"], third["digest"]}
    assert stored(registry) == set(there) | set(blobs(train)) | manifests

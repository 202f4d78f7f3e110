"""``envbuild load`` and ``envbuild image --load`` into containers-storage, with real skopeo and buildah.

Every load goes into a storage of the test's own (a storage.conf with a temporary graphroot
named by CONTAINERS_STORAGE_CONF), never into the machine's. The docker side is tested
against a private dockerd in test_docker_builder.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from envbuild.oci.layout import Layout
from support.demo import built, cli_process
from support.tools import require_tool

pytestmark = [pytest.mark.network, pytest.mark.slow]


def config_digest(layout: Path) -> str:
    """The config digest (the image ID a store gives it) of the image in ``layout``."""
    image = Layout.open(layout)
    return str(json.loads(image.read_blob(image.select().digest))["config"]["digest"])


def storage(tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    """A storage.conf of a temporary vfs storage: the environment that names it, and buildah's options for it."""
    root, run = tmp_path / "graph", tmp_path / "run"
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root}"\nrunroot = "{run}"\n')
    options = ["--root", str(root), "--runroot", str(run), "--storage-driver", "vfs"]
    return {"CONTAINERS_STORAGE_CONF": str(conf)}, options


def test_load_puts_the_image_into_containers_storage(
    demo_image: tuple[Path, str], demo_cache: Path, tmp_path: Path
) -> None:
    """buildah sees the image as localhost/<name>:<variant>, with the layout's config digest as its ID.

    Loaded from the layout under .envbuild/ (a dot-directory, which buildah's own oci: reference refuses).
    """
    buildah = require_tool("buildah")
    require_tool("skopeo")
    project = demo_image[0]
    env, options = storage(tmp_path)
    result = cli_process(project, demo_cache, "load", "cpu-infer", "--into", "containers-storage", env=env)
    assert result.returncode == 0, result.stderr
    config = config_digest(project / ".envbuild" / "images" / "cpu-infer")
    assert json.loads(result.stdout)["loaded"] == [
        {"variant": "cpu-infer", "store": "containers-storage", "name": "localhost/iris-demo:cpu-infer",
         "image_id": config},
    ]  # fmt: skip
    assert "cpu-infer: loaded into containers-storage as localhost/iris-demo:cpu-infer" in result.stderr
    listed = subprocess.run(
        [buildah, *options, "images", "--json", "--no-trunc"], capture_output=True, text=True, check=True
    )
    images = json.loads(listed.stdout)
    [image] = [i for i in images if "localhost/iris-demo:cpu-infer" in i["names"]]
    assert image["id"] == config  # --no-trunc: the full ID, "sha256:" and all
    inspected = json.loads(
        subprocess.run(
            [buildah, *options, "inspect", "--type", "image", "localhost/iris-demo:cpu-infer"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert inspected["FromImageDigest"] == demo_image[1]


def test_image_load_loads_what_it_built(demo_image: tuple[Path, str], demo_cache: Path, tmp_path: Path) -> None:
    """'envbuild image --load containers-storage' (an unchanged build here) loads what it built there."""
    buildah = require_tool("buildah")
    require_tool("skopeo")
    project = demo_image[0]
    env, options = storage(tmp_path)
    result = cli_process(
        project, demo_cache, "image", "--variant", "cpu-infer", "--load", "containers-storage", env=env
    )
    entry = built(result)["cpu-infer"]
    assert entry["digest"] == demo_image[1]
    assert [(e["store"], e["name"]) for e in entry["loaded"]] == [  # type: ignore[attr-defined]
        ("containers-storage", "localhost/iris-demo:cpu-infer")
    ]
    names = subprocess.run(
        [buildah, *options, "images", "--format", "{{.Name}}:{{.Tag}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert names == ["localhost/iris-demo:cpu-infer"]


def test_load_without_its_tools_says_what_to_install(
    demo_image: tuple[Path, str], demo_cache: Path, tmp_path: Path
) -> None:
    """No skopeo on PATH: exit 2 naming skopeo; and with no docker either, a plain load names both."""
    project = demo_image[0]
    env, _ = storage(tmp_path)
    env.update(PATH=str(tmp_path / "empty"), DOCKER_HOST="")
    refused = cli_process(project, demo_cache, "load", "cpu-infer", "--into", "containers-storage", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "skopeo is not installed" in refused.stderr and "apt-get install skopeo" in refused.stderr
    if not Path("/var/run/docker.sock").exists():
        nothing = cli_process(project, demo_cache, "load", env=env)
        assert nothing.returncode == 2 and "nothing to load the image into" in nothing.stderr
    assert not (tmp_path / "graph").exists(), "nothing was written into the storage"

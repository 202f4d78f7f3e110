"""Session fixtures: one envbuild cache and one built demo cpu-infer image for every module that needs them.

Building the demo image from a cold cache costs about two minutes (the Debian base, the
wheels, the build); test_image.py and test_rebuild.py share that build instead of paying twice.
Tests may read the project and rebuild in it, but must leave its image as they found it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.demo import built, cli_process, make_project
from support.tools import require_tool


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An envbuild cache (bases, wheels) shared by the session's image builds."""
    for tool in ("buildah", "mmdebstrap", "umoci", "skopeo", "unshare", "git"):
        require_tool(tool)
    return tmp_path_factory.mktemp("envbuild-cache")


@pytest.fixture(scope="session")
def demo_image(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, str]:
    """The demo project in a fresh repository, with its cpu-infer image built: (project, digest).

    What the builder wrote before envbuild split it into layers is kept in ``<project>/../raw``
    (ENVBUILD_KEEP_RAW), for the test that compares the two.
    """
    project = make_project(tmp_path_factory.mktemp("one") / "demo")
    raw = {"ENVBUILD_KEEP_RAW": str(project.parent / "raw")}
    image = built(cli_process(project, demo_cache, "image", "--variant", "cpu-infer", env=raw))["cpu-infer"]
    return project, str(image["digest"])


@pytest.fixture(scope="session")
def demo_train_image(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, str]:
    """The demo project in another fresh repository, with its cpu-train image built: (project, digest).

    Built once (about a minute) for the tests that run the training image and those that push
    it beside cpu-infer; the same rules as :func:`demo_image`.
    """
    project = make_project(tmp_path_factory.mktemp("train") / "demo")
    image = built(cli_process(project, demo_cache, "image", "--variant", "cpu-train"))["cpu-train"]
    return project, str(image["digest"])

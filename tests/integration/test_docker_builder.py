"""The docker builder adapter against a real dockerd (Debian's docker.io) started by the tests.

dockerd runs on a private socket with its own data root, no bridge and no iptables
(there is no network to give containers here). Debian's docker 20.10 embeds
BuildKit 0.8: envbuild must say its output is not reproducible by itself, and
envbuild's canonical layers must still make two clean builds agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.demo import built, envbuild, make_project
from support.tools import require_tool

pytestmark = [pytest.mark.network, pytest.mark.slow]

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 CLI, which still builds with the embedded BuildKit


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private dockerd; yields the environment that points envbuild at it."""
    binary = require_tool("dockerd")
    for tool in ("mmdebstrap", "umoci"):
        require_tool(tool)
    if not Path(DOCKER_CLI).is_file():
        pytest.fail(f"{DOCKER_CLI} is missing: .ci/run installs docker.io")
    root = tmp_path_factory.mktemp("dockerd")
    socket = root / "docker.sock"
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [binary, "--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=vfs",
         f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'pid'}",
         f"--host=unix://{socket}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env = {"DOCKER_HOST": f"unix://{socket}", "ENVBUILD_DOCKER": DOCKER_CLI}
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER_CLI, "version"], env={**os.environ, **env}, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        subprocess.run(["umount", "-R", str(root / "exec")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_docker_builds_reproducibly_and_says_buildkit_is_too_old(dockerd: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    project = make_project(tmp_path / "demo")
    first = envbuild(project, cache, "image", "--variant", "cpu-infer", "--builder", "docker", env=dockerd)
    image = built(first)["cpu-infer"]
    assert "BuildKit 0.8 has no rewrite-timestamp" in first.stderr

    # Clean: no previous image, no BuildKit cache, no built image in the daemon.
    env = {**os.environ, **dockerd}
    subprocess.run([DOCKER_CLI, "builder", "prune", "-af"], env=env, check=True, capture_output=True)
    subprocess.run(
        [DOCKER_CLI, "rmi", "-f", "envbuild.local/build/image:latest"], env=env, check=True, capture_output=True
    )
    shutil.rmtree(project / ".envbuild" / "images")
    again = built(envbuild(project, cache, "image", "--variant", "cpu-infer", "--builder", "docker", env=dockerd))[
        "cpu-infer"
    ]
    assert again["digest"] == image["digest"] and again["cached"] is False

    # The image runs: the daemon loads it back and runs the inference entry point, without a network.
    layout = project / ".envbuild" / "images" / "cpu-infer"
    archive = tmp_path / "image.tar"
    subprocess.run(
        ["skopeo", "copy", f"oci:{layout}:iris-demo-cpu-infer", f"docker-archive:{archive}:envbuild.local/test/iris:1"],
        check=True,
        capture_output=True,
    )
    subprocess.run([DOCKER_CLI, "load", "-i", archive], env=env, check=True, capture_output=True)
    ran = subprocess.run(
        [DOCKER_CLI, "run", "--rm", "--network=none", "envbuild.local/test/iris:1", "5.1", "3.5", "1.4", "0.2"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "setosa"


def test_a_missing_daemon_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "demo")
    env = {"DOCKER_HOST": f"unix://{tmp_path / 'no.sock'}", "ENVBUILD_DOCKER": DOCKER_CLI}
    result = envbuild(project, tmp_path / "cache", "image", "--variant", "cpu-infer", "--builder", "docker", env=env)
    assert result.returncode == 2 and "no Docker daemon answers" in result.stderr and "Traceback" not in result.stderr

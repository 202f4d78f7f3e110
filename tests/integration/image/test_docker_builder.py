"""The docker builder adapter against a real dockerd (Debian's docker.io) started by the tests.

dockerd runs on a private socket with its own data root, no bridge and no iptables
(there is no network to give containers here). Debian's docker 20.10 embeds
BuildKit 0.8: envbuild must say its output is not reproducible by itself, and
envbuild's canonical layers must still make two clean builds agree.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.demo import built, cli_process, make_project
from support.registry import free_port
from support.tools import require_tool

pytestmark = [pytest.mark.network, pytest.mark.slow]

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 CLI, which still builds with the embedded BuildKit
TCP = "ENVBUILD_TEST_DOCKERD_TCP"  # in the dockerd fixture's environment: its loopback TCP address


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
    port = free_port()  # also on loopback TCP: a build endpoint, as a remote builder machine's daemon
    log = (root / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [binary, "--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=overlay2",
         f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'pid'}",
         f"--host=unix://{socket}", f"--host=tcp://127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env = {"DOCKER_HOST": f"unix://{socket}", "ENVBUILD_DOCKER": DOCKER_CLI, TCP: f"tcp://127.0.0.1:{port}"}
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


@dataclass(frozen=True)
class DockerBuilt:
    """The demo project with its cpu-infer image built by 'envbuild image --builder docker'."""

    project: Path
    cache: Path
    image: dict[str, object]
    stderr: str


@pytest.fixture(scope="module")
def docker_built(dockerd: dict[str, str], demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> DockerBuilt:
    """One docker build of the demo, shared by the tests of this module (the session's cache holds base and wheels)."""
    project = make_project(tmp_path_factory.mktemp("docker") / "demo")
    first = cli_process(project, demo_cache, "image", "--variant", "cpu-infer", "--builder", "docker", env=dockerd)
    return DockerBuilt(project=project, cache=demo_cache, image=built(first)["cpu-infer"], stderr=first.stderr)


def layers_of(project: Path) -> list[dict[str, object]]:
    """The layer descriptors of the project's built cpu-infer image."""
    layout = project / ".envbuild" / "images" / "cpu-infer"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return list(manifest["layers"])


def test_docker_builds_reproducibly_and_says_buildkit_is_too_old(
    dockerd: dict[str, str], docker_built: DockerBuilt, demo_image: tuple[Path, str], tmp_path: Path
) -> None:
    project, cache, image = docker_built.project, docker_built.cache, docker_built.image
    assert "BuildKit 0.8 has no rewrite-timestamp" in docker_built.stderr
    # envbuild writes the layers, not the builder: BuildKit's build has buildah's layers, blob for blob.
    assert layers_of(project) == layers_of(demo_image[0])

    # Clean: no previous image, no BuildKit cache, no built image in the daemon.
    env = {**os.environ, **dockerd}
    subprocess.run([DOCKER_CLI, "builder", "prune", "-af"], env=env, check=True, capture_output=True)
    subprocess.run(
        [DOCKER_CLI, "rmi", "-f", "envbuild.local/build/image:latest"], env=env, check=True, capture_output=True
    )
    shutil.rmtree(project / ".envbuild" / "images")
    again = built(cli_process(project, cache, "image", "--variant", "cpu-infer", "--builder", "docker", env=dockerd))[
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


def test_the_printed_buildkit_commands_give_envbuilds_image(
    dockerd: dict[str, str], docker_built: DockerBuilt, tmp_path: Path
) -> None:
    """'envbuild dockerfile --print-build-command', run by a shell with dockerd's BuildKit, then normalised:
    the digest of 'envbuild image --builder docker', from the same SOURCE_DATE_EPOCH, REVISION and base.

    The daemon may still hold BuildKit's cache of the envbuild build: a step is reused only when its
    inputs (base, files, build arguments) are the same, and the image config is made anew either way.
    """
    project, cache, image = docker_built.project, docker_built.cache, docker_built.image
    record = json.loads((project / ".envbuild" / "images" / "cpu-infer" / "build.json").read_text())
    printed = cli_process(project, cache, "dockerfile", "--print-build-command", "--variant", "cpu-infer", env=dockerd)
    assert printed.returncode == 0, printed.stderr
    recipe = json.loads(printed.stdout)
    (variant,) = recipe["recipes"]
    assert (variant["source_date_epoch"], variant["revision"]) == (record["source_date_epoch"], record["revision"])
    assert f"--build-arg SOURCE_DATE_EPOCH={record['source_date_epoch']}" in recipe["script"]

    # The script runs as printed: 'docker' is the 20.10 CLI (dockerd's own BuildKit), 'envbuild' this one.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(DOCKER_CLI)
    (tmp_path / "build.sh").write_text(recipe["script"])
    environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}  # the script carries it
    environ.update({**dockerd, "ENVBUILD_CACHE_DIR": str(cache)})
    environ["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{environ['PATH']}"
    ran = subprocess.run(
        ["sh", "-e", str(tmp_path / "build.sh")], cwd=tmp_path, env=environ, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.splitlines()[-1] == image["digest"]  # what envbuild normalize printed
    normalized = project / variant["output"]
    assert json.loads((normalized / "index.json").read_text())["manifests"][0]["digest"] == image["digest"]

    # The same image as an OCI archive shaped like buildx's (an index: the image and a provenance
    # attestation) normalises to the same digest.
    oci_archive = tmp_path / "cpu-infer.oci.tar"
    _as_buildx_oci_archive(project / ".envbuild" / "buildkit" / "cpu-infer.docker.tar", oci_archive)
    again = cli_process(
        project, cache, "normalize", str(oci_archive), "--variant", "cpu-infer", "-o", str(tmp_path / "o")
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["digest"] == image["digest"]

    # The buildx form names the same base as a build context, by digest.
    buildx = cli_process(project, cache, "dockerfile", "--print-build-command", "--buildx", "--variant", "cpu-infer")
    assert buildx.returncode == 0, buildx.stderr
    script = json.loads(buildx.stdout)["script"]
    assert f"--build-context={record['base']['name']}=oci-layout://" in script
    assert f"@{record['base']['digest']} " in script and "docker buildx build" in script


def _as_buildx_oci_archive(docker_archive: Path, out: Path) -> None:
    """Repack a `docker save` archive as 'docker buildx build --output type=oci' packs an image: the
    config bytes as they are, an image index holding the image manifest and an attestation manifest."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str, **extra: object) -> dict[str, object]:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    with tarfile.open(docker_archive) as tar:

        def member(name: str) -> bytes:
            file = tar.extractfile(name)
            assert file is not None, name
            return file.read()

        (saved,) = json.loads(member("manifest.json"))
        config = blob(member(saved["Config"]), "application/vnd.oci.image.config.v1+json")
        layers = [blob(member(name), "application/vnd.oci.image.layer.v1.tar") for name in saved["Layers"]]
    image = blob(
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config, "layers": layers}).encode(),
        "application/vnd.oci.image.manifest.v1+json", platform={"architecture": "amd64", "os": "linux"},
    )  # fmt: skip
    statement = blob(b'{"_type":"https://in-toto.io/Statement/v0.1"}', "application/vnd.in-toto+json")
    attestation = blob(
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": blob(b"{}", "application/vnd.oci.image.config.v1+json"), "layers": [statement]}).encode(),
        "application/vnd.oci.image.manifest.v1+json", platform={"architecture": "unknown", "os": "unknown"},
    )  # fmt: skip
    index = blob(
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [image, attestation]}).encode(),
        "application/vnd.oci.image.index.v1+json",
    )  # fmt: skip
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [index]}).encode(),
        **{f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()},
    }
    with tarfile.open(out, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_missing_daemon_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "demo")
    env = {"DOCKER_HOST": f"unix://{tmp_path / 'no.sock'}", "ENVBUILD_DOCKER": DOCKER_CLI}
    result = cli_process(project, tmp_path / "cache", "image", "--variant", "cpu-infer", "--builder", "docker", env=env)
    assert result.returncode == 2 and "no Docker daemon answers" in result.stderr and "Traceback" not in result.stderr


def test_envbuild_load_puts_the_image_into_docker(
    dockerd: dict[str, str], demo_image: tuple[Path, str], demo_cache: Path
) -> None:
    """'envbuild load --into docker': the daemon has <name>:<variant> with the layout's config digest as its ID,
    and runs it as its user, whose home is writable."""
    project = demo_image[0]
    result = cli_process(project, demo_cache, "load", "cpu-infer", "--into", "docker", env=dockerd)
    assert result.returncode == 0, result.stderr
    layout = project / ".envbuild" / "images" / "cpu-infer"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    config = manifest["config"]["digest"]
    assert json.loads(result.stdout)["loaded"] == [
        {"variant": "cpu-infer", "store": "docker", "name": "iris-demo:cpu-infer", "image_id": config}
    ]
    env = {**os.environ, **dockerd}
    inspected = subprocess.run(
        [DOCKER_CLI, "image", "inspect", "--format", "{{.Id}}", "iris-demo:cpu-infer"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert inspected.stdout.strip() == config
    probe = (
        "import os, pathlib; p = pathlib.Path.home() / '.cache' / 'probe'; p.mkdir(parents=True); "
        "(p / 'x').write_text('ok'); print(os.environ['HOME'], os.getuid())"
    )
    ran = subprocess.run(
        [DOCKER_CLI, "run", "--rm", "--network=none", "--entrypoint", "python", "iris-demo:cpu-infer", "-c", probe],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["/home/app", "10001"]


def test_a_platform_builds_on_the_daemon_its_endpoint_names(
    dockerd: dict[str, str], docker_built: DockerBuilt, tmp_path: Path
) -> None:
    """--endpoint linux/amd64=tcp://...: that daemon builds the platform, where DOCKER_HOST names none; the
    same image as through the daemon's socket (a team's arm64 machine is this, with its address)."""
    project = make_project(tmp_path / "demo")
    nowhere = {**dockerd, "DOCKER_HOST": f"unix://{tmp_path / 'no-daemon.sock'}"}
    command = ("-v", "image", "--variant", "cpu-infer", "--builder", "docker")
    refused = cli_process(project, docker_built.cache, *command, env=nowhere)
    assert refused.returncode != 0 and "no Docker daemon answers" in refused.stderr

    endpoint = f"linux/amd64={dockerd[TCP]}"
    result = cli_process(project, docker_built.cache, *command, "--endpoint", endpoint, env=nowhere)
    image = built(result)["cpu-infer"]
    assert image["digest"] == docker_built.image["digest"] and image["cached"] is False
    bad = cli_process(project, docker_built.cache, *command, "--endpoint", "linux/arm64=tcp://127.0.0.1:1", env=nowhere)
    assert bad.returncode == 2 and "does not build for linux/arm64" in bad.stderr

"""The buildah adapter's storage with the overlay driver: freed once the image is out, and no mounts left by a kill.

Real buildah builds (as root: overlay mounts need it) of tiny Dockerfiles on a tiny base made
here from the host's own dash, touch and sleep with the C library they load, so that pulling and
exporting the base costs next to nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from envbuild.image.builders.base import BuildRequest
from envbuild.image.builders.buildah import DRIVER_VARIABLE, Buildah
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.scratch import LOCK, clean, mounts_under
from support.tools import require_tool, unavailable

pytestmark = [pytest.mark.slow]
BASE = "envbuild.local/test/base:1"
PROGRAMS = {"bin/sh": "/bin/dash", "bin/touch": "/bin/touch", "bin/sleep": "/bin/sleep"}
LIBRARIES = ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout of a one-layer image with just enough to run ``sh -c 'touch ... && sleep ...'``."""
    if os.geteuid() != 0:
        unavailable("buildah's overlay storage needs root")
    require_tool("buildah")
    files = {**PROGRAMS, **{path.lstrip("/"): path for path in LIBRARIES}}
    if not all(Path(source).is_file() for source in files.values()):
        unavailable(f"this host lacks one of {sorted(files.values())} (amd64 Debian)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in sorted({str(Path(name).parent) for name in files} | {"tmp"}):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, source in sorted(files.items()):
            data = Path(source).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    layer = buffer.getvalue()
    layout = Layout.create(tmp_path_factory.mktemp("tiny") / "base")
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(layout.write_blob(config)),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(layout.write_blob(layer)),
                    "size": len(layer)}],
    }).encode()  # fmt: skip
    media_type = "application/vnd.oci.image.manifest.v1+json"
    digest = layout.write_blob(manifest)
    layout.add_manifest(Descriptor(media_type=media_type, digest=digest, size=len(manifest)), name="base")
    return layout.path


def request(base: Path, work: Path, dockerfile: str) -> BuildRequest:
    (work / "context").mkdir(parents=True)
    (work / "Dockerfile").write_text(dockerfile)
    return BuildRequest(
        context=work / "context", dockerfile=work / "Dockerfile", base_name=BASE,
        base_layout=base, epoch=1_700_000_000, platform="linux/amd64", workdir=work,
    )  # fmt: skip


def test_an_overlay_build_exports_the_image_and_frees_the_storage(
    base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(DRIVER_VARIABLE, raising=False)
    work = tmp_path / "work"
    dockerfile = f"FROM {BASE}\nRUN echo built > /built.txt\n"
    with caplog.at_level(logging.INFO):
        raw = Buildah().build(request(base, work, dockerfile))
    assert "buildah: overlay storage driver" in caplog.text
    assert not (work / "storage").exists(), "buildah's storage outlives the export"
    assert mounts_under(work) == []
    manifest = json.loads(raw.read_blob(raw.select().digest))
    with tarfile.open(raw.blob_path(Digest.parse(manifest["layers"][-1]["digest"]))) as tar:
        built = tar.extractfile("built.txt")
        assert built is not None and built.read() == b"built\n"


KILLED = """
import sys
from pathlib import Path
from envbuild.image.builders.base import BuildRequest
from envbuild.image.builders.buildah import Buildah
from envbuild.scratch import scratch_dir
with scratch_dir(Path(sys.argv[1]), "cpu-infer-") as work:
    print(work, flush=True)
    (work / "context").mkdir()
    (work / "Dockerfile").write_text("FROM envbuild.local/test/base:1\\nRUN touch /started && sleep 600\\n")
    Buildah().build(BuildRequest(
        context=work / "context", dockerfile=work / "Dockerfile", base_name="envbuild.local/test/base:1",
        base_layout=Path(sys.argv[2]), epoch=0, platform="linux/amd64", workdir=work,
    ))
"""


def test_a_build_killed_in_a_run_step_leaves_no_mounts_and_is_cleaned(base: Path, tmp_path: Path) -> None:
    """SIGKILL to the whole process group in the middle of a RUN step: the next run's clean removes everything."""
    work_root = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != DRIVER_VARIABLE}
    build = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(work_root), str(base)],
        stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        assert build.stdout is not None
        work = Path(build.stdout.readline().strip())
        started = _wait_for_run_step(work / "storage" / "root" / "overlay")
        assert mounts_under(work_root) == [], "buildah's mounts are visible outside its own mount namespace"
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait(timeout=60)
        stray = _rooted_in(work_root)  # a RUN step in a session of its own outlives its group
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
    assert started.is_file() and (work / LOCK).is_file()
    assert mounts_under(work_root) == []
    assert clean(work_root) == [work]
    assert not work.exists()


def _rooted_in(directory: Path) -> list[int]:
    """The processes whose root directory (a chroot) is under ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "root")).is_relative_to(directory):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _wait_for_run_step(overlay: Path, timeout: float = 120) -> Path:
    """The /started file the RUN step writes, once it is in a container's upper directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(overlay.glob("*/diff/started"))
        if found:
            return found[0]
        time.sleep(0.2)
    pytest.fail(f"the RUN step did not start within {timeout:g} s (no {overlay}/*/diff/started)")

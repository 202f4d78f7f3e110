"""The demo's cpu-infer for linux/amd64 and linux/arm64, built on this amd64 machine: one image index.

The demo project with ``platforms = ["linux/amd64", "linux/arm64"]`` (and without its GPU
accelerator: onnxruntime-gpu has no aarch64 wheels) is locked and built twice from clean, the
second time on "another machine" (other host files, host name and umask; :mod:`support.machine`).
arm64 is built under qemu-user emulation: binfmt_misc hands every aarch64 executable to
qemu-aarch64-static, so mmdebstrap's arm64 base, buildah's RUN steps and the image checks run
arm64 binaries (.ci/run registers it). Both builds give one index digest; skopeo reads both
platforms from it; the arm64 image prints the demo's prediction under emulation; pushed and
signed, the index verifies whole and per platform, and a byte flipped in a layer only the
arm64 image has fails verify naming linux/arm64.

Real mmdebstrap, buildah, qemu-user, umoci, runc, skopeo and a registry on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from envbuild.supply.signing.keys import generate_keypair, write_keypair
from support.demo import cli_process, commit, make_project
from support.machine import another_machine
from support.registry import Registry
from support.runtime import run_entrypoint
from support.tools import require_tool, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.registry]

PLATFORMS = ("linux/amd64", "linux/arm64")
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
GPU_TABLE = re.compile(r"^\[accelerators\.gpu\]\n(?:(?!\[).*\n)*", re.M)
SETOSA = ("5.1", "3.5", "1.4", "0.2")


def require_emulation() -> None:
    require_tool("qemu-aarch64-static")
    if not BINFMT.is_file() or "enabled" not in BINFMT.read_text():
        unavailable(f"{BINFMT} is not registered: .ci/run mounts binfmt_misc and enables qemu-aarch64")


def two_platform_demo(path: Path, cache: Path) -> Path:
    """The demo with both platforms and only its CPU variants, locked and committed."""
    project = make_project(path)
    spec = project / "envbuild.toml"
    text = spec.read_text().replace('platforms = ["linux/amd64"]', f"platforms = {json.dumps(list(PLATFORMS))}")
    spec.write_text(GPU_TABLE.sub("", text))
    locked = cli_process(project, cache, "lock")
    assert locked.returncode == 0, locked.stderr
    commit(project, "both platforms")
    return project


def build(project: Path, cache: Path, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    result = cli_process(project, cache, "image", "--variant", "cpu-infer", prefix=prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    (image,) = json.loads(result.stdout)["images"]
    return dict(image)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The project, its first build, and a clean build of a clone of it on another machine."""
    require_emulation()
    where = tmp_path_factory.mktemp("platforms")
    project = two_platform_demo(where / "demo", demo_cache)
    first = build(project, demo_cache)
    clone = where / "elsewhere" / "demo"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    second = build(clone, demo_cache, prefix=another_machine(where / "machine").prefix)
    return project, first, second


def test_two_clean_builds_give_one_index_of_both_platforms(builds: tuple[Path, dict[str, Any], dict[str, Any]]) -> None:
    project, first, second = builds
    assert first["digest"] == second["digest"]
    assert first["platforms"] == second["platforms"]
    assert list(first["platforms"]) == list(PLATFORMS)
    # Each platform's image is built on its own (its build record, its cache key), the index over them.
    images = sorted(p.name for p in (project / ".envbuild" / "images").iterdir() if not p.name.startswith("."))
    assert images == ["cpu-infer", "cpu-infer-aarch64", "cpu-infer-x86_64"]

    skopeo = require_tool("skopeo")
    layout = project / ".envbuild" / "images" / "cpu-infer"
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}"], capture_output=True, text=True, check=True)
    index = json.loads(raw.stdout)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]} == (
        first["platforms"]
    )
    for platform, arch in (("linux/amd64", "amd64"), ("linux/arm64", "arm64")):
        config = subprocess.run(
            [skopeo, "inspect", "--config", "--override-arch", arch, f"oci:{layout}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert json.loads(config.stdout)["architecture"] == arch, platform


def test_the_arm64_image_predicts_under_emulation(
    builds: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    project, _first, _second = builds
    ran = run_entrypoint(
        project / ".envbuild" / "images" / "cpu-infer-aarch64", "iris-demo-cpu-infer", tmp_path, args=SETOSA,
        label="arm64", emulated=True,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "setosa" in ran.stdout


def test_the_index_verifies_per_platform_and_names_a_tampered_one(
    builds: tuple[Path, dict[str, Any], dict[str, Any]], registry: Registry, demo_cache: Path, tmp_path: Path
) -> None:
    project, first, _second = builds
    keys = write_keypair(tmp_path / "keys", "release", generate_keypair(None))
    pushed = cli_process(
        project, demo_cache, "image", "--variant", "cpu-infer", "--sign", "--key", str(keys.private),
        "--push", f"{registry.host}/team/demo", "--insecure",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    ref = json.loads(pushed.stdout)["images"][0]["ref"]
    assert ref.endswith(f"@{first['digest']}")

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return cli_process(project, demo_cache, "verify", ref, "--key", str(keys.public), "--insecure", *extra)

    whole = verify()
    assert whole.returncode == 0, whole.stderr
    names = [c["name"] for c in json.loads(whole.stdout)["checks"] if c["ok"]]
    for platform in PLATFORMS:
        assert {f"image {platform}", f"signature {platform}", f"sbom {platform}", f"provenance {platform}"} <= set(
            names
        )
        assert verify("--platform", platform).returncode == 0

    # An audit works on one platform's image (each has its provenance): the index names them.
    pinned = ref.split("@")[0].rsplit(":", 1)[0] + f"@{first['digest']}"
    for command in (("rebuild", pinned), ("vendor", pinned, "-o", str(tmp_path / "a.tar"))):
        refused = cli_process(project, demo_cache, *command, "--key", str(keys.public), "--insecure")
        assert refused.returncode == 2, refused.stderr
        assert "is an image index of 2 platforms" in refused.stderr
        assert f"linux/arm64: {pinned.split('@')[0]}@{first['platforms']['linux/arm64']}" in refused.stderr

    # A byte flipped in a layer the arm64 image has and the amd64 one does not (its venv).
    def layers(platform: str) -> list[str]:
        manifest = project / ".envbuild" / "images" / "cpu-infer" / "blobs" / "sha256"
        data = json.loads((manifest / first["platforms"][platform].removeprefix("sha256:")).read_bytes())
        return [layer["digest"] for layer in data["layers"]]

    only_arm64 = [d for d in layers("linux/arm64") if d not in layers("linux/amd64")]
    assert only_arm64
    hex_ = max(only_arm64, key=lambda d: blob(registry, d).stat().st_size).removeprefix("sha256:")
    path = blob(registry, hex_)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    tampered = verify()
    assert tampered.returncode == 1
    failed = [c["name"] for c in json.loads(tampered.stdout)["checks"] if not c["ok"]]
    assert failed == ["image linux/arm64"]
    assert "Traceback" not in tampered.stderr and "image linux/arm64" in tampered.stderr
    assert verify("--platform", "linux/amd64").returncode == 0
    assert verify("--platform", "linux/arm64").returncode == 1


def blob(registry: Registry, digest: str) -> Path:
    hex_ = digest.removeprefix("sha256:")
    return registry.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def test_a_venv_built_on_the_host_gives_a_working_arm64_image(
    builds: tuple[Path, dict[str, Any], dict[str, Any]], demo_cache: Path, tmp_path: Path
) -> None:
    """[image] venv = "host": uv installs the arm64 wheels and this machine's CPython compiles them, natively;
    the builder stage only makes the venv. Built for arm64 only (--platform: an image, no index), the
    image passes the checks (every module imports, under emulation), the record names the compiler,
    and it predicts. (amd64 takes the same path natively; bench/platforms.py times both ways.)"""
    project, _first, _second = builds
    clone = tmp_path / "host-venv" / "demo"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    spec = clone / "envbuild.toml"
    spec.write_text(spec.read_text().replace("[image]\n", '[image]\nvenv = "host"\n', 1))
    commit(clone, "the venv on the host")
    result = cli_process(clone, demo_cache, "image", "--variant", "cpu-infer", "--platform", "linux/arm64")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "building the venv on the host: done" in result.stderr
    (image,) = json.loads(result.stdout)["images"]
    assert image["variant"] == "cpu-infer-aarch64" and "platforms" not in image
    dockerfile = (clone / "images" / "cpu-infer.Dockerfile").read_text()
    assert "uv pip install" not in dockerfile and "COPY .envbuild/stage/cpu-infer/venv /opt/venv" in dockerfile
    arm64 = clone / ".envbuild" / "images" / "cpu-infer-aarch64"
    record = json.loads((arm64 / "build.json").read_text())
    assert record["platform"] == "linux/arm64" and record["venv_python"].startswith("CPython 3.11.")
    ran = run_entrypoint(arm64, "iris-demo-cpu-infer", tmp_path, args=SETOSA, label="host-venv", emulated=True)
    assert ran.returncode == 0, ran.stderr
    assert "setosa" in ran.stdout


def test_without_emulation_arm64_is_refused_before_any_work(
    builds: tuple[Path, dict[str, Any], dict[str, Any]], demo_cache: Path, tmp_path: Path
) -> None:
    """A machine that cannot run aarch64 programs (binfmt_misc hidden by an empty tmpfs, in a mount
    namespace of the test's own) is told what to install before a build starts, not by mmdebstrap or
    buildah later; an image already built needs no emulation to be found unchanged."""
    project, first, _second = builds
    no_binfmt = ("unshare", "--mount", "--", "sh", "-c", f'mount -t tmpfs none {BINFMT.parent} && exec "$@"', "sh")
    unchanged = cli_process(project, demo_cache, "image", "--variant", "cpu-infer", prefix=no_binfmt)
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert json.loads(unchanged.stdout)["images"][0]["digest"] == first["digest"]

    clone = tmp_path / "demo"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    refused = cli_process(
        clone, demo_cache, "image", "--variant", "cpu-infer", "--platform", "linux/arm64", prefix=no_binfmt
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "linux/arm64 needs its programs run on this x86_64 machine" in refused.stderr
    assert "qemu-user-static" in refused.stderr and "update-binfmts --enable qemu-aarch64" in refused.stderr
    assert "Traceback" not in refused.stderr and "building with" not in refused.stderr
    assert not (clone / ".envbuild" / "images" / "cpu-infer-aarch64").exists()


def test_buildkit_commands_for_the_arm64_image(
    builds: tuple[Path, dict[str, Any], dict[str, Any]], demo_cache: Path, tmp_path: Path
) -> None:
    """'dockerfile --print-build-command --platform linux/arm64' stages arm64's inputs (its lockfile where
    the one Dockerfile reads it) and prints a build for that platform, named apart from amd64's, and a
    normalize that names the platform; two platforms at once are refused (their inputs share the stage)."""
    project, _first, _second = builds
    clone = tmp_path / "demo"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    printed = cli_process(
        clone, demo_cache, "dockerfile", "--print-build-command", "--variant", "cpu-infer", "--platform", "linux/arm64"
    )
    assert printed.returncode == 0, printed.stderr[-3000:]
    (recipe,) = json.loads(printed.stdout)["recipes"]
    assert recipe["platform"] == "linux/arm64" and recipe["output"] == ".envbuild/buildkit/cpu-infer-aarch64"
    build = next(c["argv"] for c in recipe["commands"] if "build" in c["argv"])
    assert "linux/arm64" in " ".join(build)
    normalize = recipe["commands"][-1]["argv"]
    assert normalize[:2] == ["envbuild", "normalize"] and normalize[normalize.index("--platform") + 1] == "linux/arm64"
    assert ".envbuild/buildkit/cpu-infer-aarch64.docker.tar" in normalize
    script = json.loads(printed.stdout)["script"]
    assert "# For linux/arm64 only (--platform linux/amd64 stages and prints another)." in script
    staged = (clone / ".envbuild" / "stage" / "cpu-infer" / "lock.txt").read_text()
    assert staged == (clone / "lockfiles" / "cpu-infer-aarch64.txt").read_text()

    both = cli_process(
        clone,
        demo_cache,
        "dockerfile",
        "--print-build-command",
        "--platform",
        "linux/arm64",
        "--platform",
        "linux/amd64",
    )
    assert both.returncode == 2, both.stderr[-3000:]
    assert "--platform linux/arm64 and linux/amd64: BuildKit's commands are for one platform at a time" in both.stderr

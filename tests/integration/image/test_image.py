"""``envbuild image`` with real buildah and mmdebstrap: reproducible bit for bit, and working.

The demo project is copied into a fresh git repository whose one commit has a fixed
date, so SOURCE_DATE_EPOCH is known. One envbuild cache (bases, wheels) serves the
whole module: a clean build means clean builder storage and no previous image,
not downloading the internet again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envbuild.image.builders.buildah import DRIVER_VARIABLE, overlay_problem
from envbuild.oci.imagefs import read_image_files
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.supply.attest import statement_of
from support.demo import built, cli_process, commit, make_project
from support.intoto import validated
from support.machine import another_machine, files_containing
from support.paths import REPO

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def cache(demo_cache: Path) -> Path:
    return demo_cache


@pytest.fixture(scope="module")
def first_build(demo_image: tuple[Path, str]) -> tuple[Path, str]:
    return demo_image


def unpack(layout: Path, name: str, tmp_path: Path) -> Path:
    """Unpack the image with umoci; return the bundle."""
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{name}", bundle], check=True, capture_output=True)
    return bundle


def run_in(bundle: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in an unpacked image as its (non-root) user, with its environment (its HOME too)."""
    config = json.loads((bundle / "config.json").read_text())
    user = config["process"]["user"]
    env = config["process"]["env"]
    rootfs = bundle / "rootfs"
    subprocess.run(["mount", "-t", "proc", "proc", rootfs / "proc"], check=True)
    try:
        return subprocess.run(
            ["chroot", f"--userspec={user['uid']}:{user['gid']}", rootfs, "/usr/bin/env", "-i", *env, *argv],
            capture_output=True, text=True, timeout=600, cwd=rootfs,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", rootfs / "proc"], check=True)


def test_clean_rebuild_gives_the_same_digest(first_build: tuple[Path, str], cache: Path) -> None:
    project, digest = first_build
    shutil.rmtree(project / ".envbuild")  # previous image, staged inputs: gone; builder storage is per build
    again = built(cli_process(project, cache, "image", "--variant", "cpu-infer"))["cpu-infer"]
    assert again["digest"] == digest and again["cached"] is False


def test_another_machine_builds_the_same_image(first_build: tuple[Path, str], tmp_path: Path) -> None:
    """The demo image built again as on another machine: the same base and image digests, and nothing of
    either machine in either.

    The other machine (:func:`support.machine.another_machine`) has its own resolv.conf, hosts
    and host name, trusts the Debian keys only through /usr/share/keyrings and has umask 077;
    the build there also has another time zone, locale and home, an empty envbuild cache (so
    mmdebstrap makes the Debian base again), a git clone of the project at a deeper path, and
    buildah's vfs storage driver where the first build chose overlay (this machine mounts
    overlays as root): envbuild's layers must not depend on how buildah stored the files.
    """
    project, digest = first_build
    machine = another_machine(tmp_path / "etc")
    checkout = tmp_path / "elsewhere" / "a deeper path" / "iris"
    subprocess.run([*machine.prefix, "git", "clone", "-q", str(project), str(checkout)], check=True)
    (tmp_path / "home").mkdir()
    cache = tmp_path / "empty-cache"
    result = cli_process(
        checkout, cache, "-v", "image", "--variant", "cpu-infer", prefix=machine.prefix,
        env={"TZ": "Pacific/Kiritimati", "LANG": "C", "LC_ALL": "C", "HOME": str(tmp_path / "home"),
             DRIVER_VARIABLE: "vfs"},
    )  # fmt: skip
    elsewhere = built(result)["cpu-infer"]
    assert "buildah: vfs storage driver" in result.stderr
    assert os.environ.get(DRIVER_VARIABLE, "overlay") == "overlay" and overlay_problem(tmp_path) is None, (
        "the first build did not use overlay storage, so vfs is compared with vfs"
    )

    # The Debian base first, so a difference is blamed on mmdebstrap's part or on the build's: mmdebstrap
    # copies the host's resolv.conf and hostname in, and writes signed-by into sources.list when the host's
    # apt does not trust the Debian keys itself.
    (made,) = (d for d in (cache / "bases").iterdir() if not d.name.startswith("."))  # made there, not found
    base = Layout.open(made)
    record = json.loads((checkout / ".envbuild" / "images" / "cpu-infer" / "build.json").read_text())
    here = json.loads((project / ".envbuild" / "images" / "cpu-infer" / "build.json").read_text())
    assert record["base"]["digest"] == here["base"]["digest"] == str(base.select().digest)
    assert files_containing(base, machine.traces) == []
    etc = read_image_files(base, None, lambda path: path.startswith("/etc/"))
    assert "/etc/resolv.conf" not in etc and "/etc/hostname" not in etc
    assert etc["/etc/hosts"] == b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    assert b"signed-by" not in etc["/etc/apt/sources.list"]

    assert files_containing(Layout.open(checkout / ".envbuild" / "images" / "cpu-infer"), machine.traces) == []
    assert elsewhere["digest"] == digest


def test_image_works_and_tools_agree(first_build: tuple[Path, str], cache: Path, tmp_path: Path) -> None:
    project, digest = first_build
    layout = project / ".envbuild" / "images" / "cpu-infer"
    name = "iris-demo-cpu-infer"

    inspected = json.loads(
        subprocess.run(["skopeo", "inspect", f"oci:{layout}:{name}"], capture_output=True, text=True, check=True).stdout
    )
    assert inspected["Digest"] == digest
    assert inspected["Created"] == "2026-11-02T12:00:00Z"  # SOURCE_DATE_EPOCH from the commit
    assert inspected["Labels"]["org.opencontainers.image.title"] == name

    bundle = unpack(layout, name, tmp_path)
    rootfs = bundle / "rootfs"
    site = rootfs / "opt" / "venv" / "lib" / "python3.11" / "site-packages"
    assert not list((rootfs / "app").rglob("*.pyc")), "host bytecode caches must not reach the image"
    assert not (rootfs / "usr" / "bin" / "gcc").exists() and not (site / "sklearn").exists()
    assert not (rootfs / "usr" / "local" / "bin" / "uv").exists() and not list((rootfs / "tmp").iterdir())
    assert list(site.glob("*.dist-info/INSTALLER")) == [], "UV_NO_INSTALLER_METADATA: no INSTALLER files"
    pyc = next((site / "numpy" / "__pycache__").glob("*.pyc"))
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11, "hash-based, checked .pyc (PEP 552)"

    predicted = run_in(bundle, "python", "-m", "iris_demo.predict", "--json", "6.7", "3.0", "5.2", "2.3")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["class"] == "virginica"


def test_the_user_writes_its_home(first_build: tuple[Path, str], tmp_path: Path) -> None:
    """$HOME is /home/app, the user's (uid 10001, mode 0755) and writable: libraries cache in ~/.cache."""
    layout = first_build[0] / ".envbuild" / "images" / "cpu-infer"
    bundle = unpack(layout, "iris-demo-cpu-infer", tmp_path)
    home = bundle / "rootfs" / "home" / "app"
    assert (home.stat().st_uid, home.stat().st_gid, home.stat().st_mode & 0o7777) == (10001, 10001, 0o755)
    assert (home.parent.stat().st_uid, home.parent.stat().st_mode & 0o7777) == (0, 0o755)
    probe = (
        "import os, pathlib, pwd; cache = pathlib.Path.home() / '.cache' / 'probe'; cache.mkdir(parents=True); "
        "(cache / 'x').write_text('ok'); print(os.environ['HOME'], pwd.getpwuid(os.getuid()).pw_dir, os.getuid())"
    )
    done = run_in(bundle, "python", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/home/app", "/home/app", "10001"]
    assert (home / ".cache" / "probe" / "x").read_text() == "ok"


def test_unchanged_inputs_are_a_cache_hit(first_build: tuple[Path, str], cache: Path) -> None:
    project, digest = first_build
    again = built(cli_process(project, cache, "image", "--variant", "cpu-infer"))["cpu-infer"]
    assert again == {**again, "digest": digest, "cached": True}


def test_training_image_trains(
    first_build: tuple[Path, str], demo_train_image: tuple[Path, str], tmp_path: Path
) -> None:
    layout = demo_train_image[0] / ".envbuild" / "images" / "cpu-train"
    # The distributions both images lock are the same blobs: pushed, stored and pulled once.
    train, infer = (
        {layer["annotations"]["dev.envbuild.layer"]: layer["digest"] for layer in manifest_of(path)["layers"][1:]}
        for path in (layout, first_build[0] / ".envbuild" / "images" / "cpu-infer")
    )
    shared = {name for name in set(train) & set(infer) if name.startswith("python:")}
    assert {"python:numpy", "python:onnxruntime"} <= shared
    assert {name: train[name] for name in shared} == {name: infer[name] for name in shared}
    bundle = unpack(layout, "iris-demo-cpu-train", tmp_path)
    result = run_in(bundle, "python", "-m", "iris_demo.train", "--out", "/tmp/iris.onnx")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bundle" / "rootfs" / "tmp" / "iris.onnx").read_bytes() == (
        REPO / "demo" / "iris_demo" / "model" / "iris.onnx"
    ).read_bytes()


def test_a_failed_build_leaves_the_previous_image(first_build: tuple[Path, str], cache: Path, tmp_path: Path) -> None:
    # A copy of the first build's project, its image included: the rebuild is a cache hit.
    project = tmp_path / "demo"
    shutil.copytree(first_build[0], project, symlinks=True)
    good = built(cli_process(project, cache, "image", "--variant", "cpu-infer"))["cpu-infer"]
    assert good["cached"] is True
    # A base without python3: the builder stage's RUN fails.
    spec = project / "envbuild.toml"
    spec.write_text(
        spec.read_text().replace(
            'packages = ["python3", "ca-certificates", "libstdc++6", "libgomp1"]', 'packages = ["ca-certificates"]', 1
        )
    )
    assert cli_process(project, cache, "lock").returncode == 0
    commit(project, "a base without python3")
    result = cli_process(project, cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 1
    assert "buildah bud failed" in result.stderr and "Traceback" not in result.stderr
    index = json.loads((project / ".envbuild" / "images" / "cpu-infer" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == good["digest"]


def test_bad_inputs_are_refused_clearly(cache: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "demo")
    (project / "lockfiles" / "cpu-infer.txt").unlink()
    result = cli_process(project, cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 1 and "cpu-infer.txt is missing" in result.stderr and "envbuild lock" in result.stderr

    project = make_project(tmp_path / "demo2")
    demo = project / "demo" / "pyproject.toml"
    demo.write_text(demo.read_text().replace('"onnxruntime>=1.20",', '"onnxruntime>=1.20",\n    "packaging",'))
    result = cli_process(project, cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 1 and "stale locks" in result.stderr and "requirement added: packaging" in result.stderr

    no_buildah = {"PATH": f"{Path(sys.executable).parent}:/nonexistent"}
    result = cli_process(make_project(tmp_path / "demo3"), cache, "image", "--variant", "cpu-infer", env=no_buildah)
    assert result.returncode == 2 and "buildah is not installed" in result.stderr

    result = cli_process(make_project(tmp_path / "demo4"), cache, "image", "--variant", "cpu-nothing")
    assert result.returncode == 2 and "unknown variant 'cpu-nothing'" in result.stderr


def test_gpu_inference_image_carries_its_cuda_libraries(cache: Path, tmp_path: Path) -> None:
    """The build's library check passes, and its resolver finds every library of onnxruntime's CUDA provider
    (and of what those need, and of cuDNN) inside the image but the driver's libcuda.so.1, where ldd finds them."""
    from envbuild.image.checks.ldso import Resolver, search_path
    from envbuild.image.checks.rootfs import RootFS

    project = make_project(tmp_path / "demo")
    result = cli_process(project, cache, "image", "--gpu", "--role", "infer")
    image = built(result)["gpu-infer"]
    assert "gpu-infer: checking the image: done, checks: " in result.stderr, result.stderr
    bundle = unpack(project / ".envbuild" / "images" / "gpu-infer", "iris-demo-gpu-infer", tmp_path)
    config = json.loads((bundle / "config.json").read_text())
    env = dict(e.split("=", 1) for e in config["process"]["env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert image["digest"].startswith("sha256:")

    root = RootFS(bundle / "rootfs")
    resolver = Resolver(root, search_path(root, env=env, machine="x86_64"))
    site = "/opt/venv/lib/python3.11/site-packages"
    provider = f"{site}/onnxruntime/capi/libonnxruntime_providers_cuda.so"
    cudnn = [f"{site}/nvidia/cudnn/lib/{name}" for name in root.directory_names(f"{site}/nvidia/cudnn/lib")]
    todo, seen, missing = [provider, *(p for p in cudnn if "libcudnn.so." in p)], set(), set()
    while todo:  # what the provider needs, what that needs, ...: what ldd lists
        path = todo.pop()
        resolved = root.resolve(path)
        assert resolved is not None, path
        if resolved in seen:
            continue
        seen.add(resolved)
        elf = resolver.elf(resolved)
        assert elf is not None, resolved
        for need in resolver.needs(path, elf):
            if need.found is None:
                missing.add(need.soname)
            else:
                todo.append(need.found)
    assert missing == {"libcuda.so.1"}
    found = {n.soname: n.found for n in resolver.needs(provider, resolver.elf(provider))}  # type: ignore[arg-type]
    assert str(found["libcublas.so.13"]).startswith("/opt/venv/")

    # The loader itself agrees: ldd in the image finds the same libraries where the resolver found them.
    argv = ["chroot", bundle / "rootfs", "/usr/bin/env", "-i", f"LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}"]
    ldd = subprocess.run([*argv, "/usr/bin/ldd", provider], capture_output=True, text=True, check=True).stdout
    listed = dict(line.split()[0:3:2] for line in ldd.splitlines() if " => " in line)
    assert listed["libcuda.so.1"] == "not" and "libcublas.so.13" in listed
    for soname, path in found.items():
        if path is not None and soname in listed:  # ldd lists the loader itself without "=>"
            assert root.resolve(listed[soname]) == root.resolve(path), soname


def use_base(project: Path, base: str) -> None:
    """Point both accelerators of the project's spec at ``base`` (a TOML inline table); the test relocks."""
    spec = project / "envbuild.toml"
    debian = 'base = { debian = "bookworm", packages = ["python3", "ca-certificates", "libstdc++6", "libgomp1"] }'
    assert debian in spec.read_text()
    spec.write_text(spec.read_text().replace(debian, f"base = {base}"))


def layers(project: Path, variant: str = "cpu-infer") -> list[str]:
    """The layer digests of the project's built image of ``variant``."""
    from envbuild.oci.layout import Layout

    layout = Layout.open(project / ".envbuild" / "images" / variant)
    return [layer["digest"] for layer in json.loads(layout.read_blob(layout.select().digest))["layers"]]


@pytest.mark.registry
def test_registry_and_layout_bases(first_build: tuple[Path, str], cache: Path, tmp_path: Path, registry) -> None:
    """The same root file system as a registry image by digest, and as an OCI layout in the project."""
    from envbuild.oci.layout import Layout
    from envbuild.oci.ref import ImageRef
    from envbuild.registry.client import RegistryClient
    from envbuild.registry.options import RegistryOptions
    from envbuild.registry.transfer import push_layout

    # The first build's base by its digest: the cache may hold others (test_a_failed_build's has no python3).
    first_base = json.loads((first_build[0] / ".envbuild" / "images" / "cpu-infer" / "build.json").read_text())["base"]
    debian_base = next(
        p
        for p in (cache / "bases").iterdir()
        if (p / "index.json").is_file() and str(Layout.open(p).select().digest) == first_base["digest"]
    )
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    pushed = push_layout(Layout.open(debian_base), ImageRef.parse(f"{registry.host}/bases/bookworm:py3"), client)

    project = make_project(tmp_path / "from-registry")
    use_base(project, f'{{ image = "{registry.host}/bases/bookworm:py3" }}')
    assert cli_process(project, cache, "lock", "--insecure").returncode == 0
    commit(project, "the base from a registry")
    image = built(cli_process(project, cache, "image", "--variant", "cpu-infer", "--insecure"))["cpu-infer"]
    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci:{project}/.envbuild/images/cpu-infer:iris-demo-cpu-infer"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == str(pushed.digest)
    assert (
        "FROM " + f"{registry.host}/bases/bookworm@{pushed.digest}"
        in (project / "images" / "cpu-infer.Dockerfile").read_text()
    )

    project = make_project(tmp_path / "from-layout")
    shutil.copytree(debian_base, project / "bases" / "bookworm")
    use_base(project, '{ oci-layout = "bases/bookworm" }')
    assert cli_process(project, cache, "lock").returncode == 0
    commit(project, "the base from a layout")
    from_layout = built(cli_process(project, cache, "image", "--variant", "cpu-infer"))["cpu-infer"]
    # Same base, same inputs, same commit time: the debian, registry and layout routes make the same
    # layers. (Not the same digest: each image names its own commit, whose spec says where its base is.)
    assert layers(tmp_path / "from-layout") == layers(tmp_path / "from-registry") == layers(first_build[0])
    assert from_layout["digest"] != image["digest"]

    missing = "sha256:" + "0" * 64
    project = make_project(tmp_path / "missing")
    use_base(project, f'{{ image = "{registry.host}/bases/bookworm@{missing}" }}')
    assert cli_process(project, cache, "lock").returncode == 0  # a digest needs no registry to lock
    commit(project, "a base that is nowhere")
    result = cli_process(project, cache, "image", "--variant", "cpu-infer", "--insecure")
    # A 404 from the registry is RegistryNotFoundError: bad input (the spec names an image that is not there), exit 2.
    assert result.returncode == 2 and missing in result.stderr and "Traceback" not in result.stderr


@pytest.mark.registry
def test_image_push_sends_each_variant_by_digest(first_build: tuple[Path, str], cache: Path, registry) -> None:
    project, digest = first_build
    result = cli_process(
        project, cache, "image", "--variant", "cpu-infer", "--push", f"{registry.host}/team/iris:v1", "--insecure"
    )
    pushed = built(result)["cpu-infer"]
    assert pushed["ref"] == f"{registry.host}/team/iris:v1-cpu-infer@{digest}" and pushed["cached"] is True
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry.host}/team/iris:v1-cpu-infer"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(inspected.stdout)["Digest"] == digest


def test_the_demo_images_sbom_is_valid_and_lists_its_packages(first_build: tuple[Path, str]) -> None:
    from envbuild.image.record import BuildRecord
    from envbuild.oci.layout import Layout
    from envbuild.supply.sbom import make_sbom, validate_sbom

    image = first_build[0] / ".envbuild" / "images" / "cpu-infer"
    layout = Layout.open(image)
    record = json.loads((image / "build.json").read_text(encoding="utf-8"))
    data = make_sbom(
        layout,
        name="iris-demo-cpu-infer",
        record=BuildRecord.from_json(record, source=image / "build.json"),
        envbuild_version="0.1.0",
        image_ref_name="iris-demo-cpu-infer",
    )

    validate_sbom(data)
    components = json.loads(data)["components"]
    names = {(c["purl"].split("/")[0], c["name"]) for c in components}
    assert {("pkg:pypi", "numpy"), ("pkg:pypi", "onnxruntime"), ("pkg:deb", "python3.11")} <= names
    wheels = {w["name"]: w["sha256"] for w in record["wheels"]}
    numpy = next(c for c in components if c["name"] == "numpy")
    assert numpy["hashes"] == [{"alg": "SHA-256", "content": wheels["numpy"]}]


@pytest.mark.registry
def test_demo_image_pushed_signed_and_verified(
    first_build: tuple[Path, str], cache: Path, registry, tmp_path: Path
) -> None:
    """The headline flow on the real demo image: build, push, SBOM + provenance + signatures, verify."""
    project, digest = first_build
    secrets = {"ENVBUILD_SIGNING_KEY_PASSWORD": "demo-key-password-1234"}
    assert cli_process(project, cache, "keygen", "-o", str(tmp_path), env=secrets).returncode == 0
    result = cli_process(
        project, cache, "image", "--variant", "cpu-infer", "--push", f"{registry.host}/team/iris", "--insecure",
        "--sign", "--key", str(tmp_path / "envbuild.key"), "--source-repository", "git@git.example:team/iris.git",
        env=secrets,
    )  # fmt: skip
    pushed = built(result)["cpu-infer"]
    assert pushed["digest"] == digest and pushed["signed"] == ["provenance", "sbom", "signature"]
    assert [a["kind"] for a in pushed["attached"]] == ["sbom-document", "signature", "sbom", "provenance"]

    verified = cli_process(
        project, cache, "verify", str(pushed["ref"]), "--key", str(tmp_path / "envbuild.pub"), "--insecure"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["verified"] is True and report["digest"] == digest

    image = project / ".envbuild" / "images" / "cpu-infer"
    # The in-toto attestation library (protobuf) accepts every statement signed, and the provenance
    # names a URI for every input and the commit as a dependency of the normalised repository.
    for kind in ("signature", "sbom", "provenance"):
        validated(statement_of((image / f"{kind}.sigstore.json").read_bytes()).raw)
    provenance = validated((image / "provenance.intoto.json").read_bytes())
    dependencies = {d["name"]: d for d in provenance["predicate"]["buildDefinition"]["resolvedDependencies"]}
    record = json.loads((image / "build.json").read_text())
    assert all(d["uri"] for d in dependencies.values())
    assert dependencies["source"] == {
        "name": "source",
        "uri": f"git+https://git.example/team/iris@{record['revision']}",
        "digest": {"gitCommit": record["revision"]},
    }
    assert record["revision"] == git_head(project) and record["dirty"] is None
    assert dependencies["base"]["digest"]["sha256"] == record["base"]["digest"].removeprefix("sha256:")
    assert {f"wheel:{w['filename']}" for w in record["wheels"]} <= set(dependencies)
    assert any(name.startswith("tool:uv-") for name in dependencies)
    assert provenance["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
    for path in image.iterdir():
        if path.is_file():
            assert b"demo-key-password-1234" not in path.read_bytes(), path
    assert "demo-key-password-1234" not in result.stdout + result.stderr


def git_head(project: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def image_config(layout: Path) -> dict[str, Any]:
    from envbuild.oci.layout import Layout

    image = Layout.open(layout)
    manifest = json.loads(image.read_blob(image.select().digest))
    return dict(json.loads(image.read_blob(Digest.parse(manifest["config"]["digest"]))))


def manifest_of(layout: Path) -> dict[str, Any]:
    image = Layout.open(layout)
    return dict(json.loads(image.read_blob(image.select().digest)))


def test_the_history_names_what_every_layer_holds(first_build: tuple[Path, str]) -> None:
    """One non-empty history entry per layer, in order: the base's, then one per layer envbuild wrote."""
    layout = first_build[0] / ".envbuild" / "images" / "cpu-infer"
    config, manifest = image_config(layout), manifest_of(layout)
    made = [e for e in config["history"] if not e.get("empty_layer")]
    assert len(made) == len(manifest["layers"]) == len(config["rootfs"]["diff_ids"])
    assert made[0]["created_by"].startswith("mmdebstrap ")  # the base's own history, kept
    names = [layer.get("annotations", {}).get("dev.envbuild.layer") for layer in manifest["layers"]]
    numpy = names.index("python:numpy")
    assert made[numpy]["created_by"].startswith("envbuild: numpy==")
    # The Dockerfile's steps stay in the history, as steps that made no layer of their own.
    steps = [e["created_by"] for e in config["history"] if e.get("empty_layer")]
    assert any("ENTRYPOINT" in e for e in steps) and any("COPY" in e and "/opt/venv" in e for e in steps)


def test_the_layers_are_what_the_builder_wrote(first_build: tuple[Path, str]) -> None:
    """The union of the layers envbuild wrote is the builder's own layer: the same paths, kinds, links and bytes.

    Layers by distribution: the venv's own files, numpy and onnxruntime each alone, the small
    distributions in groups, then the project and the config, every layer under the cap.
    """
    import tarfile

    from envbuild.oci.compress import open_layer
    from envbuild.oci.tarnorm import RUNTIME_FILES

    project = first_build[0]
    raw, final = Layout.open(project.parent / "raw" / "cpu-infer"), Layout.open(project / ".envbuild/images/cpu-infer")

    def entries(layout: Layout, layers: list[dict[str, Any]]) -> dict[str, tuple[bytes, str, bytes | None]]:
        found = {}
        for layer in layers:
            with (
                layout.blob_path(Digest.parse(layer["digest"])).open("rb") as blob,
                open_layer(blob) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                for m in tar:
                    data = tar.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
                    found[m.name.rstrip("/")] = (m.type, m.linkname, data)
        return found

    layers = manifest_of(final.path)["layers"]
    new = [layer for layer in layers if "dev.envbuild.layer" in layer.get("annotations", {})]
    built_layers = manifest_of(raw.path)["layers"][len(layers) - len(new) :]
    before = {k: v for k, v in entries(raw, built_layers).items() if "/" + k not in RUNTIME_FILES}
    after = entries(final, new)
    assert set(after) == set(before)
    # A hard-link group may carry its data under another of its names; content is what must match.
    assert [
        k for k in before if before[k][2] != after[k][2] and tarfile.LNKTYPE not in (before[k][0], after[k][0])
    ] == []
    names = [layer["annotations"]["dev.envbuild.layer"] for layer in new]
    assert names[0] == "venv" and names[-2:] == ["project", "config"]
    assert {"python:numpy", "python:onnxruntime"} <= set(names)
    assert any(name.startswith("python-group:") for name in names)
    assert all(layer["size"] < 2**30 for layer in new)


def test_a_dirty_tree_is_refused_and_allowed_dirt_is_recorded(
    first_build: tuple[Path, str], cache: Path, tmp_path: Path
) -> None:
    """An image never names a commit that does not hold its inputs."""
    from envbuild.image.record import BuildRecord
    from envbuild.supply.provenance import provenance_statement

    project = tmp_path / "demo"
    shutil.copytree(first_build[0], project, symlinks=True)
    head = git_head(project)
    predict = project / "demo" / "iris_demo" / "predict.py"
    predict.write_text(predict.read_text() + "# not committed\n")
    (project / "demo" / "iris_demo" / "scratch.py").write_text("x = 1\n")
    refused = cli_process(project, cache, "image", "--variant", "cpu-infer")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "demo/iris_demo/predict.py" in refused.stderr and "demo/iris_demo/scratch.py" in refused.stderr
    assert "--allow-dirty" in refused.stderr and "commit" in refused.stderr
    assert "building" not in refused.stderr  # refused before any build

    dirty = built(cli_process(project, cache, "image", "--variant", "cpu-infer", env={"ENVBUILD_ALLOW_DIRTY": "1"}))
    assert dirty["cpu-infer"]["cached"] is False and dirty["cpu-infer"]["digest"] != first_build[1]
    layout = project / ".envbuild" / "images" / "cpu-infer"
    record = json.loads((layout / "build.json").read_text())
    assert record["revision"] == head
    assert record["dirty"]["paths"] == ["demo/iris_demo/predict.py", "demo/iris_demo/scratch.py"]
    assert len(record["dirty"]["sha256"]) == 64
    labels = image_config(layout)["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == f"{head}-dirty"  # not the commit, plainly
    statement = validated(
        provenance_statement(
            BuildRecord.read(layout / "build.json"), image_name="iris-demo-cpu-infer", image_digest=record["digest"],
            source_repository="https://git.example/team/iris",
        )
    )  # fmt: skip
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"]["dirty"] == record["dirty"]
    assert "source" not in {d["name"] for d in definition["resolvedDependencies"]}

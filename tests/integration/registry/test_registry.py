"""envbuild's registry client, push, pull and referrers against real docker-registry 2.8 processes.

What envbuild says it did is checked independently: digests with hashlib and skopeo, the
registry's storage on disk, and the registry's raw HTTP answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import CliResult
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry import client as client_module
from envbuild.registry.auth import Credentials, find_credentials
from envbuild.registry.client import RegistryClient, RegistryError, RegistryOptions, RegistryUnreachableError
from envbuild.registry.referrers import Blob, attach, fallback_tag, list_referrers
from envbuild.registry.transfer import PushResult, pull_image, push_layout
from support.layouts import OCI_INDEX, TestLayout, index_digest, make_layout, verify_blobs
from support.registry import Registry
from support.tools import require_tool, unavailable

pytestmark = pytest.mark.registry

Cli = Callable[..., CliResult]
MiB = 1024 * 1024
V2 = Path("docker/registry/v2")
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1+json"
NOTE = "application/vnd.example.note.v1"


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credentials or registry settings leak in from the host: an empty DOCKER_CONFIG, no ENVBUILD_*."""
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for name in (
        "ENVBUILD_REGISTRY_USERNAME",
        "ENVBUILD_REGISTRY_PASSWORD",
        "ENVBUILD_REGISTRY_INSECURE",
        "ENVBUILD_REGISTRY_CA_FILE",
        "ENVBUILD_JSON",
        "ENVBUILD_JOBS",
        "ENVBUILD_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def backoff_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's backoff waits, recorded instead of slept.

    Error tests run with the CLI's default retries and stay fast; the list says how many
    retries happened and how long a user would have waited.
    """
    waits: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> TestLayout:
    """One 160 MiB layer: 40 chunks of 4 MiB, enough for a push to be caught half-way."""
    return make_layout(tmp_path_factory.mktemp("big") / "layout", layer_size=160 * MiB, seed="big")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run skopeo; fail the test with its stderr if it fails and ``check``."""
    result = subprocess.run([require_tool("skopeo"), *args], capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, f"skopeo {' '.join(args)} failed:\n{result.stderr}"
    return result


def skopeo_flags(registry: Registry) -> list[str]:
    """How skopeo reaches ``registry``: its CA or plain HTTP, and its credentials."""
    flags = ["--cert-dir", str(registry.ca_file.parent)] if registry.ca_file else ["--tls-verify=false"]
    if registry.username:
        flags += ["--creds", f"{registry.username}:{registry.password}"]
    return flags


def skopeo_inspect(registry: Registry, reference: str) -> dict[str, Any]:
    """``skopeo inspect docker://reference``, parsed."""
    value: dict[str, Any] = json.loads(skopeo("inspect", *skopeo_flags(registry), f"docker://{reference}").stdout)
    return value


def cli_flags(registry: Registry, *, transfer: bool = True) -> list[str]:
    """How ``envbuild`` reaches ``registry``: --ca-file for TLS, else --insecure (plain HTTP).

    For push and pull (``transfer``) with basic auth, one blob at a time: concurrent first requests
    trip the client's basic-auth race (test_concurrent_first_requests_with_basic_auth), which the
    tests using this are not about.
    """
    flags = ["--ca-file", str(registry.ca_file)] if registry.ca_file else ["--insecure"]
    return [*flags, "--jobs", "1"] if transfer and registry.username else flags


def client_for(registry: Registry, **options: Any) -> RegistryClient:
    """An API client for ``registry`` with its credentials (if any), built like the CLI's."""
    credentials = Credentials(registry.username, registry.password or "", "test") if registry.username else None
    return RegistryClient(
        registry.host,
        RegistryOptions(insecure=registry.tls is None, ca_file=registry.ca_file, **options),
        credentials=credentials,
    )


def raw_manifest(registry: Registry, repository: str, reference: str) -> bytes:
    """The registry's exact bytes for a manifest, over plain HTTP without envbuild."""
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, " + OCI_INDEX, **registry.auth_header()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def storage_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``root``."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def blob_data_file(registry: Registry, digest: str) -> Path:
    """Where the registry keeps the bytes of blob ``digest``."""
    hexdigest = digest.removeprefix("sha256:")
    return registry.storage / V2 / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"


def assert_clean_failure(result: CliResult, *needles: str, secrets: tuple[str, ...] = ()) -> None:
    """Exit 1, an error naming the problem and a hint on stderr, no traceback, no secret anywhere."""
    output = result.out + result.err
    assert result.code == 1, f"exit {result.code}:\n{output}"
    assert "Traceback" not in output
    assert "error:" in result.err and "hint:" in result.err, result.err
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in:\n{result.err}"
    for secret in secrets:
        assert secret not in output


class PushThread(threading.Thread):
    """``push_layout`` in the background, keeping its result or its exception."""

    def __init__(self, layout: TestLayout, ref: ImageRef, client: RegistryClient):
        super().__init__(daemon=True)
        self.args_ = (Layout.open(layout.path), ref, client)
        self.result: PushResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = push_layout(*self.args_)
        except BaseException as exc:
            self.error = exc


def wait_for_upload(registry: Registry, repository: str, at_least: int, push: threading.Thread) -> int:
    """Wait until the registry holds ``at_least`` bytes of an unfinished upload to ``repository``."""
    uploads = registry.storage / V2 / "repositories" / repository / "_uploads"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in uploads.glob("*/data")] if uploads.is_dir() else []
        if sizes and max(sizes) >= at_least:
            return max(sizes)
        assert push.is_alive(), "the push ended before the registry could be killed in the middle of it"
        time.sleep(0.005)
    raise AssertionError(f"no upload to {repository} reached {at_least} bytes")


@pytest.fixture
def read_only_storage(registry: Registry) -> Iterator[Path]:
    """The registry's storage, made read-only under the running registry by a read-only bind mount."""
    if os.geteuid() != 0:
        unavailable("a read-only bind mount needs root")
    mount, umount = require_tool("mount"), require_tool("umount")
    storage = str(registry.storage)
    subprocess.run([mount, "--bind", storage, storage], check=True)
    try:
        subprocess.run([mount, "-o", "remount,bind,ro", storage, storage], check=True)
        yield registry.storage
    finally:
        subprocess.run([umount, storage], check=True)


# -- 1. round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["registry", "auth_registry", "tls_registry"])
def test_push_pull_round_trip(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    """push prints REF@DIGEST, skopeo reads that digest back, pull writes a layout skopeo reads."""
    registry: Registry = request.getfixturevalue(kind)
    if registry.username:
        monkeypatch.setenv("ENVBUILD_REGISTRY_USERNAME", registry.username)
        monkeypatch.setenv("ENVBUILD_REGISTRY_PASSWORD", registry.password or "")
    layout = make_layout(tmp_path / "v1", layer_size=64 * 1024, layers=2, seed=kind)
    other = make_layout(tmp_path / "v2", layer_size=1024, seed=f"{kind}-other")
    target = f"{registry.host}/team/round-trip:v1"

    pushed = cli("push", *cli_flags(registry), layout.path, target)
    assert pushed.code == 0, pushed.err
    assert pushed.out.strip() == f"{target}@{layout.digest}"
    assert layout.digest == index_digest(layout.path)
    inspected = skopeo_inspect(registry, target)
    assert inspected["Digest"] == layout.digest
    assert inspected["Layers"] == list(layout.layers)

    output = tmp_path / "pulled"
    pulled = cli("pull", *cli_flags(registry), f"{target}@{layout.digest}", "-o", output)
    assert pulled.code == 0, pulled.err
    assert pulled.out.strip() == layout.digest
    # Every pulled blob hashes to its name, and they are exactly the pushed ones (plus nothing).
    assert verify_blobs(output) == verify_blobs(layout.path)
    assert index_digest(output) == layout.digest
    assert json.loads(skopeo("inspect", f"oci:{output}").stdout)["Digest"] == layout.digest

    second = cli("push", *cli_flags(registry), other.path, f"{registry.host}/team/round-trip:v2")
    assert second.code == 0, second.err
    resolved = {
        tag: cli(
            "registry", "resolve", *cli_flags(registry, transfer=False), f"{registry.host}/team/round-trip:{tag}"
        ).out.strip()
        for tag in ("v1", "v2")
    }
    assert resolved == {
        "v1": f"{registry.host}/team/round-trip:v1@{layout.digest}",
        "v2": f"{registry.host}/team/round-trip:v2@{other.digest}",
    }
    tags = cli("registry", "tags", *cli_flags(registry, transfer=False), f"{registry.host}/team/round-trip")
    assert tags.code == 0, tags.err
    assert tags.out.split() == ["v1", "v2"]
    assert registry.password is None or registry.password not in pushed.out + pushed.err + pulled.err


# -- 2. credentials from docker's config -----------------------------------------------------


def test_credentials_from_docker_config_auths(
    auth_registry: Registry, isolated_credentials: Path, tmp_path: Path, cli: Cli
) -> None:
    """An ``auths`` entry for the host is used; one for another host is not."""
    layout = make_layout(tmp_path / "layout", seed="auths")
    target = f"{auth_registry.host}/team/auths:v1"
    anonymous = cli("push", *cli_flags(auth_registry), layout.path, target)
    assert anonymous.code == 1, "the registry must refuse an anonymous push for this test to mean anything"

    def auth(user: str, secret: str) -> str:
        return base64.b64encode(f"{user}:{secret}".encode()).decode()

    config = {
        "auths": {
            "other.example:5000": {"auth": auth("someone", "not-this-one")},
            auth_registry.host: {"auth": auth(auth_registry.username or "", auth_registry.password or "")},
        }
    }
    (isolated_credentials / "config.json").write_text(json.dumps(config), encoding="utf-8")
    pushed = cli("push", *cli_flags(auth_registry), layout.path, target)
    assert pushed.code == 0, pushed.err
    assert pushed.out.strip() == f"{target}@{layout.digest}"
    assert skopeo_inspect(auth_registry, target)["Digest"] == layout.digest
    assert auth_registry.password and auth_registry.password not in pushed.out + pushed.err


def test_credentials_from_credential_helper(
    auth_registry: Registry,
    isolated_credentials: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Cli,
) -> None:
    """A ``credHelpers`` entry runs docker-credential-<name> get, host on stdin; it knows only that host."""
    bin_dir, asked = tmp_path / "bin", tmp_path / "helper-asked"
    bin_dir.mkdir()
    answer = json.dumps(
        {"ServerURL": auth_registry.host, "Username": auth_registry.username, "Secret": auth_registry.password}
    )
    helper = bin_dir / "docker-credential-envtest"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 2\nhost=$(cat)\necho "$host" >> "{asked}"\n'
        f"if [ \"$host\" = '{auth_registry.host}' ]; then printf '%s' '{answer}'; exit 0; fi\n"
        'echo "credentials not found in native keychain"; exit 1\n',
        encoding="utf-8",
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = {"credHelpers": {auth_registry.host: "envtest", "127.0.0.1:1": "envtest"}}
    (isolated_credentials / "config.json").write_text(json.dumps(config), encoding="utf-8")

    layout = make_layout(tmp_path / "layout", seed="helper")
    target = f"{auth_registry.host}/team/helper:v1"
    pushed = cli("push", *cli_flags(auth_registry), layout.path, target)
    assert pushed.code == 0, pushed.err
    assert skopeo_inspect(auth_registry, target)["Digest"] == layout.digest
    assert asked.read_text(encoding="utf-8").split() == [auth_registry.host]
    # The helper's exit 1 for a host it does not know means: no credentials, try anonymously.
    assert find_credentials("127.0.0.1:1") is None
    assert asked.read_text(encoding="utf-8").split() == [auth_registry.host, "127.0.0.1:1"]
    assert auth_registry.password and auth_registry.password not in pushed.out + pushed.err


def test_concurrent_first_requests_with_basic_auth(auth_registry: Registry) -> None:
    """Eight threads start at once on a fresh client, as a push's blob workers do."""
    client = client_for(auth_registry)
    barrier = threading.Barrier(8)

    def head(i: int) -> bool:
        barrier.wait()
        return client.blob_exists("team/race", Digest.of(f"blob {i}".encode()))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(head, range(8))) == [False] * 8


# -- 3. a second push uploads nothing ----------------------------------------------------------


def test_second_push_uploads_nothing(registry: Registry, tmp_path: Path, cli: Cli) -> None:
    layout = make_layout(tmp_path / "layout", layer_size=3 * MiB, layers=3, seed="repush")
    target = f"{registry.host}/team/repush:v1"
    first = cli("--json", "push", "--insecure", layout.path, target)
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert (report["uploaded"], report["existed"], report["mounted"]) == (4, 0, 0)
    assert report["bytes_uploaded"] == sum(layout.layer_sizes) + layout.blob_path(layout.config).stat().st_size

    blobs_dir = registry.storage / V2 / "blobs"
    repo_dir = registry.storage / V2 / "repositories" / "team" / "repush"
    before = (
        storage_snapshot(blobs_dir),
        storage_snapshot(repo_dir / "_layers"),
        storage_snapshot(repo_dir / "_uploads"),
    )
    second = cli("--json", "push", "--insecure", layout.path, target)
    assert second.code == 0, second.err
    report = json.loads(second.out)
    assert report["digest"] == layout.digest
    assert (report["uploaded"], report["bytes_uploaded"], report["existed"], report["mounted"]) == (0, 0, 4, 0)
    after = (
        storage_snapshot(blobs_dir),
        storage_snapshot(repo_dir / "_layers"),
        storage_snapshot(repo_dir / "_uploads"),
    )
    # Not one blob written or linked again, and no upload session started.
    assert after == before
    assert len(before[0]) == 5  # config, three layers, manifest


# -- 4. cross-repository mount -----------------------------------------------------------------


def test_cross_repository_mount(registry: Registry, tmp_path: Path) -> None:
    client = client_for(registry)
    layout = make_layout(tmp_path / "layout", layer_size=256 * 1024, layers=2, seed="mount")
    repo_a = push_layout(Layout.open(layout.path), ImageRef.parse(f"{registry.host}/team/repo-a:v1"), client)
    assert sorted(map(str, repo_a.uploaded)) == sorted(layout.blobs)

    repo_b = push_layout(
        Layout.open(layout.path), ImageRef.parse(f"{registry.host}/team/repo-b:v1"), client, mount_from="team/repo-a"
    )
    assert sorted(map(str, repo_b.mounted)) == sorted(layout.blobs)
    assert (repo_b.uploaded, repo_b.existed, repo_b.bytes_uploaded) == ([], [], 0)
    assert skopeo_inspect(registry, f"{registry.host}/team/repo-b:v1")["Digest"] == layout.digest
    links = registry.storage / V2 / "repositories" / "team" / "repo-b" / "_layers" / "sha256"
    assert sorted(f"sha256:{p.name}" for p in links.iterdir()) == sorted(layout.blobs)

    # A mount from a repository that lacks the blobs falls back to uploading them.
    fresh = make_layout(tmp_path / "fresh", seed="mount-fresh")
    repo_c = push_layout(
        Layout.open(fresh.path), ImageRef.parse(f"{registry.host}/team/repo-c:v1"), client, mount_from="team/repo-a"
    )
    assert (repo_c.mounted, sorted(map(str, repo_c.uploaded))) == ([], sorted(fresh.blobs))


# -- 5. parallel pushes ------------------------------------------------------------------------


def test_four_parallel_pushes(registry: Registry, tmp_path: Path) -> None:
    """Four threads share one client; 1 MiB chunks make every layer a multi-request upload."""
    layouts = [make_layout(tmp_path / f"l{i}", layer_size=3 * MiB, layers=2, seed=f"par-{i}") for i in range(4)]
    client = client_for(registry, chunk_size=MiB)

    def push(i: int) -> PushResult:
        return push_layout(Layout.open(layouts[i].path), ImageRef.parse(f"{registry.host}/team/par-{i}:v1"), client)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(push, range(4)))
    for i, (layout, result) in enumerate(zip(layouts, results, strict=True)):
        assert str(result.digest) == layout.digest
        assert sorted(map(str, result.uploaded)) == sorted(layout.blobs)
        inspected = skopeo_inspect(registry, f"{registry.host}/team/par-{i}:v1")
        assert (inspected["Digest"], inspected["Layers"]) == (layout.digest, list(layout.layers))
        assert hashlib.sha256(blob_data_file(registry, layout.layers[1]).read_bytes()).hexdigest() == (
            layout.layers[1].removeprefix("sha256:")
        )


# -- 6. a registry that crashes mid-push --------------------------------------------------------


def test_push_survives_registry_crash(
    registry: Registry, big_layout: TestLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL the registry mid-upload, restart it a second later: the push resumes and completes."""
    caplog.set_level(logging.INFO, logger="envbuild.registry.client")
    client = client_for(registry, chunk_size=4 * MiB)
    ref = ImageRef.parse(f"{registry.host}/team/crash:v1")
    push = PushThread(big_layout, ref, client)
    push.start()
    try:
        killed_at = wait_for_upload(registry, "team/crash", 3 * 4 * MiB, push)
        registry.kill()
        time.sleep(1)
        registry.restart()
    finally:
        push.join(timeout=120)
    assert not push.is_alive()
    assert push.error is None, repr(push.error)
    assert push.result is not None and str(push.result.digest) == big_layout.digest
    assert big_layout.layers[0] in map(str, push.result.uploaded)
    assert killed_at < big_layout.layer_sizes[0]
    assert any("interrupted" in r.getMessage() for r in caplog.records), "the upload was never interrupted"

    output = tmp_path / "pulled"
    pull_image(ref.with_digest(push.result.digest), client, output)
    assert verify_blobs(output) == verify_blobs(big_layout.path)
    assert skopeo_inspect(registry, str(ref))["Digest"] == big_layout.digest


def test_failed_push_leaves_no_tag(registry: Registry, big_layout: TestLayout, tmp_path: Path, cli: Cli) -> None:
    """A push that gives up while the registry is down tags nothing; pushing again later works."""
    client = client_for(registry, chunk_size=4 * MiB, retries=1, backoff=0.1)
    target = f"{registry.host}/team/down:v1"
    push = PushThread(big_layout, ImageRef.parse(target), client)
    push.start()
    try:
        wait_for_upload(registry, "team/down", 2 * 4 * MiB, push)
        registry.kill()
    finally:
        push.join(timeout=60)
    assert not push.is_alive()
    assert isinstance(push.error, RegistryUnreachableError), repr(push.error)
    registry.restart()

    with pytest.raises(RegistryError, match="manifest"):
        client.resolve("team/down", "v1")
    assert client.list_tags("team/down") == []
    missing = skopeo("inspect", "--tls-verify=false", f"docker://{target}", check=False)
    assert missing.returncode != 0 and "manifest unknown" in missing.stderr

    pushed = cli("push", "--insecure", big_layout.path, target)
    assert pushed.code == 0, pushed.err
    assert pushed.out.strip() == f"{target}@{big_layout.digest}"
    assert str(client.resolve("team/down", "v1")) == big_layout.digest


# -- 7. referrers through the tag-schema fallback ---------------------------------------------


@pytest.fixture
def subject(registry: Registry, tmp_path: Path) -> Digest:
    """The digest of a small image pushed to ``team/refs``."""
    layout = make_layout(tmp_path / "subject", seed="referrers")
    return push_layout(
        Layout.open(layout.path), ImageRef.parse(f"{registry.host}/team/refs:v1"), client_for(registry)
    ).digest


def test_referrers_fallback(registry: Registry, subject: Digest) -> None:
    client, repo = client_for(registry), "team/refs"
    assert client.referrers_api(repo, subject) is None  # distribution 2.8: the fallback applies
    sbom = attach(
        client, repo, subject, artifact_type=SBOM, blobs=[Blob(media_type="application/spdx+json", data=b"{}")]
    )
    signature = attach(
        client,
        repo,
        subject,
        artifact_type=SIGNATURE,
        blobs=[Blob(media_type="application/octet-stream", data=b"signature bytes")],
        annotations={"org.example.signer": "test"},
    )
    assert sbom.digest != signature.digest

    listed = list_referrers(client, repo, subject)
    assert {(d.digest, d.artifact_type) for d in listed} == {(sbom.digest, SBOM), (signature.digest, SIGNATURE)}
    assert [d.digest for d in list_referrers(client, repo, subject, artifact_type=SBOM)] == [sbom.digest]
    assert [d.digest for d in list_referrers(client, repo, subject, artifact_type=SIGNATURE)] == [signature.digest]
    assert list_referrers(client, repo, subject, artifact_type="application/vnd.example.none") == []

    index = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:sha256-{subject.hex}").stdout
    )
    assert index["mediaType"] == OCI_INDEX
    assert {m["digest"]: m["artifactType"] for m in index["manifests"]} == {
        str(sbom.digest): SBOM,
        str(signature.digest): SIGNATURE,
    }
    for artifact in (sbom, signature):
        data = raw_manifest(registry, repo, str(artifact.digest))
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == str(artifact.digest)
        body = json.loads(data)
        assert body["subject"]["digest"] == str(subject)
        assert body["subject"]["size"] == len(raw_manifest(registry, repo, str(subject)))
        assert body["artifactType"] == artifact.artifact_type


def test_referrers_tolerate_a_tag_being_written(registry: Registry, subject: Digest) -> None:
    client, repo = client_for(registry), "team/refs"
    first = attach(client, repo, subject, artifact_type=SBOM, blobs=[Blob(media_type="text/plain", data=b"first")])
    # The registry frozen where a concurrent attach stands mid-tag: distribution's tagStore links the
    # tag's index entry (which /tags/list shows) before it writes the tag's current link.
    pending = Digest.of(b"a referrer still being tagged")
    tag = f"{fallback_tag(subject)}.{pending.hex[:12]}"
    link = registry.storage / V2 / "repositories" / repo / "_manifests" / "tags" / tag / "index" / "sha256"
    (link / pending.hex).mkdir(parents=True)
    (link / pending.hex / "link").write_text(str(pending), encoding="utf-8")
    assert tag in client.list_tags(repo)
    assert not client.manifest_exists(repo, tag)

    assert [d.digest for d in list_referrers(client, repo, subject)] == [first.digest]
    second = attach(client, repo, subject, artifact_type=NOTE, blobs=[Blob(media_type="text/plain", data=b"second")])
    assert {d.digest for d in list_referrers(client, repo, subject)} == {first.digest, second.digest}


def test_referrers_index_survives_a_slow_writer(registry: Registry, subject: Digest) -> None:
    """Writer B reads the index and tags, answers arrive late; meanwhile writer A attaches; then B writes."""
    repo = "team/refs"
    b_listed, a_done = threading.Event(), threading.Event()

    class SlowListing(RegistryClient):
        """A client whose first tag listing arrives late, as from a registry under load."""

        def list_tags(self, repository: str) -> list[str]:
            tags = super().list_tags(repository)
            if not b_listed.is_set():
                b_listed.set()
                a_done.wait(timeout=30)
            return tags

    slow = SlowListing(registry.host, RegistryOptions(insecure=True), credentials=None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        b_attach = pool.submit(
            attach, slow, repo, subject, artifact_type=NOTE, blobs=[Blob(media_type="text/plain", data=b"B")]
        )
        assert b_listed.wait(timeout=30)
        a = attach(
            client_for(registry), repo, subject, artifact_type=SBOM, blobs=[Blob(media_type="text/plain", data=b"A")]
        )
        a_done.set()
        b = b_attach.result(timeout=60)

    client = client_for(registry)
    assert {d.digest for d in list_referrers(client, repo, subject)} == {a.digest, b.digest}
    index = client.get_manifest(repo, fallback_tag(subject)).json()
    assert {m["digest"] for m in index["manifests"]} == {str(a.digest), str(b.digest)}


def test_concurrent_referrer_writers(registry: Registry, subject: Digest) -> None:
    """20 writers, each with its own client, attach to one image; the fallback index keeps all of them."""
    repo = "team/refs"
    first = attach(
        client_for(registry), repo, subject, artifact_type=SBOM, blobs=[Blob(media_type="text/plain", data=b"0")]
    )

    def writer(i: int) -> Digest:
        blob = Blob(media_type="text/plain", data=f"note {i}".encode())
        return attach(client_for(registry), repo, subject, artifact_type=NOTE, blobs=[blob]).digest

    with ThreadPoolExecutor(max_workers=20) as pool:
        written = list(pool.map(writer, range(20)))
    expected = {str(first.digest), *map(str, written)}
    assert len(expected) == 21

    client = client_for(registry)
    assert {str(d.digest) for d in list_referrers(client, repo, subject)} == expected
    assert len(list_referrers(client, repo, subject, artifact_type=NOTE)) == 20
    index = client.get_manifest(repo, fallback_tag(subject)).json()
    in_index = {m["digest"] for m in index["manifests"]}
    missing = expected - in_index
    assert not missing, f"the fallback index lacks {len(missing)} of {len(expected)} referrers"


# -- 8. errors ---------------------------------------------------------------------------------


def test_wrong_password(auth_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> None:
    wrong = "wrong-" + os.urandom(8).hex()
    monkeypatch.setenv("ENVBUILD_REGISTRY_USERNAME", auth_registry.username or "")
    monkeypatch.setenv("ENVBUILD_REGISTRY_PASSWORD", wrong)
    layout = make_layout(tmp_path / "layout", seed="wrong-password")
    result = cli("push", "--insecure", layout.path, f"{auth_registry.host}/team/secret:v1")
    assert_clean_failure(
        result,
        auth_registry.host,
        "refused",
        repr(auth_registry.username),
        "docker login",
        secrets=(wrong, auth_registry.password or "-"),
    )


def test_unknown_host(tmp_path: Path, cli: Cli, backoff_waits: list[float]) -> None:
    layout = make_layout(tmp_path / "layout", seed="unknown-host")
    # One blob at a time: every retry is a DNS query, and fewer of them keep the resolver quick.
    result = cli("push", "--insecure", "--jobs", "1", layout.path, "no-such-host.invalid:5000/x/y:1")
    assert_clean_failure(result, "no-such-host.invalid:5000", "unreachable", "check the host name")


def test_unknown_host_fails_fast(tmp_path: Path, cli: Cli, backoff_waits: list[float]) -> None:
    layout = make_layout(tmp_path / "layout", seed="unknown-host")
    result = cli("push", "--insecure", "--jobs", "1", layout.path, "no-such-host.invalid:5000/x/y:1")
    assert result.code == 1
    assert sum(backoff_waits) < 10, f"{len(backoff_waits)} retries, {sum(backoff_waits)} s of backoff"


def test_untrusted_certificate(tls_registry: Registry, tmp_path: Path, cli: Cli, backoff_waits: list[float]) -> None:
    layout = make_layout(tmp_path / "layout", seed="tls")
    result = cli("push", "--ca-file", str(tls_registry.other_ca_file), layout.path, f"{tls_registry.host}/team/tls:v1")
    assert_clean_failure(result, tls_registry.host, "not trusted", "--ca-file")
    assert backoff_waits == []  # a certificate does not become trusted by asking again


def test_plain_http_registry_without_insecure(
    registry: Registry, tmp_path: Path, cli: Cli, backoff_waits: list[float]
) -> None:
    """Speaking TLS to a plain-HTTP registry is named as such, with --insecure as the fix, not --ca-file."""
    layout = make_layout(tmp_path / "layout", seed="plain-http")
    target = f"{registry.host}/team/plain:v1"
    pushed = cli("push", layout.path, target)
    assert_clean_failure(pushed, f"{registry.host} speaks plain HTTP, not HTTPS", "--insecure")
    assert "--ca-file" not in pushed.err and "not trusted" not in pushed.err
    assert cli("push", "--insecure", layout.path, target).code == 0

    pulled = cli("pull", f"{target}@{layout.digest}", "-o", tmp_path / "pulled")
    assert_clean_failure(pulled, f"{registry.host} speaks plain HTTP, not HTTPS", "--insecure")
    assert "--ca-file" not in pulled.err

    key = tmp_path / "key.pub"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    verified = cli("verify", "--key", key, f"{target}@{layout.digest}")
    assert_clean_failure(verified, f"{registry.host} speaks plain HTTP, not HTTPS", "--insecure")
    assert "--ca-file" not in verified.err
    assert backoff_waits == []  # asking again in TLS will not change what the registry speaks


def test_read_only_storage(
    registry: Registry, read_only_storage: Path, tmp_path: Path, cli: Cli, backoff_waits: list[float]
) -> None:
    layout = make_layout(tmp_path / "layout", seed="read-only")
    target = f"{registry.host}/team/full:v1"
    result = cli("push", "--insecure", "--jobs", "1", layout.path, target)
    assert_clean_failure(result, registry.host, "HTTP 500", "internal error", "storage")
    # The CLI's defaults retry a 5xx 5 times with backoff: 15.5 s per blob before the user hears of it.
    assert backoff_waits[:5] == [0.5, 1, 2, 4, 8]
    assert not (registry.storage / V2 / "repositories" / "team" / "full" / "_manifests").exists()


def test_failed_push_stops_at_the_first_failed_blob(
    registry: Registry, read_only_storage: Path, tmp_path: Path, cli: Cli, backoff_waits: list[float]
) -> None:
    layout = make_layout(tmp_path / "layout", layers=3, seed="stop-early")
    result = cli("push", "--insecure", "--jobs", "1", layout.path, f"{registry.host}/team/full:v1")
    assert result.code == 1
    assert backoff_waits == [0.5, 1, 2, 4, 8], f"{len(backoff_waits)} retries, {sum(backoff_waits)} s of backoff"


# -- 9. a registry that serves other bytes -----------------------------------------------------


def test_pull_refuses_other_bytes(registry: Registry, tmp_path: Path, cli: Cli) -> None:
    layout = make_layout(tmp_path / "layout", layer_size=512 * 1024, seed="tampered")
    target = f"{registry.host}/team/tampered:v1"
    assert cli("push", "--insecure", layout.path, target).code == 0
    layer = layout.layers[0]
    data_file = blob_data_file(registry, layer)
    data_file.write_bytes(os.urandom(data_file.stat().st_size))  # same size, other bytes

    output = tmp_path / "pulled"
    result = cli("pull", "--insecure", f"{target}@{layout.digest}", "-o", output)
    assert_clean_failure(result, "other bytes", layer, registry.host)
    assert list(output.rglob("*.partial")) == []
    assert not (output / "blobs" / "sha256" / layer.removeprefix("sha256:")).exists()
    assert json.loads((output / "index.json").read_text(encoding="utf-8"))["manifests"] == []
    assert set(verify_blobs(output)) <= {layout.config}  # whatever is there is genuine

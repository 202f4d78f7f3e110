"""Signing, attaching and ``envbuild verify`` against a real registry: tampering is caught, with its reason.

Images here are small layouts written by the tests, each with a build record in the format
``envbuild image`` writes, so SBOM, provenance and signatures are made by the real code
paths in seconds. The demo image's own round trip is in test_image.py.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envbuild.image.record import BuiltImage, BuiltIndex
from envbuild.oci.layout import Layout
from envbuild.oci.ref import ImageRef
from envbuild.oci.writer import write_index
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.transfer import push_layout
from envbuild.supply.attest import (
    KINDS,
    PREDICATES,
    Attestations,
    attach_attestations,
    find_build,
    make_attestations,
)
from envbuild.supply.policy import Policy, TrustedIdentity, read_trusted_key
from envbuild.supply.release import release
from envbuild.supply.signing.keys import generate_keypair, load_private_key, write_keypair
from envbuild.supply.signing.signer import KeySigner
from envbuild.supply.verify import Report, verify_image
from support import paths
from support.layouts import make_layout
from support.records import record_json
from support.registry import Registry
from support.sigstore_js import attached_bundles, sigstore_js_verify
from support.tools import require_tool

pytestmark = [pytest.mark.registry]

ASSETS = paths.ASSETS / "sigstore"
KEYLESS_BUNDLE = ASSETS / "dsse_v001_bundle.sigstore.json"
KEYLESS_IDENTITY = "https://github.com/prefix-dev/sigstore-example/.github/workflows/action.yaml@refs/heads/main"
KEYLESS_ISSUER = "https://token.actions.githubusercontent.com"
PASSWORD = "correct horse battery staple"
SOURCE = "https://git.example/team/app"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two key pairs: ``release`` (password-protected) and ``other``; paths of their .key and .pub files."""
    out = {}
    for name, password in (("release", PASSWORD.encode()), ("other", None)):
        files = write_keypair(tmp_path / "keys", name, generate_keypair(password))
        out[f"{name}.key"], out[f"{name}.pub"] = files.private, files.public
    return out


def signer(keys: dict[str, Path], name: str = "release") -> KeySigner:
    password = PASSWORD.encode() if name == "release" else None
    return KeySigner(load_private_key(keys[f"{name}.key"].read_bytes(), password))


def make_build(project: Path, variant: str, seed: int, *, platform: str = "linux/amd64") -> BuiltImage:
    """A small image in the project's image directory with a build record as ``envbuild image`` writes it."""
    layout = make_layout(
        project / ".envbuild" / "images" / variant, seed=seed, name=f"app-{variant}", layers=2,
        architecture=platform.split("/")[1],
    )  # fmt: skip
    record = record_json(
        platform=platform,
        base={"digest": "sha256:" + "11" * 32, "name": "envbuild.local/app/base-cpu:0123456789abcdef"},
        compressor="python-zlib gzip -6",
        digest=layout.digest,
        revision="c0ffee" * 6 + "ab",
        spec_sha256="55" * 32,
        tools=[{"filename": "uv.whl", "name": "uv", "sha256": "66" * 32, "url": "https://files.example/uv.whl",
                "version": "1"}],
        variant=variant.removesuffix("-x86_64").removesuffix("-aarch64"),
        wheels=[],
    )  # fmt: skip
    (layout.path / "build.json").write_text(json.dumps(record), encoding="utf-8")
    return find_build(project, variant=variant)


def client_of(registry: Registry) -> RegistryClient:
    return RegistryClient(registry.host, RegistryOptions(insecure=True))


def publish(
    registry: Registry,
    build: BuiltImage,
    sign_with: KeySigner | None,
    *,
    kinds: tuple[str, ...] = KINDS,
    tag: str | None = None,
) -> tuple[ImageRef, Attestations]:
    """Push ``build`` as team/app:<tag> and attach what ``kinds`` names, signed by ``sign_with``."""
    client = client_of(registry)
    pushed = push_layout(
        Layout.open(build.layout), ImageRef.parse(f"{registry.host}/team/app:{tag or build.variant}"), client
    )
    made = make_attestations(build, sign_with, kinds=kinds, source_repository=SOURCE)
    attach_attestations(client, "team/app", pushed.digest, made)
    return pushed.ref, made


def verify(registry: Registry, ref: ImageRef | str, keys: dict[str, Path], **policy: Any) -> Report:
    trusted = (read_trusted_key(keys["release.pub"]),)
    target = ImageRef.parse(str(ref))
    return verify_image(client_of(registry), target, Policy(keys=trusted, **policy))


def check(report: Report, name: str) -> str:
    """The detail of check ``name``, which must have failed."""
    found = {c.name: c for c in report.checks}
    assert name in found, report
    assert not found[name].ok, found[name]
    return found[name].detail


def blob_file(registry: Registry, digest: str) -> Path:
    """Where distribution keeps a blob (layers and manifests alike) in its filesystem storage."""
    hex_ = digest.removeprefix("sha256:")
    return registry.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def test_a_signed_image_verifies(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    report = verify(registry, ref, keys)
    assert report.ok, report
    assert [c.name for c in report.checks] == ["reference", "image", "signature", "sbom", "provenance"]
    details = {c.name: c.detail for c in report.checks}
    assert "3 blobs" in details["image"]
    assert "SLSA v1, buildah 1.28.2" in details["provenance"]


def test_verify_cli_exit_codes_and_json(
    registry: Registry, project: Path, keys: dict[str, Path], cli: Callable[..., Any]
) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    good = cli("--json", "verify", str(ref), "--key", keys["release.pub"], "--insecure")
    assert good.code == 0, good.err
    assert json.loads(good.out)["verified"] is True

    by_tag = cli("verify", f"{registry.host}/team/app:cpu-infer", "--key", keys["release.pub"], "--insecure")
    assert by_tag.code == 0, by_tag.err
    assert "tags move" in by_tag.out and f"@{ref.digest}" in by_tag.out

    bad = cli("verify", str(ref), "--key", keys["other.pub"], "--insecure")
    assert bad.code == 1
    assert "NOT VERIFIED" in bad.out and "signed by another key" in bad.err and "Traceback" not in bad.err

    nobody = cli("verify", str(ref), "--insecure")
    assert nobody.code == 2 and "no trusted signer" in nobody.err


def test_a_layer_byte_flipped_in_the_registry_is_caught(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    build = make_build(project, "cpu-infer", 1)
    ref, _ = publish(registry, build, signer(keys))
    manifest = json.loads(Layout.open(build.layout).read_blob(build.digest))
    layer = blob_file(registry, manifest["layers"][1]["digest"])
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01
    layer.write_bytes(bytes(data))

    report = verify(registry, ref, keys)
    assert not report.ok
    assert f"served other bytes for blob {manifest['layers'][1]['digest']}" in check(report, "image")


def test_a_registry_serving_other_content_for_a_digest_is_caught(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    other, _ = publish(registry, make_build(project, "cpu-train", 2), signer(keys))
    assert ref.digest is not None and other.digest is not None
    # The registry now answers the first digest with the second image's manifest.
    shutil.copy(blob_file(registry, str(other.digest)), blob_file(registry, str(ref.digest)))

    report = verify(registry, ref, keys)
    assert f"served other bytes for manifest {ref.digest}" in check(report, "image")


def test_a_moved_tag_is_caught(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys), tag="prod")
    moved, _ = publish(registry, make_build(project, "cpu-train", 2), None, kinds=(), tag="prod")

    pinned = verify(registry, ref, keys)  # registry/team/app:prod@<first digest>
    assert f"tag prod points at {moved.digest}, not {ref.digest}: the tag was moved" in check(pinned, "reference")
    assert next(c for c in pinned.checks if c.name == "signature").ok  # the pinned image itself is fine

    by_tag = verify(registry, f"{registry.host}/team/app:prod", keys)
    assert by_tag.digest == str(moved.digest)
    assert f"no signature is attached to {moved.digest}" in check(by_tag, "signature")


def test_a_signature_by_another_key_is_refused(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys, "other"))
    report = verify(registry, ref, keys)
    for kind in KINDS:
        assert "the bundle was signed by another key" in check(report, kind)


def test_a_signature_replayed_from_another_image_is_refused(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    _, signed = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    unsigned = make_build(project, "cpu-train", 2)
    ref, _ = publish(registry, unsigned, None, kinds=())
    assert ref.digest is not None
    replay = Attestations(sbom=None, provenance=None, bundles=dict(signed.bundles))
    attach_attestations(client_of(registry), "team/app", ref.digest, replay)

    report = verify(registry, ref, keys)
    for kind in KINDS:  # the signature and both attestations are valid, but for the other image
        assert "signed for another image" in check(report, kind)


def test_a_missing_sbom_fails_unless_the_policy_waives_it(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys), kinds=("signature", "provenance"))
    report = verify(registry, ref, keys)
    assert f"no SBOM attestation is attached to {ref.digest}" in check(report, "sbom")
    assert [c.name for c in report.failures()] == ["sbom"]

    waived = verify(registry, ref, keys, require=("signature", "provenance"))
    assert waived.ok, waived


def test_provenance_of_another_image_is_refused(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    _, first = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    ref, _ = publish(registry, make_build(project, "cpu-train", 2), signer(keys), kinds=("signature", "sbom"))
    assert ref.digest is not None
    stolen = Attestations(sbom=None, provenance=None, bundles={"provenance": first.bundles["provenance"]})
    attach_attestations(client_of(registry), "team/app", ref.digest, stolen)

    report = verify(registry, ref, keys)
    assert "signed for another image" in check(report, "provenance")
    assert [c.name for c in report.failures()] == ["provenance"]


def test_keyless_bundle_for_the_wrong_identity_or_issuer_is_refused(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    """A real keyless bundle attached to an image: the identity, then the issuer, then the subject must hold."""
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), None, kinds=())
    assert ref.digest is not None
    keyless = Attestations(sbom=None, provenance=None, bundles={"signature": KEYLESS_BUNDLE.read_bytes()})
    attach_attestations(client_of(registry), "team/app", ref.digest, keyless)

    def keyless_verify(identity: str, issuer: str) -> Report:
        policy = Policy(identities=(TrustedIdentity(identity=identity, issuer=issuer),), require=("signature",))
        return verify_image(client_of(registry), ref, policy)

    wrong_identity = keyless_verify(
        "https://github.com/team/app/.github/workflows/release.yml@refs/tags/v1", KEYLESS_ISSUER
    )
    assert "SANs do not match" in check(wrong_identity, "signature")
    wrong_issuer = keyless_verify(KEYLESS_IDENTITY, "https://accounts.google.com")
    assert "OIDCIssuer" in check(wrong_issuer, "signature")
    # The right signer still signed another artifact, not this image.
    right_signer = keyless_verify(KEYLESS_IDENTITY, KEYLESS_ISSUER)
    assert "signed for another image" in check(right_signer, "signature")


def test_policy_builder_and_source_repository(
    registry: Registry, project: Path, keys: dict[str, Path], tmp_path: Path, cli: Callable[..., Any]
) -> None:
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    assert verify(registry, ref, keys, builder="buildah", source_repository=SOURCE + ".git").ok

    wrong = verify(registry, ref, keys, builder="docker", source_repository="https://git.example/evil/app")
    assert "built with 'buildah'; the policy requires 'docker'" in check(wrong, "provenance")

    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'require = ["signature", "provenance"]\nsource-repository = "{SOURCE}"\n\n'
        f'[[signers]]\nkey = "{keys["release.pub"]}"\n',
        encoding="utf-8",
    )
    assert cli("verify", str(ref), "--policy", policy, "--insecure").code == 0
    policy.write_text('[[signers]]\nkey = "x.pub"\nidentiy = "me"\n', encoding="utf-8")
    typo = cli("verify", str(ref), "--policy", policy, "--insecure")
    assert typo.code == 2 and "signers[0].identiy: unknown key" in typo.err and "did you mean 'identity'" in typo.err


def test_signatures_check_independently_with_openssl(
    registry: Registry, project: Path, keys: dict[str, Path], tmp_path: Path
) -> None:
    """The bundle as the registry serves it, checked by openssl over the DSSE PAE built here by hand."""
    openssl = require_tool("openssl")
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    assert ref.digest is not None
    client = client_of(registry)
    index = client.get_manifest("team/app", f"sha256-{ref.digest.hex}").json()
    checked = 0
    for entry in index["manifests"]:
        if entry.get("artifactType") != "application/vnd.dev.sigstore.bundle.v0.3+json":
            continue
        manifest = client.get_manifest("team/app", entry["digest"]).json()
        assert manifest["subject"]["digest"] == str(ref.digest)
        from envbuild.oci.ref import Digest

        bundle = json.loads(client.get_blob("team/app", Digest.parse(manifest["layers"][0]["digest"])))
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"])
        kind = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
        (tmp_path / "pae").write_bytes(pae)
        (tmp_path / "sig").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
        sig, pae_file = tmp_path / "sig", tmp_path / "pae"
        result = subprocess.run(
            [openssl, "dgst", "-sha256", "-verify", keys["release.pub"], "-signature", sig, pae_file],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0 and "Verified OK" in result.stdout, result.stderr
        assert json.loads(payload)["subject"][0]["digest"]["sha256"] == ref.digest.hex
        assert manifest["annotations"]["dev.sigstore.bundle.predicateType"] == json.loads(payload)["predicateType"]
        checked += 1
    assert checked == 3


def test_every_attached_bundle_verifies_with_sigstore_js(
    registry: Registry, project: Path, keys: dict[str, Path]
) -> None:
    """sigstore-js (@sigstore/verify) verifies the three bundles the registry serves, given the public key;
    a bundle whose statement or signature was changed, or checked against another key, fails there too."""
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    assert ref.digest is not None
    bundles = attached_bundles(client_of(registry), "team/app", ref.digest)
    checked = sigstore_js_verify(keys["release.pub"], bundles)
    assert [r.get("error") for r in checked.values()] == [None] * 3
    assert sorted(r["predicateType"] for r in checked.values()) == sorted(PREDICATES.values())
    assert all(r["subject"][0]["digest"] == {"sha256": ref.digest.hex} for r in checked.values())

    name, original = next(iter(bundles.items()))
    bundle = json.loads(original)
    envelope = bundle["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64  # the signature, moved to another image
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    moved = {**bundle, "dsseEnvelope": {**envelope, "payload": payload}}
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[-1] ^= 1
    flipped_sig = [{**envelope["signatures"][0], "sig": base64.b64encode(bytes(signature)).decode()}]
    flipped = {**bundle, "dsseEnvelope": {**envelope, "signatures": flipped_sig}}
    tampered = sigstore_js_verify(
        keys["release.pub"], {"moved.json": json.dumps(moved).encode(), "flipped.json": json.dumps(flipped).encode()}
    )
    assert {k: (r["verified"], r["error"]) for k, r in tampered.items()} == {
        "moved.json": (False, "VerificationError: SIGNATURE_ERROR: signature verification failed"),
        "flipped.json": (False, "VerificationError: SIGNATURE_ERROR: signature verification failed"),
    }
    other = sigstore_js_verify(keys["other.pub"], {name: original})[name]
    assert other["verified"] is False and "PUBLIC_KEY_ERROR: key not found" in other["error"]


def test_skopeo_sees_the_referrers(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    skopeo = require_tool("skopeo")
    ref, _ = publish(registry, make_build(project, "cpu-infer", 1), signer(keys))
    assert ref.digest is not None

    def raw(reference: str) -> dict[str, Any]:
        out = subprocess.run(
            [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/team/app{reference}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return dict(json.loads(out))

    index = raw(f":sha256-{ref.digest.hex}")
    types = sorted(m["artifactType"] for m in index["manifests"])
    assert types == ["application/vnd.cyclonedx+json"] + ["application/vnd.dev.sigstore.bundle.v0.3+json"] * 3
    for entry in index["manifests"]:
        assert raw(f"@{entry['digest']}")["subject"]["digest"] == str(ref.digest)


def test_sign_and_attest_commands_on_images_built_and_pushed_earlier(
    registry: Registry,
    project: Path,
    keys: dict[str, Path],
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build = make_build(project, "cpu-infer", 1)
    ref, _ = publish(registry, build, None, kinds=())
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", PASSWORD)
    key = ("--key", keys["release.key"], "--insecure")

    signed = cli("-C", project, "--json", "sign", f"{registry.host}/team/app:cpu-infer", *key)
    assert signed.code == 0, signed.err
    assert "tags move" in signed.err
    assert verify(registry, ref, keys, require=("signature",)).ok
    assert not verify(registry, ref, keys).ok

    attested = cli("-C", project, "attest", str(ref), *key)
    assert attested.code == 0, attested.err
    assert verify(registry, ref, keys).ok
    for name in ("sbom.cdx.json", "provenance.intoto.json", "signature.sigstore.json", "sbom.sigstore.json"):
        assert (build.layout / name).is_file()

    # Signing again with the same key reuses the bundles: no new referrers pile up.
    client = client_of(registry)
    assert ref.digest is not None
    before = client.get_manifest("team/app", f"sha256-{ref.digest.hex}").data
    assert cli("-C", project, "attest", str(ref), *key).code == 0
    assert client.get_manifest("team/app", f"sha256-{ref.digest.hex}").data == before

    # An image with no local build can be signed (only its digest is needed), but not attested.
    stranger, _ = publish(registry, make_build(project, "gpu-infer", 3), None, kinds=(), tag="stranger")
    shutil.rmtree(project / ".envbuild" / "images" / "gpu-infer")
    assert cli("-C", project, "sign", str(stranger), *key).code == 0
    refused = cli("-C", project, "attest", str(stranger), *key)
    assert refused.code == 2 and f"no local build of image {stranger.digest}" in refused.err

    # The password never shows, and a wrong one is named as such.
    assert PASSWORD not in signed.out + signed.err + attested.out + attested.err
    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", "wrong")
    wrong = cli("-C", project, "sign", str(ref), *key)
    assert wrong.code == 2 and "wrong password" in wrong.err and "Traceback" not in wrong.err


def test_sign_variant_then_push_attaches_the_signature_and_verify_says_how_to_sign(
    registry: Registry,
    project: Path,
    keys: dict[str, Path],
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build = make_build(project, "cpu-infer", 1)
    ref = f"{registry.host}/team/app:kept"
    pinned = f"{registry.host}/team/app@{build.digest}"
    assert cli("push", "--insecure", build.layout, ref).code == 0

    unsigned = cli("verify", pinned, "--key", keys["release.pub"], "--insecure")
    assert unsigned.code == 1
    said = " ".join(unsigned.err.split())  # the console wraps long lines
    assert f"envbuild sign {pinned} --key PRIVATE_KEY (the private key of {keys['release.pub']})" in said

    monkeypatch.setenv("ENVBUILD_SIGNING_KEY_PASSWORD", PASSWORD)
    signed = cli("-C", project, "sign", "cpu-infer", "--key", keys["release.key"])
    assert signed.code == 0, signed.err
    assert "cpu-infer: signed the image; kept in" in signed.err and "signature signed" not in signed.err
    assert not verify(registry, pinned, keys, require=("signature",)).ok  # kept, not attached yet

    pushed = cli("--json", "push", "--insecure", build.layout, ref)
    assert pushed.code == 0, pushed.err
    assert [a["kind"] for a in json.loads(pushed.out)["attached"]] == ["signature"]
    assert "attached the kept signature" in pushed.err
    assert verify(registry, pinned, keys, require=("signature",)).ok

    # Built again after signing: the push names the kept signature it leaves out, and the fix.
    rebuilt = make_build(project, "cpu-infer", 2)
    stale = cli("push", "--insecure", rebuilt.layout, ref)
    assert stale.code == 0, stale.err
    said = " ".join(stale.err.split())
    assert f"not attached: signature.sigstore.json is about sha256:{build.digest.hex[:12]}" in said
    assert "sign it again: envbuild sign" in said
    assert not verify(registry, f"{registry.host}/team/app@{rebuilt.digest}", keys, require=("signature",)).ok


def make_index(project: Path) -> BuiltIndex:
    """A variant built for two platforms, as ``envbuild image`` writes it: each platform's image and the index."""
    images = (
        make_build(project, "cpu-infer-x86_64", 1),
        make_build(project, "cpu-infer-aarch64", 2, platform="linux/arm64"),
    )
    out = project / ".envbuild" / "images" / "cpu-infer"
    descriptor = write_index(out, [(Layout.open(i.layout), Layout.open(i.layout).select()) for i in images], name="app")
    return BuiltIndex(variant="cpu-infer", layout=out, name="app", digest=descriptor.digest, platforms=images)


def test_an_index_verifies_whole_and_per_platform(registry: Registry, project: Path, keys: dict[str, Path]) -> None:
    index = make_index(project)
    (done,) = release([index], signer=signer(keys), push_to=ImageRef.parse(f"{registry.host}/team/app"),
                      registry=RegistryOptions(insecure=True))  # fmt: skip
    assert done.ref is not None and done.ref.digest == index.digest
    assert done.attached is not None
    # Each platform's image has its signature, SBOM and provenance; the index its signature.
    subjects = sorted((a["subject"], a["kind"]) for a in done.attached if a["kind"] in KINDS)
    assert subjects == sorted(
        [("index", "signature")] + [(p, k) for p in ("linux/amd64", "linux/arm64") for k in KINDS]
    )
    raw = json.loads(client_of(registry).get_manifest("team/app", str(index.digest)).data)
    assert [m["platform"] for m in raw["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"},
    ]  # fmt: skip

    report = verify(registry, done.ref, keys)
    assert report.ok, report
    assert [c.name for c in report.checks] == [
        "reference", "platforms", "signature index",
        *(f"{k} {p}" for p in ("linux/amd64", "linux/arm64") for k in ("image", *KINDS)),
    ]  # fmt: skip
    arm = verify_image(client_of(registry), done.ref, Policy(keys=(read_trusted_key(keys["release.pub"]),)),
                       platform="linux/arm64")  # fmt: skip
    assert arm.ok and [c.name for c in arm.checks if "linux/" in c.name] == [
        f"{k} linux/arm64" for k in ("image", *KINDS)
    ]  # fmt: skip


def test_a_byte_flipped_in_the_arm64_layer_of_an_index_names_that_platform(
    registry: Registry, project: Path, keys: dict[str, Path], cli: Callable[..., Any]
) -> None:
    index = make_index(project)
    (done,) = release([index], signer=signer(keys), push_to=ImageRef.parse(f"{registry.host}/team/app"),
                      registry=RegistryOptions(insecure=True))  # fmt: skip
    arm64 = index.platforms[1]
    layer = json.loads(Layout.open(arm64.layout).read_blob(arm64.digest))["layers"][1]["digest"]
    path = blob_file(registry, layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = verify(registry, str(done.ref), keys)
    assert f"served other bytes for blob {layer}" in check(report, "image linux/arm64")
    assert [c.name for c in report.failures()] == ["image linux/arm64"]  # amd64 and every signature still hold
    result = cli("verify", str(done.ref), "--key", keys["release.pub"], "--insecure", "--platform", "linux/arm64")
    assert result.code == 1 and "image linux/arm64" in result.err and "Traceback" not in result.err
    amd64 = cli("verify", str(done.ref), "--key", keys["release.pub"], "--insecure", "--platform", "linux/amd64")
    assert amd64.code == 0, amd64.err
    missing = cli("verify", str(done.ref), "--key", keys["release.pub"], "--insecure", "--platform", "linux/s390x")
    assert missing.code == 1 and "has no linux/s390x image; it has linux/amd64, linux/arm64" in missing.err

"""release(): sign -> push -> attach for built images, against a real registry on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from envbuild.image.record import BuiltImage
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.referrers import list_referrers
from envbuild.supply.attest import KINDS, PREDICATES, bundle_file
from envbuild.supply.release import release
from envbuild.supply.signing.keys import generate_keypair, load_private_key
from envbuild.supply.signing.signer import KeySigner
from support.layouts import make_layout
from support.records import build_record
from support.registry import Registry
from support.sigstore_js import attached_bundles, sigstore_js_verify


def built(project: Path, variant: str, seed: str | None = None) -> BuiltImage:
    """A small image where ``envbuild image`` puts one, with its build record."""
    out = project / ".envbuild" / "images" / variant
    layout = make_layout(out, name=f"app-{variant}", seed=seed or variant)
    digest = Digest(layout.digest)
    record = build_record(variant=variant).with_digest(digest)
    (out / "build.json").write_text(record.file_text(), encoding="utf-8")
    return BuiltImage(variant=variant, layout=out, name=f"app-{variant}", digest=digest, record=record)


def test_release_signs_pushes_each_variant_and_attaches(tmp_path: Path, shared_registry: Registry) -> None:
    """Each image is pushed as REPO:<prefix>-<variant>, signed, and its SBOM and bundles attached to its digest.

    Every attached bundle also verifies with sigstore-js, given the public key.
    """
    images = [built(tmp_path, "cpu-train"), built(tmp_path, "cpu-infer")]
    keypair = generate_keypair(None)
    signer = KeySigner(load_private_key(keypair.private_pem, None))
    public_key = tmp_path / "release.pub"
    public_key.write_bytes(keypair.public_pem)
    target = ImageRef.parse(f"{shared_registry.host}/release/app:v1")
    options = RegistryOptions(insecure=True)

    done = list(release(images, signer=signer, push_to=target, registry=options))

    assert [r.image for r in done] == images
    assert images[0].digest != images[1].digest
    client = RegistryClient.for_ref(target, options)
    for released, image in zip(done, images, strict=True):
        assert str(released.ref) == f"{target.registry}/release/app:v1-{image.variant}@{image.digest}"
        assert client.resolve("release/app", f"v1-{image.variant}") == image.digest
        assert released.signed == tuple(sorted(KINDS))
        assert released.attached is not None
        assert sorted(a["kind"] for a in released.attached) == sorted(("sbom-document", *KINDS))
        referrers = {str(d.digest) for d in list_referrers(client, "release/app", image.digest)}
        assert {a["digest"] for a in released.attached} <= referrers
        entry = released.to_json()
        assert list(entry) == ["variant", "digest", "layout", "cached", "signed", "ref", "attached"]
        assert entry["ref"] == str(released.ref) and entry["signed"] == sorted(KINDS)
        bundles = attached_bundles(client, "release/app", image.digest)
        assert len(bundles) == len(KINDS)
        checked = sigstore_js_verify(public_key, bundles)
        assert [r["error"] for r in checked.values() if not r["verified"]] == []
        assert sorted(r["predicateType"] for r in checked.values()) == sorted(PREDICATES.values())
        assert {r["subject"][0]["digest"]["sha256"] for r in checked.values()} == {image.digest.hex}


def test_release_without_push_or_signer_leaves_the_images_alone(tmp_path: Path) -> None:
    """No signer, no target: nothing is signed or pushed, and the JSON entry says only what was built."""
    image = built(tmp_path, "cpu-infer")
    (released,) = release([image], signer=None, push_to=None)
    assert (released.signed, released.ref, released.attached) == (None, None, None)
    assert released.to_json() == {
        "variant": "cpu-infer", "digest": str(image.digest), "layout": str(image.layout), "cached": False,
    }  # fmt: skip
    assert not any((image.layout / bundle_file(kind)).exists() for kind in KINDS)


def test_a_push_without_a_signer_attaches_what_sign_kept_for_that_digest(
    tmp_path: Path, shared_registry: Registry
) -> None:
    """``envbuild sign cpu-infer`` then ``envbuild image --push``: the kept signature goes with the image.

    A signature kept for an earlier build of the variant (another digest) is not attached, and
    the release says why.
    """
    from envbuild.supply.attest import make_attestations

    image = built(tmp_path, "cpu-infer")
    signer = KeySigner(load_private_key(generate_keypair(None).private_pem, None))
    make_attestations(image, signer, kinds=("signature",))  # what 'envbuild sign cpu-infer' does
    target = ImageRef.parse(f"{shared_registry.host}/kept/app:v1")
    options = RegistryOptions(insecure=True)

    (released,) = release([image], signer=None, push_to=target, registry=options)

    assert released.signed is None and released.skipped == ()
    assert released.attached is not None and [a["kind"] for a in released.attached] == ["signature"]
    client = RegistryClient.for_ref(target, options)
    assert {a["digest"] for a in released.attached} == {
        str(d.digest) for d in list_referrers(client, "kept/app", image.digest)
    }
    assert released.to_json()["attached"] == released.attached

    # Built again (another digest) after it was signed: the kept signature is about the old image.
    rebuilt = built(tmp_path / "again", "cpu-infer", seed="rebuilt")
    (rebuilt.layout / bundle_file("signature")).write_bytes((image.layout / bundle_file("signature")).read_bytes())
    (stale,) = release([rebuilt], signer=None, push_to=target.with_tag("v2"), registry=options)
    assert stale.attached is None
    (reason,) = stale.skipped
    old, new = image.digest.hex[:12], rebuilt.digest.hex[:12]
    assert reason == f"signature.sigstore.json is about sha256:{old}, not this image ({new})"
    assert stale.to_json()["not_attached"] == [reason]
    assert list_referrers(client, "kept/app", rebuilt.digest) == []

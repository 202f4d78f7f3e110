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


def built(project: Path, variant: str) -> BuiltImage:
    """A small image where ``envbuild image`` puts one, with its build record."""
    out = project / ".envbuild" / "images" / variant
    layout = make_layout(out, name=f"app-{variant}", seed=variant)
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

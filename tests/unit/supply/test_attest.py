"""make_attestations on a small built image: SBOM, provenance and signatures kept beside it, bundles reused."""

from __future__ import annotations

import json
from pathlib import Path

from envbuild.image.record import BuiltImage
from envbuild.oci.ref import Digest
from envbuild.supply.attest import (
    KINDS,
    PREDICATES,
    PROVENANCE_FILE,
    SBOM_FILE,
    bundle_file,
    find_build,
    make_attestations,
)
from envbuild.supply.signing.bundle import load_bundle, verify_key_bundle
from envbuild.supply.signing.keys import generate_keypair, load_private_key
from envbuild.supply.signing.signer import KeySigner
from support.layouts import make_layout
from support.records import build_record

SOURCE = "https://git.example/team/app.git"


def key_signer() -> KeySigner:
    return KeySigner(load_private_key(generate_keypair(None).private_pem, None))


def built_image(project: Path) -> BuiltImage:
    """A small image where ``envbuild image`` puts one, with its build record: what the build returns."""
    out = project / ".envbuild" / "images" / "cpu-infer"
    layout = make_layout(out, name="app-cpu-infer", layers=2)
    digest = Digest(layout.digest)
    record = build_record().with_digest(digest)
    (out / "build.json").write_text(record.file_text(), encoding="utf-8")
    return BuiltImage(variant="cpu-infer", layout=out, name="app-cpu-infer", digest=digest, record=record)


def test_every_statement_is_made_signed_and_kept_beside_the_image(tmp_path: Path) -> None:
    image = built_image(tmp_path)
    assert find_build(tmp_path, variant="cpu-infer") == image  # the image the build returned, read back
    signer = key_signer()

    made = make_attestations(image, signer, source_repository=SOURCE)

    assert sorted(made.bundles) == sorted(KINDS)
    for kind in KINDS:
        kept = (image.layout / bundle_file(kind)).read_bytes()
        assert kept == made.bundles[kind]
        statement = verify_key_bundle(load_bundle(kept), signer.public_key, expected_subject_digest=str(image.digest))
        assert statement.predicate_type == PREDICATES[kind]
    assert made.sbom == (image.layout / SBOM_FILE).read_bytes()
    assert made.provenance == (image.layout / PROVENANCE_FILE).read_bytes()
    provenance = json.loads(made.provenance or b"")
    assert provenance["subject"] == [{"name": "app-cpu-infer", "digest": {"sha256": image.digest.hex}}]
    definition = provenance["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"] == {
        "commit": "c0ffee",
        "repository": "git+https://git.example/team/app",
    }
    assert {"wheel:a-1.whl", "wheel:b-2.whl", "tool:uv-1.whl", "spec"} <= {
        d["name"] for d in definition["resolvedDependencies"]
    }
    sbom = json.loads(made.sbom or b"")
    assert sbom["metadata"]["component"]["version"] == str(image.digest)
    assert sbom["metadata"]["timestamp"] == "2026-11-02T12:00:00+00:00"  # the record's SOURCE_DATE_EPOCH


def test_a_key_signer_reuses_its_bundles_and_another_key_replaces_them(tmp_path: Path) -> None:
    """ECDSA signatures are randomised: equal bytes mean the bundle was reused, not made again."""
    image = built_image(tmp_path)
    signer = key_signer()
    first = make_attestations(image, signer, source_repository=SOURCE)
    again = make_attestations(image, signer, source_repository=SOURCE)
    assert again.bundles == first.bundles

    other = key_signer()
    replaced = make_attestations(image, other, kinds=("signature",), source_repository=SOURCE)
    assert replaced.bundles["signature"] != first.bundles["signature"]
    assert (image.layout / bundle_file("signature")).read_bytes() == replaced.bundles["signature"]
    verify_key_bundle(load_bundle(replaced.bundles["signature"]), other.public_key)
    # Unasked kinds are left as they were.
    assert (image.layout / bundle_file("sbom")).read_bytes() == first.bundles["sbom"]


def test_without_a_signer_only_the_documents_are_written(tmp_path: Path) -> None:
    image = built_image(tmp_path)
    made = make_attestations(image, None, kinds=("provenance",), source_repository=SOURCE)
    assert made.bundles == {} and made.sbom is None and made.provenance is not None
    assert sorted(p.name for p in image.layout.iterdir() if p.suffix == ".json") == [
        "build.json",
        "index.json",
        PROVENANCE_FILE,
    ]

"""Keyless signing for real: a GitHub Actions OIDC token, Fulcio, Rekor, then offline verification.

Deselected unless pytest runs with ``--sigstore-online`` (this machine cannot reach the public
Sigstore instance); .github/workflows/ci.yml runs it in a job granted ``id-token: write``.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from envbuild.oci.ref import Digest
from envbuild.supply.attest import SIGN_PREDICATE, signature_statement
from envbuild.supply.signing.bundle import load_bundle, verify_keyless_bundle
from envbuild.supply.signing.signer import KeylessSigner

pytestmark = [pytest.mark.sigstore_online, pytest.mark.network]


def test_keyless_signing_with_the_github_identity() -> None:
    server, workflow_ref = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_WORKFLOW_REF")
    if not (server and workflow_ref):
        pytest.fail(
            "--sigstore-online needs GitHub Actions (GITHUB_SERVER_URL, GITHUB_WORKFLOW_REF) with id-token: write"
        )
    digest = "sha256:" + hashlib.sha256(b"envbuild online keyless test").hexdigest()
    payload = signature_statement("envbuild-online-test", Digest.parse(digest))

    bundle = KeylessSigner().sign(payload)

    parsed = load_bundle(bundle)
    assert "certificate" in parsed["verificationMaterial"] and parsed["verificationMaterial"]["tlogEntries"]
    signed = verify_keyless_bundle(
        bundle,
        identity=f"{server}/{workflow_ref}",
        issuer="https://token.actions.githubusercontent.com",
        expected_subject_digest=digest,
    )
    assert json.loads(signed.raw)["predicateType"] == SIGN_PREDICATE

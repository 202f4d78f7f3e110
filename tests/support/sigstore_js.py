"""sigstore-js (npm @sigstore/verify) as an independent verifier of the Sigstore bundles envbuild signs.

scripts/setup.sh --with-test-tools installs the pinned packages (scripts/node-tools/) into
.tools/node; sigstore_verify.js beside this file drives them. A missing node or package fails
the test under CI=true (:func:`support.tools.unavailable`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envbuild.oci.ref import Digest
from envbuild.registry.client import RegistryClient
from envbuild.registry.referrers import list_referrers
from envbuild.supply.signing.bundle import BUNDLE_MEDIA_TYPE
from support.paths import REPO
from support.tools import require_tool, unavailable

NODE_MODULES = REPO / ".tools" / "node" / "node_modules"
SCRIPT = Path(__file__).with_name("sigstore_verify.js")


def sigstore_js_verify(public_key: Path, bundles: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """What sigstore-js says of each bundle (name -> bundle bytes), checked against ``public_key`` (PEM).

    Each result has ``verified``, and either the statement's ``predicateType`` and ``subject`` and the
    ``keyHint`` sigstore-js computed, or the ``error`` it raised.
    """
    node = require_tool("node")
    for package in ("verify", "bundle"):
        if not (NODE_MODULES / "@sigstore" / package / "package.json").is_file():
            unavailable(f"@sigstore/{package} is not in {NODE_MODULES}; scripts/setup.sh --with-test-tools installs it")
    with tempfile.TemporaryDirectory(prefix="sigstore-js-") as tmp:
        files = []
        for name, data in bundles.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            files.append(str(path))
        result = subprocess.run(
            [node, SCRIPT, NODE_MODULES, public_key, *files], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, f"sigstore_verify.js failed: {result.stderr}"
    return {entry["file"]: entry for entry in json.loads(result.stdout)}


def attached_bundles(client: RegistryClient, repository: str, subject: Digest) -> dict[str, bytes]:
    """Every Sigstore bundle attached to ``subject``, as the registry serves it: referrer digest -> bundle bytes."""
    found = {}
    for referrer in list_referrers(client, repository, subject, artifact_type=BUNDLE_MEDIA_TYPE):
        manifest = client.get_manifest(repository, str(referrer.digest)).json()
        assert manifest["subject"]["digest"] == str(subject)
        [layer] = manifest["layers"]
        found[referrer.digest.hex] = client.get_blob(repository, Digest.parse(layer["digest"]))
    return found

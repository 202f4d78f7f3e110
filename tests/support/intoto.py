"""The in-toto attestation library (protobuf) as an independent check of the statements envbuild signs."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

SLSA_V1 = "https://slsa.dev/provenance/v1"


def validated(payload: bytes) -> dict[str, Any]:
    """Parse ``payload`` with the library (unknown fields are errors) and validate it; return it as JSON.

    A SLSA v1 predicate is parsed as the library's Provenance message too, and each of its
    resolved dependencies validated as a ResourceDescriptor.
    """
    message = json_format.Parse(payload, statement_pb2.Statement())  # type: ignore[attr-defined]
    Statement.copy_from_pb(message).validate()
    document: dict[str, Any] = json.loads(payload)
    if document["predicateType"] == SLSA_V1:
        provenance = json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())  # type: ignore[attr-defined]
        for dependency in provenance.build_definition.resolved_dependencies:
            ResourceDescriptor.copy_from_pb(dependency).validate()
    return document

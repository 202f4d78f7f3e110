"""SLSA v1.0 provenance for an image: what it was built from, as an in-toto Statement.

The predicate follows the envbuild image buildType (docs/buildtype-image-v1.md):
everything an audit rebuild needs — source commit, spec, SOURCE_DATE_EPOCH,
builder and its version, the base by digest, every wheel and tool by URL and
sha256, the lockfile and Dockerfile digests. It holds no build time other than
SOURCE_DATE_EPOCH and no host names, so the same build gives the same bytes.
"""

from __future__ import annotations

from typing import Any

from envbuild.errors import strip_url_credentials
from envbuild.signing.dsse import statement

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:envbuild:buildtype:image:v1"


def provenance_statement(
    record: dict[str, Any],
    *,
    image_name: str,
    image_digest: str,
    spec_file: str,
    source_repository: str | None,
) -> bytes:
    """The provenance Statement of one built image, from its build record (build.json)."""
    return statement(
        image_name,
        image_digest,
        PREDICATE_TYPE,
        provenance_predicate(record, spec_file=spec_file, source_repository=source_repository),
    )


def provenance_predicate(record: dict[str, Any], *, spec_file: str, source_repository: str | None) -> dict[str, Any]:
    """The SLSA v1 predicate (buildDefinition and runDetails) for a build record."""
    dependencies: list[dict[str, Any]] = [
        {"name": "base", "uri": f"oci:{record['base']['name']}", "digest": {"sha256": _hex(record["base"]["digest"])}},
    ]
    dependencies += [
        {
            "name": f"wheel:{w['filename']}",
            "uri": strip_url_credentials(w["url"]) or f"pypi:{w['name']}=={w['version']}",
            "digest": {"sha256": w["sha256"]},
        }
        for w in sorted(record["wheels"], key=lambda w: w["filename"])
    ]
    dependencies += [
        {"name": f"tool:{t['filename']}", "uri": strip_url_credentials(t["url"]), "digest": {"sha256": t["sha256"]}}
        for t in sorted(record["tools"], key=lambda t: t["filename"])
    ]
    if record.get("spec_sha256"):
        dependencies.append(
            {"name": "spec", "uri": record.get("spec", spec_file), "digest": {"sha256": record["spec_sha256"]}}
        )
    dependencies += [
        {"name": "lockfile", "digest": {"sha256": record["lockfile_sha256"]}},
        {"name": "dockerfile", "digest": {"sha256": record["dockerfile_sha256"]}},
        {"name": "files", "digest": {"sha256": record["files_sha256"]}},
    ]
    source: dict[str, Any] = {"commit": record["revision"]}
    if source_repository:
        source["repository"] = strip_url_credentials(source_repository)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "variant": record["variant"],
                "platform": record["platform"],
                "spec": spec_file,
                "source": source,
            },
            "internalParameters": {
                "sourceDateEpoch": record["source_date_epoch"],
                "builder": record["builder"],
                "envbuild": record["envbuild"],
                "compressor": record["compressor"],
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {"builder": {"id": f"urn:envbuild:builder:{record['builder']['name']}"}, "metadata": {}},
    }


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")

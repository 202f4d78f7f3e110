"""SLSA v1.0 provenance for an image: what it was built from, as an in-toto Statement.

The predicate follows the envbuild image buildType (docs/buildtype-image-v1.md):
everything an audit rebuild needs — source commit, spec, SOURCE_DATE_EPOCH,
builder and its version, the base by digest, every wheel and tool by URL and
sha256, the lockfile and Dockerfile digests. It holds no build time other than
SOURCE_DATE_EPOCH and no host names, so the same build gives the same bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from envbuild.errors import EnvbuildError, strip_url_credentials
from envbuild.git import commit_uri, repository_uri
from envbuild.supply.signing.dsse import statement

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:envbuild:buildtype:image:v1"


class ProvenanceError(EnvbuildError):
    """Provenance that envbuild cannot use: another buildType, or fields missing. Exit 1."""


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
    """The SLSA v1 predicate (buildDefinition and runDetails) for a build record.

    Every resolved dependency has a ``uri``: the source commit as ``git+https://host/path@<sha>``
    (only when the repository is known and the tree was clean), the base as a ``pkg:oci`` purl,
    wheels and tools by the URL they came from (else a ``pkg:pypi`` purl), and the project's
    own inputs by their path relative to the source.
    """
    repository = repository_uri(source_repository)
    commit, dirty = record.get("revision"), record.get("dirty")
    dependencies: list[dict[str, Any]] = []
    if repository and commit and not dirty:
        dependencies.append({"name": "source", "uri": commit_uri(repository, commit), "digest": {"gitCommit": commit}})
    base_name, base_hex = record["base"]["name"], _hex(record["base"]["digest"])
    dependencies.append(
        {
            "name": "base",
            "uri": oci_purl(base_name, base_hex),
            "digest": {"sha256": base_hex},
            "annotations": {"reference": base_name},
        }
    )
    dependencies += [
        {"name": f"wheel:{w['filename']}", "uri": _download_uri(w), "digest": {"sha256": w["sha256"]}}
        for w in sorted(record["wheels"], key=lambda w: w["filename"])
    ]
    dependencies += [
        {"name": f"tool:{t['filename']}", "uri": _download_uri(t), "digest": {"sha256": t["sha256"]}}
        for t in sorted(record["tools"], key=lambda t: t["filename"])
    ]
    if record.get("spec_sha256"):
        dependencies.append(
            {
                "name": "spec",
                "uri": _path_uri(record.get("spec", spec_file)),
                "digest": {"sha256": record["spec_sha256"]},
            }
        )
    variant = record["variant"]
    dependencies += [
        {
            "name": "lockfile",
            "uri": _path_uri(record.get("lockfile", f"lockfiles/{variant}.txt")),
            "digest": {"sha256": record["lockfile_sha256"]},
        },
        {
            "name": "dockerfile",
            "uri": _path_uri(record.get("dockerfile", f"images/{variant}.Dockerfile")),
            "digest": {"sha256": record["dockerfile_sha256"]},
        },
        {
            "name": "files",
            "uri": ",".join(_path_uri(p) for p in record.get("files") or ["."]),
            "digest": {"sha256": record["files_sha256"]},
        },
    ]
    # A commit is claimed only for a tree that held exactly the commit's inputs; a dirty build
    # says so, with a digest of what was uncommitted, and a build outside git names no commit.
    source: dict[str, Any] = {}
    if commit:
        source["commit"] = commit
    if dirty:
        source["dirty"] = {"paths": list(dirty["paths"]), "sha256": dirty["sha256"]}
    if repository:
        source["repository"] = repository
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "variant": variant,
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


def oci_purl(reference: str, digest_hex: str) -> str:
    """The package URL of an image: ``pkg:oci/<name>@sha256%3A<hex>?repository_url=<repository>[&tag=<tag>]``."""
    repository = reference.split("@", 1)[0]
    tag = None
    if ":" in repository.rsplit("/", 1)[-1]:
        repository, tag = repository.rsplit(":", 1)
    name = repository.rsplit("/", 1)[-1].lower()
    qualifiers = f"repository_url={quote(repository, safe='/')}" + (f"&tag={quote(tag, safe='')}" if tag else "")
    return f"pkg:oci/{quote(name, safe='')}@sha256%3A{digest_hex}?{qualifiers}"


def _download_uri(wheel: dict[str, Any]) -> str:
    """Where a wheel came from (credentials stripped), else its ``pkg:pypi`` purl."""
    url = strip_url_credentials(str(wheel.get("url") or ""))
    if "://" in url:
        return url
    name = str(wheel["name"]).lower().replace("_", "-").replace(".", "-")
    return f"pkg:pypi/{quote(name, safe='')}@{quote(str(wheel['version']), safe='')}"


def _path_uri(path: str) -> str:
    """A path relative to the source, as a relative URI reference."""
    return quote(path, safe="/")


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def recorded_build(predicate: dict[str, Any]) -> dict[str, Any]:
    """What a provenance predicate of envbuild's buildType says about its build, as plain values.

    The inverse of :func:`provenance_predicate` for everything a rebuild needs: variant,
    platform, spec path, commit, SOURCE_DATE_EPOCH, builder, envbuild and compressor versions,
    the base by digest, and every wheel and tool by file name, URL and sha256.
    """
    definition = predicate.get("buildDefinition") or {}
    if definition.get("buildType") != BUILD_TYPE:
        raise ProvenanceError(
            f"provenance of buildType {definition.get('buildType')!r}, not {BUILD_TYPE}",
            hint="envbuild rebuilds only images envbuild built",
        )
    external = definition.get("externalParameters") or {}
    internal = definition.get("internalParameters") or {}
    deps = {d.get("name"): d for d in definition.get("resolvedDependencies") or [] if isinstance(d, dict)}

    def sha(name: str) -> str | None:
        value = (deps.get(name) or {}).get("digest", {}).get("sha256")
        return str(value) if value is not None else None

    def files(prefix: str) -> list[dict[str, str]]:
        return sorted(
            (
                {"filename": name[len(prefix) :], "url": d.get("uri", ""), "sha256": d["digest"]["sha256"]}
                for name, d in deps.items()
                if isinstance(name, str) and name.startswith(prefix)
            ),
            key=lambda f: f["filename"],
        )

    try:
        return {
            "variant": external["variant"],
            "platform": external["platform"],
            "spec": external.get("spec", "envbuild.toml"),
            "revision": external["source"].get("commit"),
            "dirty": external["source"].get("dirty"),
            "source_repository": external["source"].get("repository"),
            "source_date_epoch": int(internal["sourceDateEpoch"]),
            "builder": internal["builder"],
            "envbuild": internal["envbuild"],
            "compressor": internal["compressor"],
            "base": {"name": _base_reference(deps["base"]), "digest": f"sha256:{sha('base')}"},
            "spec_sha256": sha("spec"),
            "lockfile_sha256": sha("lockfile"),
            "dockerfile_sha256": sha("dockerfile"),
            "files_sha256": sha("files"),
            "wheels": files("wheel:"),
            "tools": files("tool:"),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvenanceError(
            f"the provenance lacks {exc} needed for a rebuild", hint="it was not written by envbuild, or is damaged"
        ) from exc


def _base_reference(dependency: dict[str, Any]) -> str:
    """The FROM name of the base: its ``reference`` annotation (older provenance: an ``oci:`` URI)."""
    reference = (dependency.get("annotations") or {}).get("reference")
    return str(reference) if reference else str(dependency["uri"]).removeprefix("oci:")

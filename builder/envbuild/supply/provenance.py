"""SLSA v1.0 provenance for an image: what it was built from, as an in-toto Statement.

The predicate follows the envbuild image buildType (docs/buildtype-image-v1.md):
everything an audit rebuild needs — source commit, spec, SOURCE_DATE_EPOCH,
builder and its version, the base by digest, every wheel and tool by URL and
sha256, the lockfile and Dockerfile digests. It holds no build time other than
SOURCE_DATE_EPOCH and no host names, so the same build gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from envbuild.errors import EnvbuildError, strip_url_credentials
from envbuild.git import commit_uri, repository_uri
from envbuild.image.record import BaseRecord, BuilderRecord, BuildRecord, DirtyRecord, WheelRecord
from envbuild.oci.ref import Digest
from envbuild.supply.signing.dsse import statement

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:envbuild:buildtype:image:v1"
# The InputChange of a rebuild whose project wheel has other bytes than the recorded one.
PROJECT_WHEEL_CHANGE = "the project's wheel differs"


class ProvenanceError(EnvbuildError):
    """Provenance that envbuild cannot use: another buildType, or fields missing. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class RecordedFile:
    """A wheel or tool as provenance names it: file name, where it came from, sha256."""

    filename: str
    url: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class InputChange:
    """A recorded input that a rebuild got otherwise."""

    name: str
    recorded: str
    rebuilt: str


@dataclass(frozen=True, kw_only=True)
class RecordedBuild:
    """What signed provenance says about a build: everything a rebuild replays or compares."""

    variant: str
    platform: str
    spec: str
    revision: str | None
    dirty: DirtyRecord | None
    source_repository: str | None
    source_date_epoch: int
    builder: BuilderRecord
    envbuild: str
    compressor: str
    base: BaseRecord
    spec_sha256: str | None
    lockfile_sha256: str | None
    dockerfile_sha256: str | None
    files_sha256: str | None
    wheels: tuple[RecordedFile, ...]
    tools: tuple[RecordedFile, ...]
    project: RecordedFile | None = None  # the project's own wheel, built by envbuild

    def changes(self, rebuilt: RecordedBuild) -> Iterator[InputChange]:
        """Every recorded input that ``rebuilt`` has otherwise, most telling first."""
        for key in ("spec_sha256", "lockfile_sha256", "files_sha256", "dockerfile_sha256", "source_date_epoch"):
            before, after = getattr(self, key), getattr(rebuilt, key)
            if before != after:
                yield InputChange(name=key.removesuffix("_sha256"), recorded=str(before), rebuilt=str(after))
        if self.base.digest != rebuilt.base.digest:
            yield InputChange(name="base", recorded=str(self.base.digest), rebuilt=str(rebuilt.base.digest))
        if self.project != rebuilt.project:
            yield InputChange(
                name=PROJECT_WHEEL_CHANGE,
                recorded=f"{self.project.filename} sha256:{self.project.sha256}" if self.project else "-",
                rebuilt=f"{rebuilt.project.filename} sha256:{rebuilt.project.sha256}" if rebuilt.project else "-",
            )
        for kind, recorded_files, rebuilt_files in (
            ("wheel", self.wheels, rebuilt.wheels),
            ("tool", self.tools, rebuilt.tools),
        ):
            before = {w.filename: w.sha256 for w in recorded_files}
            after = {w.filename: w.sha256 for w in rebuilt_files}
            for name in sorted(before.keys() - after.keys()):
                yield InputChange(name=f"{kind} removed", recorded=name, rebuilt="-")
            for name in sorted(after.keys() - before.keys()):
                yield InputChange(name=f"{kind} added", recorded="-", rebuilt=name)
            for name in sorted(n for n in before.keys() & after.keys() if before[n] != after[n]):
                yield InputChange(name=f"{kind} {name}", recorded=before[name], rebuilt=after[name])
        if self.builder != rebuilt.builder:
            yield InputChange(
                name="builder",
                recorded=json.dumps(self.builder.to_json()),
                rebuilt=json.dumps(rebuilt.builder.to_json()),
            )
        for key in ("envbuild", "compressor"):
            if getattr(self, key) != getattr(rebuilt, key):
                yield InputChange(
                    name=key, recorded=json.dumps(getattr(self, key)), rebuilt=json.dumps(getattr(rebuilt, key))
                )


def provenance_statement(
    record: BuildRecord,
    *,
    image_name: str,
    image_digest: str,
    source_repository: str | None,
) -> bytes:
    """The provenance Statement of one built image, from its build record (build.json)."""
    return statement(
        image_name,
        image_digest,
        PREDICATE_TYPE,
        provenance_predicate(record, source_repository=source_repository),
    )


def provenance_predicate(record: BuildRecord, *, source_repository: str | None) -> dict[str, Any]:
    """The SLSA v1 predicate (buildDefinition and runDetails) for a build record.

    Every resolved dependency has a ``uri``: the source commit as ``git+https://host/path@<sha>``
    (only when the repository is known and the tree was clean), the base as a ``pkg:oci`` purl,
    wheels and tools by the URL they came from (else a ``pkg:pypi`` purl), and the project's
    own inputs by their path relative to the source.
    """
    repository = repository_uri(source_repository)
    commit, dirty = record.revision, record.dirty
    dependencies: list[dict[str, Any]] = []
    if repository and commit and not dirty:
        dependencies.append({"name": "source", "uri": commit_uri(repository, commit), "digest": {"gitCommit": commit}})
    base_name, base_hex = record.base.name, record.base.digest.hex
    dependencies.append(
        {
            "name": "base",
            "uri": oci_purl(base_name, base_hex),
            "digest": {"sha256": base_hex},
            "annotations": {"reference": base_name},
        }
    )
    dependencies += [
        {"name": f"wheel:{w.filename}", "uri": _download_uri(w), "digest": {"sha256": w.sha256}}
        for w in sorted(record.wheels, key=lambda w: w.filename)
    ]
    dependencies += [
        {"name": f"tool:{t.filename}", "uri": _download_uri(t), "digest": {"sha256": t.sha256}}
        for t in sorted(record.tools, key=lambda t: t.filename)
    ]
    if record.project is not None:  # built from the source, by envbuild: named by the project's directory
        project = record.project
        dependencies.append(
            {"name": f"project:{project.filename}", "uri": _path_uri(project.url), "digest": {"sha256": project.sha256}}
        )
    if record.spec_sha256:
        dependencies.append({"name": "spec", "uri": _path_uri(record.spec), "digest": {"sha256": record.spec_sha256}})
    dependencies += [
        {"name": "lockfile", "uri": _path_uri(record.lockfile), "digest": {"sha256": record.lockfile_sha256}},
        {"name": "dockerfile", "uri": _path_uri(record.dockerfile), "digest": {"sha256": record.dockerfile_sha256}},
        {
            "name": "files",
            "uri": ",".join(_path_uri(p) for p in record.files or (".",)),
            "digest": {"sha256": record.files_sha256},
        },
    ]
    # A commit is claimed only for a tree that held exactly the commit's inputs; a dirty build
    # says so, with a digest of what was uncommitted, and a build outside git names no commit.
    source: dict[str, Any] = {}
    if commit:
        source["commit"] = commit
    if dirty:
        source["dirty"] = {"paths": list(dirty.paths), "sha256": dirty.sha256}
    if repository:
        source["repository"] = repository
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "variant": record.variant,
                "platform": record.platform,
                "spec": record.spec,
                "source": source,
            },
            "internalParameters": {
                "sourceDateEpoch": record.source_date_epoch,
                "builder": record.builder.to_json(),
                "envbuild": record.envbuild,
                "compressor": record.compressor,
                **({"venvPython": record.venv_python} if record.venv_python else {}),
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {"builder": {"id": f"urn:envbuild:builder:{record.builder.name}"}, "metadata": {}},
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


def _download_uri(wheel: WheelRecord) -> str:
    """Where a wheel came from (credentials stripped), else its ``pkg:pypi`` purl."""
    url = strip_url_credentials(wheel.url)
    if "://" in url:
        return url
    name = wheel.name.lower().replace("_", "-").replace(".", "-")
    return f"pkg:pypi/{quote(name, safe='')}@{quote(wheel.version, safe='')}"


def _path_uri(path: str) -> str:
    """A path relative to the source, as a relative URI reference."""
    return quote(path, safe="/")


def recorded_build(predicate: dict[str, Any]) -> RecordedBuild:
    """What a provenance predicate of envbuild's buildType says about its build, as a typed value.

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

    def files(prefix: str) -> tuple[RecordedFile, ...]:
        return tuple(
            sorted(
                (
                    RecordedFile(
                        filename=name[len(prefix) :], url=_text(d.get("uri", ""), name), sha256=_text(sha(name), name)
                    )
                    for name, d in deps.items()
                    if isinstance(name, str) and name.startswith(prefix)
                ),
                key=lambda f: f.filename,
            )
        )

    try:
        source = external["source"]
        dirty = source.get("dirty")
        return RecordedBuild(
            variant=_text(external["variant"], "variant"),
            platform=_text(external["platform"], "platform"),
            spec=_text(external.get("spec", "envbuild.toml"), "spec"),
            revision=_optional(source.get("commit"), "source.commit"),
            dirty=DirtyRecord(
                paths=tuple(_text(p, "source.dirty.paths") for p in dirty["paths"]),
                sha256=_text(dirty["sha256"], "source.dirty.sha256"),
            ) if dirty else None,
            source_repository=_optional(source.get("repository"), "source.repository"),
            source_date_epoch=int(internal["sourceDateEpoch"]),
            builder=BuilderRecord(
                name=_text(internal["builder"]["name"], "builder.name"),
                version=_text(internal["builder"]["version"], "builder.version"),
            ),
            envbuild=_text(internal["envbuild"], "envbuild"),
            compressor=_text(internal["compressor"], "compressor"),
            base=BaseRecord(name=_base_reference(deps["base"]), digest=Digest.parse(f"sha256:{sha('base')}")),
            spec_sha256=sha("spec"),
            lockfile_sha256=sha("lockfile"),
            dockerfile_sha256=sha("dockerfile"),
            files_sha256=sha("files"),
            wheels=files("wheel:"),
            tools=files("tool:"),
            project=next(iter(files("project:")), None),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError, EnvbuildError) as exc:
        raise ProvenanceError(
            f"the provenance lacks {exc} needed for a rebuild", hint="it was not written by envbuild, or is damaged"
        ) from exc


def _text(value: object, what: str) -> str:
    """``value`` when it is a string; else the TypeError :func:`recorded_build` reports."""
    if not isinstance(value, str):
        raise TypeError(f"a text {what}")
    return value


def _optional(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _base_reference(dependency: dict[str, Any]) -> str:
    """The FROM name of the base: its ``reference`` annotation (older provenance: an ``oci:`` URI)."""
    reference = (dependency.get("annotations") or {}).get("reference")
    return str(reference) if reference else str(dependency["uri"]).removeprefix("oci:")

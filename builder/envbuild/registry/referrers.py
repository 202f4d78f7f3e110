"""OCI 1.1 referrers: attach an artifact to an image, and list an image's referrers.

Registries with the referrers API (they answer a manifest PUT that has a
``subject`` with an ``OCI-Subject`` header) index referrers themselves. For the
others, such as distribution 2.8, the distribution spec's fallback applies: an
image index tagged ``sha256-<subject hex>`` lists the referrers, and every writer
must read it, merge, and write it back.

That read-merge-write has no compare-and-swap in the protocol, so two writers can
still overwrite each other in a narrow window. Two measures keep any referrer
from being lost: the writer re-reads after writing and merges again until its
entry is there, and every referrer is also tagged ``sha256-<subject hex>.<12 hex
of its own digest>``, so listing (and the next merge) finds it even if the index
lost it.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from envbuild.errors import UsageError
from envbuild.oci.layout import Descriptor
from envbuild.oci.ref import Digest
from envbuild.registry.client import LYING_HINT, RegistryClient, RegistryError

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
MERGE_ATTEMPTS = 30


@dataclass(frozen=True, kw_only=True)
class Blob:
    """One layer of an artifact: its media type, bytes and annotations."""

    media_type: str
    data: bytes
    annotations: tuple[tuple[str, str], ...] = ()


def fallback_tag(subject: Digest) -> str:
    """The referrers tag schema's tag for ``subject``."""
    return f"sha256-{subject.hex}"


def backstop_tag(subject: Digest, referrer: Digest) -> str:
    """The per-referrer tag that keeps a referrer findable even if the fallback index lost it."""
    return f"{fallback_tag(subject)}.{referrer.hex[:12]}"


def artifact_manifest(
    *, subject: Descriptor, artifact_type: str, blobs: list[Blob], annotations: dict[str, str] | None = None
) -> bytes:
    """The exact bytes of an OCI 1.1 artifact manifest (empty config, ``subject``, ``artifactType``)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_CONFIG_TYPE,
            "digest": str(Digest.of(EMPTY_CONFIG)),
            "size": len(EMPTY_CONFIG),
            "data": "e30=",
        },
        "layers": [
            Descriptor(
                media_type=b.media_type, digest=Digest.of(b.data), size=len(b.data), annotations=b.annotations
            ).to_json()
            for b in blobs
        ],
        "subject": subject.to_json(),
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(manifest, separators=(",", ":"), sort_keys=False).encode()


def attach(
    client: RegistryClient,
    repository: str,
    subject: Digest,
    *,
    artifact_type: str,
    blobs: list[Blob],
    annotations: dict[str, str] | None = None,
) -> Descriptor:
    """Push an artifact that refers to ``subject`` and make it listable; return its descriptor."""
    target = client.get_manifest(repository, str(subject))
    subject_descriptor = Descriptor(media_type=target.media_type, digest=subject, size=len(target.data))
    for blob in [Blob(media_type=EMPTY_CONFIG_TYPE, data=EMPTY_CONFIG), *blobs]:
        client.push_blob(repository, Digest.of(blob.data), len(blob.data), functools.partial(io.BytesIO, blob.data))
    data = artifact_manifest(
        subject=subject_descriptor, artifact_type=artifact_type, blobs=blobs, annotations=annotations
    )
    digest, indexed_by_registry = client.put_manifest(repository, str(Digest.of(data)), data, OCI_MANIFEST)
    descriptor = Descriptor(
        media_type=OCI_MANIFEST, digest=digest, size=len(data), artifact_type=artifact_type,
        annotations=tuple(sorted((annotations or {}).items())),
    )  # fmt: skip
    if not indexed_by_registry:
        client.put_manifest(repository, backstop_tag(subject, digest), data, OCI_MANIFEST)
        _merge_into_fallback(client, repository, subject, descriptor)
    return descriptor


def list_referrers(
    client: RegistryClient, repository: str, subject: Digest, *, artifact_type: str | None = None
) -> list[Descriptor]:
    """The referrers of ``subject``, through the API when the registry has it, else the tag schema."""
    via_api = client.referrers_api(repository, subject, artifact_type)
    if via_api is not None:
        found = _descriptors(via_api, f"the referrers of {subject} on {client.host}/{repository}")
    else:
        found = list(_fallback_view(client, repository, subject).values())
    return sorted(
        (d for d in found if artifact_type is None or d.artifact_type == artifact_type), key=lambda d: str(d.digest)
    )


def _fallback_view(client: RegistryClient, repository: str, subject: Digest) -> dict[Digest, Descriptor]:
    """The fallback index's entries, plus any referrer found only through its backstop tag."""
    entries = {d.digest: d for d in _read_fallback(client, repository, subject)}
    prefix = fallback_tag(subject) + "."
    for tag in client.list_tags(repository):
        if not tag.startswith(prefix) or any(d.hex.startswith(tag[len(prefix) :]) for d in entries):
            continue
        # distribution lists a tag a moment before it resolves: a 404 here is a writer mid-push.
        manifest = client.find_manifest(repository, tag)
        if manifest is None:
            continue
        body = manifest.json()
        if (body.get("subject") or {}).get("digest") != str(subject):
            continue
        entries[manifest.digest] = Descriptor(
            media_type=manifest.media_type, digest=manifest.digest, size=len(manifest.data),
            artifact_type=body.get("artifactType") or (body.get("config") or {}).get("mediaType"),
            annotations=tuple(sorted((body.get("annotations") or {}).items())),
        )  # fmt: skip
    return entries


def _read_fallback(client: RegistryClient, repository: str, subject: Digest) -> list[Descriptor]:
    index = client.find_manifest(repository, fallback_tag(subject))
    if index is None:
        return []
    manifests = index.json().get("manifests", [])
    where = f"the referrers index {fallback_tag(subject)} on {client.host}/{repository}"
    if not isinstance(manifests, list):
        raise RegistryError(f"{where} has no list of manifests", hint=LYING_HINT)
    return _descriptors(manifests, where)


def _descriptors(values: list[Any], where: str) -> list[Descriptor]:
    """Descriptors a registry sent; a malformed one is the registry's failure (exit 1), not the user's."""
    try:
        return [Descriptor.from_json(m) for m in values]
    except UsageError as exc:  # DescriptorError, or a digest that is not sha256
        raise RegistryError(f"{where} is malformed: {exc.message}", hint=LYING_HINT) from exc


def _merge_into_fallback(client: RegistryClient, repository: str, subject: Digest, mine: Descriptor) -> None:
    """Read, merge, write, re-read: until the index holds ``mine`` and every referrer there is.

    The re-read looks at the whole view (index and backstop tags), not only at our
    own entry: a writer that read the index before another writer's attach and
    wrote after it would otherwise drop that entry for good.
    """
    entries = _fallback_view(client, repository, subject)
    for attempt in range(MERGE_ATTEMPTS):
        entries[mine.digest] = mine
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entries[d].to_json() for d in sorted(entries, key=str)],
        }
        client.put_manifest(
            repository, fallback_tag(subject), json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX
        )
        # Let racing writers land, then check nothing is missing.
        time.sleep(random.uniform(0.02, 0.1 + 0.05 * attempt))
        indexed = {d.digest for d in _read_fallback(client, repository, subject)}
        view = _fallback_view(client, repository, subject)
        if mine.digest in indexed and set(view) <= indexed:
            return
        entries = {**view, **entries}
        log.info("referrers index of %s is missing entries after a concurrent write; merging again", subject)
    raise RegistryError(
        f"could not add {mine.digest} to the referrers index of {subject} after {MERGE_ATTEMPTS} attempts",
        hint="many writers are updating it at once; the referrer is pushed and tagged, so run the command again",
    )

"""Push an OCI layout to a registry, and pull an image by digest into a layout.

Order is what keeps a failed push harmless: every blob first (in parallel,
skipping those the registry has), then each manifest by digest, and the tag
last, so no tag ever points at an image whose parts are not all there.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.errors import UsageError
from envbuild.oci.layout import BrokenLayoutError, Descriptor, Layout, children
from envbuild.oci.ref import Digest, ImageRef
from envbuild.progress import Phase, size_text
from envbuild.registry.client import RegistryClient
from envbuild.words import plural

log = logging.getLogger(__name__)


@dataclass
class PushResult:
    """What a push did: the pushed digest and what each blob needed."""

    ref: ImageRef
    digest: Digest
    uploaded: list[Digest] = field(default_factory=list)
    existed: list[Digest] = field(default_factory=list)
    mounted: list[Digest] = field(default_factory=list)
    bytes_uploaded: int = 0


def push_layout(
    layout: Layout,
    ref: ImageRef,
    client: RegistryClient,
    *,
    name: str | None = None,
    jobs: int = 4,
    mount_from: str | None = None,
    progress: Phase | None = None,
) -> PushResult:
    """Push the image ``name`` (or the only image) of ``layout`` to ``ref``; tag it if ``ref`` has a tag.

    ``progress`` counts the blobs, and the bytes of those uploaded as they are read.
    """
    if ref.digest is not None:
        raise UsageError(
            f"push target {ref} carries a digest", hint="push to REGISTRY/REPO[:TAG]; the digest is the result"
        )
    top = layout.select(name)
    # Every manifest read and hashed, every blob there with its size: a broken layout is named
    # before anything is sent. Blob digests are checked just before each upload (below).
    layout.verify(top, hash_blob=lambda _path: False)
    result = PushResult(ref=ref, digest=top.digest)
    _push_manifest(layout, top, ref, client, result, jobs=jobs, mount_from=mount_from, progress=progress)
    if ref.tag:
        client.put_manifest(ref.repository, ref.tag, layout.read_blob(top.digest), top.media_type)
    result.ref = ref.with_digest(top.digest)
    if progress is not None:
        progress.finish(
            f"{plural(len(result.uploaded), 'blob')} uploaded ({size_text(result.bytes_uploaded)}), "
            f"{len(result.existed)} already there" + (f", {len(result.mounted)} mounted" if result.mounted else "")
        )
    return result


def _push_manifest(
    layout: Layout,
    descriptor: Descriptor,
    ref: ImageRef,
    client: RegistryClient,
    result: PushResult,
    *,
    jobs: int,
    mount_from: str | None,
    progress: Phase | None,
) -> None:
    data = layout.read_blob(descriptor.digest)
    blobs, subs = children(json.loads(data))
    for sub in subs:
        _push_manifest(layout, sub, ref, client, result, jobs=jobs, mount_from=mount_from, progress=progress)

    def push_one(blob: Descriptor) -> None:
        path = layout.blob_path(blob.digest)
        if client.blob_exists(ref.repository, blob.digest):  # the registry checked its digest when it took it
            outcome = "exists"
        else:
            problem = layout.blob_problem(blob)  # hashed before a byte is sent: corrupt here, named here
            if problem is not None:
                raise BrokenLayoutError(f"{layout.path}: {problem}")
            if progress is not None:
                progress.add_total(blob.size)
            outcome = client.push_blob(
                ref.repository, blob.digest, blob.size, lambda: _Reading(path, progress), mount_from=mount_from
            )
            if outcome != "uploaded" and progress is not None:
                progress.add_total(-blob.size)  # the registry had it after all, or mounted it
        getattr(result, outcome if outcome != "exists" else "existed").append(blob.digest)
        if outcome == "uploaded":
            result.bytes_uploaded += blob.size
        log.debug("%s %s (%d bytes)", outcome, blob.digest, blob.size)
        if progress is not None:
            progress.item()

    _run_all(push_one, _unique(blobs), jobs)
    client.put_manifest(ref.repository, str(descriptor.digest), data, descriptor.media_type)


class _Reading(io.FileIO):
    """A blob file opened for upload that advances ``phase`` by each read (a resumed upload reads some twice)."""

    def __init__(self, path: Path, phase: Phase | None):
        super().__init__(os.fspath(path), "rb")
        self._phase = phase

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if self._phase is not None and data:
            self._phase.advance(len(data))
        return data


def _run_all(work: Callable[[Descriptor], None], blobs: list[Descriptor], jobs: int) -> None:
    """Run ``work`` on every blob, ``jobs`` at a time; after the first failure, start no more."""
    failed = threading.Event()

    def guarded(blob: Descriptor) -> None:
        if failed.is_set():  # a worker may pick up queued work before shutdown() can cancel it
            return
        try:
            work(blob)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for future in [pool.submit(guarded, b) for b in blobs]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _unique(blobs: list[Descriptor]) -> list[Descriptor]:
    seen: dict[Digest, Descriptor] = {}
    for blob in blobs:
        seen.setdefault(blob.digest, blob)
    return list(seen.values())


def pull_image(
    ref: ImageRef,
    client: RegistryClient,
    dest: Path,
    *,
    name: str | None = None,
    jobs: int = 4,
    progress: Phase | None = None,
) -> Descriptor:
    """Pull ``ref`` (which must carry a digest) with everything it references into the layout ``dest``.

    ``dest`` is a new or empty directory, or an OCI layout whose other images stay listed; a blob
    already there is kept only if it has the bytes its digest names, else fetched again.
    ``progress`` counts the blobs, and the bytes of those downloaded.
    """
    if ref.digest is None:
        raise UsageError(
            f"{ref} has no digest: pulls are by digest", hint=f"resolve the tag first: envbuild registry resolve {ref}"
        )
    layout = Layout.create(dest)
    top = _pull_manifest(ref, ref.digest, client, layout, jobs=jobs, progress=progress)
    layout.add_manifest(top, name=name or ref.tag)
    return top


def _pull_manifest(
    ref: ImageRef, digest: Digest, client: RegistryClient, layout: Layout, *, jobs: int, progress: Phase | None
) -> Descriptor:
    manifest = client.get_manifest(ref.repository, str(digest))
    blobs, subs = children(manifest.json())
    for sub in subs:
        _pull_manifest(ref, sub.digest, client, layout, jobs=jobs, progress=progress)

    def fetch(blob: Descriptor) -> None:
        if layout.blob_problem(blob) is not None:  # missing, or not the bytes its digest names: fetched again
            if progress is not None:
                progress.add_total(blob.size)
            client.download_blob(
                ref.repository, blob.digest, layout.blob_path(blob.digest),
                advance=progress.advance if progress is not None else None,
            )  # fmt: skip
        if progress is not None:
            progress.item()

    _run_all(fetch, _unique(blobs), jobs)
    layout.write_blob(manifest.data)
    return Descriptor(media_type=manifest.media_type, digest=manifest.digest, size=len(manifest.data))

"""What a lock is made of: each target's resolution request, and every file a lock writes for its pins.

``lock`` (:mod:`envbuild.lock.resolve`) writes what :func:`assemble` returns from fresh pins;
``check`` (:mod:`envbuild.lock.staleness`) compares what it returns from the locked pins with the
files on disk. One code path, so that whatever the check accepts, a new lock leaves byte for byte.
"""

from __future__ import annotations

from envbuild import __version__
from envbuild.errors import strip_url_credentials
from envbuild.lock.lockfile import (
    META_FILE,
    LockEntry,
    LockSet,
    PinnedBase,
    render_lockfile,
    request_inputs,
    sha256_text,
)
from envbuild.lock.resolvers.base import Pin, ResolveRequest
from envbuild.lock.resolvers.uv import UvResolver
from envbuild.lock.spec import PLATFORMS, Spec
from envbuild.lock.variants import LockTarget, indexes, requirements, targets


def request_for(
    spec: Spec,
    target: LockTarget,
    *,
    previous: str | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
) -> ResolveRequest:
    """The resolution request of one lock target (``previous``: the locked pins, kept unless ``upgrade``)."""
    return ResolveRequest(
        requirements=requirements(spec, target.variant),
        python=spec.python,
        platform=target.platform,
        glibc=spec.glibc,
        exclude_newer=spec.exclude_newer,
        index_url=spec.index_url,
        indexes=indexes(spec, target.variant),
        upgrade=upgrade,
        upgrade_packages=upgrade_packages,
        previous=None if upgrade else previous,
    )


def tools_request(spec: Spec, platform: str, uv_version: str) -> ResolveRequest:
    """The request that hash-locks envbuild's build tools (uv) for one platform.

    The spec's cutoff does not apply: the version is envbuild's exact pin, not a choice.
    """
    return ResolveRequest(
        requirements=(f"uv=={uv_version}",),
        python=spec.python,
        platform=platform,
        glibc=spec.glibc,
        exclude_newer=None,
        index_url=spec.index_url,
        indexes=(),
    )


def tools_filename(spec: Spec, platform: str) -> str:
    """``tools.txt``, or ``tools-<arch>.txt`` for a multi-platform spec."""
    return "tools.txt" if len(spec.platforms) == 1 else f"tools-{PLATFORMS[platform]}.txt"


def target_cuda(spec: Spec, target: LockTarget) -> str | None:
    """The CUDA major version a target's pins must match: the GPU accelerator's, None for CPU."""
    return spec.accelerator("gpu").cuda if target.variant.accelerator == "gpu" else None


def assemble(
    spec: Spec,
    requests: dict[str, ResolveRequest],
    pins: dict[str, tuple[Pin, ...]],
    tool_requests: dict[str, ResolveRequest],
    tool_pins: dict[str, tuple[Pin, ...]],
    *,
    resolver: str,
    resolver_version: str,
    bases: dict[str, PinnedBase],
) -> tuple[LockSet, dict[str, str]]:
    """Every file of the lock (name under lockfiles/ -> text) for these pins, and the metadata."""
    all_targets = targets(spec)
    texts: dict[str, str] = {}
    entries = []
    for target in all_targets:
        request = requests[target.name]
        title = target.variant.name if len(spec.platforms) == 1 else f"{target.variant.name} ({target.platform})"
        text = render_lockfile(title=title, request=request, pins=pins[target.name])
        texts[target.filename] = text
        entries.append(_entry(target, request, pins[target.name], text, resolver))
    tools = []
    for platform, tool_request in tool_requests.items():
        filename = tools_filename(spec, platform)
        text = render_lockfile(title=f"tools ({platform})", request=tool_request, pins=tool_pins[platform])
        texts[filename] = text
        tools.append(
            LockEntry(
                name=filename.removesuffix(".txt"), variant="tools", platform=platform, file=filename,
                sha256=sha256_text(text), inputs=request_inputs(tool_request, UvResolver.name),
                packages={p.name: {"version": p.version, "index": "default"} for p in tool_pins[platform]},
            )
        )  # fmt: skip
    lockset = LockSet(
        envbuild_version=__version__,
        resolver=resolver,
        resolver_version=resolver_version,
        spec_file=spec.file.relative_to(spec.root).as_posix(),
        python=spec.python,
        exclude_newer=spec.exclude_newer,
        index_url=strip_url_credentials(spec.index_url) if spec.index_url else None,
        indexes=request_inputs(requests[all_targets[0].name], resolver)["indexes"] if spec.indexes else [],
        bases=bases,
        entries=tuple(entries),
        tools=tuple(tools),
    )
    texts[META_FILE] = lockset.to_json()
    return lockset, texts


def _entry(target: LockTarget, request: ResolveRequest, pins: tuple[Pin, ...], text: str, resolver: str) -> LockEntry:
    routes = {p: i.name for i in request.indexes for p in i.packages}
    return LockEntry(
        name=target.name,
        variant=target.variant.name,
        platform=target.platform,
        file=target.filename,
        sha256=sha256_text(text),
        inputs=request_inputs(request, resolver),
        packages={p.name: {"version": p.version, "index": routes.get(p.name, "default")} for p in pins},
    )

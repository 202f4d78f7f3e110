"""What an image builder adapter takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from envbuild.oci.layout import Layout
from envbuild.progress import Phase


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    """One Dockerfile build, with every input already on disk."""

    context: Path  # the project root
    dockerfile: Path
    base_name: str  # the FROM name of a base loaded from base_layout
    base_layout: Path | None  # None: the FROM reference is a registry image by digest
    epoch: int  # SOURCE_DATE_EPOCH
    platform: str
    build_args: dict[str, str] = field(default_factory=dict)
    workdir: Path = Path()  # private scratch space; the adapter may fill it


class Builder(Protocol):
    """An image builder (buildah; docker buildx next)."""

    name: str

    def version(self) -> str:
        """The builder's version, recorded in provenance."""
        ...

    def build(self, request: BuildRequest, *, progress: Phase | None = None) -> Layout:
        """Build ``request`` with no network and return the raw image as an OCI layout under ``workdir``.

        The builder's output lines go to ``progress`` (:meth:`envbuild.progress.Phase.say`) as they come.
        """
        ...

"""Image builder adapters: each runs one tool and returns its raw output as an OCI layout."""

from envbuild.errors import UsageError
from envbuild.image.builders.base import Builder, BuildRequest

BUILDERS = ("buildah", "docker")


def get_builder(name: str) -> Builder:
    """The builder adapter called ``name``."""
    if name == "buildah":
        from envbuild.image.builders.buildah import Buildah

        return Buildah()
    if name == "docker":
        from envbuild.image.builders.docker import Docker

        return Docker()
    raise UsageError(f"unknown builder {name!r}", hint=f"use one of: {', '.join(BUILDERS)}")


__all__ = ["BUILDERS", "BuildRequest", "Builder", "get_builder"]

"""Image builder adapters: each runs one tool and returns its raw output as an OCI layout."""

from envbuild.errors import UsageError
from envbuild.image.builders.base import Builder, BuildRequest

BUILDERS = ("buildah", "docker")


def get_builder(name: str, *, endpoint: str | None = None) -> Builder:
    """The builder adapter called ``name``; for docker, the daemon at ``endpoint`` when one is given."""
    if name == "buildah":
        if endpoint is not None:
            raise UsageError(
                f"buildah builds on this machine: it has no endpoint ({endpoint})",
                hint="build with --builder docker to send a platform's build to a Docker daemon elsewhere",
            )
        from envbuild.image.builders.buildah import Buildah

        return Buildah()
    if name == "docker":
        from envbuild.image.builders.docker import Docker

        return Docker(endpoint)
    raise UsageError(f"unknown builder {name!r}", hint=f"use one of: {', '.join(BUILDERS)}")


__all__ = ["BUILDERS", "BuildRequest", "Builder", "get_builder"]

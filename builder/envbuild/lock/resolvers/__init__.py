"""Resolver adapters: each turns a :class:`~envbuild.lock.resolvers.base.ResolveRequest` into pins."""

from envbuild.errors import UsageError
from envbuild.lock.resolvers.base import Resolver


def get_resolver(name: str) -> Resolver:
    """The resolver adapter called ``name`` ('uv' or 'pip-tools')."""
    if name == "uv":
        from envbuild.lock.resolvers.uv import UvResolver

        return UvResolver()
    if name == "pip-tools":
        from envbuild.lock.resolvers.piptools import PipToolsResolver

        return PipToolsResolver()
    raise UsageError(f"unknown resolver {name!r}", hint="use --resolver uv or --resolver pip-tools")

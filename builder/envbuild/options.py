"""Command-line options shared by several commands, each defined once with its ENVBUILD_* default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from envbuild.registry.options import RegistryOptions
from envbuild.registry.ref import ImageRef

if TYPE_CHECKING:
    from envbuild.registry.client import RegistryClient

F = TypeVar("F", bound=Callable[..., Any])

insecure = click.option(
    "--insecure",
    is_flag=True,
    envvar="ENVBUILD_REGISTRY_INSECURE",
    show_envvar=True,
    help="Talk plain HTTP to the registry (loopback registries in tests and CI).",
)
ca_file = click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="ENVBUILD_REGISTRY_CA_FILE",
    show_envvar=True,
    help="Trust this CA certificate (PEM) for the registry's TLS.",
)
jobs = click.option(
    "--jobs", "-j", type=click.IntRange(1, 32), default=4, show_default=True, envvar="ENVBUILD_JOBS", show_envvar=True,
    help="Blobs transferred in parallel.",
)  # fmt: skip


def registry_options(command: F) -> F:
    """--insecure and --ca-file."""
    return insecure(ca_file(command))


def client_for(ref: ImageRef, *, insecure: bool, ca_file: Path | None) -> RegistryClient:
    """A registry client for ``ref``'s host, with credentials looked up for it."""
    from envbuild.registry.client import RegistryClient  # the HTTP stack loads only when a command needs it

    return RegistryClient(ref.registry, RegistryOptions(insecure=insecure, ca_file=ca_file))

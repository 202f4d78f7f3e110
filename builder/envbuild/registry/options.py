"""How to reach a registry: a plain value, importable without the HTTP stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuild.oci.ref import ImageRef
    from envbuild.registry.client import RegistryClient

ClientFor = Callable[["ImageRef"], "RegistryClient"]

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """How to reach a registry."""

    insecure: bool = False  # plain HTTP; meant for loopback registries
    ca_file: Path | None = None
    retries: int = 5  # attempts after the first, with exponential backoff
    backoff: float = 0.5  # first wait, doubled each attempt: 0.5 + 1 + 2 + 4 + 8 = 15.5 s at most
    chunk_size: int = CHUNK
    timeout: float = 120

    def clients(self) -> ClientFor:
        """A function giving the client for a reference's host: one client per host, made when first asked for."""
        from envbuild.registry.client import RegistryClient  # the HTTP stack loads only when a client is made

        made: dict[str, RegistryClient] = {}

        def client_for(ref: ImageRef) -> RegistryClient:
            if ref.registry not in made:
                made[ref.registry] = RegistryClient.for_ref(ref, self)
            return made[ref.registry]

        return client_for

"""How to reach a registry: a plain value, importable without the HTTP stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

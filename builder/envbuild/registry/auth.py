"""Registry credentials and the two auth flows registries use (basic, bearer token).

Credentials are looked up, in order: ``ENVBUILD_REGISTRY_USERNAME`` /
``ENVBUILD_REGISTRY_PASSWORD``; docker's config.json (``$DOCKER_CONFIG`` or
``~/.docker``): a ``credHelpers`` entry for the host, an ``auths`` entry, then the
default ``credsStore``. The secret is never logged, put in a message or repr'd.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.errors import UsageError

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    """A username and a secret (password, token); the secret stays out of repr."""

    username: str
    secret: str = field(repr=False)
    source: str = "environment"

    def basic(self) -> str:
        """The value of a basic Authorization header."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str  # "basic" or "bearer"
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """Parse ``Bearer realm="...",service="...",scope="..."`` or ``Basic realm="..."``."""
        scheme, _, rest = header.strip().partition(" ")
        return cls(scheme=scheme.lower(), params=dict(_CHALLENGE.findall(rest)))


def docker_config_dir() -> Path:
    """Where docker keeps config.json."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def find_credentials(host: str) -> Credentials | None:
    """Credentials for registry ``host``, or None to try anonymously."""
    user, password = os.environ.get("ENVBUILD_REGISTRY_USERNAME"), os.environ.get("ENVBUILD_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, password, "ENVBUILD_REGISTRY_USERNAME/PASSWORD")
    path = docker_config_dir() / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable docker config ({exc})", hint="fix or remove the file") from exc
    if not isinstance(config, dict):
        raise UsageError(f"{path}: docker config is not a JSON object", hint="fix or remove the file")
    for key in ("auths", "credHelpers"):  # docker writes objects; anything else would crash the lookups below
        if not isinstance(config.get(key, {}), dict):
            raise UsageError(
                f"{path}: {key} is a {type(config[key]).__name__}, not an object of registry hosts",
                hint=f'fix or remove the file: {key} looks like {{"registry.example": {{...}}}}',
            )
    helper = config.get("credHelpers", {}).get(host)
    if helper:
        return _from_helper(helper, host)
    for key, entry in config.get("auths", {}).items():
        if _host_of(key) == host and isinstance(entry, dict):
            if entry.get("identitytoken"):
                return Credentials("<token>", entry["identitytoken"], str(path))
            if entry.get("auth"):
                try:
                    user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, TypeError) as exc:
                    raise UsageError(
                        f"{path}: auths.{key}.auth is not base64 user:password",
                        hint=f"log in again (docker login {host}), or fix or remove the entry",
                    ) from exc
                return Credentials(user, secret, str(path))
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], host)
    return None


def _host_of(key: str) -> str:
    """config.json keys may be URLs (https://host/v1/) or bare hosts."""
    return re.sub(r"^https?://", "", key).split("/", 1)[0]


def _from_helper(helper: str, host: str) -> Credentials | None:
    """Ask ``docker-credential-<helper>`` for ``host``'s credentials."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise UsageError(
            f"docker config names credential helper {helper!r}, but {program} is not installed",
            hint=f"install {program}, or remove the helper from {docker_config_dir() / 'config.json'}",
        ) from exc
    if done.returncode != 0:  # the helper knows no credentials for this host
        return None
    try:
        data = json.loads(done.stdout)
        return Credentials(data["Username"], data["Secret"], program)
    except (ValueError, KeyError):
        return None

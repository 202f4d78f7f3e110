"""Image references and digests as values: ``ImageRef.parse("host:5000/team/app:v1@sha256:...")``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from envbuild.errors import UsageError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# distribution/reference grammar, simplified: lower-case path components separated by / and [._-].
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# A DNS name or IPv4 address, or an IPv6 address in brackets; the port is checked apart.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, order=True)
class Digest:
    """A sha256 content digest, ``sha256:<64 hex>``."""

    value: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Validate ``text`` as a sha256 digest."""
        if not _DIGEST.fullmatch(text):
            raise UsageError(f"{text!r} is not a sha256 digest", hint="a digest looks like sha256:<64 hex digits>")
        return cls(text)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of ``data``."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @property
    def hex(self) -> str:
        """The 64 hex digits."""
        return self.value.split(":", 1)[1]

    def __str__(self) -> str:
        return self.value


def _check_host(text: str, host: str, hint: str) -> None:
    """A registry host is a name or an IP address, with an optional port from 1 to 65535."""
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name, port = host, ""
    if not name or not _HOST.fullmatch(name):
        raise UsageError(f"{text!r}: {host!r} is not a valid registry host", hint=hint)
    if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"{text!r}: {port!r} is not a valid port (1 to 65535)", hint=hint)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """``registry/repository[:tag][@digest]``; a reference always names its registry."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse a full reference; the registry host is required (no implicit default registry)."""
        hint = "write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/team/app:v1"
        rest, digest = text, None
        if "@" in rest:
            rest, raw = rest.split("@", 1)
            digest = Digest.parse(raw)
        host, _, path = rest.partition("/")
        if not path or not ("." in host or ":" in host or host == "localhost"):
            raise UsageError(f"{text!r} does not name a registry host", hint=hint)
        _check_host(text, host, hint)
        tag = None
        if ":" in path.rsplit("/", 1)[-1]:
            path, tag = path.rsplit(":", 1)
            if not _TAG.fullmatch(tag):
                raise UsageError(f"{text!r}: {tag!r} is not a valid tag", hint=hint)
        if not _REPO.fullmatch(path):
            raise UsageError(
                f"{text!r}: {path!r} is not a valid repository name",
                hint="use lower-case letters, digits, '/', '.', '_' and '-'",
            )
        return cls(registry=host, repository=path, tag=tag, digest=digest)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when known, else the tag, else 'latest'."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def with_digest(self, digest: Digest) -> ImageRef:
        """The same repository, pinned to ``digest`` (the tag is kept for display)."""
        return ImageRef(registry=self.registry, repository=self.repository, tag=self.tag, digest=digest)

    def with_tag(self, tag: str | None) -> ImageRef:
        """The same repository with another tag and no digest."""
        return ImageRef(registry=self.registry, repository=self.repository, tag=tag)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

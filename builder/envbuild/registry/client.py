"""An OCI distribution-spec client: blobs, manifests, tags, with auth, retries and digest checks.

Why not oras-py: its pushes upload a blob in one request or in chunks without a
way to resume after a dropped connection, it has no ``artifactType``, and its
``Subject.from_manifest()`` re-serialises JSON and so computes the wrong digest.
A manifest's digest is the digest of its exact bytes; this client never
re-serialises what it sends or receives.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urljoin

import requests

from envbuild.errors import EXIT_USAGE, EnvbuildError
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry.auth import Challenge, Credentials, find_credentials
from envbuild.registry.options import RegistryOptions

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# Statuses worth retrying: the registry is overloaded, restarting, or a proxy hiccuped.
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# A registry whose answer breaks the distribution spec: a broken proxy, a damaged store, or an attack.
LYING_HINT = "the registry (or a proxy in front of it) answered outside the OCI distribution spec; check it"


class RegistryError(EnvbuildError):
    """A registry refused or failed a request."""


class RegistryNotFoundError(RegistryError):
    """The registry has no such repository, tag or digest (HTTP 404): the reference is wrong, so exit 2."""

    exit_code = EXIT_USAGE


class RegistryAuthError(RegistryError):
    """The registry refused our credentials (or we had none)."""


class RegistryUnreachableError(RegistryError):
    """The registry could not be reached (DNS, refused, timed out)."""


class RegistryNameError(RegistryUnreachableError):
    """The registry's host name does not resolve."""


class RegistryTLSError(RegistryError):
    """The registry's certificate was not trusted."""


class RegistryPlainHTTPError(RegistryTLSError):
    """The registry answered a TLS handshake in plain HTTP."""


class DigestMismatchError(RegistryError):
    """The registry served bytes that do not match the digest asked for."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A manifest's exact bytes, its media type, and the digest of those bytes."""

    data: bytes
    media_type: str
    digest: Digest

    def json(self) -> dict[str, Any]:
        """The parsed manifest; bytes that are not a JSON object are a :class:`RegistryError`."""
        return _json_object(self.data, f"manifest {self.digest}")


class RegistryClient:
    """A client for one registry host. Thread-safe: each thread gets its own HTTP session."""

    def __init__(
        self, host: str, options: RegistryOptions | None = None, credentials: Credentials | bool | None = True
    ):
        self.host = host
        self.options = options or RegistryOptions()
        scheme = "http" if self.options.insecure else "https"
        self.base = f"{scheme}://{host}"
        if self.options.insecure and not _is_loopback(host):
            log.warning("talking plain HTTP to %s, which is not a loopback address", host)
        self._credentials = find_credentials(host) if credentials is True else credentials or None
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def for_ref(cls, ref: ImageRef, options: RegistryOptions | None = None) -> RegistryClient:
        """A client for ``ref``'s registry host, with the credentials found for it."""
        return cls(ref.registry, options)

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # registry traffic never goes through the host's HTTP proxy
            if self.options.ca_file is not None:
                session.verify = str(self.options.ca_file)
            self._local.session = session
        return session

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (which may already be absolute, as upload Locations are)."""
        return urljoin(self.base + "/", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None = None,
        ok: tuple[int, ...] = (200,),
        retry: bool = True,
        headers: dict[str, str] | None = None,
        data: bytes | IO[bytes] | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one request, authenticating on 401 and retrying transient failures with backoff.

        ``scope`` is the bearer-token scope (``repository:NAME:pull,push``).
        Statuses outside ``ok`` raise :class:`RegistryError` (404 included; callers that
        expect a 404 list it in ``ok``).
        """
        attempts = self.options.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = self._send(method, path, scope=scope, headers=headers, data=data, stream=stream)
            except RegistryNameError:
                raise  # a name that does not resolve will not resolve in a few seconds either
            except RegistryUnreachableError:
                if attempt + 1 >= attempts:
                    raise
                self._sleep(attempt, f"{method} {path}: registry unreachable")
                continue
            if response.status_code in ok:
                return response
            if response.status_code in _RETRY_STATUS and attempt + 1 < attempts:
                self._sleep(attempt, f"{method} {path}: HTTP {response.status_code}")
                continue
            raise self._error(method, path, response)
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, why: str) -> None:
        delay = self.options.backoff * (2**attempt)
        log.info("%s; retrying in %.1f s", why, delay)
        time.sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        headers: dict[str, str] | None,
        data: bytes | IO[bytes] | Iterator[bytes] | None,
        stream: bool,
    ) -> requests.Response:
        for _ in range(3):  # anonymous, then after one challenge, then after a token refresh
            if hasattr(data, "seek"):
                data.seek(0)  # type: ignore[union-attr]
            auth = self._auth_header(scope)
            try:
                response = self._session.request(
                    method,
                    self.url(path),
                    headers={**(headers or {}), **auth},
                    data=data,
                    stream=stream,
                    timeout=self.options.timeout,
                )
            except requests.exceptions.SSLError as exc:
                if _is_plain_http(exc):
                    raise RegistryPlainHTTPError(
                        f"registry {self.host} speaks plain HTTP, not HTTPS",
                        details=_short(exc),
                        hint="pass --insecure (or ENVBUILD_REGISTRY_INSECURE=1), only for a registry you trust on a "
                        "network you trust (loopback); otherwise serve the registry over HTTPS",
                    ) from None
                raise RegistryTLSError(
                    f"the TLS certificate of registry {self.host} is not trusted",
                    details=_short(exc),
                    hint="pass --ca-file with the registry's CA certificate (or ENVBUILD_REGISTRY_CA_FILE)",
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                kind = RegistryNameError if _is_name_failure(exc) else RegistryUnreachableError
                raise kind(
                    f"registry {self.host} is unreachable"
                    + (" (its name does not resolve)" if kind is RegistryNameError else ""),
                    details=_short(exc),
                    hint="check the host name and port, and that the registry is running",
                ) from None
            if response.status_code != 401:
                return response
            self._answer_challenge(response, scope, sent=auth.get("Authorization"))
        raise self._auth_error(response)

    def _auth_header(self, scope: str | None) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope or "")
            if token:
                return {"Authorization": f"Bearer {token}"}
            if self._basic and self._credentials:
                return {"Authorization": self._credentials.basic()}
        return {}

    def _answer_challenge(self, response: requests.Response, scope: str | None, *, sent: str | None) -> None:
        """Prepare credentials for the retry of a request answered 401, or raise when none will do.

        Judged by what *this* request carried, not by shared state: parallel
        requests that went out anonymously before another thread switched the
        client to basic auth must retry, not fail.
        """
        challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
        if challenge.scheme == "basic":
            if self._credentials is None or (sent or "").startswith("Basic "):
                raise self._auth_error(response)
            with self._lock:
                self._basic = True
            return
        if challenge.scheme == "bearer":
            token = self._fetch_token(challenge, scope)  # first token, or a fresh one for an expired token
            with self._lock:
                if sent == f"Bearer {token}":  # the registry refuses a token its own service just issued
                    raise self._auth_error(response)
                self._tokens[scope or ""] = token
            return
        raise self._auth_error(response)

    def _fetch_token(self, challenge: Challenge, scope: str | None) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryAuthError(f"registry {self.host} sent a bearer challenge without a realm")
        query = {"service": challenge.params.get("service", "")}
        if scope or challenge.params.get("scope"):
            query["scope"] = scope or challenge.params["scope"]
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        try:
            answer = self._session.get(f"{realm}?{urlencode(query)}", headers=headers, timeout=self.options.timeout)
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachableError(
                f"the token service of {self.host} is unreachable", details=_short(exc)
            ) from None
        if answer.status_code in (401, 403):
            raise self._auth_error(answer)
        if answer.status_code != 200:
            raise RegistryError(f"the token service of {self.host} answered HTTP {answer.status_code}")
        body = _json_object(answer.content, f"the token service of {self.host}'s answer")
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryAuthError(f"the token service of {self.host} returned no token")
        return token

    def _auth_error(self, response: requests.Response) -> RegistryAuthError:
        who = (
            f"the credentials of {self._credentials.username!r} (from {self._credentials.source})"
            if self._credentials
            else "anonymous access"
        )
        return RegistryAuthError(
            f"registry {self.host} refused {who} (HTTP {response.status_code})",
            hint=f"log in with 'docker login {self.host}', "
            "or set ENVBUILD_REGISTRY_USERNAME and ENVBUILD_REGISTRY_PASSWORD",
        )

    def _error(self, method: str, path: str, response: requests.Response) -> RegistryError:
        if response.status_code in (401, 403):
            return self._auth_error(response)
        detail = _registry_message(response)
        if response.status_code >= 500:
            return RegistryError(
                f"registry {self.host} failed {method} {_path_only(path)} (HTTP {response.status_code}{detail})",
                hint="the registry reported an internal error: check its storage (disk full, read-only) and logs",
            )
        if response.status_code == 404:
            return RegistryNotFoundError(
                f"registry {self.host} has nothing at {method} {_path_only(path)} (HTTP 404{detail})",
                hint="check the repository, tag and digest: 'envbuild registry tags REGISTRY/REPO' lists the tags",
            )
        return RegistryError(
            f"registry {self.host} refused {method} {_path_only(path)} (HTTP {response.status_code}{detail})",
            hint="the registry's message above says why",
        )

    # -- blobs -----------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: Digest) -> bool:
        """Whether the repository already has the blob."""
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository, "pull"), ok=(200, 404)
        )
        return response.status_code == 200

    def get_blob(self, repository: str, digest: Digest) -> bytes:
        """A (small) blob's bytes, checked against its digest."""
        response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository, "pull"))
        data = response.content
        if Digest.of(data) != digest:
            raise DigestMismatchError(
                f"registry {self.host} served other bytes for blob {digest} of {repository}",
                hint="the registry's storage is corrupt or tampered with",
            )
        return data

    def check_blob(self, repository: str, digest: Digest) -> int:
        """Stream a blob without keeping it and check its digest; return its size."""
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository, "pull"), stream=True
        )
        hasher = hashlib.sha256()
        size = 0
        for chunk in response.iter_content(1024 * 1024):
            hasher.update(chunk)
            size += len(chunk)
        if f"sha256:{hasher.hexdigest()}" != str(digest):
            raise DigestMismatchError(
                f"registry {self.host} served other bytes for blob {digest} of {repository}",
                hint="the registry's storage is corrupt or tampered with",
            )
        return size

    def download_blob(
        self, repository: str, digest: Digest, dest: Path, *, advance: Callable[[int], None] | None = None
    ) -> None:
        """Stream a blob to ``dest`` (through a temporary file), checking its digest; ``advance`` hears each chunk."""
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_scope(repository, "pull"), stream=True
        )
        tmp = dest.with_name(dest.name + ".partial")
        hasher = hashlib.sha256()
        with tmp.open("wb") as f:
            for chunk in response.iter_content(1024 * 1024):
                hasher.update(chunk)
                f.write(chunk)
                if advance is not None:
                    advance(len(chunk))
        if f"sha256:{hasher.hexdigest()}" != str(digest):
            tmp.unlink()
            raise DigestMismatchError(
                f"registry {self.host} served other bytes for blob {digest} of {repository}",
                hint="the registry's storage is corrupt or tampered with",
            )
        tmp.replace(dest)

    def push_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        opener: Callable[[], IO[bytes]],
        *,
        mount_from: str | None = None,
    ) -> str:
        """Make the blob present in ``repository``: 'exists', 'mounted' or 'uploaded'.

        Large blobs go in chunks; after a dropped connection or a 5xx the upload
        asks the registry how much it has (GET on the upload URL) and resumes there.
        """
        scope = _scope(repository, "pull,push")
        if self.blob_exists(repository, digest):
            return "exists"
        query = f"?mount={digest}&from={mount_from}" if mount_from else ""
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/{query}", scope=scope, ok=(201, 202))
        if start.status_code == 201:
            return "mounted"
        location = start.headers["Location"]
        if size <= self.options.chunk_size:
            with opener() as f:
                data = f.read()
            self.request(
                "PUT",
                _with_digest(location, digest),
                scope=scope,
                ok=(201,),
                headers={"Content-Type": "application/octet-stream"},
                data=data,
            )
            return "uploaded"
        self._chunked_upload(repository, digest, size, opener, location, scope)
        return "uploaded"

    def _chunked_upload(
        self, repository: str, digest: Digest, size: int, opener: Callable[[], IO[bytes]], location: str, scope: str
    ) -> None:
        offset, failures = 0, 0
        with opener() as f:
            while offset < size:
                f.seek(offset)
                chunk = f.read(self.options.chunk_size)
                end = offset + len(chunk) - 1
                try:
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                        "Content-Length": str(len(chunk)),
                    }
                    response = self.request(
                        "PATCH", location, scope=scope, ok=(202,), retry=False, headers=headers, data=chunk
                    )
                    location = response.headers.get("Location", location)
                    offset = _range_end(response) + 1 if "Range" in response.headers else end + 1
                    failures = 0
                except RegistryError as exc:
                    if isinstance(exc, RegistryAuthError) or failures >= self.options.retries:
                        raise
                    self._sleep(failures, f"upload of {digest} interrupted at {offset} bytes ({exc.message})")
                    failures += 1
                    location, offset = self._resume(repository, location, scope)
        self.request("PUT", _with_digest(location, digest), scope=scope, ok=(201,), headers={"Content-Length": "0"})

    def _resume(self, repository: str, location: str, scope: str) -> tuple[str, int]:
        """Where an interrupted upload stands; a forgotten upload starts over."""
        status = self.request("GET", location, scope=scope, ok=(204, 404))
        if status.status_code == 204:
            resumed = _range_end(status) + 1 if status.headers.get("Range") else 0
            log.info("resuming upload at byte %d", resumed)
            return status.headers.get("Location", location), resumed
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, ok=(202,))
        return start.headers["Location"], 0

    # -- manifests and tags ----------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str, *, accept: tuple[str, ...] = MANIFEST_TYPES) -> Manifest:
        """A manifest by tag or digest; by digest, the bytes are checked against it."""
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=_scope(repository, "pull"),
            headers={"Accept": ", ".join(accept)},
        )
        return self._checked_manifest(response, repository, reference)

    def _checked_manifest(self, response: requests.Response, repository: str, reference: str) -> Manifest:
        data = response.content
        digest = Digest.of(data)
        claimed = response.headers.get("Docker-Content-Digest")
        expected = reference if reference.startswith("sha256:") else claimed
        if expected and str(digest) != expected:
            raise DigestMismatchError(
                f"registry {self.host} served other bytes for manifest {reference} of {repository}",
                hint="the registry's storage is corrupt or tampered with",
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0] or _media_type_of(data)
        return Manifest(data=data, media_type=media_type, digest=digest)

    def find_manifest(self, repository: str, reference: str) -> Manifest | None:
        """A manifest, or None when the registry answers 404 (a tag that does not exist, or not yet)."""
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", scope=_scope(repository, "pull"), ok=(200, 404),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        return self._checked_manifest(response, repository, reference)

    def resolve(self, repository: str, reference: str) -> Digest:
        """The digest a tag (or digest) points at, from the manifest bytes themselves."""
        return self.get_manifest(repository, reference).digest

    def manifest_exists(self, repository: str, reference: str) -> bool:
        """Whether a manifest exists under a tag or digest."""
        response = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=_scope(repository, "pull"),
            ok=(200, 404),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        return response.status_code == 200

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> tuple[Digest, bool]:
        """Upload a manifest's exact bytes under a tag or digest.

        Returns its digest and whether the registry processed its ``subject``
        (the OCI-Subject header of registries with the referrers API).
        """
        digest = Digest.of(data)
        scope = _scope(repository, "pull,push")
        for attempt in range(4):
            try:
                response = self.request(
                    "PUT", f"/v2/{repository}/manifests/{reference}", scope=scope, ok=(201,),
                    headers={"Content-Type": media_type}, data=data,
                )  # fmt: skip
                break
            except RegistryError as exc:
                # distribution rewrites a blob's link file without locking; a manifest PUT racing
                # a concurrent upload of the same blob briefly sees it as unknown.
                if "MANIFEST_BLOB_UNKNOWN" not in exc.message or attempt == 3:
                    raise
                self._sleep(attempt, f"PUT manifest {digest}: a referenced blob is not visible yet")
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != str(digest):
            raise DigestMismatchError(f"registry {self.host} stored manifest {digest} as {claimed}")
        return digest, "OCI-Subject" in response.headers

    def delete_manifest(self, repository: str, digest: Digest) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=_scope(repository, "pull,push,delete"),
            ok=(202, 200),
        )

    def delete_tag(self, repository: str, tag: str) -> None:
        """Delete a tag (OCI 1.1; registries without tag deletion answer 400/405)."""
        self.request(
            "DELETE", f"/v2/{repository}/manifests/{tag}", scope=_scope(repository, "pull,push,delete"), ok=(202, 200)
        )

    def list_tags(self, repository: str, *, missing_ok: bool = True) -> list[str]:
        """Every tag of a repository, following pagination; a missing repository has none, or is an error."""
        tags: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n=1000"
        while path:
            response = self.request("GET", path, scope=_scope(repository, "pull"), ok=(200, 404))
            if response.status_code == 404 and missing_ok:
                return []
            if response.status_code == 404:
                raise RegistryNotFoundError(
                    f"registry {self.host} has no repository {repository}",
                    hint="check the name (a repository exists once an image was pushed to it)",
                )
            found = _json_object(response.content, f"the tag list of {self.host}/{repository}").get("tags") or []
            if not isinstance(found, list) or not all(isinstance(t, str) for t in found):
                what = f"the tag list of {self.host}/{repository}"
                raise RegistryError(f"{what} is not a list of strings", hint=LYING_HINT)
            tags += found
            link = response.headers.get("Link", "")
            path = link.split(";")[0].strip("<> ") if 'rel="next"' in link else None
        return sorted(tags)

    def referrers_api(
        self, repository: str, digest: Digest, artifact_type: str | None = None
    ) -> list[dict[str, Any]] | None:
        """The referrers of ``digest`` via the OCI 1.1 API, or None when the registry lacks it."""
        query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        response = self.request(
            "GET", f"/v2/{repository}/referrers/{digest}{query}", scope=_scope(repository, "pull"), ok=(200, 404, 405)
        )
        if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
            return None
        what = f"the referrers of {digest} on {self.host}/{repository}"
        manifests = _json_object(response.content, what).get("manifests") or []
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise RegistryError(f"{what} are not a list of descriptors")
        return [m for m in manifests if artifact_type is None or m.get("artifactType") == artifact_type]


def _scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _with_digest(location: str, digest: Digest) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _range_end(response: requests.Response) -> int:
    """The last byte the registry has, from a ``Range: 0-N`` header."""
    try:
        return int(response.headers["Range"].split("-")[-1])
    except (KeyError, ValueError):
        raise RegistryError(
            f"the registry answered an upload status without a valid Range header ({response.headers.get('Range')!r})",
            hint=LYING_HINT,
        ) from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object; anything else is a :class:`RegistryError` naming ``what``."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{what} is not JSON ({exc})", hint=LYING_HINT) from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object", hint=LYING_HINT)
    return value


def _media_type_of(data: bytes) -> str:
    try:
        found = json.loads(data).get("mediaType")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return MANIFEST_TYPES[0]
    return found if isinstance(found, str) else MANIFEST_TYPES[0]


def _registry_message(response: requests.Response) -> str:
    """The registry's own error code and message, if it sent the spec's JSON error body."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    return "".join(f": {e.get('code', '')} {e.get('message', '')}".rstrip() for e in errors[:2] if isinstance(e, dict))


def _path_only(path: str) -> str:
    """A request path without its query (upload URLs carry opaque state)."""
    return path.split("?")[0]


def _short(exc: Exception) -> str:
    return str(exc)[:300]


# What OpenSSL says when the "TLS record" it reads is an HTTP response: "wrong version number"
# up to OpenSSL 3.1, "record layer failure" from 3.2, "packet length too long" for some answers.
_PLAIN_HTTP_SIGNS = ("wrong version number", "record layer failure", "packet length too long")


def _is_plain_http(exc: requests.exceptions.SSLError) -> bool:
    """Whether a TLS handshake failed because the server answered in plain HTTP."""
    text = str(exc).lower()
    return any(sign in text for sign in _PLAIN_HTTP_SIGNS)


def _is_name_failure(exc: BaseException) -> bool:
    """Whether a connection error was a failed DNS lookup (urllib3 wraps socket.gaierror)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return True
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return False


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False

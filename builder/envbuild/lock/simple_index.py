"""Reading a package index as the resolver does: its credentials, and the files it lists for a project.

Lock and fetch both talk to the spec's ``[[indexes]]``: uv during ``lock``, envbuild
itself when it checks a routed pin against its index and when it downloads wheels
for an image. Credentials must be the same in all three places, so they are looked
up here once: ``UV_INDEX_<NAME>_USERNAME`` / ``UV_INDEX_<NAME>_PASSWORD`` (the
variables uv reads for a named index), else ``~/.netrc`` (which requests and uv
both read on their own).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import requests
from packaging.utils import canonicalize_name
from requests.auth import HTTPBasicAuth
from requests.utils import get_netrc_auth

from envbuild.errors import EnvbuildError, ResolutionError, strip_url_credentials
from envbuild.lock.resolvers.base import Pin
from envbuild.lock.spec import Index

JSON_API = "application/vnd.pypi.simple.v1+json"


class IndexReadError(EnvbuildError):
    """An index could not be read: unreachable, or it refused or did not know the project."""


def credential_variables(index: Index) -> tuple[str, str]:
    """The environment variables uv reads ``index``'s credentials from: username, password.

    uv upper-cases the index name and turns every other character into ``_``.
    """
    name = re.sub(r"[^A-Z0-9]", "_", index.name.upper())
    return f"UV_INDEX_{name}_USERNAME", f"UV_INDEX_{name}_PASSWORD"


def credentials_hint(index: Index) -> str:
    """What a user does to give ``index`` its credentials."""
    user, password = credential_variables(index)
    return f"set {user} and {password} or add the index's host to ~/.netrc"


class _RealmAuth(requests.auth.AuthBase):
    """Basic auth sent only to the index's own scheme, host and port (its realm, as uv scopes it).

    A page may link files on another host; they get that host's ~/.netrc entry, if any,
    never the index's password.
    """

    def __init__(self, realm: tuple[str, str], username: str, password: str) -> None:
        self.realm = realm
        self.basic = HTTPBasicAuth(username, password)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        if _realm(url) == self.realm:
            self.basic(request)  # sets the Authorization header in place
        elif netrc := get_netrc_auth(url):
            HTTPBasicAuth(*netrc)(request)
        return request


def _realm(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, f"{parts.hostname}:{parts.port or default_port}"


def index_auth(index: Index) -> requests.auth.AuthBase | None:
    """``index``'s credentials from the environment, or None (then requests reads ~/.netrc itself)."""
    user_var, password_var = credential_variables(index)
    username, password = os.environ.get(user_var), os.environ.get(password_var)
    if not username and not password:
        return None
    return _RealmAuth(_realm(index.url), username or "", password or "")


def session() -> requests.Session:
    """A session that honours the host's proxy settings and ~/.netrc, as uv does."""
    s = requests.Session()
    s.trust_env = True
    return s


class _Links(HTMLParser):
    """PEP 503 anchors' hrefs."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def index_files(
    session: requests.Session, index_url: str, name: str, *, index: Index | None = None
) -> list[dict[str, Any]]:
    """The files of project ``name`` on a simple index: filename, absolute url, sha256.

    ``index`` is the spec's index at ``index_url``, if any: its credentials are sent.
    """
    page = f"{index_url.rstrip('/')}/{canonicalize_name(name)}/"
    response = _get(
        session, page, index_url, index, timeout=120, hint="check the index URL and that it serves this project"
    )
    files = []
    if response.headers.get("Content-Type", "").startswith(JSON_API):
        for f in response.json().get("files", []):
            digest = (f.get("hashes") or {}).get("sha256")
            if digest:
                files.append({"filename": f["filename"], "url": urljoin(page, f["url"]), "sha256": digest})
        return files
    parser = _Links()
    parser.feed(response.text)
    for href in parser.links:
        url, fragment = urldefrag(urljoin(page, href))
        if fragment.startswith("sha256="):
            files.append({"filename": url.rsplit("/", 1)[-1], "url": url, "sha256": fragment.split("=", 1)[1]})
    return files


def _get(
    session: requests.Session, url: str, index_url: str, index: Index | None, *, timeout: int, hint: str
) -> requests.Response:
    """GET a simple-index page (JSON preferred) with the index's credentials; an IndexReadError unless 200.

    ``hint`` is the fix for an answer other than 200, 401 and 403 (those name the credentials).
    """
    auth = index_auth(index) if index else None
    try:
        response = session.get(url, headers={"Accept": f"{JSON_API}, text/html;q=0.1"}, timeout=timeout, auth=auth)
    except requests.RequestException as exc:
        raise IndexReadError(
            f"index {strip_url_credentials(index_url)} is unreachable ({type(exc).__name__})",
            hint="check the index URL and your network or proxy settings",
        ) from None
    if response.status_code in (401, 403):
        hint = credentials_hint(index) if index else "add the index's host to ~/.netrc"
    if response.status_code != 200:
        raise IndexReadError(f"{strip_url_credentials(url)} answered HTTP {response.status_code}", hint=hint)
    return response


def index_projects(session: requests.Session, index_url: str, *, index: Index | None = None) -> list[str]:
    """Every project name a simple index lists at its root (PEP 503 / PEP 691), canonical.

    ``index`` is the spec's index at ``index_url``, if any: its credentials are sent. A large
    index lists hundreds of thousands of names: only the error path that suggests names asks.
    """
    root = f"{index_url.rstrip('/')}/"
    response = _get(session, root, index_url, index, timeout=300, hint="check the index URL")
    if response.headers.get("Content-Type", "").startswith(JSON_API):
        try:
            projects = response.json().get("projects", [])
            return sorted({canonicalize_name(p["name"]) for p in projects if isinstance(p.get("name"), str)})
        except (ValueError, AttributeError, TypeError) as exc:
            raise IndexReadError(f"{strip_url_credentials(root)} is not a project list ({exc})") from None
    parser = _Links()
    parser.feed(response.text)
    # PEP 503: one anchor per project, its href ending in the normalized name and a slash.
    return sorted({canonicalize_name(h.rstrip("/").rsplit("/", 1)[-1]) for h in parser.links if h.rstrip("/")})


def check_routed_pins(locks: Mapping[str, tuple[tuple[Pin, ...], tuple[Index, ...]]]) -> None:
    """Make sure every routed pin's hashes are files its own index lists; :class:`ResolutionError` if not.

    ``locks`` maps a lock target's name to its pins and the indexes routed for it. The
    resolver is told where routed packages come from; this checks, independently of it,
    that the lock names files that index really serves -- not a same-named package from
    another index (dependency confusion), nor a file the index no longer lists.
    """
    http = session()
    pages: dict[tuple[str, str], set[str]] = {}
    for where, (pins, indexes) in sorted(locks.items()):
        routes = {p: i for i in indexes for p in i.packages}
        for pin in (p for p in pins if p.name in routes):
            index = routes[pin.name]
            key = (index.url, pin.name)
            if key not in pages:
                try:
                    pages[key] = {f["sha256"] for f in index_files(http, index.url, pin.name, index=index)}
                except IndexReadError as exc:
                    exc.message = f"{where}: checking {pin.name} against index {index.name!r}: {exc.message}"
                    raise
            missing = [h for h in pin.hashes if h.split(":", 1)[1] not in pages[key]]
            if missing:
                raise ResolutionError(
                    f"{where}: {pin.name}=={pin.version} is routed to index {index.name!r} "
                    f"({strip_url_credentials(index.url)}), but that index serves no file with the locked hash "
                    + ", ".join(missing),
                    hint="nothing was written: the lock would install a file its index does not serve. If the index "
                    "replaced a published file, lock again; otherwise find out where the file came from first",
                )

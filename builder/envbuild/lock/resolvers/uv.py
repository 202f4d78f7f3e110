"""The uv adapter: ``uv pip compile --generate-hashes`` for one variant and platform.

Per-package index routing is what the uv PyTorch guide does with
``[tool.uv.sources]`` + explicit ``[[tool.uv.index]]``; ``uv pip compile``
honours both when its input is a pyproject.toml, so the adapter writes one
into its scratch directory. uv applies a source only to a *direct* dependency
(then to every occurrence of that name); a routed package that only comes in
transitively would be taken from the default index. So a routed name that
shows up in a resolution (or in uv's explanation of a failure) without being
a direct dependency is made one, bare, and the resolution is run again.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from envbuild.errors import ResolutionError, ToolError, redact, strip_url_credentials
from envbuild.lock.resolvers.base import Pin, Resolution, ResolveRequest, parse_requirements
from envbuild.lock.resolvers.failures import conflict_error, no_wheel_error, no_wheels, not_found, unknown_name_error
from envbuild.lock.simple_index import credentials_hint
from envbuild.proc import run, secrets_in

# Environment variables uv may keep: credentials for named indexes, the cache,
# TLS, timeouts and retries. Every other UV_* (UV_INDEX_URL, UV_EXCLUDE_NEWER, ...) would
# change what gets resolved behind the spec's back, so it is dropped.
_KEEP_UV = re.compile(
    r"^UV_(INDEX_[A-Z0-9_]+_(USERNAME|PASSWORD)|CACHE_DIR|NATIVE_TLS|HTTP_TIMEOUT|HTTP_RETRIES|"
    r"CONCURRENT_DOWNLOADS|CONCURRENT_BUILDS|CONCURRENT_INSTALLS|OFFLINE|INSECURE_HOST)$"
)
INPUT_PROJECT = "envbuild-variant"


def uv_binary() -> str:
    """The uv that envbuild pins: the one installed beside this Python, else uv on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def uv_env() -> dict[str, str]:
    """The process environment, minus UV_* settings that would bypass the spec."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or _KEEP_UV.match(k)}
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the resolution targets --python-version; never fetch an interpreter
    env["UV_NO_PROGRESS"] = "1"
    return env


@functools.cache
def uv_version(binary: str) -> str:
    """The version of the uv at ``binary`` (asked once per process)."""
    return run([binary, "--version"], tool="uv", timeout=60).stdout.split()[1]


class UvResolver:
    """Resolve with ``uv pip compile``."""

    name = "uv"

    def version(self) -> str:
        """uv's version, e.g. ``0.13.9``."""
        return uv_version(uv_binary())

    def resolve(self, request: ResolveRequest, *, workdir: Path) -> Resolution:
        """Resolve ``request``, every routed package from its index; :class:`ResolutionError` on failure."""
        routed = {p for i in request.indexes for p in i.packages}
        direct = routed & {canonicalize_name(Requirement(r).name) for r in request.requirements}
        added: set[str] = set()
        # Each round adds at least one routed name, so this ends after len(routed) rounds at most.
        while True:
            try:
                pins = self._compile(request, workdir, added=tuple(sorted(added)))
            except _Failed as failed:
                mentioned = {p for p in routed - direct - added if _mentions(failed.text, p)}
                if not mentioned:
                    # Explained only now: the explanation may read the index (nearest names), which
                    # a failure that the next round fixes should not cost.
                    raise explain_failure(failed.text, request, []) from None
                added |= mentioned
                continue
            transitive = {p.name for p in pins if p.name in routed} - direct - added
            if not transitive:
                return Resolution(pins=_unadded(pins, added), resolver=self.name, resolver_version=self.version())
            added |= transitive

    def _compile(self, request: ResolveRequest, workdir: Path, *, added: tuple[str, ...]) -> tuple[Pin, ...]:
        """One ``uv pip compile`` run, with the routed names in ``added`` made direct dependencies."""
        (workdir / "pyproject.toml").write_text(input_project(request, added=added), encoding="utf-8")
        output = workdir / "requirements.txt"
        # uv prefers the pins already in the output file, so an unchanged spec keeps its lock.
        output.write_text(request.previous or "", encoding="utf-8")
        args = [
            uv_binary(), "pip", "compile", "pyproject.toml",
            "--output-file", output.name,
            "--generate-hashes", "--no-header", "--quiet",
            "--no-config", "--only-binary", ":all:",
            "--python-version", request.python,
            "--python-platform", request.wheel_platform,
        ]  # fmt: skip
        if request.exclude_newer:
            args += ["--exclude-newer", request.exclude_newer]
        if request.index_url:
            args += ["--index-url", request.index_url]
        for index in request.indexes:
            if not index.exclude_newer:  # index publishes no upload times: its pins are the cutoff
                args += [f"--exclude-newer-package={p}=false" for p in index.packages]
        if request.constraints:
            (workdir / "constraints.txt").write_text("\n".join(request.constraints) + "\n", encoding="utf-8")
            args += ["--constraint", "constraints.txt"]
        if request.upgrade:
            args.append("--upgrade")
        args += [f"--upgrade-package={p}" for p in request.upgrade_packages]
        env = uv_env()
        try:
            run(args, tool="uv", cwd=workdir, env=env, timeout=900)
        except ToolError as exc:
            raise _Failed(redact(exc.details or "", secrets_in(env))) from None
        return parse_requirements(output.read_text(encoding="utf-8"), source="uv output")


class _Failed(Exception):
    """One uv run failed; ``text`` is its stderr, redacted."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _mentions(text: str, name: str) -> bool:
    """Whether uv's message names package ``name`` (not merely a longer name containing it)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", text, re.IGNORECASE) is not None


def _unadded(pins: tuple[Pin, ...], added: set[str]) -> tuple[Pin, ...]:
    """The pins, without 'spec' among the origins of the routed names envbuild made direct dependencies."""
    return tuple(
        Pin(name=p.name, version=p.version, hashes=p.hashes, via=tuple(v for v in p.via if v != "spec"))
        if p.name in added
        else p
        for p in pins
    )


def input_project(request: ResolveRequest, *, added: tuple[str, ...] = ()) -> str:
    """A pyproject.toml holding the requirements and the explicit per-package index routing.

    ``added``: routed names that only come in transitively, made direct dependencies so
    that their source (their index) applies.
    """
    lines = [
        "[project]",
        f'name = "{INPUT_PROJECT}"',
        'version = "0"',
        f'requires-python = ">={".".join(request.python.split(".")[:2])}"',
        f"dependencies = {json.dumps([*request.requirements, *added])}",
    ]
    for index in request.indexes:
        lines += [
            "",
            "[[tool.uv.index]]",
            f"name = {json.dumps(index.name)}",
            f"url = {json.dumps(index.url)}",
            "explicit = true",
        ]
    routes = {p: i.name for i in request.indexes for p in i.packages}
    if routes:
        lines += ["", "[tool.uv.sources]"] + [
            f"{json.dumps(p)} = {{ index = {json.dumps(n)} }}" for p, n in sorted(routes.items())
        ]
    return "\n".join(lines) + "\n"


def explain_failure(stderr: str, request: ResolveRequest, secrets: list[str]) -> ResolutionError:
    """Turn uv's stderr into an error that says what failed and what to do."""
    text = redact(stderr, secrets)
    for index in request.indexes:
        for package in index.packages:
            # uv reports an index that answers 401 without credentials as "not found".
            if f"{package} was not found in the package registry" in text:
                return ResolutionError(
                    f"{package} was not found on index {index.name!r} ({strip_url_credentials(index.url)})",
                    details=text,
                    hint=f"check the package name; if the index needs credentials, {credentials_hint(index)}",
                )
    if "No solution found" in text or "unsatisfiable" in text:
        # uv names the root cause first; a package without wheels or a name the index lacks
        # is that cause whenever uv says so, and each has its own fix.
        if found := no_wheels(text):
            return no_wheel_error(found, request, text)
        if unknown := not_found(text):
            return unknown_name_error(unknown, request, text)
        return conflict_error(text)
    if re.search(r"\b401\b|\b403\b|Unauthorized|Forbidden|missing credentials", text):
        return ResolutionError(
            "an index refused access",
            details=text,
            hint="set UV_INDEX_<NAME>_USERNAME and UV_INDEX_<NAME>_PASSWORD (NAME as in [[indexes]]) "
            "or add the host to ~/.netrc",
        )
    url = re.search(r"(https?|file)://[^\s`'\")]+", text)
    if re.search(r"Failed to fetch|error sending request|dns error|Connection refused|timed out|tcp connect", text):
        where = f" ({url.group(0)})" if url else ""
        named = next((i for i in request.indexes if url and url.group(0).startswith(i.url.rstrip("/"))), None)
        return ResolutionError(
            f"{f'index {named.name!r}' if named else 'an index'} is unreachable{where}",
            details=text,
            hint="check the index URL and your network or proxy settings",
        )
    return ResolutionError("uv could not resolve the requirements", details=text)

"""The pip-tools adapter: ``pip-compile --generate-hashes``, for teams that cannot use uv.

pip-compile resolves for the interpreter it runs on, so it can only lock for the
Python version and platform envbuild itself runs on; and pip merges every index
it is given, so it cannot honour per-package routing. Both limits are refused
up front with a clear message rather than producing a lock for the wrong target.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envbuild.errors import ResolutionError, ToolError, ToolMissingError, UsageError, redact
from envbuild.lock.names import DEFAULT_INDEX
from envbuild.lock.resolvers.base import Resolution, ResolveRequest, parse_requirements
from envbuild.lock.resolvers.failures import NoWheel, conflict_error, no_wheel_error, unknown_name_error
from envbuild.lock.simple_index import IndexReadError, index_files, session
from envbuild.lock.spec import PLATFORMS
from envbuild.proc import run, secrets_in
from envbuild.workspace import default_cache

# pip settings worth keeping from the environment (TLS, timeouts); every other
# PIP_* (extra indexes, find-links, constraints) would change the resolution.
_KEEP_PIP = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_DISABLE_PIP_VERSION_CHECK"}


def pip_env() -> dict[str, str]:
    """The environment with pip's configuration files and PIP_* settings isolated away."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _KEEP_PIP}
    env["PIP_CONFIG_FILE"] = os.devnull  # no global, user or site pip.conf
    return env


class PipToolsResolver:
    """Resolve with ``pip-compile`` from pip-tools, running on this interpreter."""

    name = "pip-tools"

    def version(self) -> str:
        """pip-tools' version."""
        try:
            from importlib.metadata import version

            return version("pip-tools")
        except Exception as exc:  # PackageNotFoundError
            raise ToolMissingError("pip-tools is not installed", hint="pip install 'envbuild[pip-tools]'") from exc

    def resolve(self, request: ResolveRequest, *, workdir: Path) -> Resolution:
        """Resolve ``request``; refuse targets pip-compile cannot resolve for."""
        tool_version = self.version()
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if ".".join(request.python.split(".")[:2]) != here or PLATFORMS[request.platform] != platform.machine():
            raise UsageError(
                f"pip-tools resolves for the interpreter it runs on (Python {here}, {platform.machine()}), "
                f"not for Python {request.python} on {request.platform}",
                hint="use --resolver uv, which resolves for any target, or run envbuild on a matching Python",
            )
        if request.indexes:
            raise UsageError(
                "pip-tools cannot route packages to one index ([[indexes]] in the spec): pip merges all indexes",
                hint="use --resolver uv, or serve every package from one index with index-url",
            )
        lines = list(request.requirements)
        if request.constraints:
            (workdir / "constraints.txt").write_text("\n".join(request.constraints) + "\n", encoding="utf-8")
            lines.append("-c constraints.txt")
        (workdir / "requirements.in").write_text("\n".join(lines) + "\n", encoding="utf-8")
        output = workdir / "requirements.txt"
        output.write_text(request.previous or "", encoding="utf-8")
        args = [
            sys.executable, "-m", "piptools", "compile", "requirements.in",
            "--output-file", output.name,
            "--generate-hashes", "--no-header", "--allow-unsafe", "--quiet",
            "--no-emit-index-url", "--no-emit-trusted-host", "--strip-extras",
            "--pip-args", "--only-binary :all:",
            "--cache-dir", str(default_cache() / "pip-tools"),
        ]  # fmt: skip
        if request.exclude_newer:
            args += ["--uploaded-prior-to", request.exclude_newer]
        if request.index_url:
            args += ["--index-url", request.index_url]
        if request.upgrade:
            args.append("--upgrade")
        args += [f"--upgrade-package={p}" for p in request.upgrade_packages]
        env = pip_env()
        try:
            run(args, tool="pip-compile", cwd=workdir, env=env, timeout=1800)
        except ToolError as exc:
            text = redact(exc.details or "", secrets_in(env))
            if "No module named piptools" in text:
                raise ToolMissingError("pip-tools is not installed", hint="pip install 'envbuild[pip-tools]'") from None
            if missing := _no_version(text):
                raise _explain_missing(missing, request, text) from None
            if "ResolutionImpossible" in text or "conflict" in text.lower():
                raise conflict_error(text) from None
            raise ResolutionError("pip-compile could not resolve the requirements", details=text) from None
        text = output.read_text(encoding="utf-8")
        return Resolution(
            pins=parse_requirements(text, source="pip-compile output"),
            resolver=self.name,
            resolver_version=tool_version,
        )


# pip: "Could not find a version that satisfies the requirement docopt (from versions: none)" (which the
# stderr tail may have cut) and, last, "DistributionNotFound: No matching distribution found for docopt".
_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (?P<req>\S+) \(from versions: none\)"
    r"|No matching distribution found for (?P<last>\S+)"
)


def _no_version(text: str) -> list[str]:
    """The packages pip found no installable file of at all, canonical, each once."""
    names = []
    for match in _NO_VERSION.finditer(text):
        try:
            names.append(canonicalize_name(Requirement(match["req"] or match["last"]).name))
        except InvalidRequirement:
            continue
    return list(dict.fromkeys(names))


def _explain_missing(names: list[str], request: ResolveRequest, text: str) -> ResolutionError:
    """pip says "from versions: none" both for a name the index lacks and for one with no fitting
    wheel (--only-binary hides the rest); the project's page on the index tells them apart.
    """
    http = session()
    unknown: list[str] = []
    no_wheel: list[str] = []
    for name in names:
        try:
            files = index_files(http, request.index_url or DEFAULT_INDEX, name)
        except IndexReadError:
            unknown.append(name)  # a 404, or an index that cannot say: the name is what to check first
            continue
        (no_wheel if files else unknown).append(name)
    if no_wheel:
        found = [NoWheel(name=n, found=()) for n in no_wheel]
        return no_wheel_error(found, request, text)
    return unknown_name_error(unknown, request, text)

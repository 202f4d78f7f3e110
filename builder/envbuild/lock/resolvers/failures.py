"""Why a resolution failed, told apart, each cause with the hint that fixes it.

Three causes look alike in a resolver's words ("No solution found", "Could not find a
version") and need different fixes: a package with no wheel for the image (envbuild installs
wheels only), a package name the index does not know (a typo: suggest the nearest names),
and requirements that really conflict (loosen them). The phrases matched here are uv 0.13's
own, run against the three cases (docopt, "scikitlearn", numpy<1.20 with pandas==2.2.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envbuild.errors import ResolutionError
from envbuild.lock.names import DEFAULT_INDEX, nearest_names
from envbuild.lock.resolvers.base import ResolveRequest, parse_requirements

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# "Because docopt>=0.6.0 has no usable wheels", "Because all versions of docopt have no usable wheels",
# "pywin32>=303 has no wheels with a matching platform tag (e.g., `manylinux_2_28_x86_64`)".
_NO_WHEELS = re.compile(
    rf"(?<![\w.-])(?:all versions of )?(?P<name>{_NAME}?)(?P<spec>[<>=!~][^\s]*)?\s+(?:has|have) no "
    r"(?:usable wheels|wheels with a matching (?P<tag>[\w ]+?) tag(?: \(e\.g\., `(?P<example>[^`]+)`\))?)"
)
# uv's hints: "we only found wheels for `pywin32` (v302) with the following Python ABI tags: `cp36m`, ..."
# and "Wheels are available for `pywin32` (v312) on the following platforms: `win32`, ...".
_ONLY_TAGS = re.compile(
    r"found wheels for `(?P<name>[^`]+)` \((?P<v>[^)]+)\) with the following [\w ]+? tags: (?P<t>.+)"
)
_ONLY_PLATFORMS = re.compile(
    r"Wheels are available for `(?P<name>[^`]+)` \((?P<v>[^)]+)\) on the following platforms: (?P<t>.+)"
)
_NOT_FOUND = re.compile(rf"(?<![\w.-])(?P<name>{_NAME}?) was not found in the package registry")


@dataclass(frozen=True, kw_only=True)
class NoWheel:
    """A package with no wheel the image can install, and what the resolver said was there instead."""

    name: str  # canonical
    found: tuple[str, ...]  # "wheels for win32, win_amd64 (v312)", "wheels for cp36m, cp310 (v302)"


def no_wheels(text: str) -> list[NoWheel]:
    """The packages uv says have no usable wheel, in the order it names them."""
    by_name: dict[str, list[str]] = {}
    for match in _NO_WHEELS.finditer(text):
        by_name.setdefault(canonicalize_name(match["name"]), [])
    for pattern in (_ONLY_TAGS, _ONLY_PLATFORMS):
        for match in pattern.finditer(text):
            tags = ", ".join(re.findall(r"`([^`]+)`", match["t"]))
            by_name.setdefault(canonicalize_name(match["name"]), []).append(f"wheels for {tags} ({match['v']})")
    return [NoWheel(name=name, found=tuple(found)) for name, found in by_name.items()]


def not_found(text: str) -> list[str]:
    """The package names uv says the index does not know, canonical, each once."""
    return list(dict.fromkeys(canonicalize_name(m["name"]) for m in _NOT_FOUND.finditer(text)))


def target_words(request: ResolveRequest) -> str:
    """The image's target in words: "Python 3.11 on linux/amd64 (manylinux_2_28)"."""
    return f"Python {request.python} on {request.platform} (manylinux_{request.glibc.replace('.', '_')})"


def direct_names(request: ResolveRequest) -> set[str]:
    """The canonical names the spec asks for directly in this request."""
    names: set[str] = set()
    for text in request.requirements:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return names


def no_wheel_error(found: list[NoWheel], request: ResolveRequest, details: str) -> ResolutionError:
    """No wheel of a package fits the image: say which, that envbuild installs wheels only, and the ways out."""
    names = [f.name for f in found]
    direct = [n for n in names if n in direct_names(request)]
    first = names[0]
    ways = [
        f"pin a version of {first} that publishes a wheel for {target_words(request)}",
        "choose another python in the spec",
    ]
    if direct:
        swap = f'replace = {{ "{direct[0]}" = "ANOTHER-PACKAGE" }}'
        ways.append(f"swap it for a package that has wheels, with {swap} in each [accelerators.*] table")
    else:
        ways.append(f"pin versions of the packages that pull {first} in (named above) that do not need it")
    return ResolutionError(
        _no_wheel_message(found, request),
        details=details,
        hint="envbuild installs wheels only (it never builds a package from source in the image): "
        + "; or ".join(ways),
    )


def _no_wheel_message(found: list[NoWheel], request: ResolveRequest) -> str:
    """ "docopt has no wheel for Python 3.11 on linux/amd64 (manylinux_2_28)", with what there is instead."""
    if len(found) == 1:
        there = f" (the index has {'; '.join(found[0].found)})" if found[0].found else ""
        return f"{found[0].name} has no wheel for {target_words(request)}{there}"
    what = "; ".join(f"{f.name} (the index has {'; '.join(f.found)})" if f.found else f.name for f in found)
    return f"no wheel for {target_words(request)}: {what}"


def unknown_name_error(names: list[str], request: ResolveRequest, details: str) -> ResolutionError:
    """The index knows no such package: name it and the nearest names the index does know."""
    known = direct_names(request) | _locked_names(request)
    suggestions = []
    for name in names:
        near = nearest_names(name, index_url=request.index_url, known=known - {name})
        if near:
            suggestions.append(f"did you mean {' or '.join(near)}{f' (for {name})' if len(names) > 1 else ''}?")
    fix = "fix the name in the spec; a package from another index is routed there with [[indexes]]"
    if request.index_url:  # a mirror that wants credentials answers "not found" too
        fix += "; if the index needs credentials, add its host to ~/.netrc"
    return ResolutionError(
        f"the index ({request.index_url or DEFAULT_INDEX}) has no package named {', '.join(names)}",
        details=details,
        hint=" ".join([*suggestions, fix[0].upper() + fix[1:]]) if suggestions else fix,
    )


def _locked_names(request: ResolveRequest) -> set[str]:
    """The names the current lock holds: the candidates when the index's list cannot be read."""
    try:
        return {p.name for p in parse_requirements(request.previous or "", source="the lock")}
    except ResolutionError:
        return set()


def conflict_error(details: str) -> ResolutionError:
    """The requirements really conflict: uv's explanation above names them."""
    return ResolutionError(
        "the requirements cannot be satisfied together",
        details=details,
        hint="loosen the conflicting requirements named above, or move the cutoff (exclude-newer)",
    )

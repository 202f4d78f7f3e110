"""The project spec: what to lock and build, read from envbuild.toml or [tool.envbuild].

:func:`load_spec` finds and validates the spec and returns a frozen :class:`Spec`.
Every invalid input raises :class:`~envbuild.errors.SpecError` naming the file,
the key, the problem and the fix. The schema is documented in docs/spec.md.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.errors import SpecError
from envbuild.lock.checkspec import ChecksSpec, parse_checks
from envbuild.lock.imagespec import ImageSpec, parse_image
from envbuild.tomlread import Table

SPEC_FILE = "envbuild.toml"
PYPROJECT = "pyproject.toml"

Role = Literal["train", "infer"]
Accelerator = Literal["cpu", "gpu"]
ROLES: tuple[Role, ...] = ("train", "infer")
ACCELERATORS: tuple[Accelerator, ...] = ("cpu", "gpu")

# OCI platform -> the machine name in a manylinux wheel tag.
PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}

# The Python each Debian suite ships, so a debian base can be checked against `python`.
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}

_TOP_KEYS = (
    "name", "project", "python", "platforms", "glibc", "exclude-newer", "index-url",
    "dependencies", "groups", "roles", "accelerators", "indexes", "image", "repository", "checks",
    "variants",
)  # fmt: skip
_ROLE_KEYS = ("dependencies", "groups", "entrypoint")
_ACCEL_KEYS = ("dependencies", "groups", "replace", "cuda", "base")
_BASE_KEYS = ("debian", "packages", "image", "oci-layout")
_INDEX_KEYS = ("name", "url", "packages", "accelerators", "exclude-newer")
# Resolvers keep times as seconds since 1970; a cutoff near year 1 or 9999 overflows them (and means nothing).
CUTOFF_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))
_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DIGEST_REF = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class Base:
    """Where an image's base comes from: exactly one of debian, image, oci_layout."""

    debian: str | None = None
    packages: tuple[str, ...] = ()
    image: str | None = None
    oci_layout: str | None = None

    @property
    def kind(self) -> str:
        """'debian', 'image' or 'oci-layout'."""
        if self.debian:
            return "debian"
        return "image" if self.image else "oci-layout"


@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    """What one role (train or infer) adds to the shared dependencies."""

    name: Role
    dependencies: tuple[str, ...]
    entrypoint: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AcceleratorSpec:
    """What one accelerator (cpu or gpu) changes: additions, swaps, CUDA, base."""

    name: Accelerator
    dependencies: tuple[str, ...]
    replace: tuple[tuple[str, str], ...]  # (replace_key: "onnxruntime" or "jax[cpu]", replacement requirement)
    cuda: str | None
    base: Base


@dataclass(frozen=True, kw_only=True)
class Index:
    """An extra package index with explicit routing: only ``packages`` come from it."""

    name: str
    url: str
    packages: tuple[str, ...]
    accelerators: tuple[Accelerator, ...]
    exclude_newer: bool


@dataclass(frozen=True, kw_only=True)
class Package:
    """The project as a Python package: a pyproject.toml with [build-system] and [project].name.

    envbuild builds its wheel on the host and installs it into the images' venv after the
    locked wheels (envbuild.image.projectwheel).
    """

    directory: Path  # the directory of its pyproject.toml
    name: str  # canonical


@dataclass(frozen=True, kw_only=True)
class Spec:
    """A validated project spec."""

    file: Path
    root: Path
    digest: str  # sha256 of the spec file's bytes
    name: str
    version: str  # the project's [project].version, "0" when it has none
    python: str
    platforms: tuple[str, ...]
    glibc: str
    exclude_newer: str  # RFC 3339, UTC, e.g. 2026-11-01T00:00:00Z
    index_url: str | None
    dependencies: tuple[str, ...]
    roles: tuple[RoleSpec, ...]
    accelerators: tuple[AcceleratorSpec, ...]
    indexes: tuple[Index, ...]
    image: ImageSpec
    repository: str | None = None  # the source repository's https URL: the image's source label
    package: Package | None = None  # the project, when it is a Python package the images install
    checks: ChecksSpec = field(default_factory=ChecksSpec)  # [checks]: what the checks of a built image leave out
    variants: tuple[str, ...] | None = None  # the variants kept (names, fixed order); None: every role x accelerator

    def role(self, name: Role) -> RoleSpec:
        """The role called ``name``."""
        return next(r for r in self.roles if r.name == name)

    def accelerator(self, name: Accelerator) -> AcceleratorSpec:
        """The accelerator called ``name``."""
        return next(a for a in self.accelerators if a.name == name)


def find_spec(directory: Path) -> Path:
    """The spec file for ``directory``: envbuild.toml, else a pyproject.toml with [tool.envbuild]."""
    candidate = directory / SPEC_FILE
    if candidate.is_file():
        return candidate
    pyproject = directory / PYPROJECT
    if pyproject.is_file() and _tool_envbuild(_read_toml(pyproject), pyproject) is not None:
        return pyproject
    raise SpecError(
        f"no envbuild spec in {directory}: neither {SPEC_FILE} nor [tool.envbuild] in {PYPROJECT}",
        hint="run 'envbuild init' to write a starter spec, or pass -C DIR",
    )


def load_spec(directory: Path) -> Spec:
    """Find, read and validate the spec of the project in ``directory``."""
    file = find_spec(directory.resolve())
    data = _read_toml(file)
    root = file.parent
    if file.name == SPEC_FILE:
        pyproject = root / PYPROJECT
        if pyproject.is_file() and _tool_envbuild(_read_toml(pyproject), pyproject) is not None:
            raise SpecError(
                f"{root}: two specs: {SPEC_FILE} and [tool.envbuild] in {PYPROJECT}",
                hint=f"keep one: move everything into {SPEC_FILE} or into [tool.envbuild]",
            )
        table = Table(data, file=file, path="", allowed=_TOP_KEYS)
        project_file = _project_file(table, root, default=pyproject if pyproject.is_file() else None)
    else:
        table = Table(_tool_envbuild(data, file) or {}, file=file, path="tool.envbuild", allowed=_TOP_KEYS)
        if table.has("project"):
            table.fail("project", "not allowed in [tool.envbuild]", "remove it: this pyproject.toml is the project")
        project_file = file
    return _parse(table, file=file, root=root, project_file=project_file)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}", hint="fix the syntax at the line and column shown") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", hint="save the file as UTF-8") from exc
    except RecursionError as exc:  # tomllib recurses once per level of nesting
        raise SpecError(f"{path}: not valid TOML: nested too deeply", hint="a spec needs a few levels at most") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}", hint="check that it is a readable file") from exc


def _tool_envbuild(data: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The [tool.envbuild] table of a parsed pyproject.toml, or None when it has none."""
    tool = data.get("tool")
    if not isinstance(tool, dict) or "envbuild" not in tool:
        return None
    table = tool["envbuild"]
    if not isinstance(table, dict):
        raise SpecError(
            f"{path}: tool.envbuild: expected a table, got {type(table).__name__}",
            hint="write the spec under a [tool.envbuild] header",
        )
    return table


def project_tables(project: dict[str, Any], path: Path | None) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """[project] and [dependency-groups] of the reused pyproject.toml, checked for their types."""
    table = project.get("project", {})
    if not isinstance(table, dict):
        raise SpecError(f"{path}: project: expected a table, got {type(table).__name__}", hint="write it as [project]")
    name = table.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{path}: project.name: expected a string, got {name!r}", hint='write name = "my-model"')
    groups = project.get("dependency-groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
        raise SpecError(
            f"{path}: dependency-groups: expected a table of lists, got {str(groups)[:60]}",
            hint='write each group as name = ["requirement", ...] under [dependency-groups]',
        )
    return table, groups


def _project_file(table: Table, root: Path, *, default: Path | None) -> Path | None:
    """The pyproject.toml whose [project] and [dependency-groups] the spec reuses."""
    rel = table.text("project", example="path/to/python/project")
    if rel is None:
        return default
    path = (root / rel / PYPROJECT).resolve()
    if not path.is_file():
        table.fail("project", f"no {PYPROJECT} in {rel!r}", "point it at the directory of your Python project")
    return path


def _parse(t: Table, *, file: Path, root: Path, project_file: Path | None) -> Spec:
    project: dict[str, Any] = _read_toml(project_file) if project_file else {}
    project_table, groups = project_tables(project, project_file)

    python = t.text("python", example="3.11")
    if python is None:
        t.fail("python", "missing", 'state the Python version of the images, e.g. python = "3.11"')
    if not re.fullmatch(r"3\.\d{1,2}(\.\d{1,2})?", python):
        t.fail("python", f"{python!r} is not a Python version like 3.11", 'write python = "3.11"')

    platforms = t.strings("platforms", example='"linux/amd64"') or ("linux/amd64",)
    for platform in platforms:
        if platform not in PLATFORMS:
            t.fail("platforms", f"unsupported platform {platform!r}", f"use one of: {', '.join(PLATFORMS)}")
    if len(set(platforms)) != len(platforms):
        t.fail("platforms", "lists a platform twice", "list each platform once")

    glibc = t.text("glibc", default="2.28", example="2.28")
    assert glibc is not None
    if not re.fullmatch(r"2\.\d{2}", glibc):
        t.fail(
            "glibc",
            f"{glibc!r} is not a glibc version like 2.28",
            'write glibc = "2.28" (the oldest glibc of your bases)',
        )

    exclude_newer = _parse_cutoff(t)
    index_url = t.text("index-url", example="https://mirror.example/simple")
    if index_url is not None:
        _check_url(t, "index-url", index_url)

    shared = _requirements(t, "dependencies") + _group_requirements(t, groups, project_file)
    if project_table.get("dependencies"):
        reused = _requirement_list(project_table["dependencies"], t, "project.dependencies", file=project_file)
        shared = tuple(reused) + shared

    roles = _parse_roles(t, groups, project_file)
    accelerators = _parse_accelerators(t, groups, project_file, python)
    kept = _parse_variants(t, roles, accelerators)
    indexes = _parse_indexes(t, accelerators)
    image = parse_image(t)
    name = t.text("name", example="my-model") or project_table.get("name") or root.name
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*", name):
        t.fail("name", f"{name!r} is not a valid image name", "use lower-case letters, digits, '.', '_' and '-'")

    spec = Spec(
        file=file,
        root=root,
        digest=hashlib.sha256(file.read_bytes()).hexdigest(),
        name=name,
        version=_project_version(project_table, project_file),
        python=python,
        platforms=platforms,
        glibc=glibc,
        exclude_newer=exclude_newer,
        index_url=index_url,
        dependencies=shared,
        roles=roles,
        accelerators=accelerators,
        indexes=indexes,
        image=image,
        variants=kept,
        repository=_parse_repository(t),
        package=_package(project, project_table, project_file),
        checks=parse_checks(t),
    )
    _check_replacements(t, spec)
    return spec


def _package(project: dict[str, Any], project_table: dict[str, Any], project_file: Path | None) -> Package | None:
    """The project as a package: its pyproject.toml has a [build-system] table and a [project].name."""
    if project_file is None or "build-system" not in project:
        return None
    if not isinstance(project["build-system"], dict):
        raise SpecError(
            f"{project_file}: build-system: expected a table, got {type(project['build-system']).__name__}",
            hint='write it as [build-system] with requires = [...] and build-backend = "..."',
        )
    name = project_table.get("name")
    if not name:  # a [build-system] without PEP 621 metadata (an old Poetry project): not installed
        return None
    return Package(directory=project_file.parent, name=canonicalize_name(name))


def _project_version(project_table: dict[str, Any], project_file: Path | None) -> str:
    """The project's [project].version ("0" when it has none), which the images' labels carry."""
    version = str(project_table.get("version") or "0")
    # Version() alone would take " 1.0\n": it strips whitespace, but the label would not.
    try:
        Version(version)
        plain = re.fullmatch(r"[A-Za-z0-9.!+_-]+", version) is not None
    except InvalidVersion:
        plain = False
    if not plain:
        raise SpecError(
            f"{project_file}: project.version: {version!r} is not a PEP 440 version",
            hint='write version = "1.0.0" (PEP 440: digits, dots and suffixes such as rc1, .post1, +local)',
        )
    return version


def _parse_cutoff(t: Table) -> str:
    raw = t.raw("exclude-newer")
    hint = 'write an absolute UTC time, e.g. exclude-newer = "2026-11-01T00:00:00Z"'
    if raw is None:
        t.fail("exclude-newer", "missing: a lock needs an absolute resolution cutoff", hint)
    if isinstance(raw, datetime):  # TOML datetime literal
        moment = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            text += "T00:00:00Z"
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            t.fail(
                "exclude-newer", f"{raw!r} is not an absolute date or time (relative spans are not reproducible)", hint
            )
    else:
        t.fail("exclude-newer", f"expected a date string, got {type(raw).__name__}", hint)
    if moment.tzinfo is None:
        t.fail("exclude-newer", f"{raw!s} has no time zone", hint)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable UTC instant
        moment = datetime.min.replace(tzinfo=UTC)
    if not CUTOFF_RANGE[0] <= moment < CUTOFF_RANGE[1]:
        t.fail(
            "exclude-newer",
            f"{raw!s} is out of range (from {CUTOFF_RANGE[0].year} to {CUTOFF_RANGE[1].year - 1})",
            'give the moment the lock should see the index as it was, e.g. exclude-newer = "2026-11-01T00:00:00Z"',
        )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_repository(t: Table) -> str | None:
    """``repository``: the https URL of the project's source repository, as a browser opens it.

    It becomes the images' org.opencontainers.image.source label (which GHCR links packages
    by) and the repository provenance names, so it is public: no credentials, no query.
    """
    url = t.text("repository", example="https://github.com/org/repo")
    if url is None:
        return None
    hint = 'write the repository\'s https URL, e.g. repository = "https://github.com/org/repo"'
    parts = urlsplit(url)
    if "@" in parts.netloc:  # checked first: no later message may repeat the URL
        t.fail("repository", "the URL carries credentials, which every image label would publish", hint)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not parts.hostname or port == -1 or url != url.strip():
        t.fail("repository", f"{url!r} is not an https URL", hint)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        t.fail("repository", f"{url!r} has a query or fragment", hint)
    if not re.fullmatch(r"[A-Za-z0-9._~:/%+-]+", url):
        t.fail("repository", f"{url!r} holds characters a repository URL does not", hint)
    if parts.path.strip("/") == "":
        t.fail("repository", f"{url!r} names a host, not a repository", hint)
    return url


def _check_url(t: Table, key: str, url: str) -> None:
    if not re.match(r"^(https?|file)://", url):
        t.fail(key, f"{url!r} is not an http(s) or file URL", "write the index's full URL, e.g. https://host/simple")
    if re.match(r"^[a-z]+://[^/]*@", url):
        t.fail(
            key,
            "the URL carries credentials, which would end up in lockfiles and logs",
            "remove them and set UV_INDEX_<NAME>_USERNAME / UV_INDEX_<NAME>_PASSWORD or use ~/.netrc",
        )


def _requirement_list(values: Any, t: Table, key: str, *, file: Path | None = None) -> list[str]:
    """Validate PEP 508 requirement strings; ``file`` overrides where they were read from."""
    where = f"{file}: {key}" if file else f"{t.file}: {t.key(key)}"
    example = 'write it as a list, e.g. dependencies = ["numpy>=1.26"]'
    if not isinstance(values, list | tuple):
        raise SpecError(f"{where}: expected a list of requirement strings, got {type(values).__name__}", hint=example)
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise SpecError(f"{where}[{i}]: expected a requirement string, got {value!r}", hint=example)
        try:
            req = Requirement(value)
        except InvalidRequirement as exc:
            raise SpecError(
                f"{where}[{i}]: {value!r} is not a valid requirement ({exc})",
                hint='use PEP 508 syntax, e.g. "numpy>=1.26" or "onnxruntime-gpu[cuda]==1.20.1"',
            ) from exc
        if req.url:
            raise SpecError(
                f"{where}[{i}]: {value!r} is a direct URL, which cannot be hash-locked from an index",
                hint="publish the package to an index and route it there with [[indexes]]",
            )
        out.append(str(req))
    return out


def _requirements(t: Table, key: str) -> tuple[str, ...]:
    return tuple(_requirement_list(t.strings(key, example='"numpy>=1.26"'), t, key))


def _group_requirements(t: Table, groups: dict[str, Any], project_file: Path | None) -> tuple[str, ...]:
    out: list[str] = []
    for group in t.strings("groups", example='"train"'):
        if group not in groups:
            where = f"[dependency-groups] of {project_file}" if project_file else "no pyproject.toml"
            known = ", ".join(groups) or "none"
            t.fail(
                "groups",
                f"unknown dependency group {group!r} ({where}; known: {known})",
                "add the group to [dependency-groups] or fix the name",
            )
        entries = _group_entries(groups, group, project_file)
        out.extend(_requirement_list(entries, t, f"dependency-groups.{group}", file=project_file))
    return tuple(out)


def _group_entries(groups: dict[str, list[Any]], name: str, project_file: Path | None) -> list[str]:
    """The requirement strings of dependency group ``name``; {include-group = ...} entries are skipped."""
    out: list[str] = []
    for i, entry in enumerate(groups[name]):
        if isinstance(entry, str):
            out.append(entry)
        elif not (isinstance(entry, dict) and "include-group" in entry):
            raise SpecError(
                f"{project_file}: dependency-groups.{name}[{i}]: expected a requirement string, got {entry!r}",
                hint='write requirements as strings, e.g. "numpy>=1.26"',
            )
    return out


def _parse_roles(t: Table, groups: dict[str, Any], project_file: Path | None) -> tuple[RoleSpec, ...]:
    table = t.table("roles", ROLES)
    if table is None:
        t.fail("roles", "missing", "add [roles.train] and/or [roles.infer] with their dependencies and entrypoint")
    roles = []
    for name in ROLES:
        role = table.table(name, _ROLE_KEYS)
        if role is None:
            continue
        deps = _requirements(role, "dependencies") + _group_requirements(role, groups, project_file)
        roles.append(
            RoleSpec(
                name=name, dependencies=deps, entrypoint=role.strings("entrypoint", example='"python", "-m", "app"')
            )
        )
    if not roles:
        t.fail("roles", "defines no role", "add [roles.train] or [roles.infer]")
    return tuple(roles)


def _parse_variants(
    t: Table, roles: tuple[RoleSpec, ...], accelerators: tuple[AcceleratorSpec, ...]
) -> tuple[str, ...] | None:
    """``variants``: the variants the spec keeps, when not every role x accelerator (no gpu-infer
    when inference needs no GPU). Which variants exist is envbuild.lock.variants' to say; this
    checks the names, and that every role and accelerator table is used by one.
    """
    if not t.has("variants"):
        return None
    names = t.strings("variants", example='"cpu-train", "cpu-infer", "gpu-train"')
    defined = [f"{a.name}-{r.name}" for a in accelerators for r in roles]
    if not names:
        t.fail("variants", "keeps no variant", f"list the variants to build, from: {', '.join(defined)}")
    for name in names:
        if name in defined:
            continue
        accel, _, role = name.partition("-")
        if accel in ACCELERATORS and role in ROLES:
            missing = f"[accelerators.{accel}]" if accel not in {a.name for a in accelerators} else f"[roles.{role}]"
            t.fail("variants", f"keeps {name}, but the spec has no {missing}", f"add {missing}, or remove {name}")
        near = difflib.get_close_matches(name, defined, n=1)
        t.fail(
            "variants",
            f"unknown variant {name!r}",
            (f"did you mean {near[0]!r}? " if near else "") + f"this spec defines: {', '.join(defined)}",
        )
    if len(set(names)) != len(names):
        t.fail("variants", "lists a variant twice", "list each variant once")
    for table, used in [
        *((f"accelerators.{a.name}", any(n.startswith(f"{a.name}-") for n in names)) for a in accelerators),
        *((f"roles.{r.name}", any(n.endswith(f"-{r.name}") for n in names)) for r in roles),
    ]:
        if not used:
            t.fail("variants", f"keeps no variant of [{table}]", f"remove [{table}], or keep one of its variants")
    return tuple(n for n in defined if n in names)


def _parse_accelerators(
    t: Table, groups: dict[str, Any], project_file: Path | None, python: str
) -> tuple[AcceleratorSpec, ...]:
    table = t.table("accelerators", ACCELERATORS)
    if table is None:
        t.fail("accelerators", "missing", "add [accelerators.cpu] (and [accelerators.gpu]) with a base image")
    out = []
    for name in ACCELERATORS:
        accel = table.table(name, _ACCEL_KEYS)
        if accel is None:
            continue
        deps = _requirements(accel, "dependencies") + _group_requirements(accel, groups, project_file)
        replace: dict[str, str] = {}
        for old, new in sorted(accel.mapping("replace").items()):
            if not isinstance(new, str):
                accel.fail(
                    "replace",
                    f"{old!r} must map to a requirement string",
                    'write replace = { onnxruntime = "onnxruntime-gpu" }',
                )
            key = _replace_key(accel, old)
            if key in replace:
                accel.fail("replace", f"replaces {key} twice", "keep one key per package (and extras)")
            replace[key] = _requirement_list([new], accel, f"replace.{old}")[0]
        cuda = accel.text("cuda", example="12")
        if name == "cpu" and cuda is not None:
            accel.fail("cuda", "a CPU image has no CUDA", "move cuda to [accelerators.gpu]")
        if name == "gpu":
            if cuda is None:
                accel.fail("cuda", "missing: a GPU image must state its CUDA version", 'write cuda = "12" (or "12.8")')
            if not re.fullmatch(r"\d{2}(\.\d)?", cuda):
                accel.fail("cuda", f"{cuda!r} is not a CUDA version like 12 or 12.8", 'write cuda = "12"')
        base = _parse_base(accel, python)
        out.append(AcceleratorSpec(name=name, dependencies=deps, replace=tuple(replace.items()), cuda=cuda, base=base))
    if not out:
        t.fail("accelerators", "defines no accelerator", "add [accelerators.cpu]")
    return tuple(out)


def replace_key(name: str, extras: set[str] | frozenset[str] = frozenset()) -> str:
    """How a ``replace`` key is kept and matched: the canonical name, with its extras sorted ("jax[cpu]").

    A key with extras replaces only the requirements with exactly those extras; a bare name
    replaces every requirement of that name.
    """
    normal = sorted({canonicalize_name(e) for e in extras})
    return canonicalize_name(name) + (f"[{','.join(normal)}]" if normal else "")


def _replace_key(accel: Table, text: str) -> str:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        req = None
    if req is None or req.specifier or req.marker is not None or req.url:
        accel.fail(
            "replace",
            f"key {text!r} is not a package name (with optional extras)",
            'put versions in the replacement, not the key: replace = { "jax[cpu]" = "jax[cuda12]>=0.4" }',
        )
    return replace_key(req.name, req.extras)


def _parse_base(accel: Table, python: str) -> Base:
    table = accel.table("base", _BASE_KEYS)
    hint = 'write base = { debian = "bookworm", packages = ["python3"] } or base = { image = "REF@sha256:..." }'
    if table is None:
        accel.fail("base", "missing", hint)
    debian = table.text("debian", example="bookworm")
    image = table.text("image", example="registry.example/python@sha256:...")
    layout = table.text("oci-layout", example="path/to/layout")
    packages = table.strings("packages", example='"python3"')
    chosen = [k for k, v in (("debian", debian), ("image", image), ("oci-layout", layout)) if v]
    if len(chosen) != 1:
        problem = "names no base" if not chosen else f"names {' and '.join(chosen)}: conflicting"
        table.fail(chosen[-1] if chosen else "debian", problem, "choose exactly one of debian, image, oci-layout")
    if packages and not debian:
        table.fail(
            "packages",
            "only a debian base takes a package list",
            'remove packages, or build the base with debian = "bookworm"',
        )
    if debian:
        if debian not in DEBIAN_PYTHON:
            table.fail("debian", f"unknown suite {debian!r}", f"use one of: {', '.join(DEBIAN_PYTHON)}")
        if DEBIAN_PYTHON[debian] != ".".join(python.split(".")[:2]):
            table.fail(
                "debian",
                f"{debian} ships Python {DEBIAN_PYTHON[debian]}, but python = {python!r}",
                "make python and the suite agree",
            )
    if image and not re.fullmatch(r"[A-Za-z0-9._:/@-]+", image):
        table.fail(
            "image",
            f"{image!r} is not an image reference (it holds spaces, quotes or control characters)",
            "write REF:TAG or REF@sha256:DIGEST, e.g. registry.example/python:3.11",
        )
    if image and not _DIGEST_REF.search(image) and not re.search(r":[\w][\w.-]*$", image.rsplit("/", 1)[-1]):
        table.fail("image", f"{image!r} has neither a tag nor a digest", "write REF:TAG or REF@sha256:DIGEST")
    return Base(debian=debian, packages=packages, image=image, oci_layout=layout)


def _parse_indexes(t: Table, accelerators: tuple[AcceleratorSpec, ...]) -> tuple[Index, ...]:
    out: list[Index] = []
    for table in t.tables("indexes", _INDEX_KEYS):
        name = table.text("name", example="pytorch")
        url = table.text("url", example="https://host/simple")
        if name is None or url is None:
            table.fail("name" if name is None else "url", "missing", "each [[indexes]] entry needs name and url")
        if not _INDEX_NAME.fullmatch(name):
            table.fail("name", f"{name!r} is not a valid index name", "use letters, digits, '-' and '_'")
        if any(i.name == name for i in out):
            table.fail("name", f"index {name!r} is defined twice", "give each index its own name")
        _check_url(table, "url", url)
        packages = tuple(canonicalize_name(p) for p in table.strings("packages", example='"torch"'))
        if not packages:
            table.fail(
                "packages",
                "routes no package",
                'list the packages that come from this index, e.g. packages = ["torch"]',
            )
        declared = tuple(a.name for a in accelerators)
        accels: list[Accelerator] = []
        for accel in table.strings("accelerators", example='"gpu"') or declared:
            match = next((a for a in declared if a == accel), None)
            if match is None:
                table.fail(
                    "accelerators", f"{accel!r} is not a declared accelerator", f"use one of: {', '.join(declared)}"
                )
            accels.append(match)
        exclude_newer = table.flag("exclude-newer", default=True)
        out.append(
            Index(name=name, url=url, packages=packages, accelerators=tuple(accels), exclude_newer=exclude_newer)
        )
    for accel in ACCELERATORS:
        seen: dict[str, str] = {}
        for index in out:
            if accel not in index.accelerators:
                continue
            for package in index.packages:
                if package in seen:
                    t.fail(
                        "indexes",
                        f"{package!r} is routed to both {seen[package]!r} and {index.name!r} for {accel}",
                        "route each package to one index per accelerator",
                    )
                seen[package] = index.name
    return tuple(out)


def _check_replacements(t: Table, spec: Spec) -> None:
    """A replacement of a package that no variant asks for is almost always a typo."""
    wanted = [Requirement(r) for r in spec.dependencies + tuple(d for role in spec.roles for d in role.dependencies)]
    keys = {replace_key(r.name, r.extras) for r in wanted}
    for accel in spec.accelerators:
        for old, _ in accel.replace:
            name = old.split("[", 1)[0]
            same_name = sorted({str(r) for r in wanted if canonicalize_name(r.name) == name})
            if "[" in old and old not in keys and same_name:
                t.fail(
                    f"accelerators.{accel.name}.replace",
                    f"replaces {old!r}, but the dependencies ask for {name} as {', '.join(same_name)}",
                    f"a key with extras replaces only the requirements with exactly those extras: match one of them, "
                    f"or write the bare name ({name} = ...) to replace every {name} requirement",
                )
    names = {canonicalize_name(Requirement(r).name) for r in spec.dependencies}
    for role in spec.roles:
        names |= {canonicalize_name(Requirement(r).name) for r in role.dependencies}
    for accel in spec.accelerators:
        for old, _ in accel.replace:
            if old.split("[", 1)[0] not in names:
                t.fail(
                    f"accelerators.{accel.name}.replace",
                    f"replaces {old!r}, which no role or shared dependency names",
                    "fix the package name, or remove the replacement",
                )

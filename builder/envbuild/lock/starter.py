"""``init``: a starter envbuild.toml for an existing Python project.

The starter is a valid spec: it locks as written. It reuses the project's
[project].dependencies (else its requirements*.txt files, :mod:`envbuild.lock.reqfiles`),
maps dependency groups named like training or inference onto the roles, pins today's date
as the cutoff, names only entry modules that exist, and explains every key in a comment.
``init`` also adds envbuild's outputs (``.envbuild/``) to the project's .gitignore.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from envbuild.errors import SpecError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.git import Git, repository_uri
from envbuild.lock.reqfiles import ProjectRequirements, project_requirements
from envbuild.lock.spec import DEBIAN_PYTHON, PYPROJECT, SPEC_FILE, Role, project_tables

_TRAIN_GROUPS = ("train", "training")
_INFER_GROUPS = ("infer", "inference", "serve", "serving")
# Beyond glibc, what manylinux wheels link without bundling it: the C++ runtime and libgcc_s
# (numpy, torch, onnxruntime, ...) are on the manylinux policies' list of system libraries,
# and OpenMP's libgomp is what scikit-learn, lightgbm and xgboost link. libgcc_s's package,
# libgcc-s1, is not listed: Debian's libc6 depends on it, so every base has it. (The demo's
# base is this list too.)
BASE_PACKAGES = ("python3", "ca-certificates", "libstdc++6", "libgomp1")
_GROUPS: dict[Role, tuple[str, ...]] = {"train": _TRAIN_GROUPS, "infer": _INFER_GROUPS}
# Entry modules each role looks for, inside the package (pkg.train) or as a script (train.py);
# [project.scripts] names holding one of these words, too.
_ROLE_MODULES: dict[Role, tuple[str, ...]] = {"train": ("train",), "infer": ("predict", "serve", "infer")}
# Top-level directories with an __init__.py that are not the project's code.
_NOT_PACKAGES = frozenset(
    {"tests", "test", "docs", "doc", "examples", "example", "scripts", "benchmarks", "bench", "build", "dist"}
)
# Top-level .py files that belong to the tooling, not to the images.
_TOOLING = frozenset({"setup.py", "conftest.py", "noxfile.py"})
# Lines of a .gitignore that already leave envbuild's outputs out.
_OUTPUTS_IGNORED = frozenset({".envbuild", ".envbuild/", "/.envbuild", "/.envbuild/", ".envbuild/*", "/.envbuild/*"})
_MAIN_GUARD = re.compile(r"""__name__\s*==\s*['"]__main__['"]""")


@dataclass(frozen=True, kw_only=True)
class Starter:
    """What ``init`` wrote: the spec, and the .gitignore it added ``.envbuild/`` to (None: listed already)."""

    spec: Path
    gitignore: Path | None


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where the project's code is, as the starter's entrypoints and files name it."""

    package: str | None = None  # the import name of the package or single module
    path: str | None = None  # its path in the project: "src/pkg", "pkg" or "pkg.py"
    modules: tuple[str, ...] = ()  # top-level module files, which scripts beside them may import

    @property
    def single_module(self) -> bool:
        """Whether the package is one module file."""
        return self.path is not None and self.path.endswith(".py")


def init_spec(directory: Path, *, force: bool = False, today: datetime | None = None) -> Starter:
    """Write ``envbuild.toml`` in ``directory``, add ``.envbuild/`` to its .gitignore, and say what was written."""
    target = directory / SPEC_FILE
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="edit it, or pass --force to overwrite it")
    pyproject = directory / PYPROJECT
    project: dict[str, Any] = {}
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{pyproject}: not valid TOML: {exc}", hint="fix pyproject.toml first") from exc
        except UnicodeDecodeError as exc:
            raise SpecError(f"{pyproject}: not UTF-8 ({exc.reason} at byte {exc.start})", hint="save as UTF-8") from exc
        except RecursionError as exc:  # tomllib recurses once per level of nesting
            raise SpecError(f"{pyproject}: not valid TOML: nested too deeply", hint="fix pyproject.toml first") from exc
        project_tables(project, pyproject)  # wrong types in [project] are named here, not met later
        tool = project.get("tool")
        if isinstance(tool, dict) and "envbuild" in tool:
            raise UsageError(
                f"{pyproject} already has [tool.envbuild]", hint="that is this project's spec: edit it there"
            )
    text = render_starter(directory, project, today or datetime.now(UTC), repository=origin_repository(directory))
    atomic_write(target, text)
    return Starter(spec=target, gitignore=ignore_outputs(directory))


def render_starter(
    directory: Path, pyproject: dict[str, Any], today: datetime, *, repository: str | None = None
) -> str:
    """The starter spec's text for the project in ``directory`` (its layout and requirements files are read)."""
    meta = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {})
    name = _image_name(str(meta.get("name") or directory.resolve().name))
    python = _python_from(meta.get("requires-python"))
    # The oldest suite whose Python satisfies the project (bookworm 3.11, trixie 3.13).
    wanted = tuple(int(x) for x in python.split("."))
    suite = next((s for s, v in DEBIAN_PYTHON.items() if tuple(int(x) for x in v.split(".")) >= wanted), None)
    if suite is None:
        raise UsageError(
            f"the project needs Python {python}, which no supported Debian suite ships",
            hint='write envbuild.toml by hand with an image base, base = { image = "REF@sha256:..." } '
            "('envbuild docs spec')",
        )
    python = DEBIAN_PYTHON[suite]
    cutoff = today.astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z")
    # The project is installed as its own wheel when it is a package (envbuild.lock.spec.Package).
    installed = isinstance(pyproject.get("build-system"), dict) and bool(meta.get("name"))
    reused = bool(meta.get("dependencies"))
    requirements = ProjectRequirements() if reused else project_requirements(directory)
    layout = find_layout(directory, _module_name(name))
    scripts = meta.get("scripts") if installed and isinstance(meta.get("scripts"), dict) else {}
    entries = {role: _entrypoint(role, directory, layout, scripts) for role in _ROLE_MODULES}
    lines = [
        "# envbuild spec: what to lock and build. Every key is explained by 'envbuild docs spec'.",
        "# Commit it with lockfiles/, images/*.Dockerfile and .dockerignore; .envbuild/ is output (git-ignored).",
        f'name = "{name}"',
    ]
    if repository:
        lines += [
            "# The source repository: the images' org.opencontainers.image.source label.",
            f"repository = {_str(repository)}",
        ]
    lines += [
        f'python = "{python}"',
        'platforms = ["linux/amd64"]',
        "# Only packages uploaded before this instant are considered: locks are reproducible.",
        f'exclude-newer = "{cutoff}"',
        *_shared_comment(reused, requirements),
        f"dependencies = {_array(requirements.shared)}",
    ]
    for role, group_names in _GROUPS.items():
        group = next((g for g in group_names if g in groups), None)
        lines += ["", f"[roles.{role}]"]
        if requirements.sources(role):
            lines.append(f"# From {', '.join(requirements.sources(role))}.")
        if requirements.of(role) or not group:
            lines.append(f"dependencies = {_array(requirements.of(role))}")
        if group:
            lines.append(f'groups = ["{group}"]')
        lines += _entrypoint_lines(role, layout, entries[role])
    base = f'base = {{ debian = "{suite}", packages = {json.dumps(list(BASE_PACKAGES))} }}'
    lines += [
        "",
        "[accelerators.cpu]",
        "# Besides Python: libstdc++6 and libgomp1 (libgcc-s1 comes with libc6), which manylinux wheels",
        "# link without bundling them (numpy, torch, scikit-learn, lightgbm, xgboost). 'envbuild image'",
        "# checks that the image has every library its files need, and names the Debian package of any",
        "# that is missing.",
        base,
        "",
        "# Uncomment for GPU images: swap packages for their CUDA builds and state the CUDA major.",
        "# [accelerators.gpu]",
        '# cuda = "12"',
        '# replace = { onnxruntime = "onnxruntime-gpu[cuda,cudnn]" }',
        f"# {base}",
        "",
        "[image]",
        *_files_lines(layout, entries, installed),
        'workdir = "/app"',
        'user = "app"',
    ]
    return "\n".join(lines) + "\n"


def find_layout(directory: Path, module: str) -> Layout:
    """The project's package: src/<module>, <module>, another package directory, or a single module file."""
    modules = tuple(
        sorted(
            p.name
            for p in directory.glob("*.py")
            if p.is_file() and p.stem.isidentifier() and p.name not in _TOOLING and not _is_test(p.stem)
        )
    )
    for candidate in (f"src/{module}", module):
        if (directory / candidate / "__init__.py").is_file():
            return Layout(package=module, path=candidate, modules=modules)
    for parent in ("src", "."):
        found = sorted(
            p.parent.name
            for p in (directory / parent).glob("*/__init__.py")
            if p.parent.name.isidentifier() and p.parent.name not in _NOT_PACKAGES and not _is_test(p.parent.name)
        )
        if found:
            path = found[0] if parent == "." else f"{parent}/{found[0]}"
            return Layout(package=found[0], path=path, modules=modules)
    for candidate in (f"src/{module}.py", f"{module}.py"):
        if (directory / candidate).is_file():
            return Layout(package=module, path=candidate, modules=modules)
    return Layout(modules=modules)


def _entrypoint(role: Role, directory: Path, layout: Layout, scripts: dict[str, Any]) -> tuple[str, ...]:
    """The role's entrypoint from what exists: a [project.scripts] name, an entry module, a script."""
    words = _ROLE_MODULES[role]
    for script in sorted(scripts):
        if isinstance(script, str) and re.fullmatch(r"[A-Za-z0-9._-]+", script) and any(w in script for w in words):
            return (script,)
    if layout.package and layout.path and not layout.single_module:
        package = directory / layout.path
        for word in _ROLE_MODULES[role]:
            if (package / f"{word}.py").is_file() or (package / word / "__main__.py").is_file():
                return ("python", "-m", f"{layout.package}.{word}")
    for word in _ROLE_MODULES[role]:
        if f"{word}.py" in layout.modules:
            return ("python", f"{word}.py")
    if layout.package and layout.path:
        # python -m runs a package's __main__.py, or a single module that has a main guard.
        main = directory / (layout.path if layout.single_module else f"{layout.path}/__main__.py")
        if main.is_file() and (not layout.single_module or _MAIN_GUARD.search(_read(main))):
            return ("python", "-m", layout.package)
    return ()


def _entrypoint_lines(role: Role, layout: Layout, entry: tuple[str, ...]) -> list[str]:
    if entry:
        return [f"entrypoint = {json.dumps(list(entry))}"]
    package = layout.package or "your_package"
    example = json.dumps(["python", "-m", f"{package}.{_ROLE_MODULES[role][0]}"])
    looked = ", ".join(f"{w}.py" for w in _ROLE_MODULES[role])
    return [
        f"# No entry module found ({looked} in the package or at the top, a package's __main__.py):",
        f"# the image runs the venv's python. Add one, e.g. entrypoint = {example}",
    ]


def _files_lines(layout: Layout, entries: dict[Role, tuple[str, ...]], installed: bool) -> list[str]:
    """``files``: the package directory (unless the package is installed as its wheel) and the scripts used."""
    files: list[str] = []
    if layout.path and not installed:
        files.append(layout.path)
    uses_scripts = any(len(e) == 2 and e[0] == "python" and e[1].endswith(".py") for e in entries.values())
    if uses_scripts or (layout.path is None and not installed):
        # Scripts import the modules beside them; a project of module files only is all of them.
        files += [m for m in layout.modules if m not in files]
    if installed:
        comment = (
            "# The project is installed as its own wheel (it has a [build-system]): files is for what the images"
            "\n# need that is not part of the package, copied into the workdir, e.g. configs."
        )
    elif files:
        comment = "# Project paths copied into the workdir (each under its last name)."
    else:
        comment = '# Nothing to copy found: list what the images need, e.g. files = ["src/my_package", "configs"]'
    return [*comment.split("\n"), f"files = {json.dumps(files)}"]


def _shared_comment(reused: bool, requirements: ProjectRequirements) -> list[str]:
    out = []
    if reused:
        out.append("# Shared by every image, in addition to [project].dependencies of pyproject.toml.")
    elif requirements.sources("shared"):
        out.append(f"# Shared by every image: from {', '.join(requirements.sources('shared'))}.")
    else:
        out.append("# Shared by every image.")
    if requirements.developer:
        out.append(f"# Not read (development only): {', '.join(requirements.developer)}.")
    if requirements.unmapped:
        out.append(
            f"# Not read (no role fits the name; add what an image needs by hand): {', '.join(requirements.unmapped)}."
        )
    return out


def ignore_outputs(directory: Path) -> Path | None:
    """Add ``.envbuild/`` to the project's .gitignore (creating it); the file, or None when it was listed."""
    path = directory / ".gitignore"
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None  # a .gitignore envbuild cannot read is left alone, as the user wrote it
    if any(line.strip() in _OUTPUTS_IGNORED for line in text.splitlines()):
        return None
    separator = "\n" if text and not text.endswith("\n") else ""
    atomic_write(path, f"{text}{separator}.envbuild/\n")
    return path


def origin_repository(directory: Path) -> str | None:
    """The https URL of the ``origin`` remote of the git checkout at ``directory``, without credentials; else None."""
    uri = repository_uri(Git(directory).output("remote", "get-url", "origin"))
    if uri is None or not uri.startswith("git+https://"):
        return None  # no remote, a local path, or plain http: nothing a public label should name
    url = uri.removeprefix("git+")
    return url if re.fullmatch(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~%+-]+)+", url) else None


def _array(values: Iterable[str]) -> str:
    """A TOML array of strings, one per line."""
    items = list(values)
    if not items:
        return "[]"
    return "[\n" + "".join(f"    {_str(v)},\n" for v in items) + "]"


def _str(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's."""
    return json.dumps(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _is_test(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test") or name in ("test", "tests")


def _image_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    name = re.sub(r"([._-])[._-]+", r"\1", name).strip("-._")  # the spec takes one separator at a time
    return name or "app"


def _module_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def _python_from(requires: object) -> str:
    """The lowest Python X.Y (from 3.8) that a requires-python admits; 3.11 when it says nothing."""
    if requires is None:
        return "3.11"
    if not isinstance(requires, str):
        raise SpecError(
            f"pyproject.toml: project.requires-python: expected a string, got {requires!r}",
            hint='write requires-python = ">=3.11"',
        )
    try:
        allowed = SpecifierSet(requires)
    except InvalidSpecifier as exc:
        raise SpecError(f"pyproject.toml: project.requires-python: {requires!r} is invalid ({exc})") from exc
    for minor in range(8, 20):
        if allowed.contains(f"3.{minor}.0"):
            return f"3.{minor}"
    raise SpecError(f"pyproject.toml: project.requires-python {requires!r} admits no Python 3 release")

"""The project's own wheel: built on the host, reproducibly, for the images to install.

When the project is a Python package (:class:`envbuild.lock.spec.Package`: its pyproject.toml
has a [build-system]), envbuild builds its wheel with the pinned uv (``uv build --wheel``) before
the image is built, from a clean copy of its sources:

- in git: a clone of the repository (``git clone --shared``, which copies no objects) checked out
  at the build's commit, sparse when the project is a subdirectory, with the build's uncommitted
  changes to the project copied over when they are allowed. The clone has the history and tags
  that setuptools-scm and hatch-vcs read a dynamic version from, and none of the host's
  leftovers (build/, *.egg-info, __pycache__), which setuptools would otherwise put in the wheel;
- outside git, or at a commit the repository lacks: a copy of the project's directory without
  those leftovers.

The backend runs with SOURCE_DATE_EPOCH set to the image's, its build requirements resolved from
the spec's index at the spec's cutoff, and none of the host's configuration (UV_NO_CONFIG, no
PIP_* or PYTHON* variables, pip's configuration file /dev/null). The wheel is cached under
``<cache>/projects/<key>/``, the key a digest of every input (:class:`WheelInputs`), so an
unchanged project is not built again. Only pure-Python wheels are taken: a wheel built for the
host's Python and machine would not be the image's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envbuild.errors import EnvbuildError, ToolError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.git import Git
from envbuild.image.fetch import DEFAULT_INDEX
from envbuild.image.record import WheelRecord
from envbuild.lock.resolvers.uv import uv_env
from envbuild.lock.spec import Package, Spec
from envbuild.proc import run
from envbuild.scratch import scratch_dir

# Bumped when the way the wheel is built changes, so cached wheels are not taken for new ones.
BUILD_FORMAT = 1
# What a project directory holds that is not its source: outputs of earlier builds, caches,
# environments. Skipped wherever they are (the names) or at the project's top (the rest).
_LEFTOVER_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
_LEFTOVERS_AT_TOP = frozenset({"build", "dist", ".eggs", ".tox", ".nox", ".venv", ".envbuild"})
# The host environment the build may see: where programs are, the home (uv's cache), the
# temporary directory, proxies and certificates. Everything else (PIP_*, PYTHONPATH,
# SETUPTOOLS_SCM_PRETEND_VERSION, ...) could change the wheel behind the spec's back.
_KEEP = frozenset({"PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})
_PROXY = re.compile(r"^(https?|no|all)_proxy$", re.IGNORECASE)


class ProjectBuildError(EnvbuildError):
    """The project's wheel could not be built, or is not one the images can install. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class ProjectWheel:
    """The project's wheel: its distribution name and version, file, sha256, and where it is cached."""

    name: str  # canonical
    version: str
    filename: str
    sha256: str
    path: Path
    directory: str  # the project's directory, relative to the spec's ("." for the same)

    def record(self) -> WheelRecord:
        """The build record's ``project`` entry (its url: the project's directory)."""
        return WheelRecord(
            name=self.name, version=self.version, filename=self.filename, url=self.directory, sha256=self.sha256
        )

    def requirement(self) -> str:
        """The hash-pinned requirement the Dockerfile installs it by."""
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True, kw_only=True)
class WheelSource:
    """Where the project's sources come from: a commit (with what is uncommitted), or the directory as it is."""

    epoch: int  # SOURCE_DATE_EPOCH of the image
    commit: str | None  # None: outside git, or never committed: the directory is copied
    dirty: tuple[str, ...] = ()  # uncommitted paths, from the repository's top (copied over the clone)
    dirty_sha256: str | None = None
    # The repository to clone the commit from: None for the spec's own (an audit rebuild, whose
    # sources are an export without .git, names the checkout the commit came from).
    checkout: Path | None = None


@dataclass(frozen=True, kw_only=True)
class WheelInputs:
    """Everything the wheel's bytes depend on; :meth:`key` names its place in the cache."""

    format: int
    name: str
    project: str  # the project's directory (from the repository's top, or "." for a copy)
    source: str  # git:<commit>, or files:<digest of the copied directory>
    dirty: str | None  # digest of the uncommitted changes copied over the clone
    epoch: int
    uv: str  # sha256 of the uv wheel, or the version of envbuild's own uv
    python: str  # the host Python that runs the backend
    index: str
    cutoff: str

    def key(self) -> str:
        """A digest of the inputs."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def project_wheel(spec: Spec, source: WheelSource, *, uv: str, uv_id: str, cache: Path, work: Path) -> ProjectWheel:
    """The wheel of ``spec``'s package from ``source``: from ``cache`` when built before, else built now.

    ``uv`` is the binary that builds it and ``uv_id`` names it in the cache key (its wheel's
    sha256); ``work`` holds the scratch directories. Raises :class:`ProjectBuildError` with
    the tail of the backend's output when it fails.
    """
    package = _package(spec)
    directory = os.path.relpath(package.directory, spec.root).replace(os.sep, "/")
    plan = _plan(spec, package, source, uv_id=uv_id)
    target = cache / "projects" / plan.inputs.key()
    cached = _cached(target, directory)
    if cached is not None:  # known without a clone or a copy
        return cached
    work.mkdir(parents=True, exist_ok=True)
    with scratch_dir(work, "project-") as tmp:
        scratch = Path(tmp)
        tree = _materialise(plan, scratch / "source")
        built = _build(spec, package, tree, scratch / "out", uv=uv, epoch=source.epoch)
        _check(built, package)
        _store(built, target)
    found = _cached(target, directory)
    assert found is not None
    return found


def stage(directory: Path, wheel: ProjectWheel | None) -> None:
    """``.envbuild/stage/package/``: the wheel and the requirement that installs it (emptied when there is none)."""
    if directory.exists():
        shutil.rmtree(directory)
    if wheel is None:
        return
    directory.mkdir(parents=True)
    try:
        os.link(wheel.path, directory / wheel.filename)
    except OSError:  # another file system
        shutil.copyfile(wheel.path, directory / wheel.filename)
    atomic_write(directory / "requirements.txt", wheel.requirement() + "\n")


def _package(spec: Spec) -> Package:
    if spec.package is None:
        raise UsageError(f"{spec.file}: the project is not a Python package", hint="add a [build-system] table")
    return spec.package


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """Where the sources of one wheel come from, and the inputs that name it."""

    inputs: WheelInputs
    directory: Path  # the package's directory (copied when there is no commit to clone)
    top: Path | None = None  # the repository to clone the commit from
    commit: str | None = None
    project: str = "."  # the package's directory in the repository
    dirty: tuple[str, ...] = ()  # uncommitted paths of the project, from the repository's top


def _plan(spec: Spec, package: Package, source: WheelSource, *, uv_id: str) -> _Plan:
    """How to get a clean copy of the package's sources, and the inputs of the wheel built from it."""
    repository = source.checkout or spec.root
    top_text = Git(repository).output("rev-parse", "--show-toplevel") if source.commit else None

    def inputs(project: str, origin: str, dirty: str | None) -> WheelInputs:
        return WheelInputs(
            format=BUILD_FORMAT, name=package.name, project=project, source=origin, dirty=dirty, epoch=source.epoch,
            uv=uv_id, python=".".join(map(str, sys.version_info[:3])), index=spec.index_url or DEFAULT_INDEX,
            cutoff=spec.exclude_newer,
        )  # fmt: skip

    if not (top_text and source.commit and Git(repository).has_commit(source.commit)):
        return _Plan(inputs=inputs(".", f"files:{_tree_digest(package.directory)}", None), directory=package.directory)
    top = Path(top_text.strip())
    # An audit rebuild's sources are the commit's files from the repository's top.
    base = spec.root if source.checkout is not None else top
    project = os.path.relpath(package.directory, base).replace(os.sep, "/")
    if project == ".." or project.startswith("../"):
        raise UsageError(
            f"{spec.file}: the project {package.directory} is outside the git repository {top}",
            hint="keep the project inside the repository of its spec",
        )
    # Only a build from the work tree has uncommitted changes to copy over (a rebuild has none).
    dirty = () if source.checkout is not None else source.dirty
    dirty = tuple(p for p in dirty if project == "." or p == project or p.startswith(project + "/"))
    return _Plan(
        inputs=inputs(project, f"git:{source.commit}", source.dirty_sha256 if dirty else None),
        directory=package.directory, top=top, commit=source.commit, project=project, dirty=dirty,
    )  # fmt: skip


def _materialise(plan: _Plan, dest: Path) -> Path:
    """The plan's clean sources, made in ``dest``; the package's directory there."""
    if plan.top is None or plan.commit is None:
        _copy(plan.directory, dest)
        tree = dest
    else:
        _clone(plan.top, plan.commit, plan.project, dest, dirty=plan.dirty)
        tree = dest / plan.project
    _normalise_modes(tree)
    return tree


def _clone(top: Path, commit: str, project: str, dest: Path, *, dirty: tuple[str, ...]) -> None:
    """``commit`` of the repository at ``top`` checked out in ``dest`` (only ``project`` when it is a
    subdirectory), with the ``dirty`` paths copied over from the work tree."""
    git = Git(dest.parent)
    git.run("clone", "--quiet", "--shared", "--no-checkout", "--", str(top), dest.name, timeout=600)
    clone = Git(dest)
    if project != ".":
        clone.run("sparse-checkout", "set", "--cone", "--", project)
    clone.run("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit, timeout=600)
    for rel in dirty:
        here, there = top / rel, dest / rel
        if there.is_dir() and not there.is_symlink():
            shutil.rmtree(there)
        else:
            there.unlink(missing_ok=True)
        if here.is_symlink():
            there.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(here), there)
        elif here.is_file():
            there.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(here, there)
            there.chmod(0o755 if os.access(here, os.X_OK) else 0o644)


def _skipped(directory: str, names: list[str], *, top: str) -> set[str]:
    """The leftovers among ``names`` in ``directory``: never part of the sources."""
    skipped = {n for n in names if n in _LEFTOVER_NAMES or n.endswith((".egg-info", ".pyc"))}
    if directory == top:
        skipped |= {n for n in names if n in _LEFTOVERS_AT_TOP}
    return skipped


def _copy(directory: Path, dest: Path) -> None:
    """The package's directory, without leftovers, copied to ``dest`` (links stay links)."""
    top = str(directory)
    shutil.copytree(directory, dest, symlinks=True, ignore=lambda d, names: _skipped(d, names, top=top))


def _tree_digest(directory: Path) -> str:
    """A digest of what :func:`_copy` takes of ``directory``: paths, kinds, executability, link targets, contents."""
    hasher = hashlib.sha256()
    top = str(directory)
    for root, dirs, files in os.walk(directory):
        skipped = _skipped(root, [*dirs, *files], top=top)
        dirs[:] = sorted(d for d in dirs if d not in skipped)
        for name in sorted([*dirs, *(f for f in files if f not in skipped)]):
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            if path.is_symlink():
                hasher.update(f"link\0{rel}\0{os.readlink(path)}\0".encode())
            elif path.is_file():
                executable = os.access(path, os.X_OK)
                hasher.update(f"file\0{rel}\0{executable}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
            else:
                hasher.update(f"dir\0{rel}\0".encode())
    return hasher.hexdigest()


def _normalise_modes(tree: Path) -> None:
    """Directories 0755, files 0644 or 0755: a checkout under another umask gives the same wheel."""
    for root, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in dirs:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o755)
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def build_env(epoch: int) -> dict[str, str]:
    """The environment of ``uv build``: the host's paths, proxies and certificates, and nothing that configures."""
    env = {k: v for k, v in uv_env().items() if k in _KEEP or _PROXY.match(k) or k.startswith("UV_")}
    env.update(
        SOURCE_DATE_EPOCH=str(epoch),
        UV_NO_CONFIG="1",  # no uv.toml, no [tool.uv] of the host
        UV_PYTHON_DOWNLOADS="never",
        PIP_CONFIG_FILE=os.devnull,  # a backend that runs pip gets none of /etc/pip.conf
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        GIT_CONFIG_NOSYSTEM="1",  # setuptools-scm and hatch-vcs ask git: the host's settings stay out
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C.UTF-8",
        TZ="UTC",
    )
    return env


def _build(spec: Spec, package: Package, tree: Path, out: Path, *, uv: str, epoch: int) -> Path:
    """Run ``uv build --wheel`` on ``tree``; the wheel it wrote into ``out``."""
    args = [
        uv, "build", "--wheel", "--no-config",
        "--out-dir", str(out),
        "--python", sys.executable,  # the backend runs on envbuild's Python: a pure wheel does not depend on it
        "--exclude-newer", spec.exclude_newer,
        "--index-url", spec.index_url or DEFAULT_INDEX,
        str(tree),
    ]  # fmt: skip
    try:
        run(args, tool="uv build", env=build_env(epoch), cwd=tree, timeout=1800)
    except ToolError as exc:
        raise ProjectBuildError(
            f"the build backend failed to build the wheel of {package.name} ({package.directory})",
            details=exc.details,
            hint="the tail of its output is above; 'uv build --wheel' in the project shows all of it. Fix the "
            "build, or remove [build-system] from its pyproject.toml to copy the project with [image] files only",
        ) from None
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise ProjectBuildError(
            f"uv build wrote {len(wheels)} wheels for {package.name}, not one",
            hint="check the project's build configuration",
        )
    return wheels[0]


def _check(wheel: Path, package: Package) -> None:
    """Refuse a wheel of another name, or one built for the host's Python or machine."""
    try:
        name, _version, _build_tag, tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise ProjectBuildError(f"the backend wrote {wheel.name}, not a wheel: {exc}") from None
    if name != package.name:
        raise ProjectBuildError(
            f"the backend built a wheel of {name}, but [project].name is {package.name}",
            hint="check the name in the project's pyproject.toml",
        )
    impure = sorted(str(t) for t in tags if t.abi != "none" or t.platform != "any")
    if impure:
        raise ProjectBuildError(
            f"the wheel of {package.name} is {wheel.name}: built for this machine ({', '.join(impure)}), "
            "not for the image",
            hint="envbuild installs pure-Python project wheels only: publish the compiled part as a package of "
            "its own and lock it, or remove [build-system] to copy the sources with [image] files",
        )


def _store(wheel: Path, target: Path) -> None:
    """Put ``wheel`` in the cache directory ``target``, whole or not at all."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shutil.copyfile(wheel, partial / wheel.name)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _cached(target: Path, directory: str) -> ProjectWheel | None:
    """The wheel in the cache directory ``target``, if it was stored there."""
    wheels = sorted(target.glob("*.whl")) if target.is_dir() else []
    if len(wheels) != 1:
        return None
    path = wheels[0]
    name, version, _build_tag, _tags = parse_wheel_filename(path.name)
    return ProjectWheel(
        name=str(name), version=str(version), filename=path.name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=path, directory=directory,
    )  # fmt: skip

"""The checks a built image passes before envbuild keeps it: it can load and import what it locks.

On the image's root file system, unpacked from the builder's raw output (see :func:`check_image`):

1. **Shared libraries.** Every ELF file the image adds to its base has each library it needs
   inside the image, found as ld.so would find it there (:mod:`envbuild.image.checks.ldso`). The NVIDIA
   driver's libraries, which the container runtime injects, are allowed in GPU variants. A
   library nothing links to (a plugin loaded on demand, such as onnxruntime's TensorRT provider)
   only warns: it is loaded, if ever, when asked for, and the import check sees those loaded at import.
2. **Imports.** With no network, as the image's user, with the image's environment, the venv's
   Python imports the top-level modules of every installed distribution
   (:mod:`envbuild.image.checks.imports`).
3. **The entrypoint.** Its command is on the image's PATH; for ``python -m M``, M is found
   (``importlib.util.find_spec``, not run).

``[checks]`` in the spec (:mod:`envbuild.lock.checkspec`) skips the imports of named distributions and
allows named libraries to be missing. Every problem is listed in one :class:`ImageCheckError`.
"""

from __future__ import annotations

import logging
import posixpath
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.errors import EnvbuildError, UsageError
from envbuild.image.checks.checkroot import image_root
from envbuild.image.checks.elf import Elf
from envbuild.image.checks.imports import Attempt, Outcome, try_imports
from envbuild.image.checks.installed import Distribution, distributions, owners, site_packages
from envbuild.image.checks.ldso import Resolver, debian_package, is_driver_library, search_path
from envbuild.image.checks.rootfs import RootFS
from envbuild.image.checks.sandbox import Sandbox
from envbuild.image.emulation import native
from envbuild.image.record import ChecksRecord
from envbuild.image.render import UID, VENV
from envbuild.lock.checkspec import unknown_distributions
from envbuild.lock.lockfile import LockSet
from envbuild.lock.spec import PLATFORMS, Spec
from envbuild.lock.variants import LockTarget
from envbuild.oci.imagefs import image_config, json_blob
from envbuild.oci.layout import Descriptor, Layout
from envbuild.progress import Phase
from envbuild.words import plural

log = logging.getLogger(__name__)

CHECKS_VERSION = 1  # in the build key: a change of what is checked checks every image again
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_EXTENSION_MODULE = re.compile(r"\.(cpython-[^.]+|abi3|pypy[^.]*)\.so$")
_PYTHON = re.compile(r"python[0-9.]*")
_DOCS = "docs/checks.md"


class ImageCheckError(EnvbuildError):
    """The built image failed its checks; it was not kept (the previous image, if any, is unchanged). Exit 1."""


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    """What the checks of one image looked at."""

    elf_files: int
    modules: int
    skipped: int  # modules of distributions in [checks] skip-import
    entrypoint: str  # "ok", or "none" when the image has no entrypoint

    def summary(self) -> str:
        """One line, e.g. ``checks: 214 ELF files, 31 modules, entrypoint ok``."""
        skipped = f" ({self.skipped} skipped)" if self.skipped else ""
        return (
            f"checks: {plural(self.elf_files, 'ELF file')}, {plural(self.modules, 'module')}{skipped}, "
            f"entrypoint {self.entrypoint}"
        )


def checks_record(spec: Spec) -> ChecksRecord:
    """What the build record says of the checks: part of the build key."""
    return ChecksRecord(
        version=CHECKS_VERSION, skip_import=spec.checks.skip_import, allow_missing=spec.checks.allow_missing
    )


def check_opt_outs(spec: Spec, lockset: LockSet) -> None:
    """Refuse a ``[checks] skip-import`` name that no lock of the project holds (a typo skips nothing)."""
    locked = {name for entry in lockset.entries for name in entry.packages}
    unknown = unknown_distributions(spec.checks, locked)
    if unknown:
        names = ", ".join(f"{name!r}" + (f" (did you mean {near!r}?)" if near else "") for name, near in unknown)
        raise UsageError(
            f"{spec.file}: checks.skip-import: {names} locked by no variant",
            hint="list the distributions as the lock names them (lockfiles/*.txt), or remove them",
        )


def check_image(
    spec: Spec,
    target: LockTarget,
    *,
    raw: Layout,
    base: Layout,
    image: Layout,
    work: Path,
    cache: Path | None = None,
    progress: Phase | None = None,
) -> CheckReport:
    """Check the image ``image`` (written from ``raw``, the builder's output over ``base``); raise what fails.

    The root file system is unpacked from ``raw`` into ``work`` and removed afterwards, the base's
    part kept unpacked in ``cache`` (:mod:`envbuild.image.checks.checkroot`). ``raw`` rather than the final
    image: its layers are plain tars, which unpack without decompressing, each file's bytes copied by
    the kernel (the demo's gpu-infer, 2.6 GB, all unpacked: 20 s from raw, 41 s from the final image's
    gzip layers, docs/checks.md); and its files are the final image's, which envbuild only regroups.
    """
    variant = target.variant.name
    config = _image_config(image)
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    manifest = json_blob(raw, raw.select().digest, "manifest")
    layers = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
    first_new = len(json_blob(base, base.select().digest, "manifest").get("layers", []))
    clock = time.monotonic()
    with image_root(raw, layers, work / "check-root", first_new=first_new, cache=cache) as tree:
        unpacked_in = time.monotonic() - clock
        root = tree.root
        site = site_packages(root, VENV)
        dists = distributions(root, site) if site else []
        owner = _Owner(owners(dists), config.get("WorkingDir") or "/", site)
        if progress is not None:
            progress.say(f"reading the {len(tree.new_files)} new files")
        elf_files, problems, hints = _check_libraries(spec, target, root, tree.new_files, env, owner)
        read_in = time.monotonic() - clock - unpacked_in
        sandbox = _sandbox(root, config, env, native=native(target.platform))
        entry, entry_problem, entry_module = _entrypoint(root, config, env, target)
        attempts = [Attempt(kind="find", module=entry_module)] if entry_module else []
        skip = set(spec.checks.skip_import)
        attempts += [Attempt(kind="import", module=m) for d in dists if d.name not in skip for m in d.modules]
        skipped = sum(len(d.modules) for d in dists if d.name in skip)
        outcomes = try_imports(
            sandbox, f"{VENV}/bin/python", attempts,
            started=(lambda m: progress.say(f"importing {m}")) if progress is not None else None,
        )  # fmt: skip
        imported_in = time.monotonic() - clock - unpacked_in - read_in
    log.info(
        "%s: checks took %.1f s (unpacking %.1f s, ELF files %.1f s, imports %.1f s, removing %.1f s)",
        variant, time.monotonic() - clock, unpacked_in, read_in, imported_in,
        time.monotonic() - clock - unpacked_in - read_in - imported_in,
    )  # fmt: skip
    failed_imports, entry_found = _import_problems(outcomes, dists)
    problems += failed_imports
    if failed_imports and "libraries" not in hints:  # else they follow from the missing libraries, most likely
        hints["imports"] = (
            "fix what the failing imports need, or, for a distribution that cannot be imported without a GPU "
            "or a service, name it in [checks] skip-import"
        )
    entry_problem = entry_problem or entry_found
    if entry_problem is not None:
        problems.append(entry_problem)
        hints["entrypoint"] = f"fix roles.{target.variant.role}.entrypoint in {spec.file.name}"
    if problems:
        raise ImageCheckError(
            f"{variant}: the image failed its checks ({plural(len(problems), 'problem')}), so it was not kept; "
            f"the previous {variant} image, if any, is unchanged",
            details="\n".join(problems),
            hint="; ".join(hints.values()) + f" ({_DOCS}: what is checked, and [checks] to opt out)",
        )
    modules = len([a for a in attempts if a.kind == "import"])
    report = CheckReport(elf_files=elf_files, modules=modules, skipped=skipped, entrypoint=entry)
    log.info("%s: %s", variant, report.summary())
    if progress is not None:
        progress.finish(report.summary())
    return report


def _import_problems(outcomes: list[Outcome], dists: list[Distribution]) -> tuple[list[str], str | None]:
    """The failed imports, each with its distribution, and what the entrypoint's module lookup found wrong."""
    by_module = {m: d for d in dists for m in d.modules}
    problems, entry = [], None
    for outcome in outcomes:
        module = outcome.attempt.module
        if outcome.problem is None:
            continue
        if outcome.attempt.kind == "find":
            entry = f"the entrypoint's module {module} is not in the image: {outcome.problem}"
        else:
            dist = by_module[module]
            problems.append(f"import {module} ({dist.name} {dist.version}): {outcome.problem}")
    return problems, entry


def _image_config(image: Layout) -> dict[str, Any]:
    config = image_config(image, image.select().digest).get("config") or {}
    return config if isinstance(config, dict) else {}


class _Owner:
    """Who put a file into the image, in words: a distribution, the project's files, or nobody known."""

    def __init__(self, by_path: Mapping[str, str], workdir: str, site: str | None):
        self.by_path = by_path
        self.workdir = workdir.rstrip("/") + "/"
        self.site = (site or VENV) + "/"

    def of(self, path: str) -> str:
        if path in self.by_path:
            return self.by_path[path]
        return "the project's files" if path.startswith(self.workdir) else "no distribution"

    def short(self, path: str) -> str:
        return path.removeprefix(self.site)


def _check_libraries(
    spec: Spec, target: LockTarget, root: RootFS, new_files: set[str], env: Mapping[str, str], owner: _Owner
) -> tuple[int, list[str], dict[str, str]]:
    """The ELF files among ``new_files``, and the problems and hints of their missing libraries."""
    resolver = Resolver(root, search_path(root, env=env, machine=PLATFORMS[target.platform]))
    elves: dict[str, Elf] = {}
    for path in sorted(new_files):
        elf = resolver.elf(path)
        if elf is not None and elf.loadable:
            elves[path] = elf
    linked = {name for elf in elves.values() for name in elf.needed}
    # ld.so takes a library already loaded by its soname (torch loads its CUDA wheels' libraries
    # by path first): a needed library the image has outside the search path is not missing.
    provided = {name for path, elf in elves.items() for name in (elf.soname, posixpath.basename(path)) if name}
    gpu = target.variant.accelerator == "gpu"
    allowed = set(spec.checks.allow_missing)
    missing: dict[str, list[str]] = defaultdict(list)  # soname -> the files that need it
    on_demand: dict[str, list[str]] = {}  # a library nothing links to -> what it lacks
    for path, elf in elves.items():
        needs = resolver.needs(path, elf)
        interpreter = resolver.interpreter(elf)
        absent = [n.soname for n in needs if n.found is None]
        if interpreter is not None and interpreter.found is None:
            absent.append(interpreter.soname)
        absent = [s for s in absent if s not in allowed and not (gpu and is_driver_library(s))]
        elsewhere = [s for s in absent if s in provided]
        if elsewhere:
            log.info("%s needs %s: in the image, outside its search path", path, ", ".join(elsewhere))
        absent = [s for s in absent if s not in provided]
        if not absent:
            continue
        if _on_demand(path, elf, linked):
            on_demand[path] = absent
            continue
        for soname in absent:
            missing[soname].append(path)
    for path, absent in on_demand.items():
        if set(absent) - set(missing):  # else said already, as a problem
            log.warning(
                "%s: %s (%s) needs %s, which the image lacks; nothing links to it, so it is loaded only when "
                "asked for (list them in [checks] allow-missing to silence this)",
                target.variant.name, owner.short(path), owner.of(path), ", ".join(absent),
            )  # fmt: skip
    problems = [_missing_text(soname, paths, owner) for soname, paths in sorted(missing.items())]
    hints = {"libraries": _library_hint(spec, target, sorted(missing))} if missing else {}
    return len(elves), problems, hints


def _on_demand(path: str, elf: Elf, linked: set[str]) -> bool:
    """A library nothing links to: not an executable, not an extension module, not a DT_NEEDED of another file."""
    name = posixpath.basename(path)
    if elf.interpreter is not None or _EXTENSION_MODULE.search(name) or not name.startswith("lib"):
        return False
    return name not in linked and (elf.soname is None or elf.soname not in linked)


def _missing_text(soname: str, paths: list[str], owner: _Owner) -> str:
    package = debian_package(soname)
    where = f"Debian package {package}" if package else f"find its package with 'apt-file search {soname}'"
    by_owner: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_owner[owner.of(path)].append(path)
    needers = []
    for name, files in sorted(by_owner.items()):
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        needers.append(f"{name} ({owner.short(files[0])}{more})")
    return f"{soname} is missing ({where}), needed by {', '.join(needers)}"


def _library_hint(spec: Spec, target: LockTarget, sonames: list[str]) -> str:
    accelerator = target.variant.accelerator
    packages = sorted({p for p in map(debian_package, sonames) if p})
    unknown = [f"the package of {s} ('apt-file search {s}' names it)" for s in sonames if debian_package(s) is None]
    what = ", ".join([*packages, *unknown])
    base = spec.accelerator(accelerator).base
    if base.kind == "debian":
        key = (
            f"{'tool.envbuild.' if spec.file.name == 'pyproject.toml' else ''}accelerators.{accelerator}.base.packages"
        )
        return f"add {what} to {key} in {spec.file.name}, then run 'envbuild lock'"
    return f"install {what} in the {accelerator} base image ({base.image or base.oci_layout}), then run 'envbuild lock'"


def _sandbox(root: RootFS, config: Mapping[str, Any], env: dict[str, str], *, native: bool) -> Sandbox:
    """The image's user (its config's numeric USER, else envbuild's), environment and a writable HOME.

    ``native``: the image is of this machine's architecture (else it runs under emulation, without /sys).
    """
    uid = gid = UID
    user = str(config.get("User") or "")
    if re.fullmatch(r"\d+(:\d+)?", user):
        number, _, group = user.partition(":")
        uid, gid = int(number), int(group or number)
    home = env.get("HOME", "")
    resolved = root.resolve(home) if home.startswith("/") else None
    if resolved is None or not root.host(resolved).is_dir() or root.host(resolved).stat().st_uid != uid:
        env = {**env, "HOME": "/tmp"}  # an empty tmpfs in the sandbox, writable by every user
    workdir = str(config.get("WorkingDir") or "/")
    return Sandbox(root=root.path, uid=uid, gid=gid, env=env, workdir=workdir, sysfs=native)


def _entrypoint(
    root: RootFS, config: Mapping[str, Any], env: Mapping[str, str], target: LockTarget
) -> tuple[str, str | None, str | None]:
    """("ok" or "none", a problem or None, the module of ``python -m M`` to look for, if any)."""
    argv = [str(a) for a in (config.get("Entrypoint") or []) + (config.get("Cmd") or [])]
    if not argv:
        return "none", None, None
    command = argv[0]
    if not _executable(root, command, env.get("PATH", _DEFAULT_PATH)):
        where = "in the image" if "/" in command else f"on the image's PATH ({env.get('PATH', _DEFAULT_PATH)})"
        return "ok", f"the entrypoint's command {command!r} is not an executable file {where}", None
    module = None
    if _PYTHON.fullmatch(posixpath.basename(command)):
        for i, arg in enumerate(argv[1:], start=1):
            if arg == "-m" and i + 1 < len(argv):
                module = argv[i + 1]
            elif arg.startswith("-m") and len(arg) > 2:
                module = arg[2:]
            if module is not None or arg == "-c" or not arg.startswith("-"):
                break
    return "ok", None, module


def _executable(root: RootFS, command: str, path: str) -> bool:
    candidates = [command] if "/" in command else [posixpath.join(d, command) for d in path.split(":") if d]
    for candidate in candidates:
        resolved = root.resolve(candidate)
        if resolved is None:
            continue
        host = root.host(resolved)
        if host.is_file() and host.stat().st_mode & 0o111:
            return True
    return False

"""``render``: Dockerfiles as a pure function of the spec, the lock and the templates.

No timestamps, no host paths, no commit hashes (those change with every commit
and are given to the build as arguments), sorted inputs: the same spec and locks
always give the same bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import NoReturn

import jinja2
from packaging.utils import canonicalize_name

from envbuild.errors import StaleLockError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.lock.imagespec import ENV_NAME, PATH_UNSAFE, USER, WORKDIR, control_character, value_problem
from envbuild.lock.lockfile import DebianBase, ImageBase, LockSet, PinnedBase
from envbuild.lock.spec import Spec
from envbuild.lock.variants import LockTarget, Variant, left_out, targets
from envbuild.workspace import IMAGES_DIR, LOCK_DIR, STAGE_DIR, templates_dir

VENV = "/opt/venv"
UID = 10001
# COPY arguments written as they are: no space, quote, $ or escape to read otherwise.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/@%+=:,-]+")
# The OCI label naming the source repository (GHCR links a package to its repository by it).
SOURCE_LABEL = "org.opencontainers.image.source"
NVIDIA_ENV = (("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"), ("NVIDIA_VISIBLE_DEVICES", "all"))


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """The rendered files: paths relative to the project root, and their text."""

    files: tuple[tuple[str, str], ...]
    left_out: tuple[str, ...] = ()  # Dockerfiles of the variants the spec leaves out: none may stay

    def text(self, path: str) -> str:
        """The text of one rendered file."""
        return dict(self.files)[path]


def write_rendered(spec: Spec, rendered: Rendered) -> list[Path]:
    """Write the rendered files that changed (atomically), delete those of left-out variants; return their paths."""
    changed = []
    for rel in rendered.left_out:
        path = spec.root / rel
        if path.is_file():
            path.unlink()
            changed.append(path)
    for rel, text in rendered.files:
        path = spec.root / rel
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        atomic_write(path, text)
        changed.append(path)
    return changed


def stale_rendered(spec: Spec, rendered: Rendered) -> list[str]:
    """The rendered files whose committed text differs from a fresh render, and those that should be gone."""
    stale = [f"{rel} (its variant is left out: delete it)" for rel in rendered.left_out if (spec.root / rel).is_file()]
    for rel, text in rendered.files:
        try:
            current = (spec.root / rel).read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(rel)
    return stale


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Dockerfiles, not HTML
    )


def dockerfile_path(variant: Variant) -> str:
    """Where a variant's Dockerfile lives, relative to the project root."""
    return f"{IMAGES_DIR}/{variant.name}.Dockerfile"


def render(spec: Spec, lockset: LockSet | None) -> Rendered:
    """Every variant's Dockerfile, plus the .dockerignore they share."""
    if lockset is None:
        raise StaleLockError("the project is not locked", hint="run 'envbuild lock' first")
    env = _environment()
    files: list[tuple[str, str]] = []
    chosen = _single_platform_targets(spec)
    for target in chosen:
        files.append((dockerfile_path(target.variant), _render_one(env, spec, lockset, target)))
    files.append((".dockerignore", render_dockerignore(spec, chosen)))
    return Rendered(files=tuple(files), left_out=tuple(dockerfile_path(v) for v in left_out(spec)))


def _single_platform_targets(spec: Spec) -> tuple[LockTarget, ...]:
    """One target per variant: Dockerfiles are per variant; the platform is a build option."""
    seen: dict[str, LockTarget] = {}
    for target in targets(spec):
        seen.setdefault(target.variant.name, target)
    return tuple(seen.values())


# A role without an entrypoint runs the venv's Python (first on PATH): the image still builds,
# and runs what it is given, e.g. `-m pkg.module`.
DEFAULT_ENTRYPOINT = ("python",)


def _render_one(env: jinja2.Environment, spec: Spec, lockset: LockSet, target: LockTarget) -> str:
    variant = target.variant
    entry = lockset.entry(target.name)
    if entry is None:
        raise StaleLockError(f"{target.name} is not in the lock", hint="run 'envbuild lock'")
    base = lockset.bases.get(variant.accelerator)
    if base is None or (not isinstance(base, DebianBase) and base.digest is None):
        raise StaleLockError(f"the {variant.accelerator} base is not pinned in the lock", hint="run 'envbuild lock'")
    role = spec.role(variant.role)
    if not role.entrypoint:
        role = replace(role, entrypoint=DEFAULT_ENTRYPOINT)
    check_writable(spec)
    environment = [
        ("PATH", f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("VIRTUAL_ENV", VENV),
    ]
    if variant.accelerator == "gpu":
        environment += list(NVIDIA_ENV)
        cuda = spec.accelerator("gpu").cuda or ""
        library_path = cuda_library_path(spec.python, entry.packages, cuda_major=cuda.split(".")[0])
        if library_path:
            environment.append(("LD_LIBRARY_PATH", library_path))
    environment += list(spec.image.env)
    labels = [
        ("org.opencontainers.image.title", f"{spec.name}-{variant.name}"),
        ("dev.envbuild.variant", variant.name),
    ]
    if spec.package is None:  # a package's version is its wheel's, given at build time (VERSION)
        labels.append(("org.opencontainers.image.version", spec.version))
    if spec.repository:
        labels.append((SOURCE_LABEL, spec.repository))
    return env.get_template("Dockerfile.j2").render(
        variant=variant.name,
        role=variant.role,
        spec_file=spec.file.relative_to(spec.root).as_posix(),
        lockfile=lock_mount(spec, target),
        lockfiles=", ".join(f"{LOCK_DIR}/{t.filename}" for t in targets(spec, (variant,))),
        base_ref=_checked_reference(base_reference(spec.name, variant.accelerator, base), variant.accelerator),
        python=".".join(spec.python.split(".")[:2]),
        venv=VENV,
        stage=STAGE_DIR,
        uid=UID,
        workdir=spec.image.workdir,
        passwd=shell_quote(f"{spec.image.user}:x:{UID}:{UID}::{home_directory(spec)}:/usr/sbin/nologin"),
        home=home_directory(spec),
        group=shell_quote(f"{spec.image.user}:x:{UID}:"),
        copies=[copy_arguments(source, target) for source, target in project_copies(spec)],
        env=[f"{k}={dockerfile_quote(v)}" for k, v in sorted(dict(environment).items())],
        labels=[f"{k}={dockerfile_quote(v)}" for k, v in sorted(labels)],
        entrypoint=list(role.entrypoint),
        package=spec.package is not None,
        version=spec.version,
        host_venv=spec.image.venv == "host",
    )


def home_directory(spec: Spec) -> str:
    """The image user's home: /home/<user>, the one directory of the image that user owns (mode 0755).

    Libraries cache and keep settings under $HOME (~/.cache); a home the user cannot
    write makes them warn at every start, or fail.
    """
    return f"/home/{spec.image.user}"


def base_reference(name: str, accelerator: str, base: PinnedBase) -> str:
    """The FROM reference: the registry image by digest, or a local name for built and layout bases."""
    if isinstance(base, ImageBase):
        return base.ref if "@" in base.ref else f"{base.ref.rsplit(':', 1)[0]}@{base.digest}"
    # Bases envbuild builds (debian) or reads from disk (oci-layout) are loaded into the
    # builder under this name; with buildx, --build-context maps it to the layout.
    # The tag names the content: the recipe's digest, or the layout's manifest digest.
    content = base.recipe_sha256 if isinstance(base, DebianBase) else (base.digest or "").split(":")[-1]
    return f"envbuild.local/{name}/base-{accelerator}:{content[:16]}"


def cuda_library_path(python: str, packages: dict[str, dict[str, object]], *, cuda_major: str) -> str:
    """LD_LIBRARY_PATH for the CUDA libraries that nvidia-* wheels install under site-packages/nvidia/.

    Wheels named for their CUDA major (nvidia-cudnn-cu13, every CUDA 12 wheel) keep
    nvidia/<library>/lib; the un-suffixed CUDA 13 toolkit wheels (nvidia-cublas 13.x,
    nvidia-cuda-runtime 13.x, ...) share nvidia/cu13/lib.
    """
    site = f"{VENV}/lib/python{'.'.join(python.split('.')[:2])}/site-packages/nvidia"
    dirs = set()
    for name in packages:
        name = canonicalize_name(name)
        if not name.startswith("nvidia-"):
            continue
        stem = name.removeprefix("nvidia-")
        suffixed = re.search(r"-cu\d{2}$", stem)
        if suffixed:
            dirs.add(f"{site}/{stem[: suffixed.start()].replace('-', '_')}/lib")
        else:
            dirs.add(f"{site}/cu{cuda_major}/lib")
    return ":".join(sorted(dirs))


def check_writable(spec: Spec) -> None:
    """Refuse a spec value that no quoting can make safe in a Dockerfile.

    The spec parser refuses these already; this is the second line, for a Spec built
    another way. WORKDIR and USER have no quoted form that every builder reads alike, so
    their values must be plain; a newline would end any instruction, quoted or not.
    """
    where = spec.file

    def refuse(key: str, value: str, why: str) -> NoReturn:
        raise UsageError(
            f"{where}: {key}: {value!r} cannot be written into a Dockerfile ({why})",
            hint="fix the value in the spec: 'envbuild dockerfile' names what each key may hold",
        )

    image = spec.image
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*", spec.name):
        refuse("name", spec.name, "not an image name")
    if not WORKDIR.fullmatch(image.workdir) or {".", ".."} & set(image.workdir.split("/")):
        refuse("image.workdir", image.workdir, "not an absolute path of plain characters")
    if not USER.fullmatch(image.user):
        refuse("image.user", image.user, "not a user name")
    for f in image.files:
        if control_character(f) is not None or any(c in PATH_UNSAFE for c in f):
            refuse("image.files", f, "a control character, or a character COPY reads as a pattern or escape")
    for key, value in image.env:
        if not ENV_NAME.fullmatch(key):
            refuse("image.env", key, "not an environment variable name")
        problem = value_problem(value)
        if problem is not None:
            refuse(f"image.env.{key}", value, problem)
    problem = value_problem(spec.version)
    if problem is not None:
        refuse("project.version", spec.version, problem)
    if spec.repository is not None:
        problem = value_problem(spec.repository)
        if problem is not None:
            refuse("repository", spec.repository, problem)


def _checked_reference(ref: str, accelerator: str) -> str:
    """A FROM reference from the lock, refused when it holds anything but reference characters."""
    if not re.fullmatch(r"[A-Za-z0-9._:/@-]+", ref):
        raise UsageError(
            f"the {accelerator} base reference in the lock, {ref!r}, cannot be written into a Dockerfile",
            hint="the lock was edited by hand: run 'envbuild lock' to pin the base again",
        )
    return ref


def project_copies(spec: Spec) -> list[tuple[str, str]]:
    """(source in the build context, target in the image) of each [image].files entry.

    An entry lands in the workdir under its last name; "." is the whole staged project.
    """
    staged = f"{STAGE_DIR}/project"
    if spec.image.files == (".",):
        return [(f"{staged}/", spec.image.workdir.rstrip("/") + "/")]
    workdir = PurePosixPath(spec.image.workdir)
    return [(f"{staged}/{f}", str(workdir / PurePosixPath(f).name)) for f in spec.image.files]


def copy_arguments(source: str, target: str) -> str:
    """The arguments of a COPY: as they are when plain, else the JSON form with each word escaped.

    Builders expand quotes and $ inside the JSON form's strings too (buildah 1.28 and
    BuildKit share the word lexer), so ', " and $ are backslash-escaped within them.
    """
    if _PLAIN_PATH.fullmatch(source) and _PLAIN_PATH.fullmatch(target):
        return f"{source} {target}"
    return json.dumps([re.sub(r"([\\'\"$])", r"\\\1", w) for w in (source, target)], ensure_ascii=False)


def shell_quote(text: str) -> str:
    """``text`` as one double-quoted POSIX shell word: \\, ", $ and ` escaped (a plain value reads as before)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def dockerfile_quote(value: str) -> str:
    """A double-quoted Dockerfile word: backslash, quote and $ escaped; everything else literal.

    (JSON is not Dockerfile syntax: json.dumps would write é as the six characters \\u00e9.)
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def lock_mount(spec: Spec, target: LockTarget) -> str:
    """The lockfile a Dockerfile installs from: the variant's own, or for several platforms the one staged per build.

    A spec of several platforms has one lockfile per platform and one Dockerfile per variant: each
    platform's build stages its lockfile as ``.envbuild/stage/<variant>/lock.txt`` beside its wheels.
    """
    if len(spec.platforms) == 1:
        return f"{LOCK_DIR}/{target.filename}"
    return f"{STAGE_DIR}/{target.variant.name}/lock.txt"


def render_dockerignore(spec: Spec, chosen: tuple[LockTarget, ...]) -> str:
    """Only what the Dockerfiles copy enters the build context."""
    allowed = {f"{STAGE_DIR}/project", f"{STAGE_DIR}/tools/uv"}
    for t in chosen:
        if spec.image.venv == "host":  # the venv envbuild built on the host (envbuild.image.hostvenv)
            allowed.add(f"{STAGE_DIR}/{t.variant.name}/venv")
        else:
            allowed |= {lock_mount(spec, t), f"{STAGE_DIR}/{t.variant.name}/wheels"}
    if spec.package is not None and spec.image.venv != "host":
        allowed.add(f"{STAGE_DIR}/package")
    lines = ["# Generated by 'envbuild dockerfile': the build context holds only what the Dockerfiles copy.", "*"]
    lines += [f"!{path}" for path in sorted(allowed)]
    return "\n".join(lines) + "\n"

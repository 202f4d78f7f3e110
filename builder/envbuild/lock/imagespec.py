"""The spec's ``[image]`` table, and what each of its values may hold to reach a Dockerfile safely.

Every value here ends up in a Dockerfile the template writes: ``workdir`` in WORKDIR, COPY
and a RUN line, ``user`` in a RUN line, ``files`` in COPY, ``env`` in ENV. The rules below
keep out what would add an instruction (a newline) or change its meaning (quotes, ``$``,
glob characters); :mod:`envbuild.image.render` checks and quotes again, so a value that reached it
another way is still safe.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath

from envbuild.tomlread import Table

# An absolute POSIX path of characters no Dockerfile or /etc/passwd line treats specially.
WORKDIR = re.compile(r"/|(/[A-Za-z0-9._-]+)+")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# COPY reads these in a source as a pattern or an escape, whatever the quoting.
PATH_UNSAFE = "\\*?[]"
# The layer plan (docs/layers.md): a distribution of at least the threshold gets a layer of its
# own; a layer over the cap is split by files. Both in bytes of tar.
LAYER_THRESHOLD = 16 * 2**20
LAYER_CAP = 2**30
COMPRESSIONS = ("gzip", "zstd")
# Where the venv's packages are installed and compiled (envbuild.image.hostvenv): in the builder
# stage (under emulation for another architecture), or on the host for the target platform.
VENV_BUILDS = ("builder", "host")
_SIZE = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>|B|KiB|MiB|GiB|KB|MB|GB)")
_UNITS = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """What goes into the final image besides the environment."""

    files: tuple[str, ...]
    workdir: str
    user: str
    env: tuple[tuple[str, str], ...]
    layer_threshold: int = LAYER_THRESHOLD
    layer_cap: int = LAYER_CAP
    compression: str = "gzip"
    exclude: tuple[str, ...] = ()  # patterns removed from what ``files`` copies (projectfiles.excluded)
    venv: str = "builder"  # one of VENV_BUILDS


def control_character(text: str) -> str | None:
    """The first character of ``text`` that would break a Dockerfile line (newline, tab, U+2028, ...)."""
    return next((c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)


def value_problem(value: str) -> str | None:
    """Why an ENV or LABEL value cannot be written as a double-quoted Dockerfile word, or None.

    A backslash right before a double quote or at the end is quoted correctly for buildah and
    BuildKit (\\\\ then \\" or the closing quote), but hadolint's parser reads it otherwise and
    rejects the file, so such values are refused rather than written into an unlintable Dockerfile.
    """
    bad = control_character(value)
    if bad is not None:
        return f"the control character {bad!r}, which a Dockerfile line cannot carry"
    if value.endswith("\\") or '\\"' in value:
        return "a backslash at the end or before a double quote, which hadolint cannot parse"
    return None


def parse_image(t: Table) -> ImageSpec:
    """The ``[image]`` table of ``t``, each value checked against what a Dockerfile can carry."""
    table = t.table(
        "image",
        ("files", "exclude", "workdir", "user", "env", "layer-threshold", "layer-cap", "compression", "venv"),
    )
    if table is None:
        return ImageSpec(files=(), workdir="/app", user="app", env=())
    files = tuple(_check_file(table, f) for f in table.strings("files", example='"src"'))
    if "." in files and len(files) > 1:
        table.fail("files", "'.' already copies the whole project", "list '.' alone, or only the paths the image needs")
    exclude = tuple(_check_exclude(table, p) for p in table.strings("exclude", example='"tests"'))
    workdir = table.text("workdir", default="/app", example="/app")
    user = table.text("user", default="app", example="app")
    assert workdir is not None and user is not None
    if not workdir.startswith("/"):
        table.fail("workdir", f"{workdir!r} is not absolute", 'write workdir = "/app"')
    if not WORKDIR.fullmatch(workdir):
        table.fail(
            "workdir",
            f"{workdir!r} is not an absolute path of plain characters",
            "use letters, digits, '.', '_', '-' and '/' (no trailing '/'), e.g. workdir = \"/app\"",
        )
    if {".", ".."} & set(workdir.split("/")):
        table.fail(
            "workdir", f"{workdir!r} has a '.' or '..' component", 'write the path itself, e.g. workdir = "/app"'
        )
    if not USER.fullmatch(user):
        table.fail(
            "user", f"{user!r} is not a valid user name", "use lower-case letters, digits, '_' and '-', e.g. app"
        )
    names = [PurePosixPath(f).name for f in files]
    for name in names:
        if names.count(name) > 1:
            table.fail(
                "files",
                f"two entries would both be copied to {workdir}/{name}",
                "list each file or directory name once",
            )
    if user in ("root", "0"):
        table.fail("user", "images run as a non-root user", 'write user = "app"')
    env = table.mapping("env")
    for key, value in env.items():
        if not ENV_NAME.fullmatch(key):
            table.fail("env", f"{key!r} is not a valid environment variable name", "use letters, digits and '_'")
        if not isinstance(value, str):
            table.fail("env", f"{key} must be a string", f'write env = {{ {key} = "{value}" }}')
        problem = value_problem(value)
        if problem is not None:
            table.fail(
                "env",
                f"{key}: the value holds {problem}",
                "write the value on one line, without control characters and with no backslash before a quote "
                "or at the end",
            )
    compression = table.text("compression", default="gzip", example="gzip")
    if compression not in COMPRESSIONS:
        table.fail(
            "compression", f"{compression!r} is not a layer compression",
            'write compression = "gzip" (every runtime) or "zstd" '
            "(for runtimes that read zstd layers: containerd 1.5 and later, podman)",
        )  # fmt: skip
    venv = table.text("venv", default="builder", example="host")
    if venv not in VENV_BUILDS:
        table.fail(
            "venv", f"{venv!r} is not where a venv is built",
            'write venv = "builder" (installed and compiled in the builder stage) or "host" (on this machine, '
            "for the target platform: no emulation for another architecture)",
        )  # fmt: skip
    threshold = _size(table, "layer-threshold", LAYER_THRESHOLD)
    cap = _size(table, "layer-cap", LAYER_CAP)
    if cap < 2**20:
        table.fail("layer-cap", f"{cap} bytes is below 1 MiB", 'write a size such as layer-cap = "1GiB"')
    assert compression is not None and venv is not None
    return ImageSpec(
        files=files, workdir=workdir, user=user, env=tuple(sorted(env.items())),
        layer_threshold=threshold, layer_cap=cap, compression=compression, exclude=exclude, venv=venv,
    )  # fmt: skip


def _size(table: Table, key: str, default: int) -> int:
    """A size in bytes: an integer, or a string such as "16MiB" or "1 GB"."""
    value = table.raw(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        table.fail(key, f"{value!r} is not a size", f'write a number of bytes or a size such as {key} = "16MiB"')
    size = int(match["number"]) * _UNITS[match["unit"]]
    if size > 2**50:
        table.fail(key, f"{value!r} is larger than any layer can be", f'write a size such as {key} = "16MiB"')
    return size


def _check_exclude(table: Table, pattern: str) -> str:
    """One ``exclude`` pattern, refused when it could not name anything inside the project.

    The patterns are matched by :func:`envbuild.image.projectfiles.excluded` (docs/spec.md): one
    without '/' against every name, one with '/' against the path from the spec's directory.
    """
    hint = "write a name (tests, *.ipynb) or a path from the spec's directory (src/scratch, notebooks/*.ipynb)"
    if not pattern.strip():
        table.fail("exclude", "an empty pattern", hint)
    bad = control_character(pattern)
    if bad is not None:
        table.fail("exclude", f"{pattern!r} holds the control character {bad!r}", hint)
    if pattern.startswith("!"):
        table.fail("exclude", f"{pattern!r}: '!' (re-include) is not supported", "list in files what the image needs")
    if "\\" in pattern:
        table.fail("exclude", f"{pattern!r} holds '\\'", "separate directories with '/'")
    if pattern.startswith("/"):
        table.fail("exclude", f"{pattern!r} is an absolute path", "relative to the spec's directory, " + hint)
    core = pattern.rstrip("/")
    parts = core.split("/")
    if ".." in parts:
        table.fail("exclude", f"{pattern!r} leads out of the project ('..')", hint)
    parts = [part for part in parts if part != "."]  # ./tests is tests
    if not parts or "" in parts:
        table.fail("exclude", f"{pattern!r} names the whole project or has an empty component", hint)
    return "/".join(parts) + ("/" if pattern.endswith("/") else "")


def _check_file(table: Table, f: str) -> str:
    """One ``files`` entry, normalised (``./src/`` is ``src``); refused when no COPY can name it safely."""
    if not f:
        table.fail("files", "an empty path", "write '.' for the whole project, or the path of a file or directory")
    bad = control_character(f)
    if bad is not None:
        table.fail("files", f"{f!r} holds the control character {bad!r}", "rename the file, or list its directory")
    unsafe = next((c for c in f if c in PATH_UNSAFE), None)
    if unsafe == "\\":
        table.fail("files", f"{f!r} holds {unsafe!r}", "separate directories with '/' (COPY reads '\\' as an escape)")
    if unsafe is not None:
        table.fail(
            "files",
            f"{f!r} holds {unsafe!r}, which COPY reads as a pattern",
            "list the file itself, or the directory that holds it, by its plain name",
        )
    if f.startswith("/") or ".." in PurePosixPath(f).parts:
        table.fail("files", f"{f!r} is outside the project", "list paths relative to the spec's directory")
    return str(PurePosixPath(f))

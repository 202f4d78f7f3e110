"""``init``: a starter envbuild.toml for an existing Python project.

The starter is a valid spec: it locks as written. It reuses the project's
[project].dependencies, maps dependency groups named like training or inference
onto the roles, pins today's date as the cutoff, and explains every key in a comment.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from envbuild.errors import SpecError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.lock.spec import DEBIAN_PYTHON, PYPROJECT, SPEC_FILE, project_tables

_TRAIN_GROUPS = ("train", "training")
_INFER_GROUPS = ("infer", "inference", "serve", "serving")


def init_spec(directory: Path, *, force: bool = False, today: datetime | None = None) -> Path:
    """Write ``envbuild.toml`` in ``directory`` and return its path."""
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
    atomic_write(target, render_starter(directory, project, today or datetime.now(UTC)))
    return target


def render_starter(directory: Path, pyproject: dict[str, Any], today: datetime) -> str:
    """The starter spec's text."""
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
            hint='write envbuild.toml by hand with an image base, base = { image = "REF@sha256:..." } (docs/spec.md)',
        )
    python = DEBIAN_PYTHON[suite]
    module = name.replace("-", "_").replace(".", "_")
    cutoff = today.astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z")
    train = next((g for g in _TRAIN_GROUPS if g in groups), None)
    infer = next((g for g in _INFER_GROUPS if g in groups), None)
    lines = [
        "# envbuild spec: what to lock and build. Reference: docs/spec.md",
        f'name = "{name}"',
        f'python = "{python}"',
        'platforms = ["linux/amd64"]',
        "# Only packages uploaded before this instant are considered: locks are reproducible.",
        f'exclude-newer = "{cutoff}"',
        "# Shared by every image, in addition to [project].dependencies of pyproject.toml.",
        "dependencies = []",
        "",
        "[roles.train]",
        f'groups = ["{train}"]' if train else "dependencies = []",
        f'entrypoint = ["python", "-m", "{module}.train"]',
        "",
        "[roles.infer]",
        f'groups = ["{infer}"]' if infer else "dependencies = []",
        f'entrypoint = ["python", "-m", "{module}.predict"]',
        "",
        "[accelerators.cpu]",
        f'base = {{ debian = "{suite}", packages = ["python3", "ca-certificates"] }}',
        "",
        "# Uncomment for GPU images: swap packages for their CUDA builds and state the CUDA major.",
        "# [accelerators.gpu]",
        '# cuda = "12"',
        '# replace = { onnxruntime = "onnxruntime-gpu[cuda,cudnn]" }',
        f'# base = {{ debian = "{suite}", packages = ["python3", "ca-certificates"] }}',
        "",
        "[image]",
        f'files = ["{_source_dir(directory, module)}"]',
        'workdir = "/app"',
        'user = "app"',
    ]
    return "\n".join(lines) + "\n"


def _image_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "app"


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


def _source_dir(directory: Path, module: str) -> str:
    for candidate in (f"src/{module}", module, "src"):
        if (directory / candidate).is_dir():
            return candidate
    return "."

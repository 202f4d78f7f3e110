"""A project's ``requirements*.txt``, read for ``envbuild init`` and mapped onto the spec.

``requirements.txt`` holds what every image shares, ``requirements-train*.txt`` what the
training role adds and ``requirements-{infer,serve,inference}*.txt`` what inference adds
(``_`` works as well as ``-``). ``requirements-{dev,test,lint,doc}*.txt`` serve the
developers, not an image, and are not read. ``-r`` includes are followed inside the project.

Everything a spec cannot express is refused with the file, the line and the fix: editable
installs, URLs and paths (a spec locks by name and hash from an index), index options (the
spec has its own index keys), constraints files and pip options that change resolution.
Hash options are dropped: ``envbuild lock`` pins a hash for every file it locks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement

from envbuild.errors import SpecError, strip_url_credentials
from envbuild.fsutil import read_limited

Place = Literal["shared", "train", "infer"]
_FILE = re.compile(r"requirements(?:[-_](?P<suffix>[a-z0-9][a-z0-9._-]*))?\.txt")
_ROLE_WORDS: dict[Place, tuple[str, ...]] = {"train": ("train",), "infer": ("infer", "serve")}
_DEVELOPER_WORDS = ("dev", "test", "lint", "doc")
_LIMIT = 4 * 2**20  # far beyond any requirements file; a cap so a FIFO or /dev/zero is not read forever
_SPEC_DOCS = "see 'envbuild docs spec'"
# Options that change nothing for envbuild: it locks wheels only (--only-binary :all:) and
# pins a hash for every file.
_HARMLESS = ("--only-binary", "--prefer-binary", "--require-hashes")
# Options a spec cannot express, and what to do instead.
_REFUSED = {
    "-e": "an editable install",
    "--editable": "an editable install",
    "-c": "a constraints file",
    "--constraint": "a constraints file",
    "-i": "an index URL",
    "--index-url": "an index URL",
    "--extra-index-url": "an extra index",
    "-f": "a find-links location",
    "--find-links": "a find-links location",
    "--no-index": "--no-index",
    "--trusted-host": "a trusted host",
    "--pre": "--pre",
    "--no-binary": "--no-binary",
}
_FIXES = {
    "an editable install": (
        "list the package by name; if it is this project, give pyproject.toml a [build-system] "
        "and envbuild installs the project as its own wheel"
    ),
    "a constraints file": "put the bounds into the requirements themselves (e.g. 'numpy<2'), then remove the line",
    "an index URL": f'remove the line and write index-url = "https://HOST/simple" in envbuild.toml ({_SPEC_DOCS})',
    "an extra index": f"remove the line and route its packages with [[indexes]] in envbuild.toml ({_SPEC_DOCS})",
    "a find-links location": f"publish those files to an index and route them with [[indexes]] ({_SPEC_DOCS})",
    "--no-index": f"remove the line: index-url and [[indexes]] in envbuild.toml choose the indexes ({_SPEC_DOCS})",
    "a trusted host": "remove the line: indexes are reached over https with a trusted certificate",
    "--pre": "remove the line; give a package that needs a pre-release a specifier naming one (e.g. 'pkg>=2.0rc1')",
    "--no-binary": "remove the line: envbuild installs wheels only",
}


@dataclass(frozen=True, kw_only=True)
class ProjectRequirements:
    """The requirements of a project's requirements files, by where the spec takes them."""

    shared: tuple[str, ...] = ()
    train: tuple[str, ...] = ()
    infer: tuple[str, ...] = ()
    files: tuple[tuple[str, Place], ...] = ()  # the files read, by name, and where their requirements went
    developer: tuple[str, ...] = ()  # requirements-dev*.txt and alike: not read
    unmapped: tuple[str, ...] = ()  # other requirements*.txt: not read, as no place fits them

    def of(self, place: Place) -> tuple[str, ...]:
        """The requirements that go to ``place``."""
        return {"shared": self.shared, "train": self.train, "infer": self.infer}[place]

    def sources(self, place: Place) -> tuple[str, ...]:
        """The files whose requirements went to ``place``."""
        return tuple(name for name, where in self.files if where == place)


def place_of(name: str) -> Place | Literal["developer"] | None:
    """Where the requirements of the file called ``name`` go; "developer" or None when nowhere."""
    match = _FILE.fullmatch(name.lower())
    if match is None:
        return None
    suffix = match["suffix"]
    if suffix is None:
        return "shared"
    for place, words in _ROLE_WORDS.items():
        if suffix.startswith(words):
            return place
    return "developer" if suffix.startswith(_DEVELOPER_WORDS) else None


def project_requirements(root: Path) -> ProjectRequirements:
    """The requirements files at the top of the project in ``root``, read and mapped.

    A role's file that includes ``requirements.txt`` (``-r requirements.txt``) adds only what
    the shared requirements do not already hold.
    """
    found: dict[Place, list[str]] = {"shared": [], "train": [], "infer": []}
    files: list[tuple[str, Place]] = []
    developer: list[str] = []
    unmapped: list[str] = []
    names = sorted(p.name for p in root.iterdir() if p.is_file() and _FILE.fullmatch(p.name.lower()))
    for name in sorted(names, key=lambda n: place_of(n) != "shared"):  # the shared file first
        place = place_of(name)
        if place == "developer":
            developer.append(name)
        elif place is None:
            unmapped.append(name)
        else:
            files.append((name, place))
            found[place].extend(read_requirements(root / name, root=root))
    shared = tuple(dict.fromkeys(found["shared"]))
    roles = {p: tuple(r for r in dict.fromkeys(found[p]) if r not in shared) for p in ("train", "infer")}
    return ProjectRequirements(
        shared=shared,
        train=roles["train"],
        infer=roles["infer"],
        files=tuple(files),
        developer=tuple(developer),
        unmapped=tuple(unmapped),
    )


def read_requirements(path: Path, *, root: Path, _chain: tuple[Path, ...] = ()) -> list[str]:
    """The requirements of ``path`` and of what it includes, as normalised PEP 508 strings."""
    path = path.resolve()
    if path in _chain:  # a file that includes itself, directly or not: pip would loop; once is enough
        return []
    where = _shown(path, root)
    try:
        text = read_limited(path, limit=_LIMIT, what="the requirements file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})", hint="save it as UTF-8") from exc
    out: list[str] = []
    for number, line in _logical_lines(text):
        at = f"{where}:{number}"
        tokens = line.split()
        if tokens[0].startswith("-"):
            include = _option(tokens, at)
            if include is not None:
                out.extend(read_requirements(_included(path, include, root, at), root=root, _chain=(*_chain, path)))
            continue
        split = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        _check_requirement_options(tokens[split:], at)
        out.append(_requirement(" ".join(tokens[:split]), at))
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each line that says something: continuations joined, comments gone."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        joined = " ".join([*pending, raw])
        pending = []
        # pip's rule: '#' starts a comment at the start of a line or after whitespace.
        line = re.sub(r"(^|\s)#.*$", "", joined).strip()
        if line:
            out.append((start, line))
    if pending:
        line = re.sub(r"(^|\s)#.*$", "", " ".join(pending)).strip()
        if line:
            out.append((start, line))
    return out


def _option(tokens: list[str], at: str) -> str | None:
    """What an option line means: the file a ``-r`` includes, None for an option without effect."""
    option, _, value = tokens[0].partition("=")
    if option.startswith("-r") and not option.startswith("--"):
        value = option[2:] or value
        option = "-r"
    if option in ("-r", "--requirement"):
        target = value or (tokens[1] if len(tokens) > 1 else "")
        if not target:
            raise SpecError(f"{at}: {option} names no file", hint="write '-r other-requirements.txt'")
        return target
    if option in _HARMLESS:
        return None
    what = _REFUSED.get(option) or _REFUSED.get(option[:2])  # -ihttps://... and -efoo are one token
    if what is not None:
        raise SpecError(f"{at}: {what} ({option}), which an envbuild spec cannot express", hint=_FIXES[what])
    raise SpecError(
        f"{at}: the pip option {option!r}, which an envbuild spec cannot express",
        hint=f"remove the line, or write the spec by hand ({_SPEC_DOCS})",
    )


def _included(path: Path, target: str, root: Path, at: str) -> Path:
    """The file ``-r target`` names, relative to the including file; it must be inside the project."""
    if "://" in target:
        raise SpecError(
            f"{at}: -r {strip_url_credentials(target)}: a requirements file from a URL",
            hint="copy the file into the project and include it by path",
        )
    included = (path.parent / target).resolve()
    if not included.is_relative_to(root.resolve()):
        raise SpecError(f"{at}: -r {target} is outside the project", hint="copy the file into the project")
    if not included.is_file():
        raise SpecError(f"{at}: -r {target}: no such file", hint="fix the path, or remove the line")
    return included


def _check_requirement_options(options: list[str], at: str) -> None:
    """Options after a requirement: --hash is dropped (the lock pins hashes), anything else refused."""
    values = iter(options)
    for option in values:
        name, _, value = option.partition("=")
        if name == "--hash":
            if not value:
                next(values, None)
            continue
        raise SpecError(
            f"{at}: the per-requirement option {name!r}, which an envbuild spec cannot express",
            hint="remove it: envbuild installs the locked wheels as they are",
        )


def _requirement(text: str, at: str) -> str:
    """``text`` as a normalised PEP 508 requirement (markers kept); URLs and paths refused."""
    direct = "://" in text or text.startswith((".", "/", "~", "file:")) or text.endswith((".whl", ".tar.gz", ".zip"))
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        if direct:
            requirement = None
        else:
            raise SpecError(
                f"{at}: {strip_url_credentials(text)!r} is not a valid requirement ({exc})",
                hint='use PEP 508 syntax, e.g. "numpy>=1.26" or "torch==2.5.1; platform_machine == \'x86_64\'"',
            ) from exc
    if requirement is None or requirement.url:
        raise SpecError(
            f"{at}: {strip_url_credentials(text)!r} is a URL or path, which cannot be hash-locked from an index",
            hint=(
                "list the package by name (publish it to an index and route it with [[indexes]]); "
                "if it is this project, give pyproject.toml a [build-system] and envbuild installs it"
            ),
        )
    return str(requirement)


def _shown(path: Path, root: Path) -> str:
    """``path`` as messages name it: relative to the project."""
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)

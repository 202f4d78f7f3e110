"""What git says about a build's source: the commit of its inputs, their uncommitted changes, the repository.

An image names the commit it was built from (its revision label, its provenance). That claim
is only true when the inputs on disk are that commit's: :func:`source_state` finds the commit
of the last change to the inputs and every input that differs from it (``git status``, so
.gitignore is respected), and refuses a dirty tree unless the caller allows it — then the
build is recorded as dirty, with a digest of what was uncommitted. A project outside git
claims no commit at all.

:func:`repository_uri` names the repository for provenance as ``git+https://host/path``:
credentials stripped, scp-like ``git@host:path`` and ``ssh://`` remotes converted, and a
local path (which names nothing another machine can reach) as None.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from envbuild.errors import EnvbuildError, UsageError

ALLOW_DIRTY_HINT = "commit them (or add them to .gitignore), or pass --allow-dirty to build and record them as dirty"
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>\S.*)$")


class DirtySourceError(EnvbuildError):
    """A build input differs from the commit the image would name. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class SourceState:
    """The source of one build: its SOURCE_DATE_EPOCH, the commit it names, and what was uncommitted."""

    epoch: int
    commit: str | None  # None: outside git, or the inputs were never committed
    dirty: tuple[str, ...] = ()  # inputs that differ from ``commit`` (paths from the repository root)
    dirty_sha256: str | None = None  # a digest of those paths' contents on disk

    @property
    def revision_label(self) -> str:
        """The image's ``org.opencontainers.image.revision``: the commit, ``<commit>-dirty``, or ``unknown``."""
        if self.commit is None:
            return "unknown"
        return f"{self.commit}-dirty" if self.dirty else self.commit

    def to_json(self) -> dict[str, object] | None:
        """The build record's ``dirty`` entry: None for a clean tree."""
        if not self.dirty:
            return None
        return {"paths": list(self.dirty), "sha256": self.dirty_sha256}


def source_state(
    root: Path, inputs: list[str], *, dated_by: list[str], epoch: int | None, allow_dirty: bool
) -> SourceState:
    """The source of a build of ``inputs`` (paths relative to ``root``), dated by the last commit of ``dated_by``.

    ``epoch`` replaces the commit time. Raises :class:`DirtySourceError` when an input has
    uncommitted changes or is untracked, unless ``allow_dirty``; a project outside git needs
    ``epoch``, and claims no commit.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        if epoch is None:
            raise UsageError(
                f"{root} is not in a git repository, so SOURCE_DATE_EPOCH has no default",
                hint="commit the project, or pass --source-date-epoch SECONDS (the image then names no commit)",
            )
        return SourceState(epoch=epoch, commit=None)
    dirty = _dirty(root, inputs)
    if dirty and not allow_dirty:
        shown = "\n".join(f"  {p}" for p in dirty[:20]) + (f"\n  ... {len(dirty) - 20} more" if dirty[20:] else "")
        raise DirtySourceError(
            "build inputs have uncommitted changes, so the image would name a commit that does not hold them:\n"
            + shown,
            hint=ALLOW_DIRTY_HINT,
        )
    logged = (_git(root, "log", "-1", "--format=%ct %H", "--", *inputs_pathspec(dated_by)) or "").split()
    commit = logged[1] if len(logged) == 2 else None
    if epoch is None:
        if commit is None:
            raise UsageError(
                f"{root} has no git history for its inputs, so SOURCE_DATE_EPOCH has no default",
                hint="commit the project, or pass --source-date-epoch SECONDS",
            )
        epoch = int(logged[0])
    digest = _dirty_digest(Path(top.strip()), dirty) if dirty else None
    return SourceState(epoch=epoch, commit=commit, dirty=tuple(dirty), dirty_sha256=digest)


def inputs_pathspec(paths: list[str]) -> list[str]:
    """``paths`` as literal git pathspecs (a file named ``*.txt`` is that file, not a glob)."""
    return [f":(literal){p}" for p in paths]


def _dirty(root: Path, inputs: list[str]) -> list[str]:
    """Every input path that is modified, staged, deleted, renamed or untracked (not ignored)."""
    out = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *inputs_pathspec(inputs))
    if out is None:
        raise EnvbuildError(f"git status failed in {root}", hint="check that 'git status' works there")
    found: set[str] = set()
    fields = iter(out.split("\0"))
    for entry in fields:
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            found.add(next(fields, ""))  # the source of a rename or copy changed too
        found.add(path)
    # The build never takes bytecode caches (fetch.stage_project skips them), so they are not inputs.
    return sorted(p for p in found if p and "__pycache__" not in p.split("/") and not p.endswith(".pyc"))


def _dirty_digest(top: Path, paths: list[str]) -> str:
    """A digest of the dirty paths as they are on disk: names, contents, link targets, deletions."""
    hasher = hashlib.sha256()
    for rel in paths:
        path = top / rel
        if path.is_symlink():
            content = b"symlink\0" + os.readlink(path).encode()
        elif path.is_file():
            content = b"file\0" + hashlib.sha256(path.read_bytes()).digest()
        else:
            content = b"absent"
        hasher.update(rel.encode() + b"\0" + content + b"\0")
    return hasher.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    """git's stdout in ``root``, or None when git is missing or fails (not a repository)."""
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None


def repository_uri(url: str | None) -> str | None:
    """``url`` (a git remote, or an https URL) as ``git+https://host/path``; None for a local path or nothing.

    Credentials and ports are dropped and a trailing ``.git`` or ``/`` removed, so the same
    repository reached over https or ssh gets one name. Idempotent.
    """
    text = (url or "").strip()
    if not text:
        return None
    text = text.removeprefix("git+")
    scheme = "https"
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
            return None  # file://, or something that names no host
        if parts.scheme == "http":
            scheme = "http"
        host, path = parts.hostname, parts.path
    else:
        match = _SCP_LIKE.match(text)
        if match is None or "/" in match["host"]:
            return None  # a local path
        host, path = match["host"], match["path"]
    path = "/" + path.strip("/").removesuffix(".git").strip("/")
    if path == "/":
        return None
    return f"git+{scheme}://{host.lower()}{path}"


def default_repository(where: Path) -> str | None:
    """The repository of the checkout at ``where``: GitHub Actions' repository, else its remote, as a URI.

    The remote is the current branch's upstream remote, else ``origin``, else ``upstream``.
    """
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repository:
        return repository_uri(f"{server}/{repository}")
    branch = (_git(where, "symbolic-ref", "--quiet", "--short", "HEAD") or "").strip()
    tracked = (_git(where, "config", f"branch.{branch}.remote") or "").strip() if branch else ""
    for remote in dict.fromkeys(r for r in (tracked, "origin", "upstream") if r and r != "."):
        uri = repository_uri(_git(where, "remote", "get-url", remote))
        if uri is not None:
            return uri
    return None


def commit_uri(repository: str, commit: str) -> str:
    """The SLSA resolvedDependency URI of ``commit`` in ``repository`` (a :func:`repository_uri`)."""
    return f"{repository}@{commit}"

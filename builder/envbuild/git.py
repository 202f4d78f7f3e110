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

Every git command runs through :class:`Git`, on :func:`envbuild.proc.run`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from envbuild import proc
from envbuild.errors import EnvbuildError, ToolError, UsageError

ALLOW_DIRTY_HINT = "commit them (or add them to .gitignore), or pass --allow-dirty to build and record them as dirty"
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>\S.*)$")


class DirtySourceError(EnvbuildError):
    """A build input differs from the commit the image would name. Exit 1."""


@dataclass(frozen=True)
class Git:
    """git in the checkout (or any directory inside it) at ``root``."""

    root: Path

    def run(self, *args: str, timeout: float = 60) -> proc.Result:
        """Run ``git -C root ARGS``; a :class:`~envbuild.errors.ToolError` when it fails or is missing."""
        return proc.run(["git", "-C", self.root, *args], tool="git", timeout=timeout)

    def output(self, *args: str) -> str | None:
        """git's stdout, or None when git is missing or fails (not a repository, no such revision)."""
        try:
            return self.run(*args).stdout
        except ToolError:
            return None

    def has_commit(self, commit: str) -> bool:
        """Whether the repository holds ``commit``, as a commit (not another kind of object)."""
        return self.output("cat-file", "-e", f"{commit}^{{commit}}") is not None

    def export(self, commit: str, dest: Path) -> None:
        """The files of ``commit``, without .git, extracted into ``dest`` (created if missing)."""
        with tempfile.TemporaryDirectory(prefix="envbuild-git-") as tmp:
            # To a file: proc.run reads stdout as text, and a tar is bytes.
            archive = Path(tmp) / "commit.tar"
            self.run("archive", "--format=tar", f"--output={archive}", commit, timeout=600)
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")


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
    top = Git(root).output("rev-parse", "--show-toplevel")
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
    logged = (Git(root).output("log", "-1", "--format=%ct %H", "--", *inputs_pathspec(dated_by)) or "").split()
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
    out = Git(root).output("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *inputs_pathspec(inputs))
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
    # The build never takes bytecode caches (fetch.stage_project skips them) nor envbuild's own
    # outputs (.envbuild/: the stage, the images), so they are not inputs.
    skipped = {"__pycache__", ".envbuild"}
    return sorted(p for p in found if p and not skipped & set(p.split("/")) and not p.endswith(".pyc"))


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
    git = Git(where)
    branch = (git.output("symbolic-ref", "--quiet", "--short", "HEAD") or "").strip()
    tracked = (git.output("config", f"branch.{branch}.remote") or "").strip() if branch else ""
    for remote in dict.fromkeys(r for r in (tracked, "origin", "upstream") if r and r != "."):
        uri = repository_uri(git.output("remote", "get-url", remote))
        if uri is not None:
            return uri
    return None


def commit_uri(repository: str, commit: str) -> str:
    """The SLSA resolvedDependency URI of ``commit`` in ``repository`` (a :func:`repository_uri`)."""
    return f"{repository}@{commit}"


def export_commit(checkout: Path, commit: str, dest: Path) -> None:
    """The files of ``commit`` in the git checkout ``checkout``, written to ``dest`` (no .git).

    A checkout that lacks the commit (a shallow or stale clone) is a :class:`UsageError` saying how to fetch it.
    """
    if not Git(checkout).has_commit(commit):
        raise UsageError(
            f"{checkout} does not hold commit {commit}, which the provenance names",
            hint=f"fetch it into that checkout (git fetch origin {commit}), or build the directory as it is "
            "with --worktree",
        )
    Git(checkout).export(commit, dest)


def repository_root(directory: Path) -> Path:
    """The git work tree holding ``directory`` (where .github/ belongs), else ``directory`` itself.

    Found by looking for ``.git`` upwards, without running git: a missing git still renders workflows.
    """
    start = directory.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start

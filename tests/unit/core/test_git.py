"""git.py: the source of a build as git tells it (clean or dirty inputs, the commit claimed, the repository's URI),
the :class:`Git` adapter, a commit's files exported, and the work tree holding a directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envbuild.errors import ToolError, UsageError
from envbuild.git import (
    DirtySourceError,
    Git,
    SourceState,
    default_repository,
    export_commit,
    repository_root,
    repository_uri,
    source_state,
)
from support.tools import require_tool

INPUTS = ["envbuild.toml", "lockfiles/cpu-infer.txt", "app"]
COMMIT_TIME = 1793620800


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{COMMIT_TIME} +0000", "GIT_COMMITTER_DATE": f"@{COMMIT_TIME} +0000"}
    command = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project whose inputs are committed, with a .gitignore for caches."""
    require_tool("git")
    root = tmp_path / "project"
    (root / "lockfiles").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "envbuild.toml").write_text('name = "x"\n')
    (root / "lockfiles" / "cpu-infer.txt").write_text("numpy==2.0 \\\n    --hash=sha256:00\n")
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one")
    return root


def state(root: Path, *, allow_dirty: bool = False, epoch: int | None = None) -> SourceState:
    return source_state(root, INPUTS, dated_by=INPUTS, epoch=epoch, allow_dirty=allow_dirty)


def test_a_clean_tree_names_its_commit(repo: Path) -> None:
    got = state(repo)
    assert got == SourceState(epoch=COMMIT_TIME, commit=git(repo, "rev-parse", "HEAD").strip())
    assert got.revision_label == got.commit and got.to_json() is None
    (repo / "build.log").write_text("ignored\n")  # .gitignore'd and not an input: still clean
    (repo / "notes.txt").write_text("untracked, but not an input\n")
    (repo / "app" / "__pycache__").mkdir()
    (repo / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")  # never copied into an image
    assert state(repo).dirty == ()


def test_a_changed_or_untracked_input_is_refused_by_name(repo: Path) -> None:
    (repo / "app" / "main.py").write_text("print('changed')\n")
    (repo / "app" / "extra.py").write_text("x = 1\n")
    (repo / "lockfiles" / "cpu-infer.txt").unlink()
    with pytest.raises(DirtySourceError) as raised:
        state(repo)
    assert raised.value.message.splitlines()[1:] == ["  app/extra.py", "  app/main.py", "  lockfiles/cpu-infer.txt"]
    assert raised.value.hint is not None and "--allow-dirty" in raised.value.hint and "commit" in raised.value.hint
    git(repo, "add", "app/main.py")  # staged but not committed is no better
    (repo / "app" / "extra.py").unlink()
    git(repo, "checkout", "--", "lockfiles/cpu-infer.txt")
    with pytest.raises(DirtySourceError, match=r"app/main\.py"):
        state(repo)


def test_allowed_dirt_is_recorded_with_a_digest_and_never_claims_the_commit_plainly(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD").strip()
    (repo / "app" / "main.py").write_text("print('changed')\n")
    first = state(repo, allow_dirty=True)
    assert first.commit == commit and first.dirty == ("app/main.py",)
    assert first.revision_label == f"{commit}-dirty"
    assert first.to_json() == {"paths": ["app/main.py"], "sha256": first.dirty_sha256}
    (repo / "app" / "main.py").write_text("print('changed again')\n")
    assert state(repo, allow_dirty=True).dirty_sha256 != first.dirty_sha256  # the digest follows the content


def test_outside_git_no_commit_is_claimed(tmp_path: Path) -> None:
    require_tool("git")
    (tmp_path / "envbuild.toml").write_text('name = "x"\n')
    with pytest.raises(UsageError, match="not in a git repository") as raised:
        state(tmp_path)
    assert raised.value.hint is not None and "--source-date-epoch" in raised.value.hint
    got = state(tmp_path, epoch=1700000000)
    assert got == SourceState(epoch=1700000000, commit=None) and got.revision_label == "unknown"


def test_inputs_never_committed_claim_no_commit(repo: Path) -> None:
    (repo / "other").mkdir()
    (repo / "other" / "envbuild.toml").write_text('name = "y"\n')
    got = source_state(repo, ["other"], dated_by=["other"], epoch=1700000000, allow_dirty=True)
    assert got.commit is None and got.dirty == ("other/envbuild.toml",) and got.revision_label == "unknown"


@pytest.mark.parametrize(
    ("remote", "uri"),
    [
        ("https://github.com/org/repo.git", "git+https://github.com/org/repo"),
        ("https://bot:s3cret@GitHub.com/org/repo/", "git+https://github.com/org/repo"),
        ("git@github.com:org/repo.git", "git+https://github.com/org/repo"),
        ("github.com:org/repo", "git+https://github.com/org/repo"),
        ("ssh://git@git.example:2222/team/app.git", "git+https://git.example/team/app"),
        ("git+https://git.example/team/app", "git+https://git.example/team/app"),
        ("http://git.internal/team/app", "git+http://git.internal/team/app"),
        ("/srv/git/app.git", None),
        ("../app", None),
        ("file:///srv/git/app.git", None),
        ("https://git.example/", None),
        ("", None),
        (None, None),
    ],
)
def test_repository_uri(remote: str | None, uri: str | None) -> None:
    assert repository_uri(remote) == uri
    if uri is not None:
        assert repository_uri(uri) == uri  # idempotent: a recorded URI reads back as itself


def test_the_default_repository_is_a_remote_never_a_local_path(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert default_repository(repo) is None
    git(repo, "remote", "add", "origin", "/srv/git/project.git")
    assert default_repository(repo) is None  # a clone of a local path names nothing another machine can reach
    git(repo, "remote", "add", "upstream", "git@git.example:team/project.git")
    assert default_repository(repo) == "git+https://git.example/team/project"
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "org/project")
    assert default_repository(repo) == "git+https://github.com/org/project"


def test_git_output_is_none_where_git_fails(repo: Path, tmp_path: Path) -> None:
    assert Git(repo).output("rev-parse", "--show-toplevel") == f"{repo}\n"
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    assert Git(outside).output("rev-parse", "--show-toplevel") is None
    assert Git(tmp_path / "missing").output("status") is None


def test_git_has_commit_only_for_a_commit_it_holds(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert Git(repo).has_commit(head)
    assert not Git(repo).has_commit("0" * 40)
    assert not Git(repo).has_commit(tree)  # an object, but not a commit


def test_a_commit_is_exported_as_committed_not_as_on_disk(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "app" / "main.py").write_text("print('uncommitted')\n")
    (repo / "app" / "new.py").write_text("x = 1\n")
    dest = tmp_path / "out" / "source"
    export_commit(repo, head, dest)
    assert (dest / "app" / "main.py").read_text() == "print('hi')\n"
    assert not (dest / "app" / "new.py").exists() and not (dest / ".git").exists()
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        ".gitignore",
        "app/main.py",
        "envbuild.toml",
        "lockfiles/cpu-infer.txt",
    ]
    assert list((tmp_path / "out").iterdir()) == [dest]  # no temporary archive left beside it


def test_exporting_a_commit_the_checkout_lacks_says_how_to_fetch_it(repo: Path, tmp_path: Path) -> None:
    missing = "1" * 40
    with pytest.raises(UsageError, match=f"does not hold commit {missing}") as raised:
        export_commit(repo, missing, tmp_path / "dest")
    assert raised.value.hint is not None and f"git fetch origin {missing}" in raised.value.hint
    assert not (tmp_path / "dest").exists()
    with pytest.raises(ToolError, match="git failed"):
        Git(repo).export(missing, tmp_path / "dest")


def test_the_repository_root_is_the_work_tree_holding_a_directory(repo: Path, tmp_path: Path) -> None:
    assert repository_root(repo / "app") == repo
    assert repository_root(repo) == repo
    outside = tmp_path / "plain" / "dir"
    outside.mkdir(parents=True)
    assert repository_root(outside) == outside  # no work tree: the directory itself

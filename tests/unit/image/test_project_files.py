"""[image].files on real file trees: links out of the project, links kept as links, ".", missing paths.

The refusals are checked through the CLI on a copy of the render fixture (tests/assets/render-project),
where they must come before anything is built; staging and the build-input digest are checked on
the functions the image build calls.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from envbuild.errors import UsageError
from envbuild.image import projectfiles
from envbuild.image.fetch import stage_project
from envbuild.workspace import Workspace
from support.paths import ASSETS

FIXTURE = ASSETS / "render-project"
STAGED = ".envbuild/stage/project"


def tree_digest(root: Path, files: tuple[str, ...]) -> str:
    """The digest of the project files that the build key covers."""
    return projectfiles.digest(projectfiles.collect(root, files))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch copy of the render fixture, and a secret file outside it."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "shadow").write_text("root:SECRET-HASH:19000::::::\n", encoding="utf-8")
    return root


def set_files(root: Path, files: str) -> None:
    """Replace the fixture's [image] files list with the TOML array ``files``."""
    spec = root / "envbuild.toml"
    text = spec.read_text(encoding="utf-8")
    old = 'files = ["fixture_app", "config/serve.toml"]'
    assert old in text
    spec.write_text(text.replace(old, f"files = {files}"), encoding="utf-8")


def staged_tree(root: Path) -> dict[str, str]:
    """The staged project: relative path -> 'dir', 'link -> TARGET' or the file's text."""
    base = root / STAGED
    out: dict[str, str] = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base).as_posix()
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_text(encoding="utf-8")
    return out


# -- links that leave the project ----------------------------------------------------------


# Each maker plants a link and returns it (relative to the project); ESCAPES pairs it with the entry.


def link_file_entry(root: Path) -> str:
    """A listed file that is a link to a file outside the project."""
    (root / "passwords").symlink_to(root.parent / "outside" / "shadow")
    return "passwords"


def link_dir_entry(root: Path) -> str:
    """A listed directory that is a link to a directory outside the project."""
    (root / "data").symlink_to(root.parent / "outside")
    return "data"


def absolute_link_inside_dir(root: Path) -> str:
    """A link inside a listed directory, with an absolute target."""
    (root / "fixture_app" / "secrets").symlink_to("/etc/shadow")
    return "fixture_app/secrets"


def relative_link_inside_dir(root: Path) -> str:
    """A link inside a listed directory that climbs out of the project with '..'."""
    (root / "fixture_app" / "shadow").symlink_to("../../outside/shadow")
    return "fixture_app/shadow"


def link_in_the_path(root: Path) -> str:
    """A listed file reached through a linked directory outside the project."""
    (root / "data").symlink_to(root.parent / "outside")
    return "data"


ESCAPES = [
    pytest.param(link_file_entry, "passwords", id="file-entry"),
    pytest.param(link_dir_entry, "data", id="dir-entry"),
    pytest.param(absolute_link_inside_dir, "fixture_app", id="absolute-inside-dir"),
    pytest.param(relative_link_inside_dir, "fixture_app", id="dotdot-inside-dir"),
    pytest.param(link_in_the_path, "data/shadow", id="linked-parent"),
]


@pytest.mark.parametrize(("make", "entry"), ESCAPES)
@pytest.mark.parametrize("command", ["dockerfile", "image"])
def test_link_out_of_the_project_is_refused(
    project: Path, cli: Callable[..., CliResult], make: Callable[[Path], str], entry: str, command: str
) -> None:
    """A link leaving the project is a usage error naming the link and its target, before any build."""
    link = make(project)
    set_files(project, f'["{entry}", "config/serve.toml"]')
    result = cli("-C", project, command)
    assert result.code == 2, result.err
    assert link in result.err
    assert os.readlink(project / link) in result.err
    assert "outside the project" in result.err
    assert "Traceback" not in result.err
    assert not (project / ".envbuild").exists(), "refused after something was staged or built"


def test_staging_refuses_a_link_out_of_the_project(project: Path) -> None:
    """Staging itself refuses outside content, so no other caller can copy it into an image."""
    link_file_entry(project)
    with pytest.raises(UsageError, match="outside the project"):
        stage_project(Workspace.at(project), ("passwords",))
    staged = project / STAGED
    assert not staged.exists() or "SECRET-HASH" not in "".join(staged_tree(project).values())


def test_link_names_are_quoted_in_the_message(project: Path, cli: Callable[..., CliResult]) -> None:
    """A link whose name holds a terminal escape is named quoted, so the message cannot drive the terminal."""
    (project / "fixture_app" / "x\x1b[2Jy").symlink_to("/etc/shadow")
    result = cli("-C", project, "dockerfile")
    assert result.code == 2, result.err
    assert "\x1b" not in result.err
    assert "'fixture_app/x\\x1b[2Jy' -> '/etc/shadow'" in result.err


# -- links inside the project ---------------------------------------------------------------


def test_links_inside_the_project_are_staged_as_links(project: Path) -> None:
    """A link inside a listed directory stays a link with its own target; a listed link is its target."""
    app = project / "fixture_app"
    (app / "data").mkdir()
    (app / "data" / "v2.csv").write_text("a,b\n", encoding="utf-8")
    (app / "current.csv").symlink_to("data/v2.csv")
    (app / "dangling").symlink_to("data/v3.csv")
    (project / "serve.toml").symlink_to("config/serve.toml")
    stage_project(Workspace.at(project), ("fixture_app", "serve.toml"))
    tree = staged_tree(project)
    assert tree["fixture_app/current.csv"] == "link -> data/v2.csv"
    assert tree["fixture_app/dangling"] == "link -> data/v3.csv"
    assert tree["serve.toml"] == (project / "config" / "serve.toml").read_text(encoding="utf-8")


def test_digest_covers_link_targets(project: Path) -> None:
    """Pointing a link at another file with the same bytes changes the build-input digest."""
    app = project / "fixture_app"
    (app / "a.csv").write_text("same\n", encoding="utf-8")
    (app / "b.csv").write_text("same\n", encoding="utf-8")
    (app / "current.csv").symlink_to("a.csv")
    before = tree_digest(project, ("fixture_app",))
    (app / "current.csv").unlink()
    (app / "current.csv").symlink_to("b.csv")
    assert tree_digest(project, ("fixture_app",)) != before


# -- "." -------------------------------------------------------------------------------------


def test_dot_is_the_project_without_vcs_outputs_and_bytecode(project: Path) -> None:
    """files = ["."] stages the project, minus .git, envbuild's outputs and bytecode caches."""
    for rel in (".git/HEAD", ".hg/store", ".envbuild/images/x", "lockfiles/extra.txt", "images/x.Dockerfile"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("output\n", encoding="utf-8")
    (project / ".dockerignore").write_text("*\n", encoding="utf-8")
    (project / "fixture_app" / "__pycache__").mkdir()
    (project / "fixture_app" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (project / "fixture_app" / "stale.pyc").write_bytes(b"\0")
    (project / "fixture_app" / "lockfiles").mkdir()  # only the top-level outputs are envbuild's
    (project / "fixture_app" / "lockfiles" / "keep.txt").write_text("data\n", encoding="utf-8")
    before = tree_digest(project, (".",))
    stage_project(Workspace.at(project), (".",))
    tree = staged_tree(project)
    assert set(tree) == {
        "envbuild.toml",
        "pyproject.toml",
        "fixture_app",
        "fixture_app/__init__.py",
        "fixture_app/lockfiles",
        "fixture_app/lockfiles/keep.txt",
        "config",
        "config/serve.toml",
    }
    # Staging wrote into .envbuild/, which "." does not cover: the digest is unchanged.
    assert tree_digest(project, (".",)) == before


def test_dot_renders_one_copy_of_the_project(project: Path, cli: Callable[..., CliResult]) -> None:
    """With files = ["."], the Dockerfile copies the staged project into the workdir, once."""
    set_files(project, '["."]')
    result = cli("-C", project, "dockerfile")
    assert result.code == 0, result.err
    text = (project / "images" / "cpu-infer.Dockerfile").read_text(encoding="utf-8")
    copies = [line for line in text.splitlines() if line.startswith(f"COPY {STAGED}")]
    assert copies == [f"COPY {STAGED}/ /srv/app/"]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        pytest.param('[".", "fixture_app"]', "'.' already copies the whole project", id="dot-and-more"),
        pytest.param('["fixture_app/../../etc"]', "outside the project", id="dotdot"),
        pytest.param('["/etc/shadow"]', "outside the project", id="absolute"),
    ],
)
def test_bad_entries_are_spec_errors(project: Path, cli: Callable[..., CliResult], files: str, problem: str) -> None:
    """Entries that cannot mean a part of the project are refused with the key and the fix."""
    set_files(project, files)
    result = cli("-C", project, "dockerfile")
    assert result.code == 2, result.err
    assert "image.files" in result.err and problem in result.err
    assert "Traceback" not in result.err


# -- missing and special files ---------------------------------------------------------------


@pytest.mark.parametrize("command", [["dockerfile"], ["dockerfile", "--check"], ["image"]])
def test_missing_entry_is_refused_up_front(project: Path, cli: Callable[..., CliResult], command: list[str]) -> None:
    """An entry that does not exist is a usage error naming it, whatever the command."""
    set_files(project, '["fixture_app", "config/serve.tom"]')
    result = cli("-C", project, *command)
    assert result.code == 2, result.err
    assert "'config/serve.tom'" in result.err and "does not exist" in result.err
    assert "Traceback" not in result.err


def test_special_file_is_refused(project: Path, cli: Callable[..., CliResult]) -> None:
    """A FIFO in a listed directory (copying it would hang) is refused, named."""
    os.mkfifo(project / "fixture_app" / "events")
    result = cli("-C", project, "dockerfile")
    assert result.code == 2, result.err
    assert "fixture_app/events" in result.err and "not a regular file" in result.err

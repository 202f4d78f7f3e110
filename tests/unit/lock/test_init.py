"""Unit tests for envbuild.lock.starter: the starter spec is valid, and init refuses to clobber."""

from __future__ import annotations

import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envbuild.errors import SpecError, UsageError
from envbuild.lock.spec import load_spec
from envbuild.lock.starter import init_spec
from support.tools import require_tool

TODAY = datetime(2026, 11, 1, 15, 30, tzinfo=UTC)


def write_files(root: Path, *paths: str, text: str = "") -> None:
    """Empty (or ``text``) files at ``paths`` under ``root``."""
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")


def write_pyproject(root: Path, requires_python: str = ">=3.11", extra: str = "") -> None:
    """A project with dependencies and 'train' / 'inference' groups."""
    text = f"""
    [project]
    name = "My_Model"
    version = "0.1.0"
    requires-python = "{requires_python}"
    dependencies = ["numpy>=2.0", "onnxruntime>=1.20"]

    [dependency-groups]
    train = ["scikit-learn>=1.5"]
    inference = ["fastapi>=0.110"]
    dev = ["pytest>=8"]
    """
    (root / "pyproject.toml").write_text(textwrap.dedent(text).lstrip() + extra, encoding="utf-8")


def test_starter_spec_loads(tmp_path: Path) -> None:
    """The written spec is accepted by load_spec and maps groups onto roles."""
    write_pyproject(tmp_path)
    write_files(tmp_path, "src/my_model/__init__.py", "src/my_model/predict.py")

    starter = init_spec(tmp_path, today=TODAY)

    assert starter.spec == tmp_path / "envbuild.toml"
    spec = load_spec(tmp_path)
    assert spec.name == "my_model"
    assert spec.python == "3.11"
    assert spec.exclude_newer == "2026-11-01T00:00:00Z"  # today, at midnight UTC
    assert spec.dependencies == ("numpy>=2.0", "onnxruntime>=1.20")
    assert spec.role("train").dependencies == ("scikit-learn>=1.5",)
    assert spec.role("infer").dependencies == ("fastapi>=0.110",)
    assert spec.role("infer").entrypoint == ("python", "-m", "my_model.predict")
    assert spec.role("train").entrypoint == ()  # no my_model/train.py: no entrypoint
    assert [a.name for a in spec.accelerators] == ["cpu"]
    assert spec.accelerator("cpu").base.debian == "bookworm"
    assert spec.accelerator("cpu").base.packages == (
        "python3",
        "ca-certificates",
        "libstdc++6",
        "libgomp1",
    )
    assert spec.image.files == ("src/my_model",)


def test_starter_without_pyproject_loads(tmp_path: Path) -> None:
    """A bare directory still gets a valid spec, named after the directory."""
    root = tmp_path / "Bare Project"
    root.mkdir()
    init_spec(root, today=TODAY)
    spec = load_spec(root)
    assert spec.name == "bare-project"
    assert spec.dependencies == ()
    assert spec.image.files == ()  # nothing to copy
    assert spec.role("train").entrypoint == spec.role("infer").entrypoint == ()


def test_requires_python_312_picks_trixie(tmp_path: Path) -> None:
    """requires-python >=3.12 cannot use bookworm's 3.11: trixie with 3.13."""
    write_pyproject(tmp_path, requires_python=">=3.12")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.python == "3.13"
    assert spec.accelerator("cpu").base.debian == "trixie"


def test_requires_python_compatible_release(tmp_path: Path) -> None:
    """'~=3.12' means >=3.12 too: the starter must not pick Python 3.11."""
    write_pyproject(tmp_path, requires_python="~=3.12")
    init_spec(tmp_path, today=TODAY)
    assert load_spec(tmp_path).python == "3.13"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing envbuild.toml is kept unless force is given."""
    write_pyproject(tmp_path)
    existing = tmp_path / "envbuild.toml"
    existing.write_text("# mine\n", encoding="utf-8")

    with pytest.raises(UsageError) as info:
        init_spec(tmp_path, today=TODAY)
    assert info.value.exit_code == 2
    assert f"{existing} already exists" in info.value.message
    assert info.value.hint is not None and "--force" in info.value.hint
    assert existing.read_text(encoding="utf-8") == "# mine\n"

    init_spec(tmp_path, force=True, today=TODAY)
    assert existing.read_text(encoding="utf-8") != "# mine\n"
    assert load_spec(tmp_path).name == "my_model"


def test_refuses_pyproject_with_tool_envbuild(tmp_path: Path) -> None:
    """A project that already has [tool.envbuild] keeps its spec there."""
    write_pyproject(tmp_path, extra='\n[tool.envbuild]\npython = "3.11"\n')
    with pytest.raises(UsageError) as info:
        init_spec(tmp_path, today=TODAY)
    assert "already has [tool.envbuild]" in info.value.message
    assert info.value.exit_code == 2
    assert not (tmp_path / "envbuild.toml").exists()


# -- dependencies from requirements files ---------------------------------------------------


def test_requirements_only_project(tmp_path: Path) -> None:
    """Without [project], requirements.txt is shared, -train the train role's, -serve the infer role's."""
    (tmp_path / "requirements.txt").write_text(
        textwrap.dedent(
            """\
            # pinned by hand
            numpy>=2.0  # a comment after the requirement

            pandas==2.2.3 \\
                --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000
            tomli; python_version < "3.11"
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "requirements-train.txt").write_text("-r requirements.txt\nscikit-learn>=1.5\n", encoding="utf-8")
    (tmp_path / "requirements_serve.txt").write_text("fastapi[standard]>=0.110\n", encoding="utf-8")
    (tmp_path / "requirements-dev.txt").write_text("-e .\npytest\n", encoding="utf-8")  # never read
    (tmp_path / "requirements-gpu.txt").write_text("cupy\n", encoding="utf-8")

    init_spec(tmp_path, today=TODAY)

    spec = load_spec(tmp_path)
    assert spec.dependencies == ("numpy>=2.0", "pandas==2.2.3", 'tomli; python_version < "3.11"')
    assert spec.role("train").dependencies == ("scikit-learn>=1.5",)  # the included shared ones once
    assert spec.role("infer").dependencies == ("fastapi[standard]>=0.110",)
    text = (tmp_path / "envbuild.toml").read_text(encoding="utf-8")
    assert "Not read (development only): requirements-dev.txt." in text
    assert "requirements-gpu.txt" in text  # named as not read, for the user to map by hand
    assert "# From requirements-train.txt." in text


def test_requirements_includes_are_followed(tmp_path: Path) -> None:
    """-r, --requirement and --requirement= include files inside the project, relative to the including file."""
    write_files(tmp_path, "requirements/base.txt", text="-r common.txt\nrequests>=2\n")
    write_files(tmp_path, "requirements/common.txt", text="--requirement=base.txt\nclick\n")  # a cycle: read once
    write_files(tmp_path, "requirements.txt", text="--requirement requirements/base.txt\n--only-binary :all:\n")

    init_spec(tmp_path, today=TODAY)

    assert load_spec(tmp_path).dependencies == ("click", "requests>=2")


def test_pyproject_dependencies_win_over_requirements(tmp_path: Path) -> None:
    """A project with [project].dependencies: those are the list, requirements.txt is not read."""
    write_pyproject(tmp_path)
    (tmp_path / "requirements.txt").write_text("-e .\n", encoding="utf-8")  # would be refused if read
    init_spec(tmp_path, today=TODAY)
    assert load_spec(tmp_path).dependencies == ("numpy>=2.0", "onnxruntime>=1.20")


def test_project_without_dependencies_reads_requirements(tmp_path: Path) -> None:
    """A [project] without dependencies (dynamic, say): requirements.txt is read."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "svc"\ndynamic = ["dependencies"]\n', encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("numpy\n", encoding="utf-8")
    init_spec(tmp_path, today=TODAY)
    assert load_spec(tmp_path).dependencies == ("numpy",)


BAD_LINES = [
    ("numpy\n-e .\n", "requirements.txt:2", "[build-system]"),
    ("--editable=git+https://host/org/repo.git#egg=x\n", "requirements.txt:1", "list the package by name"),
    ("https://host/files/pkg-1.0-py3-none-any.whl\n", "requirements.txt:1", "list the package by name"),
    ("pkg @ https://host/pkg-1.0.tar.gz\n", "requirements.txt:1", "publish it to an index"),
    ("./vendor/pkg\n", "requirements.txt:1", "[build-system]"),
    ("\n\n--index-url https://user:secret@mirror.example/simple\n", "requirements.txt:3", "index-url ="),
    ("-ihttps://mirror.example/simple\n", "requirements.txt:1", "index-url ="),
    ("--extra-index-url https://download.example/whl\n", "requirements.txt:1", "[[indexes]]"),
    ("--find-links ./wheels\n", "requirements.txt:1", "[[indexes]]"),
    ("-c constraints.txt\n", "requirements.txt:1", "bounds"),
    ("--pre\n", "requirements.txt:1", "pre-release"),
    ("numpy>=>2\n", "requirements.txt:1", "PEP 508"),
    ("numpy --install-option=--fast\n", "requirements.txt:1", "remove it"),
    ("--use-feature=truststore\n", "requirements.txt:1", "remove the line"),
    ("-r ../outside.txt\n", "requirements.txt:1", "copy the file into the project"),
    ("-r missing.txt\n", "requirements.txt:1", "fix the path"),
    ("-r\n", "requirements.txt:1", "-r other-requirements.txt"),
]


@pytest.mark.parametrize(("text", "where", "fix"), BAD_LINES, ids=[b[0].strip()[:24] for b in BAD_LINES])
def test_requirements_a_spec_cannot_express_are_refused(tmp_path: Path, text: str, where: str, fix: str) -> None:
    """Each line a spec cannot express: a SpecError naming file:line and the fix; nothing written."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "requirements.txt").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        init_spec(root, today=TODAY)
    assert info.value.exit_code == 2
    assert info.value.message.startswith(f"{where}: "), info.value.message
    assert info.value.hint is not None and fix in info.value.hint, info.value.hint
    assert "secret" not in info.value.message + info.value.hint
    assert not (root / "envbuild.toml").exists()
    assert not (root / ".gitignore").exists()


def test_bad_line_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    """The file:line of an error is the included file's, relative to the project."""
    write_files(tmp_path, "requirements/base.txt", text="numpy\nnot a requirement!\n")
    write_files(tmp_path, "requirements-train.txt", text="-r requirements/base.txt\n")
    with pytest.raises(SpecError, match=r"^requirements/base\.txt:2: 'not a requirement!' is not a valid requirement"):
        init_spec(tmp_path, today=TODAY)


# -- entrypoints and files ------------------------------------------------------------------


def test_no_package_writes_no_entrypoint(tmp_path: Path) -> None:
    """Nothing to run or copy: no entrypoint, no files, and comments saying how to add them."""
    (tmp_path / "requirements.txt").write_text("numpy\n", encoding="utf-8")
    write_files(tmp_path, "tests/__init__.py", "docs/__init__.py", "setup.py", "conftest.py")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.role("train").entrypoint == spec.role("infer").entrypoint == ()
    assert spec.image.files == ()
    text = (tmp_path / "envbuild.toml").read_text(encoding="utf-8")
    assert "No entry module found" in text
    assert "the image runs the venv's python. Add one, e.g. entrypoint" in text
    assert "Nothing to copy found" in text


def test_src_layout_with_entry_modules(tmp_path: Path) -> None:
    """src/<pkg>/train.py and src/<pkg>/serve/__main__.py become python -m entrypoints."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "churn-model"\nversion = "1.0"\n', encoding="utf-8")
    write_files(
        tmp_path, "src/churn_model/__init__.py", "src/churn_model/train.py", "src/churn_model/serve/__main__.py"
    )
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.role("train").entrypoint == ("python", "-m", "churn_model.train")
    assert spec.role("infer").entrypoint == ("python", "-m", "churn_model.serve")
    assert spec.image.files == ("src/churn_model",)


def test_any_top_level_package_and_its_main(tmp_path: Path) -> None:
    """A package not named after the project is found; __main__.py runs it; tests/ is not a package."""
    write_files(tmp_path, "tests/__init__.py", "tests/train.py", "forecast/__init__.py", "forecast/__main__.py")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.role("train").entrypoint == spec.role("infer").entrypoint == ("python", "-m", "forecast")
    assert spec.image.files == ("forecast",)


def test_top_level_scripts(tmp_path: Path) -> None:
    """train.py and predict.py at the top run as scripts; the modules beside them are copied too."""
    write_files(tmp_path, "train.py", "predict.py", "features.py", "setup.py", "test_features.py")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.role("train").entrypoint == ("python", "train.py")
    assert spec.role("infer").entrypoint == ("python", "predict.py")
    assert spec.image.files == ("features.py", "predict.py", "train.py")


def test_single_module_file(tmp_path: Path) -> None:
    """A project that is one module: copied, and run with python -m when it has a main guard."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "tiny"\n', encoding="utf-8")
    write_files(tmp_path, "tiny.py", text='def main():\n    pass\n\nif __name__ == "__main__":\n    main()\n')
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.role("infer").entrypoint == ("python", "-m", "tiny")
    assert spec.image.files == ("tiny.py",)


def test_installed_package_copies_nothing_and_uses_its_scripts(tmp_path: Path) -> None:
    """A package with a [build-system] is installed as its wheel: no files, entrypoints from [project.scripts]."""
    pyproject = """
    [build-system]
    requires = ["hatchling"]
    build-backend = "hatchling.build"

    [project]
    name = "churn"
    version = "1.0"

    [project.scripts]
    churn-train = "churn.cli:train"
    """
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(pyproject), encoding="utf-8")
    write_files(tmp_path, "src/churn/__init__.py", "src/churn/cli.py", "src/churn/predict.py")
    init_spec(tmp_path, today=TODAY)
    spec = load_spec(tmp_path)
    assert spec.image.files == ()
    assert spec.role("train").entrypoint == ("churn-train",)
    assert spec.role("infer").entrypoint == ("python", "-m", "churn.predict")
    assert "files is for what the images\n# need that is not part of the package" in (
        tmp_path / "envbuild.toml"
    ).read_text(encoding="utf-8")


# -- .gitignore, repository, the comment on top ---------------------------------------------


def test_gitignore_created(tmp_path: Path) -> None:
    """No .gitignore: one is written listing .envbuild/."""
    starter = init_spec(tmp_path, today=TODAY)
    assert starter.gitignore == tmp_path / ".gitignore"
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == ".envbuild/\n"


def test_gitignore_appended(tmp_path: Path) -> None:
    """A .gitignore without the entry gets one line more, after a newline it lacked."""
    (tmp_path / ".gitignore").write_text("*.pyc\n.venv/", encoding="utf-8")
    init_spec(tmp_path, today=TODAY)
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "*.pyc\n.venv/\n.envbuild/\n"
    init_spec(tmp_path, today=TODAY, force=True)  # again: never a duplicate
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "*.pyc\n.venv/\n.envbuild/\n"


@pytest.mark.parametrize("line", [".envbuild/", "/.envbuild", ".envbuild", "  /.envbuild/  "])
def test_gitignore_already_listing(tmp_path: Path, line: str) -> None:
    """A .gitignore that lists .envbuild already is left byte for byte."""
    original = f"# outputs\n{line}\ndist/\n"
    (tmp_path / ".gitignore").write_text(original, encoding="utf-8")
    assert init_spec(tmp_path, today=TODAY).gitignore is None
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == original


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("https://user:token@GitLab.example.com/group/sub/repo.git", "https://gitlab.example.com/group/sub/repo"),
        ("ssh://git@github.com/org/repo", "https://github.com/org/repo"),
        ("/srv/git/repo.git", None),  # a local path names nothing another machine can reach
        (None, None),  # no origin
    ],
)
def test_repository_from_origin(tmp_path: Path, remote: str | None, expected: str | None) -> None:
    """The origin remote becomes repository = https URL, credentials stripped."""
    git = require_tool("git")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    if remote is not None:
        subprocess.run([git, "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    init_spec(tmp_path, today=TODAY)
    assert load_spec(tmp_path).repository == expected
    assert "token" not in (tmp_path / "envbuild.toml").read_text(encoding="utf-8")


def test_top_comment_points_to_the_shipped_docs(tmp_path: Path) -> None:
    """The starter's reference is 'envbuild docs spec', which works outside envbuild's repository."""
    init_spec(tmp_path, today=TODAY)
    text = (tmp_path / "envbuild.toml").read_text(encoding="utf-8")
    assert text.startswith("# envbuild spec: what to lock and build. Every key is explained by 'envbuild docs spec'.")
    assert "docs/spec.md" not in text
    assert "Commit it with lockfiles/, images/*.Dockerfile and .dockerignore" in text


def test_gpu_base_comment_has_the_same_packages(tmp_path: Path) -> None:
    """The commented-out GPU base, once uncommented, has the libraries the CPU base has."""
    init_spec(tmp_path, today=TODAY)
    text = (tmp_path / "envbuild.toml").read_text(encoding="utf-8")
    bases = [line.removeprefix("# ") for line in text.splitlines() if "base = {" in line]
    assert len(bases) == 2 and bases[0] == bases[1]
    assert '"libstdc++6", "libgomp1"' in bases[0]

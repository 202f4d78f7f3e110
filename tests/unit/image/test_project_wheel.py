"""The project as a package: found in the spec, rendered, recorded, and its sources copied clean.

The wheel builds themselves (uv, a real build backend, the index) are in
tests/integration/image/test_project_package.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.errors import SpecError
from envbuild.image import projectwheel
from envbuild.image.projectwheel import ProjectWheel, WheelSource, build_env
from envbuild.image.record import BuildRecord, WheelRecord
from envbuild.image.render import render
from envbuild.lock.lockfile import read_lockset
from envbuild.lock.spec import Package, load_spec
from support.paths import ASSETS
from support.records import build_record, record_json
from support.tools import require_tool

FIXTURE = ASSETS / "render-project"
BUILD_SYSTEM = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
PROJECT_RECORD = {
    "filename": "render_fixture-0.3.1-py3-none-any.whl", "name": "render-fixture", "sha256": "aa" * 32, "url": ".",
    "version": "0.3.1",
}  # fmt: skip


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """The render fixture, its pyproject.toml given a [build-system]."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(BUILD_SYSTEM + pyproject.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_a_pyproject_with_a_build_system_is_a_package(package: Path) -> None:
    assert load_spec(package).package == Package(directory=package.resolve(), name="render-fixture")


def test_without_a_build_system_or_a_name_it_is_not(package: Path) -> None:
    assert load_spec(FIXTURE).package is None
    pyproject = package / "pyproject.toml"
    pyproject.write_text(BUILD_SYSTEM + '[tool.poetry]\nname = "old-style"\n', encoding="utf-8")
    assert load_spec(package).package is None  # no [project].name: copied with [image] files, not installed


def test_a_build_system_that_is_not_a_table_is_a_spec_error(package: Path) -> None:
    (package / "pyproject.toml").write_text('build-system = "hatchling"\n[project]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"build-system: expected a table"):
        load_spec(package)


def test_a_package_renders_its_install_and_its_version_argument(package: Path) -> None:
    spec = load_spec(package)
    rendered = render(spec, read_lockset(package))
    text = rendered.text("images/cpu-infer.Dockerfile")
    assert "--mount=type=bind,source=.envbuild/stage/package,target=/tmp/package" in text
    install = text.index("-r /tmp/package/requirements.txt")
    assert text.index("-r /tmp/lock.txt") < install < text.index("-m compileall")  # after the locked wheels
    assert "--no-index --find-links /tmp/package" in text and "--require-hashes --no-deps" in text
    assert text.count("ARG VERSION") == 2 and "ARG VERSION=0.3.1\n" in text  # the default: [project].version
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert 'org.opencontainers.image.version="0.3.1"' not in text
    assert "!.envbuild/stage/package\n" in rendered.text(".dockerignore")
    plain = render(load_spec(FIXTURE), read_lockset(FIXTURE)).text("images/cpu-infer.Dockerfile")
    assert "/tmp/package" not in plain and "VERSION" not in plain


def test_a_packages_dockerfile_is_hadolint_clean(package: Path, tmp_path: Path) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.is_file() else require_tool("hadolint")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render(load_spec(package), read_lockset(package)).text("images/cpu-infer.Dockerfile"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")} | {"HOME": str(tmp_path)}
    result = subprocess.run(
        [binary, "--no-color", str(dockerfile)], capture_output=True, text=True, env=env, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_project_wheel_is_in_the_record_and_its_key() -> None:
    plain = build_record()
    with_project = build_record(project=PROJECT_RECORD)
    assert "project" not in plain.to_json()  # records of projects that are no package keep their keys
    assert with_project.to_json()["project"] == PROJECT_RECORD
    assert with_project.key() != plain.key()
    other = build_record(project={**PROJECT_RECORD, "sha256": "bb" * 32})
    assert other.key() != with_project.key()  # another wheel: another image
    again = BuildRecord.from_json(json.loads(with_project.file_text()), source=Path("build.json"))
    assert again == with_project and again.project == WheelRecord(**PROJECT_RECORD)


def test_a_damaged_project_entry_is_named() -> None:
    data = record_json(project={**PROJECT_RECORD, "sha256": 7})
    with pytest.raises(Exception, match=r"project\.sha256 is int, not str"):
        BuildRecord.from_json(data, source=Path("build.json"))


def test_the_build_sees_no_host_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """PIP_*, PYTHONPATH, SETUPTOOLS_SCM_PRETEND_VERSION, UV_INDEX_URL: none reach the backend."""
    for name, value in {
        "PIP_FIND_LINKS": "/opt/wheels", "PIP_CONSTRAINT": "/c.txt", "PYTHONPATH": "/host",
        "SETUPTOOLS_SCM_PRETEND_VERSION": "9.9", "UV_INDEX_URL": "https://elsewhere.example/simple",
        "HTTPS_PROXY": "http://proxy.example:3128", "UV_INDEX_PRIVATE_PASSWORD": "pw",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    env = build_env(1_800_000_000)
    assert not [k for k in env if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"]
    assert "PYTHONPATH" not in env and "SETUPTOOLS_SCM_PRETEND_VERSION" not in env and "UV_INDEX_URL" not in env
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["UV_INDEX_PRIVATE_PASSWORD"] == "pw"
    assert env["SOURCE_DATE_EPOCH"] == "1800000000" and env["UV_NO_CONFIG"] == "1"
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["GIT_CONFIG_GLOBAL"] == os.devnull


def write_package(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("x = 1\n", encoding="utf-8")
    (root / "pyproject.toml").write_text(BUILD_SYSTEM + '[project]\nname = "pkg"\nversion = "1"\n', encoding="utf-8")
    (root / "envbuild.toml").write_text(
        'python = "3.11"\nexclude-newer = "2026-11-01T00:00:00Z"\n[roles.infer]\nentrypoint = ["pkg"]\n'
        '[accelerators.cpu]\nbase = { debian = "bookworm" }\n',
        encoding="utf-8",
    )


def leave_leftovers(root: Path) -> None:
    """What building and running the project on the host leaves, which must never reach its wheel."""
    leftovers = ("build/lib/pkg/stale.py", "dist/pkg-0.whl", "src/pkg.egg-info/SOURCES.txt", ".tox/x",
                 "src/pkg/__pycache__/x.cpython-311.pyc", ".venv/bin/python", ".envbuild/stage/x")  # fmt: skip
    for rel in leftovers:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("leftover\n", encoding="utf-8")


def sources_of(spec_root: Path, source: WheelSource, dest: Path) -> tuple[set[str], projectwheel.WheelInputs]:
    spec = load_spec(spec_root)
    assert spec.package is not None
    plan = projectwheel._plan(spec, spec.package, source, uv_id="uv-sha")
    tree = projectwheel._materialise(plan, dest)
    files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts}
    return files, plan.inputs


def test_outside_git_the_sources_are_a_copy_without_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_package(root)
    clean, inputs = sources_of(root, WheelSource(epoch=1, commit=None), tmp_path / "a")
    leave_leftovers(root)
    (root / "src" / "pkg" / "build").mkdir()  # a subpackage named build is the package's own
    (root / "src" / "pkg" / "build" / "__init__.py").write_text("", encoding="utf-8")
    files, again = sources_of(root, WheelSource(epoch=1, commit=None), tmp_path / "b")
    assert files == clean | {"src/pkg/build/__init__.py"}
    assert clean == {"envbuild.toml", "pyproject.toml", "src/pkg/__init__.py"}
    assert again.key() != inputs.key() and inputs.source.startswith("files:")


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-02T12:00:00Z", "GIT_COMMITTER_DATE": "2026-11-02T12:00:00Z"}
    command = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout.strip()


def test_in_git_the_sources_are_the_commit_with_history_and_tags(tmp_path: Path) -> None:
    """A shared clone at the build's commit: tags for a dynamic version, no leftovers, only the project's part."""
    top = tmp_path / "repo"
    root = top / "service"
    write_package(root)
    (root / "src" / "pkg" / "extra.py").write_text("y = 1\n", encoding="utf-8")
    (top / "docs").mkdir()
    (top / "docs" / "big.md").write_text("elsewhere\n", encoding="utf-8")
    git(top, "init", "-q")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "one")
    git(top, "tag", "v1.0")
    commit = git(top, "rev-parse", "HEAD")
    leave_leftovers(root)
    source = WheelSource(epoch=1, commit=commit)
    files, inputs = sources_of(root, source, tmp_path / "clone")
    assert files == {"envbuild.toml", "pyproject.toml", "src/pkg/__init__.py", "src/pkg/extra.py"}
    assert not (tmp_path / "clone" / "docs").exists()  # sparse: the project's directory only
    assert git(tmp_path / "clone", "describe", "--tags", "--dirty") == "v1.0"
    assert (inputs.project, inputs.source, inputs.dirty) == ("service", f"git:{commit}", None)
    assert inputs.python == ".".join(map(str, sys.version_info[:3]))
    # Allowed uncommitted changes are copied over the clone (and name the wheel); a deletion deletes.
    (root / "src" / "pkg" / "__init__.py").write_text("x = 2\n", encoding="utf-8")
    (root / "src" / "pkg" / "extra.py").unlink()
    dirty = dataclasses.replace(
        source, dirty=("service/src/pkg/extra.py", "service/src/pkg/__init__.py", "docs/big.md"), dirty_sha256="d1"
    )
    files, with_changes = sources_of(root, dirty, tmp_path / "dirty")
    assert files == {"envbuild.toml", "pyproject.toml", "src/pkg/__init__.py"}
    assert (tmp_path / "dirty" / "service" / "src" / "pkg" / "__init__.py").read_text(encoding="utf-8") == "x = 2\n"
    assert with_changes.dirty == "d1" and with_changes.key() != inputs.key()


def test_a_wheel_for_the_host_is_refused(tmp_path: Path) -> None:
    package = Package(directory=tmp_path, name="pkg")
    wheel = tmp_path / "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    with pytest.raises(projectwheel.ProjectBuildError, match="built for this machine") as caught:
        projectwheel._check(wheel, package)
    assert "pure-Python project wheels only" in (caught.value.hint or "")
    projectwheel._check(tmp_path / "pkg-1.0-py3-none-any.whl", package)


def test_staged_with_its_hash_pinned_requirement(tmp_path: Path) -> None:
    cached = tmp_path / "cache" / "pkg-1.0-py3-none-any.whl"
    cached.parent.mkdir()
    cached.write_bytes(b"wheel")
    wheel = ProjectWheel(name="pkg", version="1.0", filename=cached.name, sha256="ab" * 32, path=cached, directory=".")
    projectwheel.stage(tmp_path / "package", wheel)
    assert sorted(p.name for p in (tmp_path / "package").iterdir()) == [cached.name, "requirements.txt"]
    requirement = (tmp_path / "package" / "requirements.txt").read_text(encoding="utf-8")
    assert requirement == f"pkg==1.0 --hash=sha256:{'ab' * 32}\n"
    projectwheel.stage(tmp_path / "package", None)
    assert not (tmp_path / "package").exists()


def test_an_unchanged_project_takes_its_wheel_from_the_cache(tmp_path: Path) -> None:
    """The key is known before any clone or copy: a wheel stored under it is taken, and nothing is built."""
    root = tmp_path / "p"
    write_package(root)
    spec = load_spec(root)
    assert spec.package is not None
    source = WheelSource(epoch=1, commit=None)
    key = projectwheel._plan(spec, spec.package, source, uv_id="uv-sha").inputs.key()
    stored = tmp_path / "cache" / "projects" / key / "pkg-1-py3-none-any.whl"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"a wheel")
    found = projectwheel.project_wheel(
        spec, source, uv="/no/such/uv", uv_id="uv-sha", cache=tmp_path / "cache", work=tmp_path / "work"
    )
    assert (found.path, found.version, found.directory) == (stored, "1", ".")
    assert not (tmp_path / "work").exists()
    (root / "src" / "pkg" / "__init__.py").write_text("x = 2\n", encoding="utf-8")  # another source: another key
    assert projectwheel._plan(spec, spec.package, source, uv_id="uv-sha").inputs.key() != key

"""A project that is itself a Python package: its wheel is built on the host and installed in the image.

The test writes the project (not the demo): a hatchling package whose version comes from git
(hatch-vcs), with a console script and a package data file, and a setuptools + setuptools-scm
one. Real uv, real build backends from the package index, real buildah; the images are
unpacked with umoci and run with chroot. The Debian base is the demo's, from the session's
cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from envbuild.oci.annotations import LAYER
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from support.demo import COMMIT_DATE, built, cli_process
from support.registry import Registry

pytestmark = [pytest.mark.network, pytest.mark.slow]

SPEC = """\
name = "hello"
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"

[roles.infer]
entrypoint = ["hello"]

[roles.train]
entrypoint = ["hello"]

[accelerators.cpu]
base = { debian = "bookworm", packages = ["python3", "ca-certificates", "libstdc++6", "libgomp1"] }

[image]
files = ["."]
exclude = ["tests", "*.ipynb", "src", "build/"]
"""
HATCH = """\
[build-system]
requires = ["hatchling", "hatch-vcs"]
build-backend = "hatchling.build"

[project]
name = "hello-pkg"
dynamic = ["version"]
requires-python = ">=3.11"
dependencies = ["packaging>=24"]

[project.scripts]
hello = "hello_pkg.cli:main"

[tool.hatch.version]
source = "vcs"

[tool.hatch.build.targets.wheel]
packages = ["src/hello_pkg"]
"""
SETUPTOOLS = """\
[build-system]
requires = ["setuptools>=70", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"

[project]
name = "hello-pkg"
dynamic = ["version"]
requires-python = ">=3.11"
dependencies = ["packaging>=24"]

[project.scripts]
hello = "hello_pkg.cli:main"

[tool.setuptools.package-data]
hello_pkg = ["*.txt"]

[tool.setuptools_scm]
"""
INIT = 'from importlib.metadata import version\n\n__version__ = version("hello-pkg")\n'
CLI = """\
from importlib.resources import files

import hello_pkg


def main() -> None:
    data = files("hello_pkg").joinpath("data.txt").read_text().strip()
    print(f"hello {hello_pkg.__version__} {data}")
"""


def git(project: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE}
    command = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout.strip()


def commit(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def make_package(path: Path, pyproject: str, cache: Path, *, tag: str = "v0.3.0") -> Path:
    """The package at ``path``: written, committed, tagged, locked and committed again (tag on the last)."""
    (path / "src" / "hello_pkg").mkdir(parents=True)
    (path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (path / "envbuild.toml").write_text(SPEC, encoding="utf-8")
    (path / "src" / "hello_pkg" / "__init__.py").write_text(INIT, encoding="utf-8")
    (path / "src" / "hello_pkg" / "cli.py").write_text(CLI, encoding="utf-8")
    (path / "src" / "hello_pkg" / "data.txt").write_text("packaged data\n", encoding="utf-8")
    (path / "tests").mkdir()
    (path / "tests" / "test_cli.py").write_text("def test(): pass\n", encoding="utf-8")
    (path / "notebooks").mkdir()
    (path / "notebooks" / "eda.ipynb").write_text("{}\n", encoding="utf-8")
    (path / "serve.yaml").write_text("port: 8080\n", encoding="utf-8")
    # What building and running it on the host leaves behind: ignored by git, never in the wheel.
    (path / ".gitignore").write_text(".envbuild/\nbuild/\n*.egg-info/\n__pycache__/\n", encoding="utf-8")
    git(path, "init", "-q")
    locked = cli_process(path, cache, "lock")
    assert locked.returncode == 0, locked.stderr
    dockerfiles = cli_process(path, cache, "dockerfile")
    assert dockerfiles.returncode == 0, dockerfiles.stderr
    commit(path, "the package")
    git(path, "tag", tag)
    return path


def leave_leftovers(path: Path) -> None:
    """A stale module in build/lib and a stale egg-info: setuptools puts such files in a wheel built in place."""
    for rel in (
        "build/lib/hello_pkg/stale.py",
        "src/hello_pkg.egg-info/SOURCES.txt",
        "src/hello_pkg/__pycache__/x.pyc",
    ):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("src/hello_pkg/stale.py\n", encoding="utf-8")


def image_dir(project: Path) -> Path:
    return project / ".envbuild" / "images" / "cpu-infer"


def build(project: Path, cache: Path, *args: str) -> dict[str, Any]:
    return built(cli_process(project, cache, "-v", "image", "--variant", "cpu-infer", *args))["cpu-infer"]


def record(project: Path) -> dict[str, Any]:
    return dict(json.loads((image_dir(project) / "build.json").read_text(encoding="utf-8")))


def config(project: Path) -> dict[str, Any]:
    layout = Layout.open(image_dir(project))
    manifest = json.loads(layout.read_blob(layout.select().digest))
    return dict(json.loads(layout.read_blob(Digest.parse(manifest["config"]["digest"]))))


def layers(project: Path) -> dict[str, str]:
    layout = Layout.open(image_dir(project))
    manifest = json.loads(layout.read_blob(layout.select().digest))
    return {d["annotations"][LAYER]: d["digest"] for d in manifest["layers"] if LAYER in d.get("annotations", {})}


def run_image(project: Path, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the project's image (unpacked with umoci) as its user, with its environment."""
    bundle = tmp_path / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    subprocess.run(
        ["umoci", "unpack", "--image", f"{image_dir(project)}:hello-cpu-infer", bundle], check=True, capture_output=True
    )
    process = json.loads((bundle / "config.json").read_text())["process"]
    rootfs = bundle / "rootfs"
    subprocess.run(["mount", "-t", "proc", "proc", rootfs / "proc"], check=True)
    try:
        user = f"--userspec={process['user']['uid']}:{process['user']['gid']}"
        return subprocess.run(
            ["chroot", user, rootfs, "/usr/bin/env", "-i", *process["env"], *(argv or process["args"])],
            capture_output=True, text=True, timeout=600, cwd=rootfs,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", rootfs / "proc"], check=True)


@pytest.fixture(scope="module")
def hatch_project(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, dict[str, Any]]:
    """The hatchling package, with its cpu-infer image built once: (project, what envbuild reported)."""
    project = make_package(tmp_path_factory.mktemp("hatch") / "hello", HATCH, demo_cache)
    return project, build(project, demo_cache)


def test_the_installed_package_runs_with_its_version_script_and_data(
    hatch_project: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    project, _ = hatch_project
    ran = run_image(project, tmp_path)  # the entrypoint: the [project.scripts] script
    assert (ran.returncode, ran.stdout) == (0, "hello 0.3.0 packaged data\n"), ran.stderr
    probe = "import importlib.metadata as m, hello_pkg; print(m.version('hello-pkg'), hello_pkg.__file__)"
    ran = run_image(project, tmp_path, "python", "-c", probe)
    assert ran.stdout == "0.3.0 /opt/venv/lib/python3.11/site-packages/hello_pkg/__init__.py\n", ran.stderr
    listed = run_image(project, tmp_path, "python", "-c", "import os; print(sorted(os.listdir('/app')))")
    # files = ["."] minus the excluded (tests, notebooks' *.ipynb, the package's sources) and envbuild's outputs.
    assert listed.stdout == "['.gitignore', 'envbuild.toml', 'notebooks', 'pyproject.toml', 'serve.yaml']\n"


def test_the_version_label_the_record_and_the_layer_name_the_wheel(hatch_project: tuple[Path, dict[str, Any]]) -> None:
    project, _ = hatch_project
    labels = config(project)["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.3.0"  # not "0": the wheel's dynamic version
    wheel = record(project)["project"]
    assert (wheel["name"], wheel["version"], wheel["filename"], wheel["url"]) == (
        "hello-pkg", "0.3.0", "hello_pkg-0.3.0-py3-none-any.whl", ".",
    )  # fmt: skip
    assert "python:hello-pkg" not in layers(project) and not any("hello" in name for name in layers(project))
    history = [h.get("created_by", "") for h in config(project)["history"]]
    assert "envbuild: the project (/app) and hello-pkg==0.3.0" in history


def test_two_clean_builds_give_the_same_wheel_and_image(
    hatch_project: tuple[Path, dict[str, Any]], demo_cache: Path
) -> None:
    project, first = hatch_project
    wheel = record(project)["project"]["sha256"]
    shutil.rmtree(project / ".envbuild")
    shutil.rmtree(demo_cache / "projects")  # the wheel is built again, not taken from the cache
    again = build(project, demo_cache)
    assert again["cached"] is False and again["digest"] == first["digest"]
    assert record(project)["project"]["sha256"] == wheel
    assert build(project, demo_cache)["cached"] is True  # nothing changed: the wheel from the cache, the same key


@pytest.mark.registry
def test_a_commit_changes_and_pushes_only_the_project_layer(
    hatch_project: tuple[Path, dict[str, Any]], demo_cache: Path, registry: Registry, tmp_path: Path
) -> None:
    """The project's distribution lives in the project's layer: a new commit (and version) re-uploads that alone."""
    project, _ = hatch_project
    clone = tmp_path / "hello"  # the module's project keeps its image
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    before = layers(project)
    ref = f"{registry.host}/team/hello"
    first = cli_process(project, demo_cache, "push", "--insecure", str(image_dir(project)), f"{ref}:one")
    assert first.returncode == 0, first.stderr
    cli = clone / "src" / "hello_pkg" / "cli.py"
    cli.write_text(cli.read_text(encoding="utf-8").replace("hello {", "hello, {"), encoding="utf-8")
    commit(clone, "one line of the package")
    rebuilt = build(clone, demo_cache)
    assert record(clone)["project"]["version"].startswith("0.3.1.dev1+g")  # hatch-vcs: one commit past the tag
    after = layers(clone)
    assert [name for name in after if after[name] != before[name]] == ["project"]
    second = cli_process(clone, demo_cache, "push", "--insecure", str(image_dir(clone)), f"{ref}:two")
    assert second.returncode == 0, second.stderr
    pushed = json.loads(second.stdout)
    assert pushed["digest"] == rebuilt["digest"] and pushed["uploaded"] == 2  # the project's layer and the config


def test_setuptools_scm_in_git_ignores_the_hosts_leftovers(
    tmp_path_factory: pytest.TempPathFactory, demo_cache: Path, tmp_path: Path
) -> None:
    """setuptools builds in place would take build/lib's stale module; envbuild builds from a clone of the commit."""
    project = make_package(tmp_path_factory.mktemp("setuptools") / "hello", SETUPTOOLS, demo_cache, tag="v1.4.0")
    first = build(project, demo_cache)
    wheel = record(project)["project"]
    assert (wheel["version"], wheel["filename"]) == ("1.4.0", "hello_pkg-1.4.0-py3-none-any.whl")
    leave_leftovers(project)
    shutil.rmtree(demo_cache / "projects")  # the wheel is built again, beside the leftovers
    again = build(project, demo_cache)
    [rebuilt] = (demo_cache / "projects").rglob(wheel["filename"])
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == wheel["sha256"]
    # The same wheel bytes: the same build key, so the image built before is the answer.
    assert again["cached"] is True and again["digest"] == first["digest"]
    ran = run_image(project, tmp_path)
    assert (ran.returncode, ran.stdout) == (0, "hello 1.4.0 packaged data\n"), ran.stderr
    stale = run_image(project, tmp_path, "python", "-c", "import hello_pkg.stale")
    assert stale.returncode != 0 and "No module named 'hello_pkg.stale'" in stale.stderr


def test_a_failing_build_backend_is_a_clear_error_with_its_output(
    hatch_project: tuple[Path, dict[str, Any]], demo_cache: Path, tmp_path: Path
) -> None:
    project, _ = hatch_project
    clone = tmp_path / "hello"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    pyproject = clone / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8").replace('"vcs"', '"no-such-source"'), "utf-8")
    commit(clone, "a broken build")
    result = cli_process(clone, demo_cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 1, result.stderr
    assert "the build backend failed to build the wheel of hello-pkg" in result.stderr
    assert "no-such-source" in result.stderr  # hatchling's own words, from the tail of its output
    assert "envbuild/image" not in result.stderr  # the backend's traceback, never envbuild's
    assert not image_dir(clone).exists()


def test_the_wheels_digest_is_stable_across_builds(hatch_project: tuple[Path, dict[str, Any]]) -> None:
    """The cached wheel is the one the record names: its bytes hash to the recorded sha256."""
    project, _ = hatch_project
    wheel = record(project)["project"]
    staged = project / ".envbuild" / "stage" / "package" / wheel["filename"]
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == wheel["sha256"]
    requirement = (staged.parent / "requirements.txt").read_text(encoding="utf-8")
    assert requirement == textwrap.dedent(f"hello-pkg==0.3.0 --hash=sha256:{wheel['sha256']}\n")


@pytest.mark.registry
def test_an_audit_rebuilds_the_wheel_at_the_recorded_commit(
    hatch_project: tuple[Path, dict[str, Any]], demo_cache: Path, registry: Registry, tmp_path: Path
) -> None:
    """The rebuild's sources are an export without history: the wheel comes from a clone of the checkout.

    With another SOURCE_DATE_EPOCH the wheel's zip times change, and the report says so in words.
    """
    project, first = hatch_project
    secrets = {"ENVBUILD_SIGNING_KEY_PASSWORD": "audit-key-password"}
    keys = tmp_path / "keys"
    assert cli_process(project, demo_cache, "keygen", "-o", str(keys), env=secrets).returncode == 0
    pushed = cli_process(
        project, demo_cache, "image", "--variant", "cpu-infer", "--push", f"{registry.host}/audit/hello",
        "--insecure", "--sign", "--key", str(keys / "envbuild.key"), env=secrets,
    )  # fmt: skip
    digest = built(pushed)["cpu-infer"]["digest"]
    assert digest == first["digest"]
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(project), str(checkout)], check=True)
    ref = f"{registry.host}/audit/hello@{digest}"
    audit = ("rebuild", ref, "--key", str(keys / "envbuild.pub"), "--insecure")
    same = cli_process(checkout, demo_cache, *audit)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["identical"] is True
    other = cli_process(checkout, demo_cache, *audit, "--source-date-epoch", "1700000000")
    assert other.returncode == 1, other.stderr
    report = json.loads(other.stdout)
    assert "the project's wheel differs" in {c["name"] for c in report["inputs"]}
    assert any(n.startswith("the project's wheel differs: hello_pkg-0.3.0-py3-none-any.whl") for n in report["notes"])

"""The checks a built image passes before envbuild keeps it (docs/checks.md), on a project the test writes.

The project locks numpy, whose extension modules link libstdc++. Built on a Debian base with
libstdc++6 it passes; [checks] opts out of what a base without it fails, and an entrypoint
module that does not exist fails the build. (That the base without libstdc++6 fails, naming it,
and keeps the image built before is tests/integration/cli/test_new_user.py.) Real uv,
mmdebstrap and buildah.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from envbuild.oci.layout import Layout
from support.demo import COMMIT_DATE, built, cli_process

pytestmark = [pytest.mark.network, pytest.mark.slow]

WITH = '{ debian = "bookworm", packages = ["python3", "ca-certificates", "libstdc++6", "libgomp1"] }'
WITHOUT = '{ debian = "bookworm", packages = ["python3", "ca-certificates", "libgomp1"] }'
SPEC = """\
name = "checked"
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
dependencies = ["numpy"]

[roles.infer]
entrypoint = ENTRYPOINT

[accelerators.cpu]
base = BASE

[image]
files = ["app"]
"""
ENTRYPOINT = '["python", "-m", "app.main"]'


def write_spec(project: Path, *, base: str = WITH, entrypoint: str = ENTRYPOINT, checks: str = "") -> None:
    text = SPEC.replace("BASE", base).replace("ENTRYPOINT", entrypoint)
    (project / "envbuild.toml").write_text(text + checks, encoding="utf-8")


def git(project: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE}
    command = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    subprocess.run(command, check=True, capture_output=True, env=env)


def lock_and_commit(project: Path, cache: Path) -> None:
    locked = cli_process(project, cache, "lock")
    assert locked.returncode == 0, locked.stderr
    git(project, "add", "-A", "--", "envbuild.toml", "lockfiles", "app")
    git(project, "commit", "-q", "--allow-empty", "-m", "spec")


def image(project: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return cli_process(project, cache, "image", "--variant", "cpu-infer")


def image_dir(project: Path) -> Path:
    return project / ".envbuild" / "images" / "cpu-infer"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, str]:
    """The project built once on a base with libstdc++6: (project, image digest)."""
    project = tmp_path_factory.mktemp("checks") / "checked"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("", encoding="utf-8")
    (project / "app" / "main.py").write_text("import numpy\nprint(numpy.ones(2).sum())\n", encoding="utf-8")
    (project / ".gitignore").write_text(".envbuild/\n", encoding="utf-8")
    write_spec(project)
    git(project, "init", "-q")
    lock_and_commit(project, demo_cache)
    result = image(project, demo_cache)
    assert "checks: " in result.stderr and "entrypoint ok" in result.stderr, result.stderr
    return project, str(built(result)["cpu-infer"]["digest"])


def copy_of(good: tuple[Path, str], tmp_path: Path) -> Path:
    """The built project, its repository and its image, in a directory of the test's own."""
    project = tmp_path / "checked"
    shutil.copytree(good[0], project, symlinks=True)
    return project


def test_the_opt_outs(good: tuple[Path, str], demo_cache: Path, tmp_path: Path) -> None:
    """[checks] skips numpy's imports and allows libstdc++ to be missing; a name no lock holds is refused."""
    project = copy_of(good, tmp_path)
    checks = '\n[checks]\nskip-import = ["numpy"]\nallow-missing = ["libstdc++.so.6"]\n'
    write_spec(project, base=WITHOUT, entrypoint='["python", "-c", "print(1)"]', checks=checks)
    lock_and_commit(project, demo_cache)
    result = image(project, demo_cache)
    assert result.returncode == 0, result.stderr
    assert "0 modules (1 skipped)" in result.stderr, result.stderr
    record = json.loads((image_dir(project) / "build.json").read_text(encoding="utf-8"))
    assert record["checks"] == {"version": 1, "skip_import": ["numpy"], "allow_missing": ["libstdc++.so.6"]}

    write_spec(project, base=WITHOUT, checks='\n[checks]\nskip-import = ["nunpy"]\n')
    lock_and_commit(project, demo_cache)
    refused = image(project, demo_cache)
    assert refused.returncode == 2, refused.stderr
    assert "checks.skip-import: 'nunpy' (did you mean 'numpy'?)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_entrypoint_module_that_does_not_exist(good: tuple[Path, str], demo_cache: Path, tmp_path: Path) -> None:
    project = copy_of(good, tmp_path)
    write_spec(project, entrypoint='["python", "-m", "app.serve"]')
    lock_and_commit(project, demo_cache)
    result = image(project, demo_cache)
    assert result.returncode == 1, result.stderr
    assert "the entrypoint's module app.serve is not in the image" in result.stderr
    assert "roles.infer.entrypoint" in result.stderr and "Traceback" not in result.stderr
    assert str(Layout.open(image_dir(project)).select().digest) == good[1]

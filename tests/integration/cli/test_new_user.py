"""The first hour of a new user, on a project this test writes: a package directory and a requirements.txt.

No pyproject.toml, no spec, nothing of the demo. The user runs ``envbuild init``, commits what
it wrote, ``envbuild lock``, ``envbuild image``: the image passes its built-in checks, and its
entrypoint (the starter found ``shop_model/predict.py``) prints a prediction inside the image,
run by runc, an OCI runtime, from the bundle umoci unpacks. The log is what a CI runner shows
(stderr a pipe): a line per phase. Then the same project on a base without libstdc++6 fails its
build naming libstdc++6 and numpy, and the image built before stays as it was.

The only edit to the starter is its cutoff (``exclude-newer``, today when init runs): pinned to
the date the other tests lock at, so the run does not depend on the day and shares their wheels.
Real uv against the package index, mmdebstrap, buildah, umoci, runc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from support.demo import COMMIT_DATE, cli_process
from support.runtime import run_entrypoint

pytestmark = [pytest.mark.network, pytest.mark.slow]

CUTOFF = "2026-11-01T00:00:00Z"
ORIGIN = "https://git.example.invalid/shop/shop-model.git"
TIME = r"(?:[\d.]+ s|\d+m\d\ds)"


def git(project: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": COMMIT_DATE, "GIT_COMMITTER_DATE": COMMIT_DATE}
    command = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def commit_all(project: Path, message: str) -> None:
    """What a user does: add everything git does not ignore, and commit."""
    git(project, "add", "-A")
    git(project, "commit", "-q", "--allow-empty", "-m", message)


def envbuild(project: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stderr a pipe (a CI log), a HOME of its own and the session's cache of wheels and bases."""
    home = project.parent / "home"
    home.mkdir(exist_ok=True)
    return cli_process(project, cache, *args, env={"HOME": str(home), "TZ": "Pacific/Kiritimati"})


def image_dir(project: Path) -> Path:
    return project / ".envbuild" / "images" / "cpu-infer"


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The project, from its first commit to its first image: (project, the image command's result)."""
    project = tmp_path_factory.mktemp("new-user") / "shop-model"
    package = project / "shop_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Predicts what the shop sells."""\n', encoding="utf-8")
    (package / "predict.py").write_text(
        "import os\nimport pathlib\n\nimport numpy\n\n"
        'cache = pathlib.Path.home() / ".cache" / "shop-model"\n'
        "cache.mkdir(parents=True, exist_ok=True)\n"
        'print("prediction:", int(numpy.arange(4).sum()), "uid:", os.getuid(), "cache:", cache)\n',
        encoding="utf-8",
    )
    (project / "requirements.txt").write_text("numpy>=1.26  # arrays\n", encoding="utf-8")
    git(project, "init", "-q")
    git(project, "remote", "add", "origin", ORIGIN)
    commit_all(project, "the model")

    init = envbuild(project, demo_cache, "init")
    assert init.returncode == 0, init.stderr
    assert ".envbuild/" in (project / ".gitignore").read_text(encoding="utf-8").splitlines()
    spec = (project / "envbuild.toml").read_text(encoding="utf-8")
    assert 'entrypoint = ["python", "-m", "shop_model.predict"]' in spec, spec
    assert '"numpy>=1.26"' in spec and "libstdc++6" in spec and f'repository = "{ORIGIN[:-4]}"' in spec, spec
    spec, count = re.subn(r'^exclude-newer = ".*"$', f'exclude-newer = "{CUTOFF}"', spec, flags=re.M)
    assert count == 1, spec
    (project / "envbuild.toml").write_text(spec, encoding="utf-8")
    commit_all(project, "envbuild init")

    locked = envbuild(project, demo_cache, "lock")
    assert locked.returncode == 0, locked.stderr
    assert re.search(rf"^cpu-infer: resolving: done, 1 package in {TIME}$", locked.stderr, re.M), locked.stderr
    commit_all(project, "envbuild lock")

    result = envbuild(project, demo_cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 0, result.stderr
    return project, result


def test_init_lock_image_and_the_entrypoint_runs_inside(
    first: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    project, result = first
    log = result.stderr
    assert "Traceback" not in log
    # A CI log shows each phase start and end (stderr is a pipe here, not a terminal).
    for start in ("preparing the base", "fetching wheels", "building with buildah", "writing layers"):
        assert f"cpu-infer: {start} ...\n" in log, log
    # The wheels are downloaded, or taken from the session's cache when another test fetched them first.
    fetched = rf"^cpu-infer: fetching wheels: done, \d+ wheels(?:, [\d.]+ MB| \(all from the cache\)) in {TIME}$"
    assert re.search(fetched, log, re.M), log
    assert re.search(rf"^cpu-infer: building with buildah: done in {TIME}$", log, re.M), log
    # The built-in checks ran and passed: numpy's extension modules found libstdc++ and imported.
    checks = rf"^cpu-infer: checking the image: done, checks: \d+ ELF files, 1 module, entrypoint ok in {TIME}$"
    assert re.search(checks, log, re.M), log
    # Besides what the starter says to commit (the Dockerfiles it rendered), git sees nothing new:
    # .envbuild/ is ignored.
    assert git(project, "status", "--porcelain").splitlines() == ["?? .dockerignore", "?? images/"]

    [image] = json.loads(result.stdout)["images"]
    layout = Layout.open(image_dir(project))
    manifest = json.loads(layout.read_blob(layout.select().digest))
    config = json.loads(layout.read_blob(Digest.parse(manifest["config"]["digest"])))
    assert config["config"]["Labels"]["org.opencontainers.image.source"] == ORIGIN[: -len(".git")]
    assert config["config"]["Entrypoint"] == ["python", "-m", "shop_model.predict"]

    assert image["digest"] == str(layout.select().digest)
    ran = run_entrypoint(image_dir(project), "shop-model-cpu-infer", tmp_path)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert ran.stdout.split() == ["prediction:", "6", "uid:", "10001", "cache:", "/home/app/.cache/shop-model"]


def test_a_base_without_libstdcxx_fails_naming_it_and_keeps_the_image(
    first: tuple[Path, subprocess.CompletedProcess[str]], demo_cache: Path, tmp_path: Path
) -> None:
    project = tmp_path / "shop-model"
    shutil.copytree(first[0], project, symlinks=True)
    before = (image_dir(project) / "build.json").read_bytes()
    digest = Layout.open(image_dir(project)).select().digest
    spec = (project / "envbuild.toml").read_text(encoding="utf-8")
    (project / "envbuild.toml").write_text(spec.replace('"libstdc++6", ', ""), encoding="utf-8")
    locked = envbuild(project, demo_cache, "lock")
    assert locked.returncode == 0, locked.stderr
    commit_all(project, "a smaller base")

    result = envbuild(project, demo_cache, "image", "--variant", "cpu-infer")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for words in ("libstdc++.so.6", "libstdc++6", "numpy", "import numpy", "accelerators.cpu.base.packages"):
        assert words in result.stderr, (words, result.stderr)
    layout = Layout.open(image_dir(project))
    layout.verify()
    assert layout.select().digest == digest
    assert (image_dir(project) / "build.json").read_bytes() == before

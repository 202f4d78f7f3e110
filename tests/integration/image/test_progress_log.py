"""What a CI log shows (stderr not a terminal): a line per phase with its size and time, heartbeats between.

The build is a cache miss on every step: a fresh envbuild cache (the session's Debian base copied
in, its wheels not), a new project, an empty registry. ``cli_process`` runs the CLI with stderr a
pipe, as CI runners do.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from support.demo import cli_process, make_project
from support.registry import Registry

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.registry]

SIZE = r"[\d.]+ (?:bytes|kB|MB|GB)"
TIME = r"(?:[\d.]+ s|\d+m\d\ds)"


@pytest.mark.usefixtures("demo_image")  # the session's build has put the Debian base into demo_cache
def test_a_cold_build_and_push_log_a_line_per_phase_and_heartbeats(
    tmp_path: Path, demo_cache: Path, registry: Registry
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(demo_cache / "bases", cache / "bases", symlinks=True)  # mmdebstrap is not what is tested here
    project = make_project(tmp_path / "demo")
    ref = f"{registry.host}/ci/iris"
    result = cli_process(
        project, cache, "image", "--variant", "cpu-infer", "--push", ref, "--insecure",
        env={"ENVBUILD_HEARTBEAT": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = result.stderr
    [image] = json.loads(result.stdout)["images"]  # stdout holds the JSON and nothing else
    assert image["ref"].startswith(f"{ref}:cpu-infer@sha256:")

    for start in ("preparing the base", "fetching wheels", "building with buildah", "writing layers"):
        assert f"cpu-infer: {start} ...\n" in log, log
    assert f"cpu-infer: pushing to {ref}:cpu-infer ...\n" in log, log
    # Each phase's end names what it did, its size and its time.
    assert re.search(rf"^cpu-infer: fetching wheels: done, 6 wheels, {SIZE} in {TIME}$", log, re.M), log
    assert re.search(rf"^cpu-infer: building with buildah: done in {TIME}$", log, re.M), log
    layers = rf"^cpu-infer: writing layers: done, (\d+) layers \(\1 compressed, 0 from the cache\), {SIZE} of tars, "
    assert re.search(layers + rf"{SIZE} compressed in {TIME}$", log, re.M), log
    pushed = rf"^cpu-infer: pushing to {re.escape(ref)}:cpu-infer: done, \d+ blobs uploaded \({SIZE}\), 0 already there"
    assert re.search(pushed + rf" in {TIME}$", log, re.M), log
    # A build of half a minute is not silent in between: heartbeats, with buildah's last line.
    beats = re.findall(rf"^cpu-infer: building with buildah \.\.\. {TIME}, (.+)$", log, re.M)
    assert beats and any("STEP" in beat for beat in beats), log

    again = cli_process(project, cache, "image", "--variant", "cpu-infer")
    assert again.returncode == 0 and "cpu-infer: unchanged\n" in again.stderr
    assert "fetching wheels: done, 6 wheels (all from the cache) in" in again.stderr
    quiet = cli_process(project, cache, "-q", "image", "--variant", "cpu-infer")
    assert quiet.returncode == 0 and quiet.stderr == ""

    locked = cli_process(project, cache, "lock")
    assert locked.returncode == 0, locked.stderr
    assert re.search(rf"^cpu-infer: resolving: done, \d+ packages in {TIME}$", locked.stderr, re.M), locked.stderr


@pytest.mark.usefixtures("demo_image")
def test_verbose_adds_each_tools_command_and_its_output(tmp_path: Path, demo_cache: Path) -> None:
    project = make_project(tmp_path / "demo")
    result = cli_process(project, demo_cache, "-v", "image", "--variant", "cpu-infer")
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert re.search(r"^INFO envbuild\.proc: running .*/buildah .* bud ", log, re.M), log
    assert re.search(r"^INFO envbuild\.proc: buildah bud: .*STEP 1/", log, re.M), log
    assert re.search(r"^INFO envbuild\.image\.build: cpu-infer: scratch space needed about .* free in ", log, re.M)
    assert "DEBUG" not in log  # -vv

"""A Debian base is the same wherever it is built: nothing of the build machine gets into it.

mmdebstrap copies the host's /etc/resolv.conf and /etc/hostname into the root file system,
and writes signed-by into sources.list when the host's apt does not trust the Debian keys
itself. The session's demo base, built on this machine, is built again on "another machine"
(:func:`support.machine.another_machine`) into an empty cache: one digest, and no trace of
either machine's files in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.oci.imagefs import read_image_files
from envbuild.oci.layout import Layout
from support.machine import another_machine, files_containing

pytestmark = [pytest.mark.network, pytest.mark.slow]

BUILD = """
import json, sys
from envbuild.image.debian import build_debian_base, epoch_of
from envbuild.workspace import default_cache
lock = json.load(open(sys.argv[1]))
epoch = epoch_of(lock["exclude-newer"])
base = build_debian_base(lock["bases"]["cpu"], platform="linux/amd64", epoch=epoch, cache=default_cache())
print(json.dumps({"path": str(base.path), "digest": str(base.select().digest)}))
"""


def test_a_base_built_on_another_machine_is_the_same(demo_image: tuple[Path, str], tmp_path: Path) -> None:
    project = demo_image[0]
    here = json.loads((project / ".envbuild" / "images" / "cpu-infer" / "build.json").read_text())["base"]["digest"]
    machine = another_machine(tmp_path / "etc")
    cache = tmp_path / "cache"
    result = subprocess.run(
        [*machine.prefix, sys.executable, "-c", BUILD, str(project / "lockfiles" / "envbuild.lock.json")],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "HOME": str(tmp_path), "ENVBUILD_CACHE_DIR": str(cache), "TZ": "Asia/Kathmandu"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    elsewhere = json.loads(result.stdout)
    assert Path(elsewhere["path"]).is_relative_to(cache)  # built there, not found in a cache

    base = Layout.open(Path(elsewhere["path"]))
    assert files_containing(base, machine.traces) == []
    etc = read_image_files(base, None, lambda path: path.startswith("/etc/"))
    assert "/etc/resolv.conf" not in etc and "/etc/hostname" not in etc
    assert etc["/etc/hosts"] == b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    assert b"signed-by" not in etc["/etc/apt/sources.list"]
    assert elsewhere["digest"] == here

"""Running a built image the way a container runtime does: umoci unpacks its bundle, runc runs its process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from support.tools import require_tool


def run_entrypoint(
    layout: Path, name: str, where: Path, *, args: tuple[str, ...] = (), label: str = "test", emulated: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the image's own process (entrypoint, user, workdir, env) with ``args`` appended, offline.

    An image of another architecture runs under qemu-user when binfmt_misc hands its binaries to
    it (``emulated``): then without /sys, whose CPU topology is this machine's (onnxruntime's
    cpuinfo, reading an amd64 topology as an arm64 one, hangs or crashes under qemu).
    """
    require_tool("umoci")
    require_tool("runc")
    bundle = where / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{name}", bundle], check=True, capture_output=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["process"]["terminal"] = False  # the test has no terminal to give it
    config["process"]["args"] += list(args)
    # This machine's limits are below what the generated config asks for.
    config["process"].pop("rlimits", None)
    if emulated:
        config["mounts"] = [m for m in config["mounts"] if not m["destination"].startswith("/sys")]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    container = f"envbuild-{label}-{os.getpid()}"
    try:
        return subprocess.run(
            ["runc", "run", "--bundle", bundle, container],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        subprocess.run(["runc", "delete", "--force", container], capture_output=True)

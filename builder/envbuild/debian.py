"""Base images built from Debian packages with mmdebstrap, cached by content.

mmdebstrap writes the same root file system for the same package set and
SOURCE_DATE_EPOCH. The epoch of a base is the spec's resolution cutoff, so the
base does not change with every commit of the project. The Debian mirror moves
with point releases, so a base is cached by its recipe (and an audit archive
carries it); its package versions are in its own /var/lib/dpkg/status.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from envbuild.fetch import cache_dir
from envbuild.ociimage import write_single_layer_image
from envbuild.proc import run, which
from envbuild.registry.layout import Layout

# Documentation, manual pages and translations: large, and never read in an image.
_PATH_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_PATH_INCLUDES = ("/usr/share/doc/*/copyright",)  # licences stay
VARIANT = "essential"  # Essential: yes packages plus the recipe's: no apt, no compilers
BASE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def epoch_of(cutoff: str) -> int:
    """The seconds since the epoch of an RFC 3339 cutoff like 2026-11-01T00:00:00Z."""
    return int(datetime.fromisoformat(cutoff.replace("Z", "+00:00")).timestamp())


def mmdebstrap_version() -> str:
    """mmdebstrap's version, read from the (Perl) script itself: cheaper than running it on every cache hit."""
    path = which("mmdebstrap", hint="apt-get install mmdebstrap")
    try:
        found = re.search(r"^our \$VERSION = '([^']+)'", Path(path).read_text(errors="replace"), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return found.group(1)
    return run([path, "--version"], tool="mmdebstrap", timeout=60).stdout.split()[-1]


def base_key(recipe: dict[str, Any], *, platform: str, epoch: int) -> str:
    """The cache key of a base: what it is made from and by what."""
    material = {
        "recipe": recipe,
        "platform": platform,
        "epoch": epoch,
        "mmdebstrap": mmdebstrap_version(),
        "variant": VARIANT,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def build_debian_base(recipe: dict[str, Any], *, platform: str, epoch: int) -> Layout:
    """The base image of ``recipe`` (``{"suite", "packages"}``), built once and then read from the cache."""
    key = base_key(recipe, platform=platform, epoch=epoch)
    final = cache_dir() / "bases" / key
    if (final / "index.json").is_file():
        return Layout.open(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{key[:12]}-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        args = [
            which("mmdebstrap", hint="apt-get install mmdebstrap"),
            f"--variant={VARIANT}",
            f"--architectures={_ARCH[platform]}",
            "--format=tar",
            *(f"--dpkgopt=path-exclude={p}" for p in _PATH_EXCLUDES),
            *(f"--dpkgopt=path-include={p}" for p in _PATH_INCLUDES),
            # Leftovers that carry build times or host state.
            '--customize-hook=rm -rf "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache "$1"/var/lib/apt/lists/*',
        ]
        if recipe["packages"]:
            args.append("--include=" + ",".join(recipe["packages"]))
        args += [recipe["suite"], str(rootfs)]
        run(args, tool="mmdebstrap", env=_env(epoch), timeout=1800)
        layout_dir = Path(tmp) / "layout"
        write_single_layer_image(
            layer_tar=rootfs,
            out=layout_dir,
            epoch=epoch,
            name="base",
            created_by=f"mmdebstrap --variant={VARIANT} {recipe['suite']} [{', '.join(recipe['packages'])}]",
            env=BASE_ENV,
            architecture=_ARCH[platform],
            keep_owners=True,
        )
        shutil.move(str(layout_dir), final)
    return Layout.open(final)


def _env(epoch: int) -> dict[str, str]:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(epoch)
    env.setdefault("TMPDIR", "/tmp")
    return env

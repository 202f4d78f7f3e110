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
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from envbuild.fsutil import rename_into_place
from envbuild.image.emulation import require_runnable
from envbuild.oci.layout import Layout
from envbuild.oci.tarnorm import COMPRESSOR
from envbuild.oci.writer import write_single_layer_image
from envbuild.proc import run, which
from envbuild.progress import Phase

# Documentation, manual pages and translations: large, and never read in an image.
_PATH_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_PATH_INCLUDES = ("/usr/share/doc/*/copyright",)  # licences stay
# What mmdebstrap would otherwise take from the build machine (see "SOURCE_DATE_EPOCH" in its
# man page): it copies the host's /etc/resolv.conf and /etc/hostname in, and adds a signed-by
# option to sources.list when the host's apt does not itself trust the suite's key. Either would
# make the base depend on the machine (and leak its DNS server). Container runtimes provide
# resolv.conf, hostname and hosts at run time, so the base has neither of the first two, and a
# fixed hosts that names localhost for runs without a runtime (chroot).
_HOSTS = r"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_CUSTOMIZE_HOOKS = (
    # Leftovers that carry build times or host state.
    'rm -rf "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache "$1"/var/lib/apt/lists/*',
    'rm -f "$1"/etc/resolv.conf "$1"/etc/hostname',
    f'[ -e "$1"/etc/hosts ] || printf \'{_HOSTS}\' > "$1"/etc/hosts',
    'if [ -f "$1"/etc/apt/sources.list ]; then sed -i \'s/ \\[signed-by=[^]]*\\]//\' "$1"/etc/apt/sources.list; fi',
)
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
    """The cache key of a base: everything its bytes depend on.

    That is the recipe, platform and epoch, mmdebstrap's version and every option it is
    run with (hooks and path filters included, so changing one never reuses an old base),
    and how envbuild turns the root file system into an image (its compressor).
    """
    material = {
        "recipe": recipe,
        "platform": platform,
        "epoch": epoch,
        "mmdebstrap": mmdebstrap_version(),
        "options": _options(recipe, platform),
        "image": {"compressor": COMPRESSOR, "env": BASE_ENV, "created_by": _created_by(recipe)},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _options(recipe: dict[str, Any], platform: str) -> list[str]:
    """mmdebstrap's arguments for ``recipe``, but for the program and the output file."""
    options = [
        f"--variant={VARIANT}",
        f"--architectures={_ARCH[platform]}",
        "--format=tar",
        *(f"--dpkgopt=path-exclude={p}" for p in _PATH_EXCLUDES),
        *(f"--dpkgopt=path-include={p}" for p in _PATH_INCLUDES),
        *(f"--customize-hook={hook}" for hook in _CUSTOMIZE_HOOKS),
    ]
    if recipe["packages"]:
        options.append("--include=" + ",".join(recipe["packages"]))
    return [*options, recipe["suite"]]


def _created_by(recipe: dict[str, Any]) -> str:
    return f"mmdebstrap --variant={VARIANT} {recipe['suite']} [{', '.join(recipe['packages'])}]"


def build_debian_base(
    recipe: dict[str, Any], *, platform: str, epoch: int, cache: Path, progress: Phase | None = None
) -> Layout:
    """The base image of ``recipe`` (``{"suite", "packages"}``), built once and then read from ``cache``/bases.

    mmdebstrap's output lines go to ``progress`` as they come.
    """
    key = base_key(recipe, platform=platform, epoch=epoch)
    final = cache / "bases" / key
    if (final / "index.json").is_file():
        return Layout.open(final)
    require_runnable(platform)  # mmdebstrap runs the base's maintainer scripts
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{key[:12]}-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        args = [which("mmdebstrap", hint="apt-get install mmdebstrap"), *_options(recipe, platform), str(rootfs)]
        run(args, tool="mmdebstrap", env=_env(epoch), timeout=1800, lines=progress.say if progress else None)
        layout_dir = Path(tmp) / "layout"
        write_single_layer_image(
            layer_tar=rootfs,
            out=layout_dir,
            epoch=epoch,
            name="base",
            created_by=_created_by(recipe),
            env=BASE_ENV,
            architecture=_ARCH[platform],
            keep_owners=True,
        )
        rename_into_place(layout_dir, final)
    return Layout.open(final)


def _env(epoch: int) -> dict[str, str]:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(epoch)
    env.setdefault("TMPDIR", "/tmp")
    return env

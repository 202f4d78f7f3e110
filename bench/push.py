"""Benchmark pushing an image to a loopback registry: ``envbuild push`` against ``skopeo copy``.

Run from the repository root::

    .venv/bin/python bench/push.py [--runs 5] [--json]

STAND-IN IMAGE. ``envbuild image`` does not exist yet, so this script builds
its own image of the size and shape of the demo's cpu-infer image: one layer
holding the packages of lockfiles/cpu-infer.txt as pip installs them (the venv
layer, about 120 MB uncompressed), one small layer with demo/iris_demo (the app
layer), gzip level 6, an OCI config and manifest, in a temporary OCI layout.
It has no OS base layer, so it is smaller than the real image will be. When
``envbuild image`` lands, this stand-in is to be replaced by the real cpu-infer
image.

It starts a real registry (docker-registry 2.8, from tests/support/registry.py)
on 127.0.0.1 in a temporary directory and stops it at the end. Each timed run
pushes with each tool to a repository that does not exist yet (cold), then
again to the same one (warm: nothing to upload). Every row gets one untimed
warm-up first; the rows are then timed in turn, ``--runs`` times, and each row
reports the median, min and max wall-clock seconds, and the HTTP requests
each push made (from the registry's access log). envbuild runs with a private
bytecode cache, filled by the warm-up (see benchlib.envbuild_env). Progress goes to stderr,
the table (or the JSON) to stdout. Exit status 1 when a pushed digest is not
the layout's manifest digest (the comparison would then be meaningless), else
0. See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchlib import BIN, REPO, Timings, envbuild_env, log, pip_env, run, timed, timing_header

# The registry fixture of the integration tests: the same real registry they push to.
sys.path.insert(0, str(REPO / "tests"))

from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest
from support.registry import Registry, run_registry

LOCKFILE = REPO / "lockfiles" / "cpu-infer.txt"
APP = REPO / "demo" / "iris_demo"
IMAGE_NAME = "cpu-infer"  # the layout's org.opencontainers.image.ref.name
TAG = "v1"
SITE_PACKAGES = "opt/venv/lib/python3.11/site-packages"
GZIP_LEVEL = 6
# pip's own cache, shared with bench/lock.py, so only the first run downloads the wheels.
PIP_CACHE = Path(tempfile.gettempdir()) / "envbuild-bench-pip-cache"
# What the cpu-infer lock targets (Python 3.11, linux/amd64, glibc 2.28), so the
# layer holds the same wheels on any host. pip does not widen manylinux_2_28 to
# older manylinux tags by itself, hence manylinux2014 too (protobuf's abi3 wheel).
PIP_TARGET = [
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
    "--python-version", "3.11", "--implementation", "cp",
]  # fmt: skip

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

ENVBUILD_COLD = "envbuild push, cold (new repository)"
ENVBUILD_WARM = "envbuild push, warm (same repository again)"
SKOPEO_COLD = "skopeo copy, cold (new repository)"
SKOPEO_WARM = "skopeo copy, warm (same repository again)"

# One line of the registry's access log (gorilla's combined format), e.g.
# 127.0.0.1 - - [date] "PATCH /v2/bench/x/blobs/uploads/UUID?_state=... HTTP/1.1" 202 0 "" "python-requests/2.32.3"
_ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[0-9.]+" (\d{3}) ')


# -- the stand-in image ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Image:
    """The test image: where its layout is, its manifest digest, and its sizes."""

    layout: Path
    name: str
    digest: Digest
    compressed: int  # every blob of the layout: manifest, config, layers
    uncompressed: int  # the layer tars before gzip
    layers: tuple[int, ...]  # each layer's compressed size

    def summary(self) -> dict[str, Any]:
        """The image as JSON-ready figures."""
        return {
            "stand_in": True,
            "digest": str(self.digest),
            "compressed_bytes": self.compressed,
            "uncompressed_bytes": self.uncompressed,
            "layer_bytes": list(self.layers),
        }


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One written layer blob: its descriptor and the digest and size of its uncompressed tar."""

    descriptor: Descriptor
    diff_id: Digest
    tar_size: int


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to ``out``."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def install_packages(target: Path) -> None:
    """pip-install the cpu-infer lock into ``target``, as the image's venv would hold it."""
    args: list[str | Path] = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--require-hashes", "--no-deps", "--only-binary", ":all:",
        # No .pyc: pip would compile them with this moment's source mtimes in them.
        "--no-compile",
        *PIP_TARGET, "--cache-dir", PIP_CACHE, "--target", target, "-r", LOCKFILE,
    ]  # fmt: skip
    run(args, env=pip_env())
    # Console scripts carry this host's interpreter in their shebang; the image's would not.
    shutil.rmtree(target / "bin", ignore_errors=True)


def _walk(source: Path) -> Iterator[Path]:
    """Every path under ``source``, sorted, without bytecode caches."""
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        here = Path(root)
        for name in dirs:
            yield here / name
        for name in sorted(files):
            if not name.endswith(".pyc"):
                yield here / name


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner, no timestamps, modes 0755/0644: the tar depends on file contents only."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    executable = info.isdir() or bool(info.mode & 0o111)
    info.mode = 0o755 if executable else 0o644
    return info


def write_tar(source: Path, prefix: str, dest: Path) -> None:
    """A deterministic tar of ``source`` under ``prefix`` (parent directories included) at ``dest``."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        parts = prefix.split("/")
        for i in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type = tarfile.DIRTYPE
            tar.addfile(_normalise(info))
        # Sorted by path within each directory (os.walk order with sorted lists),
        # which is what makes the tar reproducible.
        for path in _walk(source):
            info = _normalise(tar.gettarinfo(str(path), f"{prefix}/{path.relative_to(source).as_posix()}"))
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def write_layer(layout: Layout, tar_path: Path) -> Layer:
    """gzip ``tar_path`` into a blob of ``layout``; the diff_id is the digest of the tar itself."""
    partial = layout.path / "blobs" / "sha256" / "layer.partial"
    diff = hashlib.sha256()
    with partial.open("wb") as raw:
        counted = _HashingWriter(raw)
        # mtime=0 and no file name: the gzip header carries nothing but the data.
        with (
            gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=counted, mtime=0) as gz,
            tar_path.open("rb") as f,
        ):
            while chunk := f.read(1024 * 1024):
                diff.update(chunk)
                gz.write(chunk)
    digest = Digest("sha256:" + counted.hasher.hexdigest())
    partial.replace(layout.blob_path(digest))
    return Layer(
        descriptor=Descriptor(media_type=MEDIA_LAYER, digest=digest, size=counted.size),
        diff_id=Digest("sha256:" + diff.hexdigest()),
        tar_size=tar_path.stat().st_size,
    )


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_image(work: Path) -> Image:
    """Build the stand-in cpu-infer image into an OCI layout under ``work``."""
    site = work / "site-packages"
    log("installing the cpu-infer packages (pip)")
    install_packages(site)
    layout = Layout.create(work / "layout")
    layers = []
    for source, prefix in ((site, SITE_PACKAGES), (APP, "app/iris_demo")):
        log(f"writing layer /{prefix}")
        tar_path = work / "layer.tar"
        write_tar(source, prefix, tar_path)
        layers.append(write_layer(layout, tar_path))
        tar_path.unlink()
    config = _canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    f"PYTHONPATH=/{SITE_PACKAGES}:/app",
                ],
                "WorkingDir": "/app",
                "Cmd": ["python3", "-m", "iris_demo.predict"],
            },
            "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]},
            "history": [
                {"created_by": "bench/push.py: cpu-infer packages (stand-in venv layer)"},
                {"created_by": "bench/push.py: demo/iris_demo (stand-in app layer)"},
            ],
        }
    )
    config_digest = layout.write_blob(config)
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": str(config_digest), "size": len(config)},
            "layers": [layer.descriptor.to_json() for layer in layers],
        }
    )
    digest = layout.write_blob(manifest)
    layout.add_manifest(Descriptor(media_type=MEDIA_MANIFEST, digest=digest, size=len(manifest)), name=IMAGE_NAME)
    shutil.rmtree(site)
    return Image(
        layout=layout.path,
        name=IMAGE_NAME,
        digest=digest,
        compressed=len(manifest) + len(config) + sum(layer.descriptor.size for layer in layers),
        uncompressed=sum(layer.tar_size for layer in layers),
        layers=tuple(layer.descriptor.size for layer in layers),
    )


def image_from_layout(path: Path) -> Image:
    """An image envbuild built (``envbuild image`` writes .envbuild/images/<variant>/): the real thing."""
    import gzip

    layout = Layout.open(path)
    top = layout.select()
    manifest = json.loads(layout.read_blob(top.digest))
    name = dict(top.annotations).get("org.opencontainers.image.ref.name", "")
    uncompressed = 0
    for layer in manifest["layers"]:
        with gzip.open(layout.blob_path(Digest.parse(layer["digest"])), "rb") as f:
            while chunk := f.read(1 << 20):
                uncompressed += len(chunk)
    return Image(
        layout=path,
        name=name,
        digest=top.digest,
        compressed=top.size + manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]),
        uncompressed=uncompressed,
        layers=tuple(layer["size"] for layer in manifest["layers"]),
    )


# -- the pushes ------------------------------------------------------------------------------


def skopeo_env(cache: Path) -> dict[str, str]:
    """The environment for skopeo, with a blob-info cache of its own in ``cache``.

    skopeo records in its blob-info cache which repositories of a registry hold
    which blobs, and on the next push to a *new* repository of that registry it
    mounts them from there instead of uploading: a cold push would not be cold.
    Its cache lives in $XDG_DATA_HOME/containers/cache, except for root, where
    it is always /var/lib/containers/cache (containers/image
    pkg/blobinfocache/default.go). _CONTAINERS_ROOTLESS_UID (the variable podman
    sets inside its user namespace) makes it take the non-root path under root too.
    """
    env = dict(os.environ)
    env["XDG_DATA_HOME"] = str(cache)
    if os.geteuid() == 0:
        env["_CONTAINERS_ROOTLESS_UID"] = str(65534)
    return env


@dataclass(frozen=True, kw_only=True)
class Pusher:
    """How the benchmark pushes with each tool, and what each push reported."""

    registry: Registry
    image: Image
    work: Path
    digests: list[tuple[str, str]] = field(default_factory=list)  # (what, digest)

    def target(self, tool: str, i: int) -> str:
        """The reference of run ``i``'s repository for ``tool``: new for each run."""
        return f"{self.registry.host}/bench/{tool}-{i}:{TAG}"

    def envbuild(self, i: int) -> None:
        """``envbuild push`` the layout to run ``i``'s repository; record the digest it prints."""
        args: list[str | Path] = [
            BIN / "envbuild", "-q", "push", "--insecure", self.image.layout, self.target("envbuild", i),
        ]  # fmt: skip
        printed = run(args, env=envbuild_env(self.work / "pycache")).strip().splitlines()[-1]
        self.digests.append((f"envbuild push {self.target('envbuild', i)}", printed.rsplit("@", 1)[-1]))

    def skopeo(self, i: int) -> None:
        """``skopeo copy`` the layout to run ``i``'s repository."""
        args = [
            "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
            # Fail rather than push a manifest other than the layout's (a conversion or recompression).
            "--preserve-digests",
            f"oci:{self.image.layout}:{self.image.name}", f"docker://{self.target('skopeo', i)}",
        ]  # fmt: skip
        run(args, env=skopeo_env(self.work / f"skopeo-cache-{i}"))

    def inspect(self, ref: str) -> str:
        """The manifest digest skopeo reads from the registry for ``ref``."""
        out = run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], env=skopeo_env(self.work / "inspect"))
        digest: str = json.loads(out)["Digest"]
        return digest


# -- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Row(Timings):
    """The timings of one benchmarked command, and the HTTP requests it made to the registry."""

    requests: tuple[Counter[str], ...]  # per run: method -> count, plus "mount" and "blob upload"

    def median_requests(self, kind: str | None = None) -> float:
        """Median number of requests of ``kind`` (a method, "mount", "blob upload"; None: all)."""
        methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        return statistics.median(sum(c[m] for m in methods) if kind is None else c[kind] for c in self.requests)

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready figures."""
        return {**super().summary(), "requests": [dict(sorted(c.items())) for c in self.requests]}


class AccessLog:
    """The registry's access log, read in slices: what each push asked of the registry."""

    def __init__(self, path: Path):
        self.path = path

    def offset(self) -> int:
        """The log's current end."""
        return self.path.stat().st_size

    def count(self, start: int, end: int) -> Counter[str]:
        """Requests between two offsets, by method, plus cross-repository mounts and finished blob uploads."""
        with self.path.open("rb") as f:
            f.seek(start)
            text = f.read(end - start).decode("utf-8", errors="replace")
        counts: Counter[str] = Counter()
        for method, path, _status in _ACCESS.findall(text):
            counts[method] += 1
            if "mount=" in path:
                counts["mount"] += 1
            if method == "PUT" and "/blobs/uploads/" in path:
                counts["blob upload"] += 1
        return counts


def measure(actions: dict[str, Callable[[int], None]], runs: int, access: AccessLog) -> list[Row]:
    """Warm each action up once (run 0), then time them in turn for runs 1..``runs``.

    Interleaving the rows makes drift in machine load hit every row alike. Each
    action gets the run number, which picks the repository it pushes to.
    """
    for name, action in actions.items():
        log(f"warm-up: {name}")
        action(0)
    times: dict[str, list[float]] = {name: [] for name in actions}
    slices: dict[str, list[tuple[int, int]]] = {name: [] for name in actions}
    for i in range(1, runs + 1):
        for name, action in actions.items():
            start = access.offset()
            times[name].append(timed(functools.partial(action, i))[0])
            # The registry logs a request after answering it: give the last line a moment.
            time.sleep(0.2)
            slices[name].append((start, access.offset()))
            log(f"run {i}/{runs}: {name}: {times[name][-1]:.2f} s")
    return [
        Row(name=name, times=tuple(t), requests=tuple(access.count(a, b) for a, b in slices[name]))
        for name, t in times.items()
    ]


def check_digests(pusher: Pusher, runs: int) -> list[tuple[str, str]]:
    """Every pushed image's digest: what envbuild printed, and what skopeo reads back for each repository."""
    found = list(pusher.digests)
    for tool in ("envbuild", "skopeo"):
        for i in range(runs + 1):
            ref = pusher.target(tool, i)
            found.append((f"skopeo inspect {ref}", pusher.inspect(ref)))
    return found


# -- output ----------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def table(image: Image, rows: list[Row], digests: list[tuple[str, str]]) -> str:
    """The figures as plain-text tables."""
    layers = " + ".join(_mb(size) for size in image.layers)
    lines = [
        f"image ({image.name or 'stand-in'}): {_mb(image.compressed)} compressed "
        f"(layers {layers}, gzip -{GZIP_LEVEL}), {_mb(image.uncompressed)} uncompressed, {image.digest}",
        "",
    ]
    width = max(len(r.name) for r in rows)
    kinds = ("HEAD", "POST", "PATCH", "PUT", "GET", "blob upload", "mount")
    lines.append(f"{timing_header(width)}  {'MB/s':>5}  {'requests':>8}  " + "  ".join(kinds))
    for r in rows:
        rate = f"{image.compressed / r.median / 1e6:.0f}" if "cold" in r.name else "-"
        lines.append(
            f"{r.cells(width)}  {rate:>5}  {r.median_requests():>8g}  "
            + "  ".join(f"{r.median_requests(k):>{len(k)}g}" for k in kinds)
        )
    lines.append("(requests: median HTTP requests per push, from the registry's access log)")
    by_name = {r.name: r for r in rows}
    lines.append("")
    for label, ours, theirs in (("cold", ENVBUILD_COLD, SKOPEO_COLD), ("warm", ENVBUILD_WARM, SKOPEO_WARM)):
        lines.append(f"envbuild / skopeo, {label}: {by_name[ours].median / by_name[theirs].median:.2f}")
    wrong = [(what, d) for what, d in digests if d != str(image.digest)]
    lines.append("")
    if wrong:
        lines += [f"DIGEST MISMATCH: {what} -> {d}" for what, d in wrong]
    else:
        lines.append(f"digests: all {len(digests)} pushes/inspections = layout manifest {image.digest}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, build the image, run the benchmark, print the table (or JSON on stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument(
        "--layout", type=Path, help="push this OCI layout (e.g. .envbuild/images/cpu-infer) instead of the stand-in"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (.ci/run installs it)")

    with tempfile.TemporaryDirectory(prefix="envbuild-bench-push-") as tmp:
        work = Path(tmp)
        image = image_from_layout(args.layout) if args.layout else build_image(work)
        log(f"image: {_mb(image.compressed)} compressed, {image.digest}")
        with run_registry(work) as registry:
            pusher = Pusher(registry=registry, image=image, work=work)
            actions: dict[str, Callable[[int], None]] = {
                ENVBUILD_COLD: pusher.envbuild,
                ENVBUILD_WARM: pusher.envbuild,  # right after the cold push to the same repository
                SKOPEO_COLD: pusher.skopeo,
                SKOPEO_WARM: pusher.skopeo,
            }
            rows = measure(actions, args.runs, AccessLog(registry.log_file))
            log("checking digests")
            digests = check_digests(pusher, args.runs)

    ok = all(d == str(image.digest) for _, d in digests)
    if args.json:
        by_name = {r.name: r.median for r in rows}
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "image": image.summary(),
                    "rows": [r.summary() for r in rows],
                    "ratios": {
                        "envbuild/skopeo cold": by_name[ENVBUILD_COLD] / by_name[SKOPEO_COLD],
                        "envbuild/skopeo warm": by_name[ENVBUILD_WARM] / by_name[SKOPEO_WARM],
                    },
                    "digests_ok": ok,
                    "digests": [{"what": what, "digest": d} for what, d in digests],
                },
                indent=2,
            )
        )
    else:
        print(table(image, rows, digests))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark building the demo's cpu-infer image: ``envbuild image`` against a naive single-stage Dockerfile.

Run from the repository root::

    .venv/bin/python bench/build.py [--runs 3] [--json]

Both rows build on the same base (the Debian base envbuild makes for the demo,
from envbuild's cache) with the same builder (buildah, ``--isolation chroot``,
vfs storage). The work happens in a temporary ``git clone`` of this repository
(envbuild dates the image from git history), with the working tree's spec,
lockfiles, Dockerfiles and demo copied over it when they differ from HEAD, so
the repository's own ``.envbuild/`` is never touched.

- envbuild: cold is ``envbuild -q image --variant cpu-infer`` after deleting
  the copy's ``.envbuild/images/cpu-infer`` (envbuild's base and wheel caches
  stay warm: cold means the image, not the downloads); warm is the same command
  again, a build-key cache hit.
- naive: a Dockerfile the bench writes: ``FROM`` the same base, then one stage
  that pip-installs the demo's unpinned ``[project].dependencies`` from the
  index at build time (network on), then copies the app. Cold is a build in
  fresh buildah storage (base loaded first) with ``--layers``; warm is the same
  build again in the same storage (buildah's layer cache). Each build is
  exported with ``buildah push oci:DIR``.

Every row gets one untimed build first (run 0); then the rows are timed in
turn, ``--runs`` times. Each row reports the median cold and warm wall-clock
seconds, the image's size (compressed: the layer blobs the manifest lists;
uncompressed: the layer tars) and whether every clean build, run 0 included,
gave the same manifest digest. Progress goes to stderr, the table (or the JSON)
to stdout. The exit status is 0 whether the goals pass or not (it measures, it
does not gate). See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tarfile
import tempfile
import tomllib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import BIN, REPO, envbuild_env, log, pip_env, run, timed
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from envbuild.workspace import default_cache

VARIANT = "cpu-infer"
# What envbuild reads to build cpu-infer; copied from the working tree when it differs from HEAD.
INPUTS = ("envbuild.toml", "lockfiles", "images", "demo")
NAIVE_TAG = "localhost/bench/naive-cpu-infer:latest"
# This machine reaches the package index through a TLS-intercepting proxy whose CA is
# in the host's bundle only; the naive build copies that bundle in and points pip at it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
# A package's metadata directory in the image's venv: opt/venv/lib/python3.X/site-packages/NAME-VERSION.dist-info
_DIST_INFO = re.compile(r"opt/venv/lib/python[0-9.]+/site-packages/([^/]+)\.dist-info/?$")

ENVBUILD = "envbuild image (multi-stage, locked, offline)"
NAIVE = "naive Dockerfile (single stage, pip at build time)"


# -- the image on disk -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Image:
    """A built image in an OCI layout: its manifest digest and its layers' sizes."""

    digest: str
    layers: tuple[int, ...]  # each layer blob's size, as the manifest lists it
    tars: tuple[int, ...]  # each layer's uncompressed tar size
    packages: tuple[str, ...] = ()  # name-version of each *.dist-info in the venv, when listed

    @property
    def compressed(self) -> int:
        """Bytes a registry stores and a pull downloads: the layer blobs."""
        return sum(self.layers)

    @property
    def uncompressed(self) -> int:
        """Bytes of the layer tars."""
        return sum(self.tars)

    def summary(self) -> dict[str, Any]:
        """The image as JSON-ready figures."""
        return {
            "digest": self.digest,
            "compressed_bytes": self.compressed,
            "uncompressed_bytes": self.uncompressed,
            "layer_bytes": list(self.layers),
            "layer_tar_bytes": list(self.tars),
            "packages": list(self.packages),
        }


def _gunzipped_size(path: Path) -> int:
    """The size of a gzip file's contents, streamed (layers are too big to hold in memory)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            size += len(inflate.decompress(chunk))
    return size + len(inflate.flush())


def _dist_infos(path: Path) -> set[str]:
    """``name-version`` of every ``*.dist-info`` directory in the venv of a (gzipped or plain) layer tar."""
    found = set()
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            match = _DIST_INFO.match(member.name.removeprefix("./"))
            if match:
                found.add(match.group(1))
    return found


def read_image(path: Path, *, list_packages: bool = False) -> Image:
    """The manifest digest and layer sizes of the only image in the layout at ``path`` (and its venv's packages)."""
    layout = Layout.open(path)
    digest = layout.select().digest
    manifest = json.loads(layout.read_blob(digest))
    layers, tars, packages = [], [], set()
    for layer in manifest["layers"]:
        blob = layout.blob_path(Digest.parse(layer["digest"]))
        layers.append(int(layer["size"]))
        if layer["mediaType"] == LAYER_GZIP:
            tars.append(_gunzipped_size(blob))
        elif layer["mediaType"] == LAYER_TAR:
            tars.append(int(layer["size"]))
        else:
            sys.exit(f"bench: {path}: layer media type {layer['mediaType']} is not measured")
        if list_packages:
            packages |= _dist_infos(blob)
    return Image(digest=str(digest), layers=tuple(layers), tars=tuple(tars), packages=tuple(sorted(packages)))


@dataclass(frozen=True, kw_only=True)
class Built:
    """What one build left: the image's layout, and the seconds of each of its steps (when known)."""

    layout: Path
    phases: dict[str, float]


# -- the copy of the repository ----------------------------------------------------------------


def copy_repo(dest: Path) -> Path:
    """Clone this repository into ``dest``; bring over the working tree's build inputs if they differ from HEAD."""
    root = dest / "repo"
    run(["git", "clone", "--quiet", REPO, root])
    changed = run(["git", "-C", REPO, "status", "--porcelain", "--", *INPUTS]).strip()
    if changed:
        log(f"copying uncommitted build inputs into the clone:\n{changed}")
        for name in INPUTS:
            source, target = REPO / name, root / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif source.exists():
                shutil.copy2(source, target)
    return root


# -- envbuild ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Envbuild:
    """``envbuild image --variant cpu-infer`` in the copy."""

    root: Path
    env: dict[str, str]

    @property
    def out(self) -> Path:
        """Where envbuild writes the image."""
        return self.root / ".envbuild" / "images" / VARIANT

    def build(self, *, clean: bool) -> Built:
        """Build (``clean``: after deleting the previous image, so envbuild's build-key cache misses)."""
        if clean:
            shutil.rmtree(self.out, ignore_errors=True)
        # The copy may hold the working tree's uncommitted inputs (copy_repo): build them, recorded as dirty.
        argv = [BIN / "envbuild", "-q", "image", "--variant", VARIANT, "--allow-dirty"]
        printed = run(argv, env=self.env, cwd=self.root)
        digest = str(Layout.open(self.out).select().digest)
        if printed.split()[-1] != digest:
            sys.exit(f"bench: envbuild printed {printed.strip()}, but its layout holds {digest}")
        return Built(layout=self.out, phases={})

    def release(self, layout: Path) -> None:
        """Nothing to do: the next build replaces the layout."""

    def base(self) -> tuple[str, Path]:
        """The FROM name envbuild gave the base, and the base's layout in envbuild's cache."""
        dockerfile = (self.root / "images" / f"{VARIANT}.Dockerfile").read_text(encoding="utf-8")
        name = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))
        digest = json.loads((self.out / "build.json").read_text(encoding="utf-8"))["base"]["digest"]
        cache = default_cache()
        for candidate in sorted((*cache.glob("bases/*"), *cache.glob("pulled/*"))):
            if (candidate / "index.json").is_file() and str(Layout.open(candidate).select().digest) == digest:
                return name, candidate
        sys.exit(f"bench: the base {name} ({digest}) is not in {cache}")


# -- the naive build ---------------------------------------------------------------------------


def naive_dockerfile(*, base: str, pip_wheel: str, requirements: Sequence[str]) -> str:
    """The single-stage Dockerfile a team without envbuild might write for the demo's inference image."""
    install = " ".join(shlex.quote(r) for r in requirements)
    return f"""\
# Written by bench/build.py: the naive way, on envbuild's base.
FROM {base}
# This machine's quirk, not part of the naive pattern: the package index is reached through a
# TLS-intercepting proxy whose CA is only in the host's bundle.
COPY ca.crt /tmp/ca.crt
# The base has python3 but neither pip nor ensurepip; pip runs from its wheel.
COPY {pip_wheel} /tmp/{pip_wheel}
RUN python3 -m venv --without-pip /opt/venv \\
    && /opt/venv/bin/python /tmp/{pip_wheel}/pip install --no-cache-dir --disable-pip-version-check \\
       --cert /tmp/ca.crt {install}
COPY demo/iris_demo /app/iris_demo
ENV PATH="/opt/venv/bin:$PATH" PYTHONPATH=/app PYTHONUNBUFFERED=1
WORKDIR /app
ENTRYPOINT ["python", "-m", "iris_demo.predict"]
"""


@dataclass(kw_only=True)
class Naive:
    """The naive Dockerfile built with plain ``buildah bud`` in private storage."""

    work: Path
    base_name: str
    base_layout: Path
    context: Path = field(init=False)
    storage: Path | None = None
    builds: int = 0

    def prepare(self, root: Path) -> None:
        """Write the build context: the Dockerfile, the host's CA bundle, pip's wheel and the app."""
        self.context = self.work / "naive"
        wheels = self.work / "pip-wheel"
        args: list[str | Path] = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
            "--dest", wheels, "pip",
        ]  # fmt: skip
        run(args, env=pip_env())
        wheel = next(wheels.glob("pip-*.whl"))
        (self.context / "demo").mkdir(parents=True)
        shutil.copy2(wheel, self.context / wheel.name)
        shutil.copy2(HOST_CA_BUNDLE, self.context / "ca.crt")
        shutil.copytree(
            root / "demo" / "iris_demo",
            self.context / "demo" / "iris_demo",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        # The demo's unpinned inputs, as a naive build installs them: what pyproject.toml asks for.
        project = tomllib.loads((root / "demo" / "pyproject.toml").read_text(encoding="utf-8"))
        requirements = project["project"]["dependencies"]
        dockerfile = naive_dockerfile(base=self.base_name, pip_wheel=wheel.name, requirements=requirements)
        (self.context / "Dockerfile").write_text(dockerfile, encoding="utf-8")

    def _buildah(self) -> list[str]:
        assert self.storage is not None
        return [
            "buildah", "--root", str(self.storage / "root"), "--runroot", str(self.storage / "run"),
            "--storage-driver", "vfs",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        assert self.storage is not None
        env = dict(os.environ)
        env["TMPDIR"] = str(self.storage / "tmp")  # buildah's scratch files go with the storage
        os.makedirs(env["TMPDIR"], exist_ok=True)
        return env

    def build(self, *, clean: bool) -> Built:
        """Build and export (``clean``: in fresh storage, the base loaded first; else reuse the layer cache)."""
        phases: dict[str, float] = {}
        if clean:
            if self.storage is not None:
                shutil.rmtree(self.storage)  # vfs keeps a full copy per layer: one storage at a time
            self.storage = self.work / f"storage-{self.builds}"
            phases["load base"], _ = timed(self._load_base)
        self.builds += 1
        buildah, env = self._buildah(), self._env()
        # The naive way: the host's network, buildah's defaults for timestamps, layer cache on.
        args = [*buildah, "bud", "--isolation", "chroot", "--layers", "--quiet", "--tag", NAIVE_TAG, str(self.context)]
        phases["bud"], _ = timed(lambda: run(args, env=env))
        out = self.work / f"naive-image-{self.builds}"
        phases["push oci:"], _ = timed(
            lambda: run([*buildah, "push", "--quiet", NAIVE_TAG, f"oci:{out}:naive"], env=env)
        )
        return Built(layout=out, phases=phases)

    def release(self, layout: Path) -> None:
        """Delete an exported layout once it is measured."""
        shutil.rmtree(layout)

    def _load_base(self) -> None:
        buildah, env = self._buildah(), self._env()
        # buildah names a pulled layout after its path, which must then be a valid image name
        # (no dots, no upper case), as envbuild's own adapter knows: pull through a plain link.
        link = Path(tempfile.gettempdir()) / f"envbuild-bench-base-{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(self.base_layout.resolve())
        try:
            pulled = run([*buildah, "pull", "--quiet", f"oci:{link}:base"], env=env)
        finally:
            link.unlink(missing_ok=True)
        run([*buildah, "tag", pulled.split()[-1], self.base_name], env=env)


# -- measuring ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Row:
    """One way of building: its cold and warm timings and the images each build gave."""

    name: str
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    clean_images: list[Image] = field(default_factory=list)  # run 0 included
    warm_images: list[Image] = field(default_factory=list)
    cold_phases: list[dict[str, float]] = field(default_factory=list)  # seconds per step, where the builder says
    warm_phases: list[dict[str, float]] = field(default_factory=list)

    def phase_medians(self, *, cold: bool) -> dict[str, float]:
        """Median seconds of each step of the cold (or warm) builds; empty when the builder gave none."""
        runs = self.cold_phases if cold else self.warm_phases
        steps = dict.fromkeys(step for phases in runs for step in phases)
        return {step: statistics.median(p[step] for p in runs if step in p) for step in steps}

    @property
    def image(self) -> Image:
        """The last clean build's image (the one sized)."""
        return self.clean_images[-1]

    @property
    def packages(self) -> tuple[str, ...]:
        """The venv's packages, as listed from the first clean build."""
        return self.clean_images[0].packages

    @property
    def reproducible(self) -> bool:
        """Whether every clean build gave the same manifest digest."""
        return len({i.digest for i in self.clean_images}) == 1

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready figures."""
        return {
            "name": self.name,
            "cold": {"median": statistics.median(self.cold), "min": min(self.cold), "max": max(self.cold),
                     "times": self.cold},
            "warm": {"median": statistics.median(self.warm), "min": min(self.warm), "max": max(self.warm),
                     "times": self.warm},
            "image": {**self.image.summary(), "packages": list(self.packages)},
            "reproducible": self.reproducible,
            "clean_digests": [i.digest for i in self.clean_images],
            "warm_digests": [i.digest for i in self.warm_images],
            "cold_phases": self.cold_phases,
            "warm_phases": self.warm_phases,
        }  # fmt: skip


def build_once(builder: Envbuild | Naive, *, clean: bool, list_packages: bool = False) -> tuple[float, Image, Built]:
    """Time one build; then, untimed, measure its image (and list its packages) and let the builder tidy up."""
    seconds, built = timed(lambda: builder.build(clean=clean))
    image = read_image(built.layout, list_packages=list_packages)
    builder.release(built.layout)
    return seconds, image, built


def measure(builders: dict[str, Envbuild | Naive], runs: int, rows: dict[str, Row]) -> list[Row]:
    """One untimed clean build per row (run 0), then ``runs`` timed rounds of cold and warm builds.

    A row that already holds a clean image has had its run 0. The rows take turns
    within each round, so drift in machine load or network latency hits both alike.
    """
    for i in range(runs + 1):
        for name, builder in builders.items():
            row = rows[name]
            if i == 0 and row.clean_images:
                continue
            seconds, image, built = build_once(builder, clean=True, list_packages=i == 0)
            row.clean_images.append(image)
            if i == 0:
                log(f"run 0 (untimed): {name}: {seconds:.1f} s, {image.digest}")
                continue
            row.cold.append(seconds)
            row.cold_phases.append(built.phases)
            seconds, image, built = build_once(builder, clean=False)
            row.warm.append(seconds)
            row.warm_phases.append(built.phases)
            row.warm_images.append(image)
            log(f"run {i}/{runs}: {name}: cold {row.cold[-1]:.1f} s, warm {seconds:.2f} s, {image.digest}")
    return list(rows.values())


@dataclass(frozen=True, kw_only=True)
class Goal:
    """One goal and whether it was met."""

    name: str
    value: str
    passed: bool


def goals(envbuild: Row, naive: Row) -> list[Goal]:
    """The three goals: smaller, reproducible where naive is not, and a near-instant no-change rebuild."""
    warm = statistics.median(envbuild.warm)
    return [
        Goal(
            name="envbuild image smaller than naive (compressed)",
            value=f"{envbuild.image.compressed / 1e6:.1f} MB vs {naive.image.compressed / 1e6:.1f} MB",
            passed=envbuild.image.compressed < naive.image.compressed,
        ),
        Goal(
            name="envbuild reproducible, naive not",
            value=f"{_yes(envbuild.reproducible)} / {_yes(naive.reproducible)}",
            passed=envbuild.reproducible and not naive.reproducible,
        ),
        Goal(name="envbuild warm build < 2 s", value=f"{warm:.2f} s", passed=warm < 2.0),
    ]


# -- output ------------------------------------------------------------------------------------


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _layers(image: Image) -> str:
    """Each layer as ``compressed (tar)`` in MB."""
    return " + ".join(f"{size / 1e6:.1f} ({tar / 1e6:.1f})" for size, tar in zip(image.layers, image.tars, strict=True))


def table(rows: list[Row], checks: list[Goal]) -> str:
    """The figures as a plain-text table."""
    width = max(len(r.name) for r in rows)
    head = ("cold med s", "warm med s", "compr. MB", "uncompr. MB", "reproducible")
    lines = [f"{'row':<{width}}  " + "  ".join(f"{h:>{len(h)}}" for h in head)]
    for r in rows:
        cells = (
            f"{statistics.median(r.cold):.1f}",
            f"{statistics.median(r.warm):.2f}",
            f"{r.image.compressed / 1e6:.1f}",
            f"{r.image.uncompressed / 1e6:.1f}",
            f"{_yes(r.reproducible)} ({len({i.digest for i in r.clean_images})}/{len(r.clean_images)} digests)",
        )
        lines.append(f"{r.name:<{width}}  " + "  ".join(f"{c:>{len(h)}}" for c, h in zip(cells, head, strict=True)))
    lines.append("")
    for r in rows:
        lines.append(f"{r.name}:")
        lines.append(f"  layers, MB compressed (tar): {_layers(r.image)}")
        lines.append(f"  last clean build: {r.image.digest}")
        lines.append(f"  venv: {', '.join(r.packages) or '-'}")
        for label, cold in (("cold", True), ("warm", False)):
            steps = r.phase_medians(cold=cold)
            if steps:
                lines.append(f"  {label} steps (median s): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    lines.append("")
    lines += [f"{g.name:<48} {g.value:<24} {'PASS' if g.passed else 'FAIL'}" for g in checks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the benchmark, print the table (or JSON on stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed rounds of cold and warm builds (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("buildah", "unshare", "git"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is not installed (.ci/run installs it)")

    with tempfile.TemporaryDirectory(prefix="envbuild-bench-build-") as tmp:
        work = Path(tmp)
        root = copy_repo(work)
        # The warm bases and wheels stay (ENVBUILD_CACHE_DIR); SOURCE_DATE_EPOCH goes: envbuild dates images from git.
        env = envbuild_env(work / "pycache", keep_cache=True)
        env.pop("SOURCE_DATE_EPOCH", None)
        envbuild = Envbuild(root=root, env=env)
        # The base's name and layout come from envbuild's first build, so run 0 happens here.
        log("run 0 (untimed): envbuild, to learn the base and warm envbuild's caches")
        seconds, first, _ = build_once(envbuild, clean=True, list_packages=True)
        log(f"run 0 (untimed): {ENVBUILD}: {seconds:.1f} s, {first.digest}")
        base_name, base_layout = envbuild.base()
        log(f"base: {base_name} from {base_layout}")
        naive = Naive(work=work, base_name=base_name, base_layout=base_layout)
        naive.prepare(root)
        seeded = {ENVBUILD: Row(name=ENVBUILD, clean_images=[first]), NAIVE: Row(name=NAIVE)}
        rows = measure({ENVBUILD: envbuild, NAIVE: naive}, args.runs, seeded)
        # "work" holds vfs storage with files of many owners; TemporaryDirectory removes it as root.

    checks = goals(rows[0], rows[1])
    if args.json:
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "rows": [r.summary() for r in rows],
                    "goals": [{"name": g.name, "value": g.value, "passed": g.passed} for g in checks],
                },
                indent=2,
            )
        )
    else:
        print(table(rows, checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())

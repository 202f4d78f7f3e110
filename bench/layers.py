"""Benchmark images in layers by Python distribution: cold builds against the code before, incremental pushes.

Run from the repository root (root, buildah, mmdebstrap, git, docker-registry; the package index)::

    .venv/bin/python bench/layers.py [--runs 1] [--json] [--skip-torch] [--demo-variant V] [--cache DIR]
    .venv/bin/python bench/layers.py --table SAVED.json     # the table of a saved --json run

Two GPU inference images, each in a fresh git repository in a temporary directory: the demo's
gpu-infer (onnxruntime-gpu with its CUDA 13 wheels), and a torch image the bench writes (torch
from the package index with its nvidia-* CUDA wheels, on the demo's Debian base). For each:

1. cold builds (bases and wheels cached, no image and no layer cache), ``--runs`` times, with
   this code and with the code before layers by distribution (commit 59ce0a0, from ``git
   archive``, run by the same Python with ``PYTHONPATH``), interleaved;
2. the layers of this code's image: how many, the largest (compressed and as a tar, and the
   largest file in each), and any above the cap that holds no single file larger than the cap;
3. pushed to a real registry on 127.0.0.1; then a one-line change to the project's file,
   committed an hour later, rebuilt (``-v``: which layers were compressed) and pushed again;
   then one small package moved to another version (a specifier in the spec, relocked,
   committed), rebuilt and pushed again. Each push's uploaded bytes are compared with the
   image's layer bytes.

And the demo's cpu-infer and cpu-train images pushed to one repository of a fresh registry:
the blobs in its storage against the blobs both manifests list.

The wheels and bases are kept in ``--cache`` (default ``$TMPDIR/envbuild-bench-layers-cache``)
so that a second run downloads nothing (the torch wheels are about 3 GB); its ``layers/`` is
emptied before every cold build and at the end. Progress goes to stderr, the table (or the
JSON) to stdout. The exit status is 0 whether the targets pass or not (it measures, it does
not gate). See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import BIN, REPO, envbuild_env, log, run, timed

sys.path.insert(0, str(REPO / "tests"))

from envbuild.lock.imagespec import LAYER_CAP
from envbuild.oci.annotations import DISTRIBUTIONS, LAYER
from envbuild.oci.compress import open_layer
from envbuild.oci.layout import Layout
from envbuild.oci.ref import Digest
from support.demo import make_project
from support.registry import Registry, run_registry

BEFORE = "59ce0a0"  # the last commit before layers by distribution (issue 13)
FIRST_COMMIT = "2026-11-02T12:00:00+00:00"  # support/demo.py's COMMIT_DATE: the demo's first commit
CHANGE_COMMIT = "2026-11-02T13:00:00+00:00"
BUMP_COMMIT = "2026-11-02T14:00:00+00:00"
BLOBS = Path("docker/registry/v2/blobs/sha256")
TARGET_CHANGE = 0.01
TARGET_BUMP = 0.05
_COUNTER = re.compile(r"(\S+) layers: (\d+) compressed, (\d+) from the cache \(compressed: (.*)\)")
_TOP = 8  # largest layers listed per image

TORCH_SPEC = """\
# Written by bench/layers.py: a torch-class GPU inference image.
name = "torch-bench"
python = "3.11"
platforms = ["linux/amd64"]
exclude-newer = "2026-11-01T00:00:00Z"

[roles.infer]
dependencies = ["torch"]
entrypoint = ["python", "serve.py"]

[accelerators.gpu]
cuda = "13"
base = { debian = "bookworm", packages = ["python3", "ca-certificates", "libstdc++6", "libgomp1"] }

[image]
files = ["serve.py"]
"""
TORCH_APP = 'import torch\n\nprint("torch", torch.__version__, "cuda", torch.version.cuda)\n'


# -- the projects -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Subject:
    """One image the bench builds: its project, variant, the file a commit changes, the package it moves."""

    title: str
    root: Path
    variant: str
    changed_file: str  # relative to root
    bump: str  # a small package of the lock, moved to its newest version below the locked one

    @property
    def layout(self) -> Path:
        return self.root / ".envbuild" / "images" / self.variant


def git(root: Path, *args: str, date: str = FIRST_COMMIT) -> None:
    """Run git in ``root`` as a fixed author, dated ``date`` (the commit dates the image: SOURCE_DATE_EPOCH)."""
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    argv = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args]
    run(argv, env=env)


def commit(root: Path, message: str, date: str) -> None:
    """Commit every change but what builds leave (.envbuild/, the rendered images/)."""
    git(root, "add", "-A", "--", ".", ":!.envbuild", ":!images", date=date)
    git(root, "commit", "-q", "-m", message, date=date)


def demo_project(work: Path, variant: str) -> Subject:
    """The demo (this working tree's spec, locks and demo/) in a new repository."""
    root = make_project(work / "demo")
    return Subject(
        title=f"demo {variant}", root=root, variant=variant, changed_file="demo/iris_demo/predict.py",
        bump="packaging",
    )  # fmt: skip


def torch_project(work: Path, envbuild: Callable[..., list[str | Path]], env: dict[str, str]) -> Subject:
    """The torch image's project: :data:`TORCH_SPEC`, a one-file app, locked, committed."""
    root = work / "torch"
    root.mkdir()
    (root / "envbuild.toml").write_text(TORCH_SPEC, encoding="utf-8")
    (root / "serve.py").write_text(TORCH_APP, encoding="utf-8")
    run(["git", "init", "-q", root])
    log("locking the torch project")
    run(envbuild(root, "lock"), env=env)
    commit(root, "torch", FIRST_COMMIT)
    return Subject(
        title="torch gpu-infer", root=root, variant="gpu-infer", changed_file="serve.py", bump="typing-extensions"
    )


# Run by each code's Python (this code, the code before): its wheels and its base into the cache.
# The two codes make different bases (the code before compressed them with Python's zlib), so
# each code must make its own before its build is timed.
_PREFETCH = """
import sys
from pathlib import Path
from envbuild.image.build import ImageOptions, base_image, build_targets, fetch_wheels
from envbuild.lock.lockfile import read_lockset
from envbuild.lock.spec import load_spec
from envbuild.lock.variants import select
from envbuild.workspace import Workspace
root, variant, cache = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
spec = load_spec(root)
options = ImageOptions(variants=select(spec, (variant,)), workspace=Workspace.at(spec.root, cache=cache))
for target in build_targets(spec, options.variants):
    fetch_wheels(spec, target, cache=cache)
    base_image(spec, read_lockset(spec.root), target, options)
"""


def locked_version(root: Path, variant: str, package: str) -> str:
    """The version of ``package`` in the project's lockfile of ``variant``."""
    text = (root / "lockfiles" / f"{variant}.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(package)}==(\S+)", text, re.MULTILINE)
    if match is None:
        sys.exit(f"bench: {package} is not in {root}/lockfiles/{variant}.txt")
    return match.group(1)


def require_below(root: Path, requirement: str) -> None:
    """Add ``requirement`` to the spec's shared dependencies (the specs here have none at the top level)."""
    spec = root / "envbuild.toml"
    text = spec.read_text(encoding="utf-8")
    first_table = text.index("\n[") + 1
    spec.write_text(
        f"{text[:first_table]}dependencies = [{json.dumps(requirement)}]\n\n{text[first_table:]}", encoding="utf-8"
    )


# -- the images ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One layer of an image: its name (envbuild's annotation; "base" for the base's), blob and tar sizes."""

    name: str
    digest: str
    size: int
    tar_size: int = 0
    largest_file: str = ""
    largest_file_size: int = 0
    distributions: str = ""

    def over_cap(self, cap: int) -> bool:
        """Above the cap, though no single file in it is larger than the cap."""
        return self.tar_size > cap and self.largest_file_size <= cap

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "digest": self.digest, "bytes": self.size, "tar_bytes": self.tar_size,
            "largest_file": self.largest_file, "largest_file_bytes": self.largest_file_size,
            "distributions": self.distributions,
        }  # fmt: skip

    @classmethod
    def from_summary(cls, data: dict[str, Any]) -> Layer:
        return cls(
            name=data["name"], digest=data["digest"], size=data["bytes"], tar_size=data["tar_bytes"],
            largest_file=data["largest_file"], largest_file_size=data["largest_file_bytes"],
            distributions=data.get("distributions", ""),
        )  # fmt: skip


def manifest_of(layout: Path) -> dict[str, Any]:
    image = Layout.open(layout)
    return dict(json.loads(image.read_blob(image.select().digest)))


def layers_of(layout: Path, *, scan: bool) -> list[Layer]:
    """The image's layers; ``scan``: also read each tar (its size, its largest file)."""
    image = Layout.open(layout)
    found = []
    for d in manifest_of(layout)["layers"]:
        notes = d.get("annotations", {})
        layer = Layer(
            name=notes.get(LAYER, "base"),
            digest=d["digest"],
            size=d["size"],
            distributions=notes.get(DISTRIBUTIONS, ""),
        )
        if scan:
            layer = _scanned(layer, image.blob_path(Digest.parse(d["digest"])))
        found.append(layer)
    return found


def _scanned(layer: Layer, blob: Path) -> Layer:
    size, largest, largest_size = 0, "", -1
    with blob.open("rb") as raw, open_layer(raw) as stream:
        counted = _Counting(stream)
        with tarfile.open(fileobj=counted, mode="r|") as tar:
            for member in tar:
                if member.isreg() and member.size > largest_size:
                    largest, largest_size = member.name, member.size
        while counted.read(1 << 20):
            pass  # the end-of-archive blocks and the record padding are part of the tar too
        size = counted.size
    return Layer(
        name=layer.name, digest=layer.digest, size=layer.size, tar_size=size, largest_file=largest,
        largest_file_size=max(largest_size, 0), distributions=layer.distributions,
    )  # fmt: skip


class _Counting:
    """A read-only stream that counts what passes."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.stream.read(n)
        self.size += len(data)
        return data


# -- running envbuild ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class Envbuild:
    """envbuild as a subprocess: this code, or the code before (``old``: its builder/ on PYTHONPATH)."""

    env: dict[str, str]
    old: Path | None = None

    def argv(self, root: Path, *args: str | Path) -> list[str | Path]:
        return [BIN / "python", "-m", "envbuild", "-C", root, *args]

    def environment(self) -> dict[str, str]:
        if self.old is None:
            return self.env
        return {**self.env, "PYTHONPATH": str(self.old / "builder")}

    def build(self, subject: Subject, *, variant: str | None = None, verbose: bool = False) -> tuple[float, str, str]:
        """Build the subject's image: (seconds, digest, stderr)."""
        variant = variant or subject.variant
        flags = ["-v"] if verbose else ["-q"]
        argv = [str(a) for a in self.argv(subject.root, *flags, "--json", "image", "--variant", variant)]
        seconds, done = timed(
            lambda: subprocess.run(argv, env=self.environment(), capture_output=True, text=True, timeout=7200)
        )
        if done.returncode != 0:
            sys.exit(f"bench: build failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-4000:]}")
        images = json.loads(done.stdout)["images"]
        return seconds, str(images[0]["digest"]), done.stderr

    def prefetch(self, subject: Subject, cache: Path, variant: str | None = None) -> None:
        """Download the image's wheels and make its base into ``cache``, so that no timed build does."""
        argv = [BIN / "python", "-c", _PREFETCH, subject.root, variant or subject.variant, cache]
        run(argv, env=self.environment())

    def push(self, layout: Path, ref: str) -> dict[str, Any]:
        """``envbuild --json push --insecure LAYOUT REF``: what it reported."""
        out = run(self.argv(layout, "--json", "push", "--insecure", layout, ref), env=self.env)
        return dict(json.loads(out))


def counter(stderr: str) -> tuple[int, int, list[str]]:
    """The ``-v`` counter line: layers compressed, taken from the cache, and the names of those compressed."""
    match = _COUNTER.search(stderr)
    if match is None:
        sys.exit(f"bench: no layer counter in the build's -v output:\n{stderr[-2000:]}")
    names = [] if match.group(4) == "none" else match.group(4).split(", ")
    return int(match.group(2)), int(match.group(3)), names


def clear_layer_cache(cache: Path) -> None:
    shutil.rmtree(cache / "layers", ignore_errors=True)


# -- one image: cold builds, layers, incremental pushes -----------------------------------------


@dataclass(kw_only=True)
class Figures:
    """What the bench measured on one image."""

    title: str
    cold_before: list[float] = field(default_factory=list)
    cold_now: list[float] = field(default_factory=list)
    digests_now: list[str] = field(default_factory=list)
    before_layers: list[Layer] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    pushes: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebuilds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def layer_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)

    def summary(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "cold_before": _stats(self.cold_before),
            "cold_now": _stats(self.cold_now),
            "digests": self.digests_now,
            "layers": [layer.summary() for layer in self.layers],
            "layer_bytes": self.layer_bytes,
            "before_layers": [layer.summary() for layer in self.before_layers],
            "pushes": self.pushes,
            "rebuilds": self.rebuilds,
        }

    @classmethod
    def from_summary(cls, data: dict[str, Any]) -> Figures:
        """The figures of a ``--json`` run, to print them as a table (``--table``)."""
        return cls(
            title=data["title"], cold_before=data["cold_before"]["times"], cold_now=data["cold_now"]["times"],
            digests_now=data.get("digests", []), layers=[Layer.from_summary(d) for d in data["layers"]],
            before_layers=[Layer.from_summary(d) for d in data["before_layers"]], pushes=data["pushes"],
            rebuilds=data["rebuilds"],
        )  # fmt: skip


def _stats(times: list[float]) -> dict[str, Any]:
    if not times:
        return {}
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "runs": len(times),
        "times": times,
    }


def measure(subject: Subject, now: Envbuild, before: Envbuild, registry: Registry, cache: Path, runs: int) -> Figures:
    """Cold builds of ``subject`` with both codes, then this code's layers and incremental pushes."""
    figures = Figures(title=subject.title)
    log(f"{subject.title}: fetching wheels and making the bases (not timed)")
    now.prefetch(subject, cache)
    before.prefetch(subject, cache)
    for i in range(1, runs + 1):
        for name, envbuild, times in (("before", before, figures.cold_before), ("now", now, figures.cold_now)):
            shutil.rmtree(subject.layout, ignore_errors=True)
            clear_layer_cache(cache)
            seconds, digest, _ = envbuild.build(subject)
            times.append(seconds)
            if envbuild is now:
                figures.digests_now.append(digest)
            else:
                figures.before_layers = layers_of(subject.layout, scan=False)
            log(f"{subject.title}: cold build {i}/{runs}, code {name}: {seconds:.1f} s")
    log(f"{subject.title}: reading the layers")
    figures.layers = layers_of(subject.layout, scan=True)
    # The code before wrote no layer annotations, and one new layer after the base's (buildah
    # builds without --layers): the venv, the project and the config together.
    *base, new = figures.before_layers
    figures.before_layers = [*base, dataclasses.replace(new, name="venv+project+config")]
    repository = f"{registry.host}/bench/{subject.root.name}"
    figures.pushes["first"] = now.push(subject.layout, f"{repository}:first")

    path = subject.root / subject.changed_file
    path.write_text(path.read_text(encoding="utf-8") + "# one more line\n", encoding="utf-8")
    commit(subject.root, f"one line of {subject.changed_file}", CHANGE_COMMIT)
    figures.rebuilds["change"] = rebuild(subject, now, f"one line of {subject.changed_file}")
    figures.pushes["change"] = now.push(subject.layout, f"{repository}:change")

    old_version = locked_version(subject.root, subject.variant, subject.bump)
    require_below(subject.root, f"{subject.bump}<{old_version}")
    run(now.argv(subject.root, "-q", "lock"), env=now.env)
    new_version = locked_version(subject.root, subject.variant, subject.bump)
    commit(subject.root, f"{subject.bump} {old_version} -> {new_version}", BUMP_COMMIT)
    figures.rebuilds["bump"] = rebuild(subject, now, f"{subject.bump} {old_version} -> {new_version}")
    held_by = [layer.name for layer in layers_of(subject.layout, scan=False) if _holds(layer, subject.bump)]
    figures.rebuilds["bump"]["expected"] = sorted({*held_by, "project"})
    figures.pushes["bump"] = now.push(subject.layout, f"{repository}:bump")
    return figures


def _holds(layer: Layer, package: str) -> bool:
    return any(item.split("==")[0] == package for item in layer.distributions.split())


def rebuild(subject: Subject, now: Envbuild, what: str) -> dict[str, Any]:
    """A warm rebuild after a commit: its seconds and the ``-v`` counter, with the image's layer bytes."""
    seconds, digest, stderr = now.build(subject, verbose=True)
    compressed, cached, names = counter(stderr)
    log(f"{subject.title}: rebuilt after {what}: {seconds:.1f} s, {compressed} layer(s) compressed: {', '.join(names)}")
    layer_bytes = sum(layer.size for layer in layers_of(subject.layout, scan=False))
    return {
        "what": what, "seconds": seconds, "digest": digest, "compressed": compressed, "from_cache": cached,
        "compressed_layers": names, "layer_bytes": layer_bytes,
    }  # fmt: skip


# -- cpu-infer and cpu-train in one repository ---------------------------------------------------


def shared_storage(subject: Subject, now: Envbuild, registry: Registry, cache: Path) -> dict[str, Any]:
    """The demo's cpu-infer and cpu-train pushed to one repository: blobs stored against blobs listed."""
    listed: dict[str, dict[str, int]] = {}
    names: dict[str, dict[str, str]] = {}
    manifests = set()
    for variant in ("cpu-infer", "cpu-train"):
        now.prefetch(subject, cache, variant)
        seconds, digest, _ = now.build(subject, variant=variant)
        log(f"demo {variant}: built in {seconds:.1f} s")
        layout = subject.root / ".envbuild" / "images" / variant
        manifest = manifest_of(layout)
        listed[variant] = {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}
        names[variant] = {d["digest"]: d.get("annotations", {}).get(LAYER, "base") for d in manifest["layers"]}
        now.push(layout, f"{registry.host}/bench/iris:{variant}")
        manifests.add(digest)
    stored = {
        p.name: (p / "data").stat().st_size for p in (registry.storage / BLOBS).glob("*/*") if (p / "data").is_file()
    }
    infer, train = listed["cpu-infer"], listed["cpu-train"]
    shared = sorted(set(infer) & set(train))
    return {
        "listed_blobs": len(infer) + len(train),
        "listed_bytes": sum(infer.values()) + sum(train.values()),
        "distinct_blobs": len(set(infer) | set(train)),
        "stored_blobs": len(stored),
        "stored_bytes": sum(stored.values()),
        "manifests": len(manifests),
        "shared": [names["cpu-infer"].get(d, "config") for d in shared],
        "shared_bytes": sum(infer[d] for d in shared),
        "stored_once": len(stored) == len(set(infer) | set(train)) + len(manifests),
    }


# -- the report ---------------------------------------------------------------------------------


def report(images: list[Figures], storage: dict[str, Any], notes: list[str], cap: int) -> list[str]:
    """The table and the details, as lines."""
    lines = []
    width = 56
    header = f"{'':<{width}}" + "".join(f"  {f.title:>24}" for f in images)
    lines += [header]

    def row(label: str, cell: Callable[[Figures], str]) -> None:
        lines.append(f"{label:<{width}}" + "".join(f"  {cell(f):>24}" for f in images))

    def median(times: list[float]) -> str:
        return f"{statistics.median(times):.1f}" + (f" ({min(times):.0f}-{max(times):.0f})" if len(times) > 1 else "")

    row("cold build, code before layers (59ce0a0) s", lambda f: median(f.cold_before))
    row("cold build, this code s", lambda f: median(f.cold_now))
    row("this code / before", lambda f: f"{statistics.median(f.cold_now) / statistics.median(f.cold_before):.2f}")
    row("layers, before (base + new)", lambda f: _count(f.before_layers))
    row("layers, now (base + new)", lambda f: _count(f.layers))
    row("image layer bytes, now (MB, compressed)", lambda f: f"{f.layer_bytes / 1e6:.1f}")
    row("largest layer, before (MB compressed)", lambda f: f"{max(layer.size for layer in f.before_layers) / 1e6:.1f}")
    row("largest layer, now (MB compressed / tar)", lambda f: _largest(f.layers))
    row("first push: MB uploaded", lambda f: f"{f.pushes['first']['bytes_uploaded'] / 1e6:.1f}")
    row("one-line change: rebuild s", lambda f: f"{f.rebuilds['change']['seconds']:.1f}")
    row("one-line change: layers compressed", lambda f: ", ".join(f.rebuilds["change"]["compressed_layers"]))
    row("  only the project's", lambda f: _verdict(f.rebuilds["change"]["compressed_layers"] == ["project"]))
    row("one-line change: bytes uploaded", lambda f: str(f.pushes["change"]["bytes_uploaded"]))
    row("  share of layer bytes (target < 1%)", lambda f: _share(f, "change", TARGET_CHANGE))
    row("  before: a commit re-uploads (MB, derived)", lambda f: f"{_new_bytes(f.before_layers) / 1e6:.1f}")
    row("package bump", lambda f: f.rebuilds["bump"]["what"])
    row("package bump: rebuild s", lambda f: f"{f.rebuilds['bump']['seconds']:.1f}")
    row("package bump: layers compressed", lambda f: ", ".join(f.rebuilds["bump"]["compressed_layers"]))
    row(
        "  only its layer and the project's",
        lambda f: _verdict(sorted(f.rebuilds["bump"]["compressed_layers"]) == f.rebuilds["bump"]["expected"]),
    )
    row("package bump: bytes uploaded", lambda f: str(f.pushes["bump"]["bytes_uploaded"]))
    row("  share of layer bytes (target < 5%)", lambda f: _share(f, "bump", TARGET_BUMP))
    row(
        f"layers above the cap ({cap / 2**30:.0f} GiB), no file larger",
        lambda f: _verdict(
            not any(layer.over_cap(cap) for layer in f.layers),
            ", ".join(layer.name for layer in f.layers if layer.over_cap(cap)),
        ),
    )
    row("cold builds of this code: digests", lambda f: f"{len(set(f.digests_now))} in {len(f.digests_now)} builds")
    for f in images:
        lines += ["", f"{f.title}: the {_TOP} largest layers (this code)"]
        lines.append(f"  {'layer':<34} {'MB':>8} {'tar MB':>8}  largest file")
        for layer in sorted(f.layers, key=lambda layer: -layer.tar_size)[:_TOP]:
            lines.append(
                f"  {layer.name:<34} {layer.size / 1e6:>8.1f} {layer.tar_size / 1e6:>8.1f}  "
                f"{layer.largest_file} ({layer.largest_file_size / 1e6:.1f} MB)"
            )
    if storage:
        lines += [
            "",
            "demo cpu-infer + cpu-train pushed to one repository:",
            f"  blobs the manifests list (config + layers): {storage['listed_blobs']} "
            f"({storage['listed_bytes'] / 1e6:.1f} MB), {storage['distinct_blobs']} distinct",
            f"  blobs in the registry's storage: {storage['stored_blobs']} ({storage['stored_bytes'] / 1e6:.1f} MB, "
            f"{storage['manifests']} of them manifests)  shared stored once: {_verdict(storage['stored_once'])}",
            f"  shared: {', '.join(storage['shared'])} ({storage['shared_bytes'] / 1e6:.1f} MB)",
        ]
    return [*lines, *(f"note: {n}" for n in notes)]


def _count(layers: list[Layer]) -> str:
    base = sum(1 for layer in layers if layer.name == "base")
    return f"{len(layers)} ({base} + {len(layers) - base})"


def _largest(layers: list[Layer]) -> str:
    layer = max(layers, key=lambda layer: layer.tar_size)
    return f"{layer.size / 1e6:.0f} / {layer.tar_size / 1e6:.0f}"


def _new_bytes(layers: list[Layer]) -> int:
    """Before layers by distribution, every new layer's files carried SOURCE_DATE_EPOCH: a commit changed them all."""
    return sum(layer.size for layer in layers if layer.name != "base")


def _share(f: Figures, push: str, target: float) -> str:
    share = f.pushes[push]["bytes_uploaded"] / f.rebuilds[push]["layer_bytes"]
    return f"{share:.3%} {_verdict(share < target)}"


def _verdict(ok: bool, detail: str = "") -> str:
    return ("PASS" if ok else "FAIL") + (f" {detail}" if detail else "")


# -- main ---------------------------------------------------------------------------------------


def old_code(work: Path) -> Path:
    """The code before layers by distribution, from ``git archive`` (builder/ and templates/), able to build torch.

    Its Dockerfile failed on any source that does not compile on the image's Python, and torch's
    cp311 wheels ship one (fixed in d5e6c05): the bench gives it the same fix, or it could not
    build the torch image at all.
    """
    target = work / f"envbuild-{BEFORE}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE, "builder", "templates"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    template = target / "templates" / "Dockerfile.j2"
    step = "{{ venv }}/bin/python -m compileall -q -j 1 --invalidation-mode checked-hash {{ venv }}/lib"
    text = template.read_text(encoding="utf-8")
    if text.count(step) != 1:
        sys.exit(f"bench: {BEFORE}'s Dockerfile template has no compileall step to fix")
    template.write_text(text.replace(step, f"{{ {step} || [ $? -eq 1 ]; }}"), encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="cold builds per code and image (default 1)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--table", type=Path, metavar="FILE", help="print the table of a saved --json run, and exit")
    parser.add_argument("--demo-variant", default="gpu-infer", help="the demo's image (default gpu-infer)")
    parser.add_argument("--skip-torch", action="store_true", help="leave out the torch image (about 3 GB of wheels)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "envbuild-bench-layers-cache")
    parser.add_argument("--min-free-gb", type=float, default=40.0, help="free disk the torch part needs (default 40)")
    args = parser.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text(encoding="utf-8"))
        figures = [Figures.from_summary(d) for d in saved["images"]]
        print("\n".join(report(figures, saved["shared_storage"], saved["notes"], LAYER_CAP)))
        return 0
    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    notes = [f"this code: {_revision()}; cap {LAYER_CAP} bytes; {os.cpu_count()} CPUs; cold runs: {args.runs}"]
    images: list[Figures] = []
    try:
        with tempfile.TemporaryDirectory(prefix="envbuild-bench-layers-") as tmp:
            work = Path(tmp)
            env = {**envbuild_env(work / "pycache"), "ENVBUILD_CACHE_DIR": str(cache)}
            env.pop("SOURCE_DATE_EPOCH", None)  # the commit dates every build
            now, before = Envbuild(env=env), Envbuild(env=env, old=old_code(work))
            demo = demo_project(work, args.demo_variant)
            with run_registry(work) as registry:
                storage = shared_storage(demo, now, registry, cache)
            with run_registry(work) as registry:
                measured(images, notes, lambda: measure(demo, now, before, registry, cache, args.runs))
                if args.skip_torch:
                    notes.append("the torch image was skipped (--skip-torch)")
                else:
                    free = shutil.disk_usage(work).free / 1e9
                    log(f"free disk before the torch image: {free:.0f} GB")
                    if free < args.min_free_gb:
                        notes.append(f"the torch image was skipped: {free:.0f} GB free, {args.min_free_gb:.0f} needed")
                    else:
                        measured(
                            images,
                            notes,
                            lambda: measure(
                                torch_project(work, now.argv, env), now, before, registry, cache, args.runs
                            ),
                        )
    finally:
        clear_layer_cache(cache)
    if args.json:
        print(
            json.dumps({"images": [f.summary() for f in images], "shared_storage": storage, "notes": notes}, indent=2)
        )
    else:
        print("\n".join(report(images, storage, notes, LAYER_CAP)))
    return 0


def measured(images: list[Figures], notes: list[str], action: Callable[[], Figures]) -> None:
    """Add the figures of one image; if a step fails, say so in the notes and keep the other images' figures."""
    try:
        images.append(action())
    except SystemExit as failure:
        log(str(failure.code))
        notes.append(f"an image failed: {str(failure.code).splitlines()[0]}")


def _revision() -> str:
    head = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).strip()
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--", "builder", "templates"]).strip()
    return f"{head}{' + uncommitted changes in builder/ or templates/' if dirty else ''}"


if __name__ == "__main__":
    sys.exit(main())

"""The layer plan on hand-made venvs, and the layers written from it (docs/layers.md).

Each test writes what a builder would leave (one layer tar: a venv with distributions and their
RECORDs, the project, passwd) and checks how envbuild splits and writes it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.image.layerplan import THIRD_PARTY_MTIME, LayerSettings, group_of, plan_layers
from envbuild.oci.compress import GZIP
from envbuild.oci.layers import LayerCache, LayerCounts, NewFiles, WrittenLayer, write_layers

SITE = "opt/venv/lib/python3.11/site-packages"
EPOCH = 1_700_000_000
MIB = 2**20


@dataclass
class Tree:
    """A builder's new layer being made: entries in the order a builder writes them."""

    entries: list[tuple[tarfile.TarInfo, bytes | None]] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)

    def dir(self, name: str, mtime: int = 1_800_000_000) -> None:
        if name in self.dirs:
            return
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        self.dirs.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o775, mtime
        self.entries.append((info, None))

    def file(self, name: str, data: bytes, *, mode: int = 0o664, mtime: int = 1_800_000_000) -> None:
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.uid, info.uname = len(data), mode, mtime, 1000, "builder"
        self.entries.append((info, data))

    def link(self, name: str, target: str, *, hard: bool = False) -> None:
        self.dir(name.rsplit("/", 1)[0])
        info = tarfile.TarInfo(name)
        info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
        self.entries.append((info, None))

    def dist(self, name: str, version: str, files: dict[str, bytes], *, scripts: tuple[str, ...] = ()) -> None:
        """A distribution installed as uv does: its files, its dist-info with RECORD, compiled sources."""
        info_dir = f"{name.replace('-', '_')}-{version}.dist-info"
        rows = []
        for rel, data in files.items():
            self.file(f"{SITE}/{rel}", data)
            rows.append(f"{rel},sha256=x,{len(data)}")
            if rel.endswith(".py"):
                directory, _, stem = rel.rpartition("/")
                pyc = f"{directory}/__pycache__/{stem[:-3]}.cpython-311.pyc"
                self.file(f"{SITE}/{pyc}", b"pyc of " + data)  # compileall's, not in RECORD
        for script in scripts:
            self.file(f"opt/venv/bin/{script}", b"#!/opt/venv/bin/python\n", mode=0o775)
            rows.append(f"../../../bin/{script},sha256=x,23")
        self.file(f"{SITE}/{info_dir}/METADATA", f"Name: {name}\nVersion: {version}\n".encode())
        rows += [f"{info_dir}/METADATA,sha256=x,1", f"{info_dir}/RECORD,,"]
        self.file(f"{SITE}/{info_dir}/RECORD", ("\n".join(rows) + "\n").encode())

    def write(self, path: Path) -> Path:
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for info, data in self.entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return path


def venv(tree: Tree, *, big: bytes = b"B" * (2 * MIB), project: bytes = b"print('hi')\n") -> Tree:
    """A small but complete image: a venv with one big and two small distributions, a project, passwd."""
    for d in ("opt", "opt/venv", "opt/venv/bin", "opt/venv/lib", "opt/venv/lib/python3.11", SITE):
        tree.dir(d)
    tree.file("opt/venv/pyvenv.cfg", b"home = /usr/bin\n")
    tree.link("opt/venv/bin/python", "/usr/bin/python3.11")
    tree.file(f"{SITE}/_virtualenv.py", b"# uv's\n")
    tree.dist("big", "1.0", {"big/__init__.py": b"x = 1\n", "big/core.so": big}, scripts=("big-cli",))
    tree.dist("attrs", "24.2.0", {"attrs/__init__.py": b"a = 1\n"})
    tree.dist("zipp", "3.20", {"zipp/__init__.py": b"z = 1\n"})
    tree.dir("app")
    tree.file("app/predict.py", project)
    tree.dir("etc", mtime=1_800_000_000)
    tree.file("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:10001:10001::/app:/usr/sbin/nologin\n")
    return tree


SETTINGS = LayerSettings(threshold=1 * MIB, cap=64 * MIB)


def plan_of(tmp_path: Path, tree: Tree, settings: LayerSettings = SETTINGS) -> dict[str, tuple[str, ...]]:
    layer = tree.write(tmp_path / "raw.tar")
    with NewFiles.open([layer], tmp_path) as files:
        plan = plan_layers(files, venv="/opt/venv", python="3.11", workdir="/app", settings=settings)
    return {spec.name: spec.paths for spec in plan}


def test_each_distribution_big_enough_gets_a_layer_and_small_ones_share_their_group(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, venv(Tree()))
    assert list(plan) == ["venv", "python:big", "python-group:0-9a-c", "python-group:t-z", "project", "config"]
    assert plan["venv"] == ("opt/venv/bin/python", f"{SITE}/_virtualenv.py", "opt/venv/pyvenv.cfg")
    big = set(plan["python:big"])
    # RECORD's files, the script it lists under bin/, and the bytecode of its sources (not in RECORD).
    assert {f"{SITE}/big/core.so", "opt/venv/bin/big-cli", f"{SITE}/big/__pycache__/__init__.cpython-311.pyc"} <= big
    assert f"{SITE}/big-1.0.dist-info/RECORD" in big
    assert all(p.startswith(f"{SITE}/zipp") for p in plan["python-group:t-z"])
    assert plan["project"] == ("app/predict.py",) and plan["config"] == ("etc/passwd",)


def test_groups_are_a_stable_rule_of_the_name() -> None:
    assert [group_of(n) for n in ("0x", "attrs", "certifi", "django", "numpy", "protobuf", "scipy", "zipp")] == [
        "0-9a-c", "0-9a-c", "0-9a-c", "d-h", "n-p", "n-p", "q-s", "t-z",
    ]  # fmt: skip


def test_a_distribution_over_the_cap_is_split_by_files(tmp_path: Path) -> None:
    tree = Tree()
    venv(tree)
    tree.dist("huge", "2.0", {f"huge/lib{i}.so": bytes([i]) * (3 * MIB) for i in range(5)})
    plan = plan_of(tmp_path, tree, LayerSettings(threshold=1 * MIB, cap=7 * MIB))
    parts = [name for name in plan if name.startswith("python:huge")]
    assert parts == ["python:huge:1/3", "python:huge:2/3", "python:huge:3/3"]
    libraries = [[p.rsplit("/", 1)[1] for p in plan[name] if p.endswith(".so")] for name in parts]
    assert libraries == [["lib0.so", "lib1.so"], ["lib2.so", "lib3.so"], ["lib4.so"]]  # 2 x 3 MiB fit in 7 MiB


def test_a_file_larger_than_the_cap_is_a_layer_of_its_own(tmp_path: Path) -> None:
    tree = Tree()
    venv(tree, big=b"B" * (3 * MIB))
    plan = plan_of(tmp_path, tree, LayerSettings(threshold=1 * MIB, cap=2 * MIB))
    alone = [paths for name, paths in plan.items() if f"{SITE}/big/core.so" in paths]
    assert alone == [(f"{SITE}/big/core.so",)]


def written(tmp_path: Path, tree: Tree, *, epoch: int = EPOCH, cache: LayerCache | None = None,
            counts: LayerCounts | None = None, name: str = "out") -> list[WrittenLayer]:  # fmt: skip
    out = tmp_path / name
    out.mkdir()
    layer = tree.write(tmp_path / f"{name}.tar")
    with NewFiles.open([layer], tmp_path) as files:
        plan = plan_layers(files, venv="/opt/venv", python="3.11", workdir="/app", settings=SETTINGS)
        return write_layers(files, plan, out, epoch=epoch, compression=GZIP, cache=cache, counts=counts)


def members(tmp_path: Path, layer: WrittenLayer, name: str = "out") -> list[tuple[tarfile.TarInfo, bytes | None]]:
    blob = tmp_path / name / layer.descriptor["digest"].removeprefix("sha256:")
    data = gzip.decompress(blob.read_bytes())
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar]  # type: ignore[union-attr]


def test_the_union_of_the_layers_is_the_builders_tree(tmp_path: Path) -> None:
    layers = written(tmp_path, venv(Tree()))
    union: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    headers: dict[str, set[tuple[int, int, int]]] = {}
    for layer in layers:
        for info, data in members(tmp_path, layer):
            union[info.name] = (info, data)
            if info.isdir():
                headers.setdefault(info.name, set()).add((info.mode, info.uid, info.mtime))
    built = {info.name: (info, data) for info, data in venv(Tree()).entries}
    assert set(union) == set(built)
    for name, (info, data) in built.items():
        got, got_data = union[name]
        assert (got.type, got.linkname, got_data) == (info.type, info.linkname, data), name
        assert (got.uid, got.gid, got.uname) == (0, 0, "")
        assert got.mode == (0o777 if info.issym() else 0o755 if info.isdir() or info.mode & 0o111 else 0o644)
    # A directory repeated in several layers has the same metadata in each.
    assert len(headers[SITE]) == 1 and headers[SITE] == {(0o755, 0, THIRD_PARTY_MTIME)}


def test_only_the_paths_given_owners_are_not_roots(tmp_path: Path) -> None:
    """The user's home is the user's in every layer that holds it; /home and everything else stay root's.

    The home is empty (in the config layer), or the workdir holds it (a parent in the project's layer).
    """
    for workdir in ("/app", "/home/app"):
        tree = venv(Tree())
        tree.dir("home/app")
        if workdir != "/app":
            tree.file("home/app/serve.py", b"serve()\n")
        out = tmp_path / workdir.replace("/", "_")
        out.mkdir()
        with NewFiles.open([tree.write(out / "raw.tar")], out) as files:
            plan = plan_layers(files, venv="/opt/venv", python="3.11", workdir=workdir, settings=SETTINGS)
            layers = write_layers(
                files, plan, out, epoch=EPOCH, compression=GZIP, cache=None, owners={"home/app": 10001}
            )
        owners = {}
        for layer in layers:
            blob = out / layer.descriptor["digest"].removeprefix("sha256:")
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
                for m in tar:
                    owners.setdefault(m.name, set()).add((m.uid, m.gid, m.mode))
        assert owners.pop("home/app") == {(10001, 10001, 0o755)}, workdir
        assert {o for found in owners.values() for o in found if o[:2] != (0, 0)} == set(), workdir


def test_third_party_layers_have_a_fixed_time_and_the_projects_the_epoch(tmp_path: Path) -> None:
    layers = {layer.descriptor["annotations"]["dev.envbuild.layer"]: layer for layer in written(tmp_path, venv(Tree()))}
    assert {info.mtime for info, _ in members(tmp_path, layers["python:big"])} == {THIRD_PARTY_MTIME}
    assert {info.mtime for info, _ in members(tmp_path, layers["project"])} == {EPOCH}
    assert {info.mtime for info, _ in members(tmp_path, layers["config"])} == {THIRD_PARTY_MTIME}
    assert layers["python:big"].descriptor["annotations"]["dev.envbuild.layer.distributions"] == "big==1.0"
    group = layers["python-group:0-9a-c"].descriptor["annotations"]
    assert group["dev.envbuild.layer.distributions"] == "attrs==24.2.0"


def test_a_package_layer_depends_only_on_its_package(tmp_path: Path) -> None:
    """Another epoch, another project, other distributions: the big distribution's layer is the same blob."""
    one = written(tmp_path, venv(Tree()), name="one")
    other = Tree()
    venv(other, project=b"print('another project')\n")
    other.dist("numpy", "2.1.0", {"numpy/__init__.py": b"n = 1\n" * 300_000})
    two = written(tmp_path, other, epoch=EPOCH + 86_400, name="two")
    digests = [
        {w.descriptor["annotations"]["dev.envbuild.layer"]: w.descriptor["digest"] for w in ws} for ws in (one, two)
    ]
    assert digests[0]["python:big"] == digests[1]["python:big"]
    assert digests[0]["venv"] == digests[1]["venv"]
    assert digests[0]["project"] != digests[1]["project"]
    assert "python:numpy" in digests[1]


def test_only_changed_layers_are_compressed_again(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "cache")
    first, second = LayerCounts(), LayerCounts()
    one = written(tmp_path, venv(Tree()), cache=cache, counts=first, name="one")
    changed = Tree()
    venv(changed, project=b"print('changed')\n")
    two = written(tmp_path, changed, epoch=EPOCH + 1, cache=cache, counts=second, name="two")
    assert first.cached == [] and len(first.compressed) == len(one)
    assert second.compressed == ["project"] and len(second.cached) == len(two) - 1
    # A damaged cache entry is noticed and written again, never served.
    big = next(w for w in two if w.descriptor["annotations"]["dev.envbuild.layer"] == "python:big")
    blob = cache.root / "blobs" / big.descriptor["digest"].removeprefix("sha256:")
    blob.unlink()
    blob.write_bytes(b"not the layer")
    third = LayerCounts()
    written(tmp_path, changed, epoch=EPOCH + 1, cache=cache, counts=third, name="three")
    assert third.compressed == ["python:big"]


def test_hard_links_stay_within_a_layer_and_are_files_across_layers(tmp_path: Path) -> None:
    tree = venv(Tree())
    tree.link(f"{SITE}/big/again.so", f"{SITE}/big/core.so", hard=True)  # not in big's RECORD: the venv's
    tree.file("app/model.bin", b"weights")
    tree.link("app/a-link.bin", "app/model.bin", hard=True)
    layers = {w.descriptor["annotations"]["dev.envbuild.layer"]: w for w in written(tmp_path, tree)}
    project = {info.name: (info, data) for info, data in members(tmp_path, layers["project"])}
    # Within a layer, the group's data goes with its first name; the other names link to it.
    assert project["app/a-link.bin"][0].isreg() and project["app/a-link.bin"][1] == b"weights"
    assert project["app/model.bin"][0].islnk() and project["app/model.bin"][0].linkname == "app/a-link.bin"
    venv_layer = {info.name: (info, data) for info, data in members(tmp_path, layers["venv"])}
    again = venv_layer[f"{SITE}/big/again.so"]
    assert again[0].isreg() and again[1] == b"B" * (2 * MIB)


def test_deletions_of_base_files_come_below_every_new_file(tmp_path: Path) -> None:
    """A whiteout hid only the base's files in the builder's layer; here it is in the first new layer."""
    tree = venv(Tree())
    tree.file(f"{SITE}/big/old.py", b"gone")
    tree.file(f"{SITE}/big/.wh.old.py", b"")  # deleted by a later step: gone from the tree
    tree.file("usr/share/.wh.doc", b"")  # the base's /usr/share/doc, deleted...
    tree.file("usr/share/doc/readme", b"new")  # ...and made again
    plan = plan_of(tmp_path, tree)
    assert next(iter(plan)) == "deletions" and plan["deletions"] == (f"{SITE}/big/.wh.old.py", "usr/share/.wh.doc")
    assert f"{SITE}/big/old.py" not in {p for paths in plan.values() for p in paths}
    assert "usr/share/doc/readme" in plan["config"]


def with_project_dist(version: str, *, source: bytes = b"def main(): print('hi')\n") -> Tree:
    """The venv of :func:`venv` with the project's own distribution installed: a module, data, a script."""
    tree = venv(Tree())
    files = {"hello_pkg/__init__.py": source, "hello_pkg/data.txt": b"D" * (2 * MIB)}  # big enough for a layer
    tree.dist("hello-pkg", version, files, scripts=("hello",))
    return tree


def test_the_projects_distribution_goes_in_the_projects_layer(tmp_path: Path) -> None:
    """Never in a layer of its own nor a group's: it changes with every commit, and no package layer may."""
    layer = with_project_dist("1.0").write(tmp_path / "raw.tar")
    with NewFiles.open([layer], tmp_path) as files:
        plan = plan_layers(
            files, venv="/opt/venv", python="3.11", workdir="/app", settings=SETTINGS, project="hello-pkg"
        )
    by_name = {spec.name: spec for spec in plan}
    assert list(by_name) == ["venv", "python:big", "python-group:0-9a-c", "python-group:t-z", "project", "config"]
    project = by_name["project"]
    assert {
        "app/predict.py", f"{SITE}/hello_pkg/data.txt", f"{SITE}/hello_pkg/__pycache__/__init__.cpython-311.pyc",
        f"{SITE}/hello_pkg-1.0.dist-info/RECORD", "opt/venv/bin/hello",
    } <= set(project.paths)  # fmt: skip
    assert project.mtime is None  # the epoch's, as the project's files
    assert dict(project.annotations) == {"dev.envbuild.layer.distributions": "hello-pkg==1.0"}
    assert project.created_by == "envbuild: the project (/app) and hello-pkg==1.0"
    assert not any("hello" in p for name, spec in by_name.items() if name != "project" for p in spec.paths)


def test_a_new_project_version_changes_only_the_projects_layer(tmp_path: Path) -> None:
    layers = {}
    for version in ("1.0", "1.1.dev3+g1234567"):
        out = tmp_path / version
        out.mkdir()
        layer = with_project_dist(version, source=f"v = {version!r}\n".encode()).write(out / "raw.tar")
        with NewFiles.open([layer], out) as files:
            plan = plan_layers(
                files, venv="/opt/venv", python="3.11", workdir="/app", settings=SETTINGS, project="hello-pkg"
            )
            written = write_layers(files, plan, out, epoch=EPOCH, compression=GZIP, cache=None)
        layers[version] = {w.descriptor["annotations"]["dev.envbuild.layer"]: w.diff_id for w in written}
    before, after = layers.values()
    assert before.keys() == after.keys()
    assert [name for name in before if before[name] != after[name]] == ["project"]

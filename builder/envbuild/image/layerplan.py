"""The layer plan: which files of a built image go into which layer (docs/layers.md).

After the base's layers, the image is: the venv's own files, one layer per Python distribution
of at least ``threshold`` bytes, the smaller distributions in a few groups by the first letter
of their name, the project's files with the project's own distribution (when the project is a
package the venv installs: its RECORD, files, scripts and bytecode), and the rest (passwd,
group). A layer over ``cap`` bytes is split by files, in path order. Which files belong to a
distribution comes from its dist-info RECORD, plus the ``__pycache__`` files of the sources it lists.

Every layer but the project's has the fixed mtime :data:`THIRD_PARTY_MTIME`, so a package's
layer depends only on the wheel, the Python version, the venv path and the layer format: the
same layer is the same blob in every image and project that locks the same wheel, and a new
commit changes only the project's layer (which keeps SOURCE_DATE_EPOCH).
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from envbuild.lock.imagespec import LAYER_CAP, LAYER_THRESHOLD
from envbuild.oci.annotations import DISTRIBUTIONS
from envbuild.oci.layers import WHITEOUT, LayerSpec, NewFiles

# 1980-01-01T00:00:00Z: the earliest time a wheel (a zip) can give its files, so no tool reads it as "unset".
THIRD_PARTY_MTIME = 315532800
# Small distributions are grouped by the first character of their canonical name: adding,
# removing or bumping one changes one group, whatever else the lock holds.
GROUPS = ("0-9a-c", "d-h", "i-m", "n-p", "q-s", "t-z")
# New layers at most: overlayfs and runtimes accept about 125 layers in all, and the base has its own.
MAX_LAYERS = 100
_BLOCK = 512
_PYC = re.compile(r"(?P<dir>.*)/__pycache__/(?P<stem>[^/.]+)\.[^/]+\.pyc")


@dataclass(frozen=True, kw_only=True)
class LayerSettings:
    """``[image] layer-threshold`` and ``layer-cap`` (bytes, as files in a tar)."""

    threshold: int = LAYER_THRESHOLD
    cap: int = LAYER_CAP


@dataclass(frozen=True, kw_only=True)
class Distribution:
    """An installed distribution: its name, version and the paths its RECORD (and bytecode) claims."""

    name: str  # canonical
    version: str
    paths: tuple[str, ...]
    size: int

    @property
    def pin(self) -> str:
        """``name==version``."""
        return f"{self.name}=={self.version}"


def plan_layers(
    files: NewFiles, *, venv: str, python: str, workdir: str, settings: LayerSettings, project: str | None = None
) -> list[LayerSpec]:
    """The layers of a built image's new files (see the module docstring for the rule).

    ``project`` is the canonical name of the project's own distribution, which goes in the
    project's layer: it changes with every commit, and no package layer may.
    """
    venv_dir = venv.strip("/")
    site = f"{venv_dir}/lib/python{python}/site-packages"
    project_dir = workdir.strip("/")
    dists = distributions(files, site)
    owned = {path for dist in dists for path in dist.paths}
    mine = tuple(d for d in dists if d.name == project)
    dists = [d for d in dists if d.name != project]
    placed = sorted(set(files.entries) - files.parents())
    deletions, venv_paths, project_files, config = [], [], [], []
    for path in placed:
        if path in owned:
            continue
        if posixpath.basename(path).startswith(WHITEOUT):
            deletions.append(path)
        elif _under(path, venv_dir):
            venv_paths.append(path)
        elif _under(path, project_dir):
            project_files.append(path)
        else:
            config.append(path)

    own, grouped = _choose_own(dists, settings.threshold)
    specs: list[LayerSpec] = [
        # Whiteouts first: in the builder's layer they hid only the base's files, and so they do here.
        _fixed("deletions", deletions, "envbuild: files the build deleted from the base", ()),
        _fixed("venv", venv_paths, f"envbuild: the venv's own files ({venv})", ()),
    ]
    for dist in own:
        specs.append(_fixed(f"python:{dist.name}", dist.paths, f"envbuild: {dist.pin}", (dist,)))
    for label, members in grouped:
        paths = [p for d in members for p in d.paths]
        pins = " ".join(d.pin for d in members)
        specs.append(_fixed(f"python-group:{label}", paths, f"envbuild: {pins}", members))
    project_layer = LayerSpec(
        name="project",
        paths=tuple(sorted([*project_files, *(p for d in mine for p in d.paths)])),
        mtime=None,
        created_by=f"envbuild: the project ({workdir})" + "".join(f" and {d.pin}" for d in mine),
        annotations=((DISTRIBUTIONS, " ".join(d.pin for d in mine)),) if mine else (),
    )
    specs += [
        project_layer,
        _fixed("config", config, "envbuild: users and groups", ()),
    ]
    return [part for spec in specs if spec.paths for part in split(spec, files, settings.cap)]


def distributions(files: NewFiles, site: str) -> list[Distribution]:
    """Every distribution with a RECORD under ``site``, sorted by name; a path two claim goes to the first."""
    records = sorted(
        name
        for name in files.entries
        if posixpath.dirname(posixpath.dirname(name)) == site
        and name.endswith(".dist-info/RECORD")
        and files.entries[name].info.isreg()
    )
    info_dirs = {posixpath.dirname(record) for record in records}
    inside: dict[str, set[str]] = {d: set() for d in info_dirs}
    for path, member in files.entries.items():
        info_dir = _info_dir_of(path, site)
        if info_dir in inside and not member.info.isdir():
            inside[info_dir].add(path)
    found = []
    for record in records:
        info_dir = posixpath.dirname(record)
        stem = posixpath.basename(info_dir).removesuffix(".dist-info")
        name, _, version = stem.partition("-")
        claimed = set(inside[info_dir])
        for row in csv.reader(io.StringIO(files.read(record).decode("utf-8", "replace"))):
            if row and row[0]:
                path = posixpath.normpath(posixpath.join(site, row[0]))
                if path in files.entries and not files.entries[path].info.isdir():
                    claimed.add(path)
        found.append((canonicalize_name(name), version, claimed))
    found.sort(key=lambda d: (d[0], d[1]))
    owner: dict[str, int] = {}
    for index, (_name, _version, claimed) in enumerate(found):
        for path in claimed:
            owner.setdefault(path, index)
    for path in files.entries:  # bytecode goes with its source
        match = _PYC.fullmatch(path)
        if match and path not in owner:
            source = owner.get(f"{match['dir']}/{match['stem']}.py")
            if source is not None:
                owner[path] = source
    paths: list[list[str]] = [[] for _ in found]
    for path, index in owner.items():
        paths[index].append(path)
    return [
        Distribution(name=name, version=version, paths=tuple(sorted(ps)), size=_tar_size(files, ps))
        for (name, version, _), ps in zip(found, paths, strict=True)
    ]


def split(spec: LayerSpec, files: NewFiles, cap: int) -> list[LayerSpec]:
    """``spec`` as parts of at most ``cap`` bytes each (a file larger than the cap is a part of its own)."""
    parts: list[list[str]] = [[]]
    size = 0
    for path in spec.paths:
        entry = _tar_size(files, [path])
        if parts[-1] and size + entry > cap:
            parts.append([])
            size = 0
        parts[-1].append(path)
        size += entry
    if len(parts) == 1:
        return [spec]
    count = len(parts)
    return [
        LayerSpec(
            name=f"{spec.name}:{i}/{count}", paths=tuple(part), mtime=spec.mtime,
            created_by=f"{spec.created_by} (part {i} of {count})", annotations=spec.annotations,
        )
        for i, part in enumerate(parts, start=1)
    ]  # fmt: skip


def group_of(name: str) -> str:
    """The group of a small distribution, by the first character of its canonical name."""
    first = name[:1]
    for label in GROUPS:
        low, high = label[-3], label[-1]
        if first.isdigit() or low <= first <= high:
            return label
    return GROUPS[-1]


def _choose_own(
    dists: list[Distribution], threshold: int
) -> tuple[list[Distribution], list[tuple[str, tuple[Distribution, ...]]]]:
    """Distributions with a layer of their own, and the groups of the rest (at most :data:`MAX_LAYERS` in all)."""
    big = [d for d in dists if d.size >= threshold]
    room = MAX_LAYERS - 3 - len(GROUPS)  # venv, project, config
    if len(big) > room:  # the smallest of them join their groups
        keep = {d.name for d in sorted(big, key=lambda d: (-d.size, d.name))[:room]}
        big = [d for d in big if d.name in keep]
    own = {d.name for d in big}
    groups = [(label, tuple(d for d in dists if d.name not in own and group_of(d.name) == label)) for label in GROUPS]
    return big, [(label, members) for label, members in groups if members]


def _fixed(name: str, paths: Iterable[str], created_by: str, dists: tuple[Distribution, ...]) -> LayerSpec:
    annotations = ((DISTRIBUTIONS, " ".join(d.pin for d in dists)),) if dists else ()
    return LayerSpec(
        name=name, paths=tuple(sorted(paths)), mtime=THIRD_PARTY_MTIME, created_by=created_by, annotations=annotations
    )


def _info_dir_of(path: str, site: str) -> str | None:
    """The ``site``/X.dist-info directory ``path`` lies in, if any."""
    if not path.startswith(site + "/"):
        return None
    top = path[len(site) + 1 :].split("/", 1)[0]
    return f"{site}/{top}" if top.endswith(".dist-info") else None


def _under(path: str, directory: str) -> bool:
    return not directory or path == directory or path.startswith(directory + "/")


def _tar_size(files: NewFiles, paths: Iterable[str]) -> int:
    """What ``paths`` take in a tar: a header each, and their data in 512-byte blocks."""
    total = 0
    for path in paths:
        info = files.entries[path].info
        total += _BLOCK + (-(-info.size // _BLOCK) * _BLOCK if info.isreg() else 0)
    return total

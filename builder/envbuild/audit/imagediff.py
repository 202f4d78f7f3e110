"""Why two OCI images differ: manifest and config fields, and per layer the files.

:func:`diff_images` compares two images of OCI layouts. Equal manifest digests mean identical
images. Otherwise it walks the manifest and config JSON field by field (``config.Env`` and
``config.Labels`` as maps, so one changed variable is one finding), and streams each pair of
differing layers to list the entries added, removed and changed with the attributes that
changed; small text files also get their first differing lines. Layers whose files are equal
but whose bytes are not are explained too: compression, entry order, tar headers.

Layers are paired by index, except when both images name their own layers (the
``dev.envbuild.layer`` annotation envbuild writes: ``python:torch``, ``project``...): then those
are paired by name, so that a package moving into a layer of its own adds one layer to the
report instead of shifting every later pair; the base's unnamed layers stay paired by index.

Memory stays bounded for layers of any size: contents are hashed as they stream past, and only
a capped number of small text files are read again, in a second pass, for their line diffs.
:mod:`envbuild.audit.report` turns the result into a report for the terminal, JSON or HTML.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envbuild.oci.annotations import layer_name
from envbuild.oci.imagefs import ImageReadError, LayerMember, LayerReader, json_blob
from envbuild.oci.layout import INDEX_TYPES, Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.words import plural

TEXT_LIMIT = 64 * 1024  # files up to this size that decode as UTF-8 get a line diff
DIFF_LINES = 20  # unified-diff lines kept per file
TEXT_DIFFS_PER_LAYER = 50  # files per layer held in memory for line diffs: at most 50 x 2 x 64 KiB
TERMINAL_ENTRIES = 20  # entries per layer on the terminal; the JSON and HTML reports list all
TERMINAL_FIELDS = 40
REPORT_SUFFIXES = (".json", ".html")

Change = Literal["added", "removed", "changed"]
LayerStatus = Literal["identical", "changed", "same-files", "added", "removed"]
AttrValue = str | int | float | None


@dataclass(frozen=True, kw_only=True)
class FieldChange:
    """One JSON field of the manifest or config that differs, e.g. ``config.Env["PATH"]`` or ``history[3].created_by``.

    ``change`` is ``added`` (only in b), ``removed`` (only in a) or ``changed``; ``a`` and ``b`` are the
    JSON values, None on the side where the field is absent.
    """

    path: str
    change: Change
    a: Any = None
    b: Any = None


@dataclass(frozen=True, kw_only=True)
class AttrChange:
    """An attribute of a tar entry that differs: type, sha256, size, link, mode, owner, names, device, xattrs, mtime."""

    name: str
    a: AttrValue
    b: AttrValue


@dataclass(frozen=True, kw_only=True)
class EntryDiff:
    """A tar entry of one layer that only a has (``removed``), only b has (``added``), or both with other attributes.

    ``type``, ``size`` and ``sha256`` are b's, or a's for a removed entry; ``text_diff`` holds the first lines of a
    unified diff for a changed small text file.
    """

    path: str
    change: Change
    type: str
    size: int
    sha256: str | None = None
    attrs: tuple[AttrChange, ...] = ()
    text_diff: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LayerSide:
    """One side's layer: its descriptor, its position in that image's manifest, and its envbuild name if any."""

    digest: str
    media_type: str
    size: int
    index: int
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class LayerDiff:
    """The comparison of a pair of layers: the layer at ``index`` of b (of a, for a layer only a has) and its partner.

    ``status``: ``identical`` (same digest), ``changed`` (entries differ), ``same-files`` (the same entries with the
    same attributes and contents, different bytes: ``encoding`` says why), ``added`` or ``removed`` (the layer exists
    in one image only; its entries are listed). Plain, gzip and zstd layers are all read.
    """

    index: int
    status: LayerStatus
    a: LayerSide | None
    b: LayerSide | None
    entries: tuple[EntryDiff, ...] = ()
    encoding: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str | None:
        """The layer's envbuild name (``dev.envbuild.layer``), b's unless only a has the layer; None for a base's."""
        return (self.b and self.b.name) or (self.a and self.a.name) or None


@dataclass(frozen=True, kw_only=True)
class ImageSide:
    """One compared image: where it is (``label``) and its manifest and config digests."""

    label: str
    manifest: str
    config: str


@dataclass(frozen=True, kw_only=True)
class ImageDiff:
    """Everything that differs between images ``a`` and ``b``; nothing at all when they are identical."""

    a: ImageSide
    b: ImageSide
    manifest: tuple[FieldChange, ...] = ()
    config: tuple[FieldChange, ...] = ()
    layers: tuple[LayerDiff, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        """Whether both images have the same manifest digest, hence the same bytes throughout."""
        return self.a.manifest == self.b.manifest


def diff_images(a: Layout, b: Layout, *, name_a: str | None = None, name_b: str | None = None) -> ImageDiff:
    """Compare image ``name_a`` of layout ``a`` (or its only image) with image ``name_b`` of ``b``.

    Every blob read is checked against its digest; a corrupt or unreadable layout raises
    :class:`~envbuild.oci.imagefs.ImageReadError` or :class:`~envbuild.errors.UsageError`.
    """
    desc_a, desc_b = a.select(name_a), b.select(name_b)
    manifest_a, manifest_b = _manifest(a, desc_a), _manifest(b, desc_b)
    side_a = ImageSide(label=_label(a, name_a), manifest=str(desc_a.digest), config=manifest_a["config"]["digest"])
    side_b = ImageSide(label=_label(b, name_b), manifest=str(desc_b.digest), config=manifest_b["config"]["digest"])
    if side_a.manifest == side_b.manifest:
        return ImageDiff(a=side_a, b=side_b)

    layers_a = [Descriptor.from_json(d) for d in manifest_a.get("layers", [])]
    layers_b = [Descriptor.from_json(d) for d in manifest_b.get("layers", [])]
    pairs, notes = pair_layers(layers_a, layers_b)
    counts = (len(layers_a), len(layers_b))
    # Layers in one image only are reported whole, as added or removed layers, not as manifest fields.
    both = tuple((i, j) for i, j in pairs if i is not None and j is not None)
    manifest_changes = _json_changes(
        _manifest_view(manifest_a), _manifest_view(manifest_b), {"layers": Alignment(both, *counts)}
    )
    if len(layers_a) != len(layers_b):
        manifest_changes.append(FieldChange(path="len(layers)", change="changed", a=len(layers_a), b=len(layers_b)))
    config_changes: list[FieldChange] = []
    if side_a.config != side_b.config:
        config_a = json_blob(a, Digest.parse(side_a.config), "config")
        config_b = json_blob(b, Digest.parse(side_b.config), "config")
        config_changes = _json_changes(config_a, config_b, _config_alignments(config_a, config_b, pairs, counts))
        if not config_changes:
            notes.append("config: the same JSON serialised differently (key order, spacing or escapes)")
    layers = [
        _diff_layer(
            (a, layers_a[i]) if i is not None else None,
            (b, layers_b[j]) if j is not None else None,
            pair=(i, j),
        )
        for i, j in pairs
    ]
    if manifest_a == manifest_b:
        notes.append("manifest: the same JSON serialised differently (key order, spacing or escapes)")
    return ImageDiff(
        a=side_a,
        b=side_b,
        manifest=tuple(manifest_changes),
        config=tuple(config_changes),
        layers=tuple(layers),
        notes=tuple(notes),
    )


def _label(layout: Layout, name: str | None) -> str:
    return f"{layout.path}:{name}" if name else str(layout.path)


def _manifest(layout: Layout, descriptor: Descriptor) -> dict[str, Any]:
    manifest = json_blob(layout, descriptor.digest, "manifest")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        raise ImageReadError(
            f"{layout.path}: {descriptor.digest} is an image index, not an image",
            hint="compare one platform's image (envbuild writes one image per variant)",
        )
    if not isinstance(manifest.get("config"), dict) or "digest" not in manifest["config"]:
        raise ImageReadError(
            f"{layout.path}: manifest {descriptor.digest} names no config blob",
            hint="this is not an OCI image manifest; write the layout again",
        )
    return manifest


def _manifest_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without blob digests and sizes: the config and layers explain those."""
    view = {k: v for k, v in manifest.items() if k not in ("config", "layers")}
    view["config"] = {k: v for k, v in manifest.get("config", {}).items() if k not in ("digest", "size")}
    view["layers"] = [{k: v for k, v in d.items() if k not in ("digest", "size")} for d in manifest.get("layers", [])]
    return view


# -- pairing layers ------------------------------------------------------------------------------

Pair = tuple[int | None, int | None]
"""Positions of a layer in a's and b's manifests; None where that image has no such layer."""


def pair_layers(layers_a: list[Descriptor], layers_b: list[Descriptor]) -> tuple[list[Pair], list[str]]:
    """Which layer of a to compare with which of b, in report order, and a note when names could not be used.

    When both images name some of their layers (``dev.envbuild.layer``), named layers pair by name
    (the k-th of a name with the k-th of the same name) and unnamed ones by their order among the
    unnamed; otherwise all pair by index. The order follows b, each layer only a has placed just
    before the first layer of b whose partner comes after it in a.
    """
    names_a, names_b = [layer_name(d) for d in layers_a], [layer_name(d) for d in layers_b]
    if not any(names_a) or not any(names_b):
        count = max(len(layers_a), len(layers_b))
        pairs: list[Pair] = [(i if i < len(layers_a) else None, i if i < len(layers_b) else None) for i in range(count)]
        named = "a" if any(names_a) else "b" if any(names_b) else None
        notes = [f"only {named}'s layers are named (dev.envbuild.layer): layers paired by index"] if named else []
        return pairs, notes
    keys_a, keys_b = _pairing_keys(names_a), _pairing_keys(names_b)
    position_a = {key: i for i, key in enumerate(keys_a)}
    matched_a = {position_a[key] for key in keys_b if key in position_a}
    pairs = []
    placed = 0  # layers of a before this one have been placed
    for j, key in enumerate(keys_b):
        i = position_a.get(key)
        if i is not None:
            pairs.extend((k, None) for k in range(placed, i) if k not in matched_a)
            placed = max(placed, i + 1)
        pairs.append((i, j))
    pairs.extend((k, None) for k in range(placed, len(keys_a)) if k not in matched_a)
    return pairs, []


def _pairing_keys(names: list[str | None]) -> list[tuple[str | None, int]]:
    """Each layer's name and how many layers of that name (or unnamed ones) come before it."""
    seen: Counter[str | None] = Counter()
    keys = []
    for name in names:
        keys.append((name, seen[name]))
        seen[name] += 1
    return keys


def _config_alignments(
    config_a: dict[str, Any], config_b: dict[str, Any], pairs: list[Pair], counts: tuple[int, int]
) -> dict[str, Alignment]:
    """The config lists with one item per layer, to compare by the layer pairing.

    ``rootfs.diff_ids`` has one per layer; ``history`` only when no entry is an ``empty_layer``.
    """
    aligned = {"rootfs.diff_ids": Alignment(tuple(pairs), *counts)}
    if not any(_has_empty_layer(config) for config in (config_a, config_b)):
        aligned["history"] = Alignment(tuple(pairs), *counts)
    return aligned


def _has_empty_layer(config: dict[str, Any]) -> bool:
    history = config.get("history")
    return isinstance(history, list) and any(isinstance(h, dict) and h.get("empty_layer") for h in history)


# -- JSON fields ---------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The fields that explain most differences come first; the rest in name order.
_TOP_RANK = {"config": 0, "architecture": 1, "os": 1, "variant": 1, "rootfs": 2, "history": 3, "created": 4}


def _json_changes(a: Any, b: Any, aligned: dict[str, Alignment] | None = None) -> list[FieldChange]:
    """The fields of ``a`` and ``b`` that differ; the lists at the paths ``aligned`` names are compared by pair."""
    out: list[FieldChange] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=lambda k: (_TOP_RANK.get(k, 5), k)):
            _walk(_child("", key), a.get(key, _ABSENT), b.get(key, _ABSENT), out, aligned or {})
    else:
        _walk("", a, b, out, aligned or {})
    return out


_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class Alignment:
    """How to compare a JSON list of one item per layer: by the layer ``pairs``.

    Only lists of ``len_a`` and ``len_b`` items follow the layers; lists of other lengths are compared by index.
    """

    pairs: tuple[Pair, ...]
    len_a: int
    len_b: int


def _walk(path: str, a: Any, b: Any, out: list[FieldChange], aligned: dict[str, Alignment]) -> None:
    if a is _ABSENT:
        out.append(FieldChange(path=path, change="added", b=b))
    elif b is _ABSENT:
        out.append(FieldChange(path=path, change="removed", a=a))
    elif a == b and type(a) is type(b):
        return
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            _walk(_child(path, key), a.get(key, _ABSENT), b.get(key, _ABSENT), out, aligned)
    elif isinstance(a, list) and isinstance(b, list):
        env_a, env_b = (_env_map(a), _env_map(b)) if path == "config.Env" else (None, None)
        if env_a is not None and env_b is not None and env_a != env_b:
            # NAME=value entries: say which variable differs, not which list position
            for key in sorted(env_a.keys() | env_b.keys()):
                _walk(f"{path}[{json.dumps(key)}]", env_a.get(key, _ABSENT), env_b.get(key, _ABSENT), out, aligned)
            return
        for i, j in _list_pairs(path, len(a), len(b), aligned):
            a_item = a[i] if i is not None else _ABSENT
            b_item = b[j] if j is not None else _ABSENT
            _walk(f"{path}[{j if j is not None else i}]", a_item, b_item, out, aligned)
    else:
        out.append(FieldChange(path=path, change="changed", a=a, b=b))


def _list_pairs(path: str, len_a: int, len_b: int, aligned: dict[str, Alignment]) -> tuple[Pair, ...]:
    """Which items of two lists to compare: by the layer pairing where ``aligned`` applies, else by index."""
    alignment = aligned.get(path)
    if alignment is not None and (alignment.len_a, alignment.len_b) == (len_a, len_b):
        return alignment.pairs
    return tuple((i if i < len_a else None, i if i < len_b else None) for i in range(max(len_a, len_b)))


def _child(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _env_map(entries: list[Any]) -> dict[str, str] | None:
    """``NAME=value`` entries as a map; None when they are not all such entries or a name repeats."""
    found: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str) or "=" not in entry:
            return None
        name, _, value = entry.partition("=")
        if name in found:
            return None
        found[name] = value
    return found


# -- layers --------------------------------------------------------------------------------------

_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char-device",
    tarfile.BLKTYPE: "block-device",
    tarfile.FIFOTYPE: "fifo",
}
_XATTR = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")
# pax records tarfile already turns into TarInfo fields; the rest (atime, ctime, ...) only change header bytes.
_PAX_FIELDS = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime"}
# Attributes in order of importance: content first, metadata next, time last.
ATTR_RANK = {
    "type": 0,
    "sha256": 0,
    "size": 0,
    "link": 0,
    "mode": 1,
    "owner": 1,
    "names": 1,
    "device": 1,
    "xattrs": 1,
    "mtime": 2,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class _Entry:
    """What one tar entry holds (``attrs``, in :data:`ATTR_RANK` order), and how it was encoded."""

    position: int
    attrs: tuple[AttrValue, ...]
    text: bool
    header: bytes | None  # sha256 of the raw header blocks
    tar_format: str
    pax: tuple[tuple[str, str], ...]  # records that are neither TarInfo fields nor xattrs

    def attr(self, name: str) -> AttrValue:
        return self.attrs[_ATTR_INDEX[name]]


_ATTR_INDEX = {name: i for i, name in enumerate(ATTR_RANK)}


@dataclass(frozen=True, kw_only=True)
class _Scan:
    """A streamed layer: its entries by path (the last of a repeated path wins, as on extraction) and their order."""

    entries: dict[str, _Entry]
    order: list[str]
    compression: str
    diff_id: str
    tar_size: int


def _diff_layer(a: tuple[Layout, Descriptor] | None, b: tuple[Layout, Descriptor] | None, *, pair: Pair) -> LayerDiff:
    side_a = _layer_side(a[1], pair[0]) if a else None
    side_b = _layer_side(b[1], pair[1]) if b else None
    index = pair[1] if pair[1] is not None else pair[0]
    assert index is not None
    if side_a and side_b and side_a.digest == side_b.digest:
        return LayerDiff(index=index, status="identical", a=side_a, b=side_b)
    if a is None or b is None:
        only = b if a is None else a
        change: Change = "added" if a is None else "removed"
        assert only is not None
        scan = _scan(*only)
        entries = tuple(_whole_entry(path, entry, change) for path, entry in sorted(scan.entries.items()))
        return LayerDiff(index=index, status=change, a=side_a, b=side_b, entries=entries)

    scan_a, scan_b = _scan(*a), _scan(*b)
    entries = _diff_entries(a, b, scan_a, scan_b)
    notes = [
        f"{side}: {plural(count, 'path')} {'appears' if count == 1 else 'appear'} more than once (the last one counts)"
        for side, scan in (("a", scan_a), ("b", scan_b))
        if (count := len(scan.order) - len(scan.entries))
    ]
    encoding = _encoding(a, b, scan_a, scan_b, files_differ=bool(entries))
    status: LayerStatus = "changed" if entries else "same-files"
    return LayerDiff(
        index=index,
        status=status,
        a=side_a,
        b=side_b,
        entries=entries,
        encoding=tuple(encoding),
        notes=tuple(notes),
    )


def _layer_side(layer: Descriptor, index: int | None) -> LayerSide:
    assert index is not None
    return LayerSide(
        digest=str(layer.digest), media_type=layer.media_type, size=layer.size, index=index, name=layer_name(layer)
    )


def _whole_entry(path: str, entry: _Entry, change: Change) -> EntryDiff:
    return EntryDiff(
        path=path,
        change=change,
        type=str(entry.attr("type")),
        size=int(entry.attr("size") or 0),
        sha256=_opt_str(entry.attr("sha256")),
    )


def _opt_str(value: AttrValue) -> str | None:
    return None if value is None else str(value)


def _scan(layout: Layout, layer: Descriptor) -> _Scan:
    reader = LayerReader(layout, layer)
    entries: dict[str, _Entry] = {}
    order: list[str] = []
    for position, member in enumerate(reader.members()):
        path = _printable(member.path)
        entries.pop(path, None)
        entries[path] = _entry(member, position)
        order.append(path)
    return _Scan(
        entries=entries,
        order=order,
        compression=reader.compression or "none",
        diff_id=reader.diff_id or "",
        tar_size=reader.tar_size or 0,
    )


def _entry(member: LayerMember, position: int) -> _Entry:
    info = member.info
    sha256: str | None = None
    text = False
    if info.isreg():
        hasher = hashlib.sha256()
        small = bytearray() if info.size <= TEXT_LIMIT else None
        for piece in member.chunks():
            hasher.update(piece)
            if small is not None:
                small += piece
        sha256 = hasher.hexdigest()
        text = small is not None and _as_text(bytes(small)) is not None
    pax = info.pax_headers
    xattrs = sorted((_printable(k), _printable(v)) for k, v in pax.items() if k.startswith(_XATTR))
    mtime = info.mtime if not float(info.mtime).is_integer() else int(info.mtime)
    attrs: dict[str, AttrValue] = {
        "type": _TYPES.get(info.type, f"type {info.type.decode('ascii', 'backslashreplace')}"),
        "sha256": sha256,
        "size": info.size if info.isreg() else 0,
        "link": _printable(info.linkname) if info.issym() or info.islnk() else None,
        "mode": f"{info.mode:04o}",
        "owner": f"{info.uid}:{info.gid}",
        "names": f"{info.uname}:{info.gname}",
        "device": f"{info.devmajor},{info.devminor}" if info.ischr() or info.isblk() else None,
        "xattrs": "; ".join(f"{k}={v}" for k, v in xattrs) or None,
        "mtime": mtime,
    }
    return _Entry(
        position=position,
        attrs=tuple(attrs[name] for name in ATTR_RANK),
        text=text,
        header=hashlib.sha256(member.header).digest() if member.header is not None else None,
        tar_format=_tar_format(member.header),
        pax=tuple(sorted((k, v) for k, v in pax.items() if k not in _PAX_FIELDS and not k.startswith(_XATTR))),
    )


def _tar_format(header: bytes | None) -> str:
    """The tar dialect of an entry's raw header blocks."""
    if not header or len(header) < 512:
        return "unknown"
    if header[156:157] in (b"x", b"g"):
        return "pax"
    if header[156:157] in (b"L", b"K"):
        return "gnu"
    magic = header[-512:][257:265]
    return "gnu" if magic == b"ustar  \0" else "ustar" if magic[:6] == b"ustar\0" else "v7"


def _printable(text: str) -> str:
    """``text`` with undecodable bytes (kept by tarfile as surrogates) shown as ``\\xNN``, so reports encode."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _as_text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _diff_entries(
    a: tuple[Layout, Descriptor], b: tuple[Layout, Descriptor], scan_a: _Scan, scan_b: _Scan
) -> tuple[EntryDiff, ...]:
    """Entries added, removed and changed, most important first: content, added, removed, metadata, mtime."""
    ranked: list[tuple[int, str, EntryDiff]] = []
    for path in scan_a.entries.keys() - scan_b.entries.keys():
        ranked.append((2, path, _whole_entry(path, scan_a.entries[path], "removed")))
    for path in scan_b.entries.keys() - scan_a.entries.keys():
        ranked.append((1, path, _whole_entry(path, scan_b.entries[path], "added")))
    texts: list[str] = []
    for path in scan_a.entries.keys() & scan_b.entries.keys():
        entry_a, entry_b = scan_a.entries[path], scan_b.entries[path]
        attrs = tuple(
            AttrChange(name=name, a=value_a, b=value_b)
            for name, value_a, value_b in zip(ATTR_RANK, entry_a.attrs, entry_b.attrs, strict=True)
            if value_a != value_b
        )
        if not attrs:
            continue
        rank = min(ATTR_RANK[c.name] for c in attrs)
        ranked.append((0 if rank == 0 else 3 if rank == 1 else 4, path, _changed_entry(path, entry_b, attrs)))
        if entry_a.text and entry_b.text and any(c.name == "sha256" for c in attrs):
            texts.append(path)
    ranked.sort(key=lambda item: (item[0], item[1]))
    wanted = sorted(texts)[:TEXT_DIFFS_PER_LAYER]
    if wanted:
        contents_a = _texts(*a, {scan_a.entries[p].position: p for p in wanted})
        contents_b = _texts(*b, {scan_b.entries[p].position: p for p in wanted})
        ranked = [
            (rank, path, _with_text_diff(entry, contents_a[path], contents_b[path]) if path in contents_a else entry)
            for rank, path, entry in ranked
        ]
    return tuple(entry for _, _, entry in ranked)


def _changed_entry(path: str, entry_b: _Entry, attrs: tuple[AttrChange, ...]) -> EntryDiff:
    return EntryDiff(
        path=path,
        change="changed",
        type=str(entry_b.attr("type")),
        size=int(entry_b.attr("size") or 0),
        sha256=_opt_str(entry_b.attr("sha256")),
        attrs=attrs,
    )


def _with_text_diff(entry: EntryDiff, text_a: str, text_b: str) -> EntryDiff:
    return EntryDiff(
        path=entry.path,
        change=entry.change,
        type=entry.type,
        size=entry.size,
        sha256=entry.sha256,
        attrs=entry.attrs,
        text_diff=_line_diff(text_a, text_b),
    )


def _texts(layout: Layout, layer: Descriptor, positions: dict[int, str]) -> dict[str, str]:
    """A second pass over a layer for the contents of the entries at ``positions``; stops after the last one."""
    found: dict[str, str] = {}
    last = max(positions)
    # The first pass verified the blob; this one may stop early, so it cannot.
    with contextlib.closing(LayerReader(layout, layer, verify=False).members()) as members:
        for position, member in enumerate(members):
            if position in positions:
                found[positions[position]] = _as_text(b"".join(member.chunks())) or ""
            if position >= last:
                break
    return found


def _line_diff(a: str, b: str) -> tuple[str, ...]:
    """The first :data:`DIFF_LINES` lines of a unified diff, without the file header lines."""
    out: list[str] = []
    lines = difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True), n=2)
    for line in itertools.islice(lines, 2, None):
        out.append(clip(line.removesuffix("\n").replace("\r", "\\r")))
        if not line.endswith("\n"):
            out.append("\\ No newline at end of file")
        if len(out) >= DIFF_LINES:
            break
    return tuple(out[:DIFF_LINES])


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encoding(
    a: tuple[Layout, Descriptor], b: tuple[Layout, Descriptor], scan_a: _Scan, scan_b: _Scan, *, files_differ: bool
) -> list[str]:
    """Why the layer bytes differ beyond the files: compression, entry order, tar headers, padding."""
    notes: list[str] = []
    if scan_a.compression != scan_b.compression:
        notes.append(f"compression {scan_a.compression} -> {scan_b.compression}")
    if scan_a.diff_id == scan_b.diff_id:
        notes.append(f"the uncompressed tars are identical ({scan_a.diff_id}); only the compressed bytes differ")
        if scan_a.compression == scan_b.compression == "gzip":
            notes.extend(_gzip_headers(a[0].blob_path(a[1].digest), b[0].blob_path(b[1].digest)))
        return notes
    common = scan_a.entries.keys() & scan_b.entries.keys()
    order_a = [p for p in scan_a.order if p in common]
    order_b = [p for p in scan_b.order if p in common]
    if order_a != order_b:
        at = next((i for i, (x, y) in enumerate(zip(order_a, order_b, strict=False)) if x != y), len(order_a))
        seen_a = order_a[at] if at < len(order_a) else "the end"
        seen_b = order_b[at] if at < len(order_b) else "the end"
        notes.append(f"entry order differs from entry {at + 1} of the common entries: {seen_a} in a, {seen_b} in b")
    formats_a = Counter(scan_a.entries[p].tar_format for p in common)
    formats_b = Counter(scan_b.entries[p].tar_format for p in common)
    if formats_a != formats_b:
        notes.append(f"tar format {_counts(formats_a)} -> {_counts(formats_b)}")
    same_attrs = [p for p in sorted(common) if scan_a.entries[p].attrs == scan_b.entries[p].attrs]
    headers = [p for p in same_attrs if scan_a.entries[p].header != scan_b.entries[p].header]
    if headers:
        example = headers[0]
        pax = _pax_difference(scan_a.entries[example], scan_b.entries[example])
        notes.append(
            f"tar headers differ for {plural(len(headers), 'entry', 'entries')} with equal attributes, e.g. {example}"
            + (f" ({pax})" if pax else "")
        )
    if files_differ:  # the files explain the rest
        return notes
    if scan_a.tar_size != scan_b.tar_size:
        notes.append(f"uncompressed tar size {scan_a.tar_size} -> {scan_b.tar_size} bytes")
    if not notes:
        notes.append("the uncompressed tars differ in bytes no entry, header or order explains (padding)")
    return notes


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in sorted(counter.items()))


def _pax_difference(a: _Entry, b: _Entry) -> str:
    pax_a, pax_b = dict(a.pax), dict(b.pax)
    parts = []
    if only_a := sorted(pax_a.keys() - pax_b.keys()):
        parts.append(f"pax records only in a: {', '.join(only_a)}")
    if only_b := sorted(pax_b.keys() - pax_a.keys()):
        parts.append(f"pax records only in b: {', '.join(only_b)}")
    if differing := sorted(k for k in pax_a.keys() & pax_b.keys() if pax_a[k] != pax_b[k]):
        parts.append(f"pax records differ: {', '.join(differing)}")
    if a.tar_format != b.tar_format:
        parts.append(f"{a.tar_format} -> {b.tar_format}")
    return "; ".join(parts)


def _gzip_headers(path_a: Path, path_b: Path) -> list[str]:
    """What differs in the two gzip headers (RFC 1952 section 2.3), or that the deflate data itself differs."""
    with path_a.open("rb") as fa, path_b.open("rb") as fb:
        head_a, head_b = fa.read(10), fb.read(10)
    fields = (("flags", 3, 4), ("mtime", 4, 8), ("XFL (compression level hint)", 8, 9), ("OS", 9, 10))
    notes = [
        f"gzip header {name} {int.from_bytes(head_a[lo:hi], 'little')} -> {int.from_bytes(head_b[lo:hi], 'little')}"
        for name, lo, hi in fields
        if head_a[lo:hi] != head_b[lo:hi]
    ]
    return notes or ["the gzip headers are equal: the deflate data differs (compression level or zlib version)"]

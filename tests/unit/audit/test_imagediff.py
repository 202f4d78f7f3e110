"""Image diffs: what differs between two OCI images and why, on small real layouts.

Each test writes two layouts with :func:`support.layouts.make_files_layout` (real gzip'ed tar
layers, config, manifest, index.json) that differ in exactly one way, and checks that the diff
names that difference and nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import tarfile
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from envbuild.audit.imagediff import (
    TEXT_LIMIT,
    AttrChange,
    EntryDiff,
    FieldChange,
    ImageDiff,
    diff_images,
)
from envbuild.audit.report import render_html, render_json, render_text, write_report
from envbuild.errors import UsageError
from envbuild.oci.imagefs import ImageReadError
from envbuild.oci.layout import Layout
from support.layouts import OCI_LAYER, FileEntry, TestLayout, make_files_layout

EPOCH = 1_700_000_000
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
CONFIG_TXT = b"".join(b"line %d\n" % i for i in range(1, 11))
MODEL = bytes(range(256)) * 8
BASE: list[FileEntry] = [
    ("etc/os-release", b"ID=debian\nVERSION_ID=12\n", 0o644, EPOCH, 0),
    ("usr/bin/tool", b"\x7fELF" + bytes(100), 0o755, EPOCH, 0),
]
APP: list[FileEntry] = [
    ("app/config.txt", CONFIG_TXT, 0o644, EPOCH, 0),
    ("app/model.bin", MODEL, 0o644, EPOCH, 0),
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def replace(files: Sequence[FileEntry], path: str, **changes: object) -> list[FileEntry]:
    """``files`` with the entry at ``path`` changed: content=, mode=, mtime=, uid=."""
    out = []
    for name, content, mode, mtime, uid in files:
        if name == path:
            content = changes.get("content", content)  # type: ignore[assignment]
            mode = changes.get("mode", mode)  # type: ignore[assignment]
            mtime = changes.get("mtime", mtime)  # type: ignore[assignment]
            uid = changes.get("uid", uid)  # type: ignore[assignment]
        out.append((name, content, mode, mtime, uid))
    return out


def compare(
    tmp_path: Path,
    layers_a: Sequence[Sequence[FileEntry]],
    layers_b: Sequence[Sequence[FileEntry]],
    **options_b: object,
) -> ImageDiff:
    """Write image a from ``layers_a`` and b from ``layers_b`` (with ``options_b``), and diff them."""
    a = make_files_layout(tmp_path / "a", layers_a)
    b = make_files_layout(tmp_path / "b", layers_b, **options_b)  # type: ignore[arg-type]
    return diff_images(Layout.open(a.path), Layout.open(b.path))


def changed_entry(diff: ImageDiff, layer: int = 1) -> EntryDiff:
    """The only entry of the only differing layer ``layer``, every other layer being identical."""
    assert [x.status for x in diff.layers] == ["changed" if i == layer else "identical" for i in range(2)]
    (entry,) = diff.layers[layer].entries
    return entry


# -- what differs --------------------------------------------------------------------------------


def test_identical_images_have_no_differences(tmp_path: Path) -> None:
    a = make_files_layout(tmp_path / "a", [BASE, APP])
    b = make_files_layout(tmp_path / "b", [BASE, APP])

    diff = diff_images(Layout.open(a.path), Layout.open(b.path), name_a="latest")

    assert diff.identical
    assert (diff.config, diff.manifest, diff.layers, diff.notes) == ((), (), (), ())
    assert render_text(diff) == f"identical: {a.path}:latest and {b.path} are both {a.digest}\n"
    assert render_json(diff)["identical"] is True


def test_env_differences_are_named_by_variable(tmp_path: Path) -> None:
    a = make_files_layout(tmp_path / "a", [BASE], env=["PATH=/usr/bin", "MODE=train"])
    b = make_files_layout(tmp_path / "b", [BASE], env=["LANG=C.UTF-8", "PATH=/opt/venv/bin:/usr/bin"])

    diff = diff_images(Layout.open(a.path), Layout.open(b.path))

    assert not diff.identical
    assert diff.config == (
        FieldChange(path='config.Env["LANG"]', change="added", b="C.UTF-8"),
        FieldChange(path='config.Env["MODE"]', change="removed", a="train"),
        FieldChange(path='config.Env["PATH"]', change="changed", a="/usr/bin", b="/opt/venv/bin:/usr/bin"),
    )
    assert diff.manifest == ()  # the config digest differs, and the config explains why
    assert [layer.status for layer in diff.layers] == ["identical"]
    text = render_text(diff)
    assert "  - config: 3 fields differ\n  - identical layers: 0\n" in text
    assert '  changed config.Env["PATH"]: "/usr/bin" -> "/opt/venv/bin:/usr/bin"\n' in text
    assert '  added   config.Env["LANG"]: "C.UTF-8"\n' in text
    assert "layer 0" not in text


def test_changed_text_file_shows_its_first_differing_lines(tmp_path: Path) -> None:
    new = CONFIG_TXT.replace(b"line 6\n", b"line six\n")
    diff = compare(tmp_path, [BASE, APP], [BASE, replace(APP, "app/config.txt", content=new)])

    entry = changed_entry(diff)
    assert entry.path == "/app/config.txt"
    assert entry.attrs == (
        AttrChange(name="sha256", a=sha(CONFIG_TXT), b=sha(new)),
        AttrChange(name="size", a=len(CONFIG_TXT), b=len(new)),
    )
    assert entry.text_diff == ("@@ -4,5 +4,5 @@", " line 4", " line 5", "-line 6", "+line six", " line 7", " line 8")
    assert [c.path for c in diff.config] == ["rootfs.diff_ids[1]"]
    assert diff.layers[1].encoding == ()  # the changed file explains the bytes
    text = render_text(diff)
    assert "  - layer 1: 1 changed, 0 added, 0 removed\n" in text
    assert "  attributes changed: sha256 1, size 1\n" in text
    assert (
        f"  changed /app/config.txt: sha256 {sha(CONFIG_TXT)[:12]} -> {sha(new)[:12]}, size 71 -> 73\n"
        "      @@ -4,5 +4,5 @@\n       line 4\n       line 5\n      -line 6\n      +line six\n       line 7\n"
    ) in text


def test_changed_binary_file_shows_its_hash_only(tmp_path: Path) -> None:
    new = MODEL[:-1] + b"\x00"
    diff = compare(tmp_path, [BASE, APP], [BASE, replace(APP, "app/model.bin", content=new)])

    entry = changed_entry(diff)
    assert (entry.path, entry.type, entry.size, entry.sha256) == ("/app/model.bin", "file", len(MODEL), sha(new))
    assert entry.attrs == (AttrChange(name="sha256", a=sha(MODEL), b=sha(new)),)
    assert entry.text_diff == ()
    assert f"  changed /app/model.bin: sha256 {sha(MODEL)[:12]} -> {sha(new)[:12]}\n" in render_text(diff)


def test_large_text_file_shows_its_hash_only(tmp_path: Path) -> None:
    big = b"x" * (TEXT_LIMIT + 1)
    diff = compare(tmp_path, [[("big.txt", big, 0o644, EPOCH, 0)]], [[("big.txt", big[:-1] + b"y", 0o644, EPOCH, 0)]])

    (entry,) = diff.layers[0].entries
    assert [c.name for c in entry.attrs] == ["sha256"]
    assert entry.text_diff == ()


def test_layers_are_streamed_not_loaded(tmp_path: Path) -> None:
    size = 16 << 20
    payload = random.Random(0).randbytes(size)
    a = make_files_layout(tmp_path / "a", [[("blob", payload, 0o644, EPOCH, 0)]], compresslevel=1)
    b = make_files_layout(tmp_path / "b", [[("blob", payload[:-1] + b"!", 0o644, EPOCH, 0)]], compresslevel=1)
    del payload

    tracemalloc.start()
    try:
        diff = diff_images(Layout.open(a.path), Layout.open(b.path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [c.name for c in diff.layers[0].entries[0].attrs] == ["sha256"]
    assert peak < size // 2, f"diffing two {size >> 20} MiB layers held {peak >> 20} MiB at once"


def test_changed_mode(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE, APP], [BASE, replace(APP, "app/model.bin", mode=0o755)])

    assert changed_entry(diff).attrs == (AttrChange(name="mode", a="0644", b="0755"),)
    assert "  changed /app/model.bin: mode 0644 -> 0755\n" in render_text(diff)


def test_changed_owner(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE, APP], [replace(BASE, "usr/bin/tool", uid=1000), APP])

    entry = changed_entry(diff, layer=0)
    assert (entry.path, entry.attrs) == ("/usr/bin/tool", (AttrChange(name="owner", a="0:0", b="1000:0"),))


def test_changed_mtime_only(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE, APP], [BASE, replace(APP, "app/config.txt", mtime=EPOCH + 60)])

    entry = changed_entry(diff)
    assert entry.attrs == (AttrChange(name="mtime", a=EPOCH, b=EPOCH + 60),)
    assert entry.text_diff == ()  # same content: no line diff
    text = render_text(diff)
    assert "  attributes changed: mtime 1\n" in text
    assert (
        "  changed /app/config.txt: mtime 1700000000 (2023-11-14T22:13:20Z) -> 1700000060 (2023-11-14T22:14:20Z)\n"
    ) in text


def test_added_and_removed_files(tmp_path: Path) -> None:
    added: FileEntry = ("app/new.txt", b"hello\n", 0o644, EPOCH, 0)
    diff = compare(tmp_path, [BASE, APP], [BASE, [APP[0], added]])

    assert diff.layers[1].entries == (
        EntryDiff(path="/app/new.txt", change="added", type="file", size=6, sha256=sha(b"hello\n")),
        EntryDiff(path="/app/model.bin", change="removed", type="file", size=len(MODEL), sha256=sha(MODEL)),
    )
    text = render_text(diff)
    assert "  - layer 1: 0 changed, 1 added, 1 removed\n" in text
    assert "  added   /app/new.txt (file, 6 bytes)\n  removed /app/model.bin (file, 2048 bytes)\n" in text


def test_extra_layer_is_reported_whole(tmp_path: Path) -> None:
    extra: list[FileEntry] = [("opt/extra/a", b"a", 0o644, EPOCH, 0), ("opt/extra/b", b"bb", 0o644, EPOCH, 0)]
    diff = compare(tmp_path, [BASE, APP], [BASE, APP, extra])

    assert [layer.status for layer in diff.layers] == ["identical", "identical", "added"]
    layer = diff.layers[2]
    assert layer.a is None and layer.b is not None
    assert layer.entries == (
        EntryDiff(path="/opt/extra/a", change="added", type="file", size=1, sha256=sha(b"a")),
        EntryDiff(path="/opt/extra/b", change="added", type="file", size=2, sha256=sha(b"bb")),
    )
    assert diff.manifest == (FieldChange(path="len(layers)", change="changed", a=2, b=3),)
    assert layer.b.media_type == OCI_LAYER
    assert [(c.path, c.change) for c in diff.config] == [
        ("rootfs.diff_ids[2]", "added"),
        ("history[2]", "added"),
    ]
    assert "  - layer 2: added (only in b; 2 entries)\n" in render_text(diff)


def test_same_files_in_another_order_are_explained_as_tar_bytes(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE, APP], [BASE, list(reversed(APP))])

    layer = diff.layers[1]
    assert (layer.status, layer.entries) == ("same-files", ())
    assert layer.encoding == (
        "entry order differs from entry 1 of the common entries: /app/config.txt in a, /app/model.bin in b",
    )
    text = render_text(diff)
    assert "  - layer 1: same files, different tar/compression bytes\n" in text
    assert (
        "layer 1: same files, different tar/compression bytes\n"
        f"  {layer.a and layer.a.digest[:19]} -> {layer.b and layer.b.digest[:19]}\n"
        "  - entry order differs from entry 1 of the common entries: /app/config.txt in a, /app/model.bin in b\n"
    ) in text


def test_same_tar_other_compression_is_explained(tmp_path: Path) -> None:
    files = [[(f"data/{i}.txt", b"line of text\n" * 200, 0o644, EPOCH, 0) for i in range(5)]]
    a = make_files_layout(tmp_path / "a", files, compresslevel=9)
    b = make_files_layout(tmp_path / "b", files, compresslevel=1)

    (layer,) = diff_images(Layout.open(a.path), Layout.open(b.path)).layers

    assert layer.status == "same-files"
    assert layer.encoding[0].startswith("the uncompressed tars are identical (sha256:")
    assert layer.encoding[1:] == ("gzip header XFL (compression level hint) 2 -> 4",)


def zstd_layout(path: Path, layers: Sequence[Sequence[FileEntry]]) -> TestLayout:
    """The image of :func:`make_files_layout` with every layer compressed with zstd instead of gzip."""
    written = make_files_layout(path, layers)

    def recompress(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        for descriptor in manifest["layers"]:
            tar = gzip.decompress(written.blob_path(descriptor["digest"]).read_bytes())
            packed = zstandard.ZstdCompressor(level=3).compress(tar)
            descriptor.update(mediaType=OCI_LAYER_ZSTD, digest=write_blob(written, packed), size=len(packed))

    rewrite_image(written, recompress)
    return written


def test_zstd_layers_are_compared_like_gzip_ones(tmp_path: Path) -> None:
    gzipped = make_files_layout(tmp_path / "gzip", [BASE, APP])
    before = zstd_layout(tmp_path / "zstd", [BASE, APP])
    after = zstd_layout(tmp_path / "zstd-mode", [BASE, replace(APP, "app/model.bin", mode=0o755)])

    recompressed = diff_images(Layout.open(gzipped.path), Layout.open(before.path))
    changed = diff_images(Layout.open(before.path), Layout.open(after.path))

    for layer in recompressed.layers:
        assert (layer.status, layer.entries) == ("same-files", ())
        assert layer.encoding[0] == "compression gzip -> zstd"
        assert layer.encoding[1].startswith("the uncompressed tars are identical (sha256:")
    assert [layer.status for layer in changed.layers] == ["identical", "changed"]
    assert changed.layers[1].entries[0].attrs == (AttrChange(name="mode", a="0644", b="0755"),)


def test_same_files_in_another_tar_format_are_explained(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE, APP], [BASE, APP], tar_format=tarfile.USTAR_FORMAT)

    for layer in diff.layers:
        assert (layer.status, layer.entries) == ("same-files", ())
    assert diff.layers[1].encoding == (
        "tar format gnu (2) -> ustar (2)",
        "tar headers differ for 2 entries with equal attributes, e.g. /app/config.txt (gnu -> ustar)",
    )
    # diff_ids are digests of the uncompressed tars, so the config records the new bytes too
    assert [c.path for c in diff.config] == ["rootfs.diff_ids[0]", "rootfs.diff_ids[1]"]


def test_terminal_report_caps_entries_per_layer(tmp_path: Path) -> None:
    many = [(f"srv/f{i:02}", b"x", 0o644, EPOCH, 0) for i in range(30)]
    later = [(name, data, mode, EPOCH + 1, uid) for name, data, mode, _, uid in many]
    diff = compare(tmp_path, [many], [later])

    text = render_text(diff)
    assert "  attributes changed: mtime 30\n" in text
    assert text.count("  changed /srv/f") == 20
    assert "  changed /srv/f19: mtime" in text and "/srv/f20" not in text
    assert "  ... and 10 more (--report FILE.json lists all)\n" in text
    assert len(render_json(diff)["layers"][0]["entries"]) == 30


def test_corrupt_layer_is_an_error(tmp_path: Path) -> None:
    a = make_files_layout(tmp_path / "a", [BASE, APP])
    b = make_files_layout(tmp_path / "b", [BASE, replace(APP, "app/model.bin", mode=0o600)])
    blob = b.blob_path(b.layers[1])
    blob.write_bytes(blob.read_bytes()[:-8] + bytes(8))

    with pytest.raises(ImageReadError) as exc:
        diff_images(Layout.open(a.path), Layout.open(b.path))
    assert exc.value.hint


# -- layers named by envbuild -------------------------------------------------------------------

SITE = "opt/venv/lib/python3.12/site-packages"
VENV: list[FileEntry] = [("opt/venv/pyvenv.cfg", b"home = /usr/bin\n", 0o644, 0, 0)]
CERTIFI: list[FileEntry] = [(f"{SITE}/certifi/cacert.pem", b"-----BEGIN CERTIFICATE-----\n", 0o644, 0, 0)]
CHARSET: list[FileEntry] = [(f"{SITE}/charset_normalizer/__init__.py", b"", 0o644, 0, 0)]
PROJECT: list[FileEntry] = [("app/main.py", b"print('hi')\n", 0o644, EPOCH, 0)]
# Each layer: (dev.envbuild.layer or None for a base layer, dev.envbuild.layer.distributions, files).
NamedLayer = tuple[str | None, str, Sequence[FileEntry]]
GROUPED: list[NamedLayer] = [
    (None, "", BASE),
    ("venv", "", VENV),
    ("python-group:a-c", "certifi==2025.1.31 charset-normalizer==3.4.1", [*CERTIFI, *CHARSET]),
    ("project", "", PROJECT),
]
# certifi grew above the threshold: it moves into a layer of its own, the group keeps the rest.
OWN_LAYER: list[NamedLayer] = [
    (None, "", BASE),
    ("venv", "", VENV),
    ("python:certifi", "certifi==2025.1.31", CERTIFI),
    ("python-group:a-c", "charset-normalizer==3.4.1", CHARSET),
    ("project", "", PROJECT),
]


def named_layout(path: Path, layers: Sequence[NamedLayer]) -> TestLayout:
    """An image as envbuild writes it: layer annotations in the manifest, one history entry per layer by its name."""
    written = make_files_layout(path, [files for _, _, files in layers])

    def annotate(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        for index, (name, dists, _) in enumerate(layers):
            config["history"][index]["created_by"] = f"envbuild: {name or f'base layer {index}'}"
            if name:
                manifest["layers"][index]["annotations"] = {
                    "dev.envbuild.layer": name,
                    **({"dev.envbuild.layer.distributions": dists} if dists else {}),
                }

    rewrite_image(written, annotate)
    return written


def rewrite_image(written: TestLayout, edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Let ``edit`` change the manifest and config of ``written``, and write both and index.json again."""
    manifest = json.loads(written.blob_path(written.digest).read_bytes())
    config = json.loads(written.blob_path(written.config).read_bytes())
    edit(manifest, config)
    config_bytes = json.dumps(config).encode()
    manifest["config"].update(digest=write_blob(written, config_bytes), size=len(config_bytes))
    manifest_bytes = json.dumps(manifest).encode()
    index_json = json.loads((written.path / "index.json").read_bytes())
    index_json["manifests"][0].update(digest=write_blob(written, manifest_bytes), size=len(manifest_bytes))
    (written.path / "index.json").write_text(json.dumps(index_json))


def write_blob(written: TestLayout, data: bytes) -> str:
    digest = f"sha256:{sha(data)}"
    written.blob_path(digest).write_bytes(data)
    return digest


def named_diff(tmp_path: Path, layers_a: Sequence[NamedLayer], layers_b: Sequence[NamedLayer]) -> ImageDiff:
    a, b = named_layout(tmp_path / "a", layers_a), named_layout(tmp_path / "b", layers_b)
    return diff_images(Layout.open(a.path), Layout.open(b.path))


def test_named_layers_pair_by_name_when_a_package_moves_into_its_own_layer(tmp_path: Path) -> None:
    diff = named_diff(tmp_path, GROUPED, OWN_LAYER)

    assert [(x.index, x.name, x.status) for x in diff.layers] == [
        (0, None, "identical"),
        (1, "venv", "identical"),
        (2, "python:certifi", "added"),
        (3, "python-group:a-c", "changed"),
        (4, "project", "identical"),
    ]
    assert [(x.a and x.a.index, x.b and x.b.index) for x in diff.layers] == [(0, 0), (1, 1), (None, 2), (2, 3), (3, 4)]
    assert [(e.path, e.change) for e in diff.layers[3].entries] == [(f"/{SITE}/certifi/cacert.pem", "removed")]
    distributions = 'layers[3].annotations["dev.envbuild.layer.distributions"]'
    assert diff.manifest == (
        FieldChange(
            path=distributions,
            change="changed",
            a="certifi==2025.1.31 charset-normalizer==3.4.1",
            b="charset-normalizer==3.4.1",
        ),
        FieldChange(path="len(layers)", change="changed", a=4, b=5),
    )
    # The config's lists follow the pairing too: one layer added, one changed, nothing shifted.
    assert [(c.path, c.change) for c in diff.config] == [
        ("rootfs.diff_ids[2]", "added"),
        ("rootfs.diff_ids[3]", "changed"),
        ("history[2]", "added"),
    ]
    text = render_text(diff)
    assert "  - layer 2 (python:certifi): added (only in b; 1 entry)\n" in text
    assert "  - layer 3 (python-group:a-c; 2 in a): 0 changed, 0 added, 1 removed\n" in text
    assert "  - identical layers: 0, 1 (venv), 4 (project; 3 in a)\n" in text
    report = render_json(diff)["layers"]
    assert [(x["index"], x["name"]) for x in report] == [
        (0, None),
        (1, "venv"),
        (2, "python:certifi"),
        (3, "python-group:a-c"),
        (4, "project"),
    ]
    assert report[3]["a"]["index"] == 2 and report[3]["a"]["name"] == "python-group:a-c"
    assert "<h2>Layer 3 (python-group:a-c; 2 in a): changed</h2>" in render_html(diff)


def test_a_named_layer_only_in_a_is_removed_where_it_was(tmp_path: Path) -> None:
    diff = named_diff(tmp_path, OWN_LAYER, GROUPED)

    assert [(x.a and x.a.index, x.b and x.b.index, x.name, x.status) for x in diff.layers] == [
        (0, 0, None, "identical"),
        (1, 1, "venv", "identical"),
        (2, None, "python:certifi", "removed"),
        (3, 2, "python-group:a-c", "changed"),
        (4, 3, "project", "identical"),
    ]
    assert "  - layer 2 (python:certifi): removed (only in a; 1 entry)\n" in render_text(diff)


def test_when_only_one_image_names_its_layers_they_pair_by_index(tmp_path: Path) -> None:
    a = make_files_layout(tmp_path / "a", [files for _, _, files in GROUPED])
    b = named_layout(tmp_path / "b", OWN_LAYER)

    diff = diff_images(Layout.open(a.path), Layout.open(b.path))

    assert [(x.index, x.name, x.status) for x in diff.layers] == [
        (0, None, "identical"),
        (1, "venv", "identical"),
        (2, "python:certifi", "changed"),
        (3, "python-group:a-c", "changed"),
        (4, "project", "added"),
    ]
    assert diff.notes == ("only b's layers are named (dev.envbuild.layer): layers paired by index",)


# -- reports -------------------------------------------------------------------------------------


def test_json_and_html_reports_are_complete_and_escaped(tmp_path: Path) -> None:
    odd = "app/a<b>&'c\".txt"
    layers_b = [
        BASE,
        [
            *replace(APP, "app/config.txt", content=CONFIG_TXT.replace(b"line 6", b"<six>")),
            (odd, b"1", 0o644, EPOCH, 0),
        ],
    ]
    diff = compare(tmp_path, [BASE, APP], layers_b)

    write_report(diff, tmp_path / "report.json")
    write_report(diff, tmp_path / "report.html")

    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["identical"] is False
    assert report["a"] == {"image": str(tmp_path / "a"), "manifest": diff.a.manifest, "config": diff.a.config}
    assert [(c["path"], c["change"]) for c in report["config"]] == [("rootfs.diff_ids[1]", "changed")]
    layer = report["layers"][1]
    assert layer["status"] == "changed"
    assert [(e["path"], e["change"]) for e in layer["entries"]] == [
        (f"/{odd}", "added"),
        ("/app/config.txt", "changed"),
    ]
    assert layer["entries"][1]["text_diff"][2:5] == [" line 5", "-line 6", "+<six>"]
    assert [a["name"] for a in layer["entries"][1]["attributes"]] == ["sha256", "size"]
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == json.dumps(report, indent=2, sort_keys=True) + "\n"

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page == render_html(diff)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "/app/a&lt;b&gt;&amp;&#x27;c&quot;.txt" in page
    assert "a<b>" not in page and "<six>" not in page
    assert "+&lt;six&gt;" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page  # self-contained


def test_report_with_an_unknown_suffix_is_a_usage_error(tmp_path: Path) -> None:
    diff = compare(tmp_path, [BASE], [replace(BASE, "usr/bin/tool", mode=0o700)])

    with pytest.raises(UsageError, match=r"report\.txt: unknown report format '\.txt'") as exc:
        write_report(diff, tmp_path / "report.txt")
    assert exc.value.hint == "name the report file with one of .json, .html"
    assert exc.value.exit_code == 2
    assert not (tmp_path / "report.txt").exists()

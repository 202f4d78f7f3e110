"""Reports of :func:`envbuild.audit.imagediff.diff_images`: for the terminal, as JSON, and as one HTML page.

The terminal report puts the most telling differences first and caps how many entries it
lists per layer; the JSON and HTML reports list everything.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envbuild.audit.imagediff import (
    ATTR_RANK,
    REPORT_SUFFIXES,
    TERMINAL_ENTRIES,
    TERMINAL_FIELDS,
    AttrValue,
    EntryDiff,
    FieldChange,
    ImageDiff,
    ImageSide,
    LayerDiff,
    LayerSide,
    clip,
)
from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write
from envbuild.words import plural


def render_text(diff: ImageDiff) -> str:
    """A terminal report: a summary line per differing part, then the details, capped per layer."""
    if diff.identical:
        return f"identical: {diff.a.label} and {diff.b.label} are both {diff.a.manifest}\n"
    lines = [
        "images differ:",
        f"  a: {diff.a.label} {diff.a.manifest}",
        f"  b: {diff.b.label} {diff.b.manifest}",
        *(f"  - {line}" for line in _summary(diff)),
    ]
    for title, changes in (("config", diff.config), ("manifest", diff.manifest)):
        if changes:
            lines += ["", f"{title}: {plural(len(changes), 'field')} differ"]
            lines += [f"  {_field_text(c)}" for c in changes[:TERMINAL_FIELDS]]
            if len(changes) > TERMINAL_FIELDS:
                lines.append(f"  ... and {len(changes) - TERMINAL_FIELDS} more")
    for layer in diff.layers:
        if layer.status != "identical":
            lines += ["", *_layer_text(layer)]
    lines += [f"note: {note}" for note in diff.notes]
    return "\n".join(lines) + "\n"


def _summary(diff: ImageDiff) -> list[str]:
    out = []
    if diff.config:
        out.append(f"config: {plural(len(diff.config), 'field')} differ")
    if diff.manifest:
        out.append(f"manifest: {plural(len(diff.manifest), 'field')} differ")
    for layer in diff.layers:
        if layer.status != "identical":
            out.append(f"{_layer_title(layer)}: {_layer_headline(layer)}")
    same = [_layer_title(layer).removeprefix("layer ") for layer in diff.layers if layer.status == "identical"]
    if same:
        out.append(f"identical layers: {', '.join(same)}")
    return out


def _layer_title(layer: LayerDiff) -> str:
    """``layer 5``, with the layer's name and a's position when they say more: ``layer 5 (python:numpy; 4 in a)``."""
    details = [layer.name] if layer.name else []
    if layer.a and layer.b and layer.a.index != layer.b.index:
        details.append(f"{layer.a.index} in a")
    return f"layer {layer.index}" + (f" ({'; '.join(details)})" if details else "")


def _layer_headline(layer: LayerDiff) -> str:
    if layer.status == "changed":
        counts = Counter(e.change for e in layer.entries)
        return f"{counts['changed']} changed, {counts['added']} added, {counts['removed']} removed"
    if layer.status == "same-files":
        return "same files, different tar/compression bytes"
    if layer.status in ("added", "removed"):
        where = "b" if layer.status == "added" else "a"
        return f"{layer.status} (only in {where}; {plural(len(layer.entries), 'entry', 'entries')})"
    return "identical"


def _layer_text(layer: LayerDiff) -> list[str]:
    digests = " -> ".join(_short(side.digest) for side in (layer.a, layer.b) if side)
    lines = [f"{_layer_title(layer)}: {_layer_headline(layer)}", f"  {digests}"]
    if layer.status == "same-files":
        lines += [f"  - {note}" for note in layer.encoding]
    if layer.status == "changed":
        attrs = Counter(c.name for e in layer.entries for c in e.attrs)
        if attrs:
            lines.append("  attributes changed: " + ", ".join(f"{n} {attrs[n]}" for n in ATTR_RANK if n in attrs))
    for entry in layer.entries[:TERMINAL_ENTRIES]:
        lines.append(f"  {_entry_text(entry)}")
        lines += [f"      {line}" for line in entry.text_diff]
    if len(layer.entries) > TERMINAL_ENTRIES:
        lines.append(f"  ... and {len(layer.entries) - TERMINAL_ENTRIES} more (--report FILE.json lists all)")
    if layer.status == "changed":
        lines += [f"  tar/compression: {note}" for note in layer.encoding]
    lines += [f"  note: {note}" for note in layer.notes]
    return lines


def _entry_text(entry: EntryDiff) -> str:
    if entry.change != "changed":
        what = f"{entry.type}, {plural(entry.size, 'byte')}" if entry.type == "file" else entry.type
        return f"{entry.change:<8}{entry.path} ({what})"
    return f"changed {entry.path}: " + ", ".join(
        f"{c.name} {_attr_text(c.name, c.a)} -> {_attr_text(c.name, c.b)}" for c in entry.attrs
    )


def _attr_text(name: str, value: AttrValue, *, full: bool = False) -> str:
    if value is None:
        return "none"
    if name == "sha256" and not full:
        return str(value)[:12]
    if name == "mtime" and isinstance(value, int | float):
        return f"{value} ({datetime.fromtimestamp(value, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')})"
    return str(value)


def _field_text(change: FieldChange) -> str:
    if change.change == "added":
        return f"added   {change.path}: {_value_text(change.b)}"
    if change.change == "removed":
        return f"removed {change.path}: {_value_text(change.a)}"
    return f"changed {change.path}: {_value_text(change.a)} -> {_value_text(change.b)}"


def _value_text(value: Any) -> str:
    return clip(json.dumps(value, ensure_ascii=False, sort_keys=True), 160)


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


def render_json(diff: ImageDiff) -> dict[str, Any]:
    """The complete report as a JSON value: every field and entry, entries sorted by path."""
    return {
        "format": "envbuild-imagediff/1",
        "identical": diff.identical,
        "a": _side_json(diff.a),
        "b": _side_json(diff.b),
        "manifest": [_field_json(c) for c in diff.manifest],
        "config": [_field_json(c) for c in diff.config],
        "layers": [_layer_json(layer) for layer in diff.layers],
        "notes": list(diff.notes),
    }


def _side_json(side: ImageSide) -> dict[str, Any]:
    return {"image": side.label, "manifest": side.manifest, "config": side.config}


def _field_json(change: FieldChange) -> dict[str, Any]:
    out: dict[str, Any] = {"path": change.path, "change": change.change}
    if change.change != "added":
        out["a"] = change.a
    if change.change != "removed":
        out["b"] = change.b
    return out


def _layer_json(layer: LayerDiff) -> dict[str, Any]:
    def side(value: LayerSide | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {
            "digest": value.digest,
            "mediaType": value.media_type,
            "size": value.size,
            "index": value.index,
            "name": value.name,
        }

    entries = sorted(layer.entries, key=lambda e: (e.path, e.change))
    return {
        "index": layer.index,
        "name": layer.name,
        "status": layer.status,
        "a": side(layer.a),
        "b": side(layer.b),
        "entries": [
            {
                "path": e.path,
                "change": e.change,
                "type": e.type,
                "size": e.size,
                "sha256": e.sha256,
                "attributes": [{"name": c.name, "a": c.a, "b": c.b} for c in e.attrs],
                "text_diff": list(e.text_diff),
            }
            for e in entries
        ],
        "encoding": list(layer.encoding),
        "notes": list(layer.notes),
    }


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
code,pre,td.path{font-family:ui-monospace,monospace;font-size:90%}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
.added{color:#1a7f37}.removed{color:#cf222e}
pre{background:#f6f8fa;padding:.5em;margin:.2em 0}
""".strip()


def render_html(diff: ImageDiff) -> str:
    """The complete report as one self-contained HTML page (inline CSS, no scripts, every value escaped)."""
    e = _escape
    body = [f"<h1>{'Images are identical' if diff.identical else 'Images differ'}</h1>", "<table>"]
    for name, side in (("a", diff.a), ("b", diff.b)):
        body.append(
            f"<tr><th>{name}</th><td>{e(side.label)}</td><td><code>{e(side.manifest)}</code></td>"
            f"<td>config <code>{e(side.config)}</code></td></tr>"
        )
    body.append("</table>")
    if not diff.identical:
        body += ["<h2>Summary</h2>", "<ul>", *(f"<li>{e(line)}</li>" for line in _summary(diff)), "</ul>"]
    for title, changes in (("Config", diff.config), ("Manifest", diff.manifest)):
        if changes:
            body += [f"<h2>{title}</h2>", "<table><tr><th>field</th><th>change</th><th>a</th><th>b</th></tr>"]
            for c in changes:
                a = "" if c.change == "added" else _value_text(c.a)
                b = "" if c.change == "removed" else _value_text(c.b)
                body.append(
                    f"<tr><td><code>{e(c.path)}</code></td><td class='{c.change}'>{c.change}</td>"
                    f"<td><code>{e(a)}</code></td><td><code>{e(b)}</code></td></tr>"
                )
            body.append("</table>")
    for layer in diff.layers:
        body += _layer_html(layer)
    body += [f"<p>note: {e(note)}</p>" for note in diff.notes]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>envbuild image diff</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _layer_html(layer: LayerDiff) -> list[str]:
    e = _escape
    digests = " → ".join(side.digest for side in (layer.a, layer.b) if side)
    title = _layer_title(layer).replace("layer", "Layer", 1)
    out = [f"<h2>{e(title)}: {e(layer.status)}</h2>", f"<p><code>{e(digests)}</code></p>"]
    if layer.status == "identical":
        return out
    out += [f"<p>{e(_layer_headline(layer))}</p>"]
    if layer.encoding:
        out += ["<ul>", *(f"<li>{e(note)}</li>" for note in layer.encoding), "</ul>"]
    out += [f"<p>note: {e(note)}</p>" for note in layer.notes]
    if layer.entries:
        out.append("<table><tr><th>path</th><th>change</th><th>type</th><th>details</th></tr>")
        for entry in sorted(layer.entries, key=lambda x: (x.path, x.change)):
            details = [
                f"{c.name}: {_attr_text(c.name, c.a, full=True)} → {_attr_text(c.name, c.b, full=True)}"
                for c in entry.attrs
            ]
            if entry.change != "changed" and entry.type == "file":
                details.append(f"{plural(entry.size, 'byte')}, sha256 {entry.sha256}")
            cell = "<br>".join(e(d) for d in details)
            if entry.text_diff:
                cell += "<pre>" + "\n".join(e(line) for line in entry.text_diff) + "</pre>"
            out.append(
                f"<tr><td class='path'>{e(entry.path)}</td><td class='{entry.change}'>{entry.change}</td>"
                f"<td>{e(entry.type)}</td><td>{cell}</td></tr>"
            )
        out.append("</table>")
    return out


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def write_report(diff: ImageDiff, path: Path) -> None:
    """Write the full report to ``path`` atomically: JSON for ``*.json``, HTML for ``*.html``."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(render_json(diff), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif suffix == ".html":
        text = render_html(diff)
    else:
        raise UsageError(
            f"{path}: unknown report format {suffix or '(no suffix)'!r}",
            hint=f"name the report file with one of {', '.join(REPORT_SUFFIXES)}",
        )
    # Tar names and config values may hold lone surrogates; a report must still be written.
    atomic_write(path, text.encode("utf-8", "backslashreplace"))

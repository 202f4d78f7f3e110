"""A real PEP 503 package index on 127.0.0.1, with optional basic auth, for routing and credential tests."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_wheel(directory: Path, name: str, version: str, *, requires: tuple[str, ...] = ()) -> Path:
    """Write a minimal pure-Python wheel ``name==version``, depending on ``requires``, into ``directory``."""
    dist = name.replace("-", "_")
    filename = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: envbuild-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b'=').decode()},{len(body)}\n"
        for path, body in files.items()
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, body in [*files.items(), (f"{info}/RECORD", record + f"{info}/RECORD,,\n")]:
            zf.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), body)
    out = directory / filename
    out.write_bytes(buffer.getvalue())
    return out


@dataclass
class IndexServer:
    """A running index: its URL (without credentials) and the paths it was asked for."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextmanager
def serve_index(
    wheels: list[Path],
    *,
    username: str | None = None,
    password: str | None = None,
    to_uv: list[Path] | None = None,
) -> Iterator[IndexServer]:
    """Serve ``wheels`` as a simple index at http://127.0.0.1:PORT/simple/ until the block ends.

    ``to_uv``: what uv (by its User-Agent) is served instead of ``wheels`` -- an index that
    shows the resolver other files than everyone else, for the lock's hash cross-check.
    """

    def by_project_of(paths: list[Path]) -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = {}
        for wheel in paths:
            out.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
        return out

    to_everyone = by_project_of(wheels)
    to_resolver = by_project_of(to_uv) if to_uv is not None else to_everyone
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
    state = IndexServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self.head_only = True
            self.do_GET()

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if expected and self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            by_project = to_resolver if self.headers.get("User-Agent", "").startswith("uv/") else to_everyone
            if parts == ["simple"]:  # the root: every project, as PEP 503 lists them
                anchors = "".join(f'<a href="/simple/{name}/">{name}</a>\n' for name in sorted(by_project))
                self._send(200, f"<html><body>\n{anchors}</body></html>\n".encode(), "text/html")
            elif len(parts) == 2 and parts[0] == "simple" and parts[1] in by_project:
                links = "".join(
                    f'<a href="/files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
                    for w in by_project[parts[1]]
                )
                self._send(200, f"<html><body>\n{links}</body></html>\n".encode(), "text/html")
            elif len(parts) == 2 and parts[0] == "files":
                match = [w for ws in by_project.values() for w in ws if w.name == parts[1]]
                self._send(200, match[0].read_bytes(), "application/octet-stream") if match else self._send(
                    404, b"", "text/plain"
                )
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not getattr(self, "head_only", False):
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

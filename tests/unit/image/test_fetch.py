"""fetch: which wheel a pin takes on a target, and downloading it hash-checked into the cache passed in.

The downloads go to real HTTP servers on 127.0.0.1: the test index (support.index) and, for
bytes that do not match the lock, a server that lists one hash and serves other bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from envbuild.image.fetch import FetchError, Wheel, choose_file, download, fetch_lockfile, target_tags
from envbuild.lock.resolvers.base import Pin
from support.index import make_wheel, serve_index


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_target_tags_rank_the_newest_glibc_first_and_stop_at_the_target() -> None:
    tags = [str(t) for t in target_tags("3.11", "linux/amd64", "2.28")]
    assert tags[0] == "cp311-cp311-manylinux_2_28_x86_64"
    assert "cp311-cp311-manylinux_2_29_x86_64" not in tags  # needs a newer glibc than the base has
    assert {"cp311-abi3-manylinux2014_x86_64", "cp311-cp311-manylinux1_x86_64", "py3-none-any"} <= set(tags)
    assert tags.index("cp311-cp311-manylinux2014_x86_64") < tags.index("cp311-abi3-manylinux_2_28_x86_64")
    assert tags.index("cp311-abi3-manylinux_2_17_x86_64") < tags.index("py3-none-any")
    assert not any("cp312" in t or "win" in t or "macosx" in t for t in tags)


def test_target_tags_on_arm64_have_no_legacy_tags_that_never_existed_there() -> None:
    tags = [str(t) for t in target_tags("3.11", "linux/arm64", "2.17")]
    assert tags[0] == "cp311-cp311-manylinux_2_17_aarch64"
    assert "cp311-cp311-manylinux2014_aarch64" in tags
    assert not any("manylinux2010" in t or "manylinux1_" in t or "x86_64" in t for t in tags)


def _file(filename: str, digest: str) -> dict[str, str]:
    return {"filename": filename, "sha256": digest, "url": f"https://files.example/{filename}"}


def test_choose_file_takes_the_best_locked_wheel_for_the_target() -> None:
    tags = target_tags("3.11", "linux/amd64", "2.28")
    files = [
        _file("numpy-2.0.0.tar.gz", "a" * 64),  # an sdist is never chosen
        _file("numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "b" * 64),
        _file("numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl", "c" * 64),  # best, but not locked
        _file("numpy-2.0.0-cp311-cp311-musllinux_1_1_x86_64.whl", "d" * 64),  # locked, another libc
        _file("numpy-2.0.0-cp312-cp312-manylinux_2_28_x86_64.whl", "e" * 64),  # locked, another Python
    ]
    pin = Pin(name="numpy", version="2.0.0", hashes=tuple(f"sha256:{h * 64}" for h in "abde"))
    assert choose_file(files, pin, tags)["sha256"] == "b" * 64
    both = Pin(name="numpy", version="2.0.0", hashes=tuple(f"sha256:{h * 64}" for h in "abcde"))
    assert choose_file(files, both, tags)["sha256"] == "c" * 64


def test_choose_file_refuses_when_no_locked_file_fits_the_target() -> None:
    files = [_file("torch-2.5.0-cp311-cp311-macosx_11_0_arm64.whl", "f" * 64)]
    pin = Pin(name="torch", version="2.5.0", hashes=("sha256:" + "f" * 64,))
    with pytest.raises(FetchError, match=r"torch==2\.5\.0: none of its locked files is a wheel") as refused:
        choose_file(files, pin, target_tags("3.11", "linux/amd64", "2.28"))
    assert "envbuild lock" in (refused.value.hint or "")


def _lockfile(path: Path, wheel: Path) -> Path:
    name, version = wheel.name.split("-")[:2]
    path.write_text(f"{name.replace('_', '-')}=={version} \\\n    --hash=sha256:{sha256(wheel.read_bytes())}\n")
    return path


def _fetch(lockfile: Path, cache: Path, index_url: str) -> list[Wheel]:
    return fetch_lockfile(
        lockfile, cache=cache, python="3.11", platform="linux/amd64", glibc="2.28", index_url=index_url, indexes=()
    )


def test_wheels_go_to_the_cache_passed_in_and_a_second_fetch_needs_no_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(tmp_path / "environment"))  # never read by fetch
    wheel = make_wheel(tmp_path, "envbuild-fetch-pkg", "1.0.0")
    lockfile = _lockfile(tmp_path / "lock.txt", wheel)
    cache = tmp_path / "cache"
    with serve_index([wheel]) as index:
        (fetched,) = _fetch(lockfile, cache, index.url)
        asked = list(index.requests)
    digest = sha256(wheel.read_bytes())
    assert fetched.path == cache / "wheels" / digest / wheel.name
    assert fetched.path.read_bytes() == wheel.read_bytes()
    assert fetched.url == f"{index.url.removesuffix('/simple')}/files/{wheel.name}"
    assert (cache / "wheels" / digest / "url").read_text() == fetched.url + "\n"
    assert asked == ["/simple/envbuild-fetch-pkg/", f"/files/{wheel.name}"]
    assert not (tmp_path / "environment").exists()

    # The index is gone: the cache answers, with the URL recorded at download time.
    again = _fetch(lockfile, cache, "http://127.0.0.1:9/simple")
    assert again == [fetched]


@contextmanager
def serve_bytes(pages: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve ``{path: (content type, body)}`` at http://127.0.0.1:PORT until the block ends; yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            kind, body = pages.get(self.path, ("text/plain", b"not found"))
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bytes_that_do_not_match_the_lock_are_refused_and_never_cached(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "envbuild-fetch-pkg", "1.0.0")
    locked = sha256(wheel.read_bytes())
    lockfile = _lockfile(tmp_path / "lock.txt", wheel)
    served = wheel.read_bytes() + b"tampered"
    link = f'<a href="/files/{wheel.name}#sha256={locked}">{wheel.name}</a>'  # the index claims the locked hash
    pages = {
        "/simple/envbuild-fetch-pkg/": ("text/html", f"<html><body>{link}</body></html>".encode()),
        f"/files/{wheel.name}": ("application/octet-stream", served),
    }
    cache = tmp_path / "cache"
    with serve_bytes(pages) as base, pytest.raises(FetchError) as refused:
        _fetch(lockfile, cache, f"{base}/simple")
    assert f"has sha256 {sha256(served)}, but the lock expects {locked}" in refused.value.message
    assert "do not build from it" in (refused.value.hint or "")
    assert list((cache / "wheels" / locked).iterdir()) == []  # neither the file nor a .partial stays


def test_download_names_the_http_status_without_credentials(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "wheels" / ("0" * 64) / "missing-1.0-py3-none-any.whl"
    with serve_bytes({}) as base, pytest.raises(FetchError) as refused:
        download(f"{base.replace('http://', 'http://user:secret@')}/files/missing.whl", target, "0" * 64)
    assert "answered HTTP 404" in refused.value.message
    assert "secret" not in refused.value.message
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()

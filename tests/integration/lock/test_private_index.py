"""Private indexes: routed packages come only from their index, at lock and at fetch, with the same credentials.

Real uv against the package index and a real PEP 503 index on 127.0.0.1 (support.index).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import zipfile
from pathlib import Path

import pytest

from envbuild.errors import EnvbuildError
from envbuild.image.fetch import fetch_lockfile
from envbuild.lock.resolvers.base import parse_requirements
from envbuild.lock.spec import Index
from support.index import make_wheel, serve_index

pytestmark = pytest.mark.network

CUTOFF = "2026-11-01T00:00:00Z"
PASSWORD = "s3cret-routed-pass"


def spec_with_index(root: Path, *, infer: str, url: str, packages: str) -> Path:
    """A CPU-only spec whose ``packages`` are routed to the index 'private' at ``url``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "envbuild.toml").write_text(
        textwrap.dedent(
            f"""
            python = "3.11"
            exclude-newer = "{CUTOFF}"

            [[indexes]]
            name = "private"
            url = "{url}"
            packages = [{packages}]
            exclude-newer = false

            [roles.infer]
            dependencies = [{infer}]

            [accelerators.cpu]
            base = {{ debian = "bookworm" }}
            """
        ).lstrip(),
        encoding="utf-8",
    )
    return root


def locked(root: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    path = root / "lockfiles" / "cpu-infer.txt"
    return {p.name: (p.version, p.hashes) for p in parse_requirements(path.read_text(), source=str(path))}


def snapshot(root: Path) -> dict[str, bytes]:
    lock_dir = root / "lockfiles"
    return {p.name: p.read_bytes() for p in sorted(lock_dir.iterdir())} if lock_dir.is_dir() else {}


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_routed_transitive_dependency_comes_from_its_index(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime (from the default index) depends on flatbuffers, which the spec routes to 'private':
    # the lock must take flatbuffers from there, never the default index's flatbuffers.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    private = make_wheel(wheels, "flatbuffers", "99.0.0")
    monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", "ci-bot")
    monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", PASSWORD)
    with serve_index([private], username="ci-bot", password=PASSWORD) as index:
        root = spec_with_index(tmp_path / "p", infer='"onnxruntime"', url=index.url, packages='"flatbuffers"')
        result = cli("-C", root, "lock")
        assert result.code == 0, result.err
        assert "/simple/flatbuffers/" in index.requests
    pins = locked(root)
    assert pins["flatbuffers"] == ("99.0.0", (sha256(private),))
    assert "onnxruntime" in pins
    text = (root / "lockfiles" / "cpu-infer.txt").read_text()
    assert "flatbuffers==99.0.0 \\\n" in text and "    # via onnxruntime\n" in text  # not "via spec": envbuild added it
    meta = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())
    assert meta["locks"]["cpu-infer"]["packages"]["flatbuffers"] == {"version": "99.0.0", "index": "private"}
    assert meta["locks"]["cpu-infer"]["inputs"]["requirements"] == ["onnxruntime"]


def test_unreachable_index_of_a_routed_transitive_dependency_fails_the_lock(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # a refused connection fails at once, not after uv's retries
    root = spec_with_index(
        tmp_path / "p", infer='"onnxruntime"', url="http://127.0.0.1:9/simple", packages='"flatbuffers"'
    )
    result = cli("-C", root, "lock")
    assert result.code == 1, result.out
    assert "cpu-infer: index 'private' is unreachable (http://127.0.0.1:9/simple/flatbuffers/)" in result.err
    assert "Traceback" not in result.err
    assert snapshot(root) == {}


def test_routed_pin_whose_hashes_its_index_does_not_serve_fails_the_lock(tmp_path: Path, cli) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original = make_wheel(tmp_path / "a", "envbuild-private-pkg", "1.0.0")
    with serve_index([original]) as index:
        root = spec_with_index(
            tmp_path / "p", infer='"envbuild-private-pkg"', url=index.url, packages='"envbuild-private-pkg"'
        )
        assert cli("-C", root, "lock").code == 0
    before = snapshot(root)
    # The same name and version with one file more: what an index that shows the resolver
    # one file and everyone else another (or re-uploads a version under the lock) serves.
    other = shutil.copy(original, tmp_path / "b" / original.name)
    with zipfile.ZipFile(other, "a") as zf:
        zf.writestr("envbuild_private_pkg/extra.py", "")
    with serve_index([Path(other)], to_uv=[original]) as index:
        spec = root / "envbuild.toml"
        spec.write_text(spec.read_text().replace(spec.read_text().split('url = "')[1].split('"')[0], index.url))
        result = cli("-C", root, "lock")
    assert result.code == 1, result.err
    assert (
        f"cpu-infer: envbuild-private-pkg==1.0.0 is routed to index 'private' ({index.url}), "
        f"but that index serves no file with the locked hash {sha256(original)}"
    ) in result.err
    assert snapshot(root) == before


def test_fetch_uses_the_index_credentials_lock_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, "envbuild-private-pkg", "1.0.0")
    lockfile = tmp_path / "cpu-infer.txt"
    lockfile.write_text(f"envbuild-private-pkg==1.0.0 \\\n    --hash={sha256(wheel)}\n")
    home = tmp_path / "home"  # no ~/.netrc: the credentials can only come from the environment
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NETRC", raising=False)
    cache = tmp_path / "cache"
    with serve_index([wheel], username="ci-bot", password=PASSWORD) as index:
        routed = Index(
            name="private-Repo",
            url=index.url,
            packages=("envbuild-private-pkg",),
            accelerators=("cpu",),
            exclude_newer=False,
        )

        def fetch() -> list:
            return fetch_lockfile(
                lockfile,
                cache=cache,
                python="3.11",
                platform="linux/amd64",
                glibc="2.28",
                index_url=None,
                indexes=(routed,),
            )

        with pytest.raises(EnvbuildError, match="answered HTTP 401") as denied:
            fetch()
        monkeypatch.setenv("UV_INDEX_PRIVATE_REPO_USERNAME", "ci-bot")
        monkeypatch.setenv("UV_INDEX_PRIVATE_REPO_PASSWORD", PASSWORD)
        fetched = fetch()
    assert "UV_INDEX_PRIVATE_REPO_PASSWORD" in (denied.value.hint or "")  # the 401 says how to log in
    assert [w.sha256 for w in fetched] == [sha256(wheel).split(":")[1]]
    assert fetched[0].path.read_bytes() == wheel.read_bytes()
    assert fetched[0].url == f"{index.url.removesuffix('/simple')}/files/{wheel.name}"
    written = [p.read_bytes() for p in cache.rglob("*") if p.is_file()]
    record = json.dumps([w.to_json() for w in fetched])
    assert PASSWORD not in record + str(denied.value) + (denied.value.hint or "")
    assert not any(PASSWORD.encode() in b for b in written)


def test_pip_tools_still_refuses_routing(tmp_path: Path, cli) -> None:
    root = spec_with_index(
        tmp_path / "p", infer='"onnxruntime"', url="http://127.0.0.1:9/simple", packages='"flatbuffers"'
    )
    result = cli("-C", root, "lock", "--resolver", "pip-tools")
    assert result.code == 2
    assert "pip-tools cannot route packages to one index" in result.err and "--resolver uv" in result.err
    assert snapshot(root) == {}

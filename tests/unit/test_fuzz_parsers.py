"""Fuzzing the parsers: whatever the bytes, envbuild answers with its own error, never a traceback.

Each parser that reads something a user or a registry hands envbuild gets hostile input
two ways: structure-aware (a valid document with a few values replaced, keys removed
or added — which reaches the checks deep inside) and as raw bytes (flipped, cut,
inserted — which reaches the decoders). The only exception allowed out is
:class:`envbuild.errors.EnvbuildError`; anything else fails the test with the input
hypothesis shrank it to. Runs are derandomized, so CI sees the same inputs every time;
ENVBUILD_FUZZ_EXAMPLES=5000 hunts longer.

Parsers: the spec (envbuild.toml, and [tool.envbuild] with [project] and
[dependency-groups] in pyproject.toml), the lock metadata and lockfiles (then the
offline staleness check and rendering that read them), an OCI layout's index.json
and manifest, a registry's referrers answers (the OCI 1.1 API, the tag-schema
fallback index and the tag list, served by a lying registry on 127.0.0.1), signed
bundles and the statements inside them, and verify's policy file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envbuild.errors import EnvbuildError
from envbuild.image.checks.elf import read_elf
from envbuild.image.render import render
from envbuild.lock.lockfile import read_lockset
from envbuild.lock.resolvers.base import parse_requirements
from envbuild.lock.spec import load_spec
from envbuild.lock.staleness import check
from envbuild.lock.variants import select
from envbuild.oci.layout import Layout, children
from envbuild.oci.ref import Digest
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.referrers import fallback_tag, list_referrers
from envbuild.supply.policy import Policy, TrustedKey, load_policy
from envbuild.supply.signing.bundle import bundle_json, key_bundle
from envbuild.supply.signing.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from envbuild.supply.signing.keys import generate_keypair, load_private_key, public_pem
from envbuild.supply.verify import check_bundle
from support.elf import make_elf
from support.paths import ASSETS

RENDER_PROJECT = ASSETS / "render-project"
SUBJECT = Digest.parse("sha256:" + "ab" * 32)

FUZZ = settings(
    max_examples=int(os.environ.get("ENVBUILD_FUZZ_EXAMPLES", "150")),  # more for a longer hunt
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # each example makes its own directory under the fixture's
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Strings that mean something to some parser: paths, versions, dates, URLs, names, and plain trouble.
TRICKY = [
    "", ".", "..", "/", "../x", "/etc/shadow", "a/../../b", "numpy", "numpy>=", "numpy==1.0 ; python_version<'3'",
    "3.11", "3", "3.99", "12", "13", "linux/amd64", "linux/arm64", "windows/amd64", "cpu", "gpu", "train", "infer",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-11-01T00:00:00Z", "2026-13-45", "1 day",
    "https://example.invalid/simple", "http://u:p@example.invalid/simple", "file:///etc", "bookworm", "sid",
    "sha256:" + "0" * 64, "sha256:xyz", "a\nUSER 0:0", 'a"b', "a\\", "$(id)", "${HOME}", "\x00", "é", "x" * 300,
]  # fmt: skip
KEYS = [
    "name", "project", "python", "platforms", "glibc", "exclude-newer", "index-url", "dependencies", "roles",
    "accelerators", "indexes", "image", "train", "infer", "cpu", "gpu", "groups", "entrypoint", "cuda", "replace",
    "base", "debian", "packages", "image", "layout", "url", "exclude-newer", "files", "workdir", "user", "env",
    "signers", "require", "builder", "source-repository", "key", "identity", "issuer", "schemaVersion",
    "mediaType", "manifests", "config", "layers", "digest", "size", "annotations", "artifactType", "tags",
]  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(TRICKY),
    st.text(max_size=12),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
toml_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(TRICKY), st.text(max_size=12)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


# -- building hostile documents ---------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def mutate(data: st.DataObject, doc: Any, values: st.SearchStrategy[Any]) -> Any:
    """``doc`` (a copy) with one to three edits: a value replaced, a key or item removed, or one added."""
    doc = _copy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(list(_paths(doc))), label="path")
        edit = data.draw(st.sampled_from(["replace", "remove", "add"]), label="edit") if path else "add"
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1] if path else None
        if edit == "replace" and path:
            parent[last] = data.draw(values, label="value")
        elif edit == "remove" and path:
            del parent[last]
        else:
            target = parent[last] if path else doc
            if isinstance(target, dict):
                target[data.draw(keys, label="key")] = data.draw(values, label="value")
            elif isinstance(target, list):
                target.append(data.draw(values, label="value"))
    return doc


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def mangle(data: st.DataObject, raw: bytes) -> bytes:
    """``raw`` with a few bytes flipped, cut or inserted."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="byte edits")):
        at = data.draw(st.integers(0, len(out)), label="at")
        edit = data.draw(st.sampled_from(["flip", "cut", "insert"]), label="byte edit")
        if edit == "flip" and at < len(out):
            out[at] = data.draw(st.integers(0, 255))
        elif edit == "cut":
            del out[at : at + data.draw(st.integers(1, 40))]
        else:
            out[at:at] = data.draw(st.sampled_from([b"\xff\xfe", b"\x00", b"[", b"{", b'"', b"\n[[x]]\n", b"]]"]))
    return bytes(out)


def toml_text(table: dict[str, Any]) -> str:
    """A TOML document of ``table``, every value written inline (any nesting, any types)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())


def _toml_key(key: Any) -> str:
    return json.dumps(str(key))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def only_envbuild_errors(call: Callable[[], object]) -> None:
    """Run ``call``; an EnvbuildError is an answer, any other exception fails the test."""
    try:
        call()
    except EnvbuildError as exc:
        assert exc.message.strip(), f"{type(exc).__name__} without a message"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """One directory for a test's examples (hypothesis and function fixtures do not mix)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield Path(tmp)


def fresh(scratch: Path, name: str = "p") -> Path:
    path = scratch / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


# -- the spec ---------------------------------------------------------------------------------

SPEC = tomllib.loads((RENDER_PROJECT / "envbuild.toml").read_text(encoding="utf-8"))
PYPROJECT = {
    "project": {"name": "fuzzed", "version": "1.0", "dependencies": ["numpy>=2"], "requires-python": ">=3.11"},
    "dependency-groups": {"train": ["scikit-learn>=1.5", {"include-group": "extra"}], "extra": ["joblib"]},
    "tool": {
        "envbuild": {
            "name": "fuzzed",
            "project": ".",
            "python": "3.11",
            "exclude-newer": "2026-11-01T00:00:00Z",
            "roles": {"train": {"groups": ["train"]}, "infer": {}},
            "accelerators": {"cpu": {"base": {"debian": "bookworm", "packages": ["python3"]}}},
        }
    },
}


def _load_and_select(root: Path) -> None:
    spec = load_spec(root)
    select(spec, ())


def _project_files(root: Path) -> None:
    """The files the render project's spec copies into its images."""
    for name in ("fixture_app/__init__.py", "config/serve.toml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()


@FUZZ
@given(data=st.data())
def test_spec_fields(scratch: Path, data: st.DataObject) -> None:
    root = fresh(scratch)
    _project_files(root)
    (root / "envbuild.toml").write_text(toml_text(mutate(data, SPEC, toml_values)), encoding="utf-8")
    only_envbuild_errors(lambda: _load_and_select(root))


@FUZZ
@given(data=st.data())
def test_spec_in_pyproject_with_project_and_groups(scratch: Path, data: st.DataObject) -> None:
    root = fresh(scratch)
    (root / "pyproject.toml").write_text(toml_text(mutate(data, PYPROJECT, toml_values)), encoding="utf-8")
    only_envbuild_errors(lambda: _load_and_select(root))


@FUZZ
@given(data=st.data())
def test_spec_bytes(scratch: Path, data: st.DataObject) -> None:
    root = fresh(scratch)
    _project_files(root)
    (root / "envbuild.toml").write_bytes(mangle(data, (RENDER_PROJECT / "envbuild.toml").read_bytes()))
    only_envbuild_errors(lambda: _load_and_select(root))


# -- the lock ---------------------------------------------------------------------------------

LOCK_META = json.loads((RENDER_PROJECT / "lockfiles" / "envbuild.lock.json").read_text(encoding="utf-8"))


def _locked_project(scratch: Path) -> Path:
    root = fresh(scratch)
    shutil.copytree(RENDER_PROJECT, root, dirs_exist_ok=True)
    _project_files(root)
    return root


def _check_and_render(root: Path) -> None:
    spec = load_spec(root)
    lockset = read_lockset(root)
    check(spec)
    render(spec, lockset)


@FUZZ
@given(data=st.data())
def test_lock_metadata(scratch: Path, data: st.DataObject) -> None:
    root = _locked_project(scratch)
    meta = root / "lockfiles" / "envbuild.lock.json"
    if data.draw(st.booleans(), label="raw bytes"):
        meta.write_bytes(mangle(data, meta.read_bytes()))
    else:
        meta.write_text(json.dumps(mutate(data, LOCK_META, json_values)), encoding="utf-8")
    only_envbuild_errors(lambda: _check_and_render(root))


@FUZZ
@given(data=st.data())
def test_lockfile_text(scratch: Path, data: st.DataObject) -> None:
    root = _locked_project(scratch)
    lockfile = root / "lockfiles" / data.draw(st.sampled_from(["cpu-infer.txt", "gpu-train.txt", "tools.txt"]))
    lockfile.write_bytes(mangle(data, lockfile.read_bytes()))
    only_envbuild_errors(lambda: _check_and_render(root))

    def parse() -> None:
        parse_requirements(lockfile.read_bytes().decode("utf-8", errors="replace"), source=lockfile.name)

    only_envbuild_errors(parse)


# -- an OCI layout ----------------------------------------------------------------------------


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(root: Path, manifest_doc: dict[str, Any] | None = None, index_doc: dict[str, Any] | None = None) -> Path:
    layout = Layout.create(root / "layout").path
    config = _blob(layout, b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
    layer = _blob(layout, b"\x1f\x8b" + b"\x00" * 30)
    manifest = manifest_doc or {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    top = _blob(layout, json.dumps(manifest).encode())
    index = index_doc or {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **top,
                "annotations": {"org.opencontainers.image.ref.name": "app"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return layout


def _walk_layout(path: Path) -> None:
    layout = Layout.open(path)
    top = layout.select()
    blobs, manifests = children(json.loads(layout.read_blob(top.digest)))
    for descriptor in (*blobs, *manifests):
        layout.read_blob(descriptor.digest)


VALID_LAYOUT = tempfile.mkdtemp(prefix="fuzz-layout-")
_valid = _layout(Path(VALID_LAYOUT))
INDEX_DOC = json.loads((_valid / "index.json").read_text())
MANIFEST_DOC = json.loads(Layout.open(_valid).read_blob(Layout.open(_valid).select().digest))
shutil.rmtree(VALID_LAYOUT)


@FUZZ
@given(data=st.data())
def test_layout_index_and_manifest(scratch: Path, data: st.DataObject) -> None:
    root = fresh(scratch)
    if data.draw(st.booleans(), label="mutate the manifest"):
        path = _layout(root, manifest_doc=mutate(data, MANIFEST_DOC, json_values))
    else:
        path = _layout(root, index_doc=mutate(data, INDEX_DOC, json_values))
    only_envbuild_errors(lambda: _walk_layout(path))


@FUZZ
@given(data=st.data())
def test_layout_index_bytes(scratch: Path, data: st.DataObject) -> None:
    path = _layout(fresh(scratch))
    (path / "index.json").write_bytes(mangle(data, (path / "index.json").read_bytes()))
    only_envbuild_errors(lambda: _walk_layout(path))


# -- a lying registry's referrers -------------------------------------------------------------


class LyingRegistry(ThreadingHTTPServer):
    """Answers the three requests referrers discovery makes with whatever the test sets."""

    daemon_threads = True
    referrers: tuple[int, str, bytes] = (404, "text/plain", b"")
    tags: tuple[int, bytes] = (200, b'{"tags":[]}')
    manifests: dict[str, bytes] = {}  # noqa: RUF012  (reset by each example)


class _Handler(BaseHTTPRequestHandler):
    server: LyingRegistry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v2/":
            self._send(200, "application/json", b"{}")
        elif "/referrers/" in path:
            self._send(*self.server.referrers)
        elif path.endswith("/tags/list"):
            self._send(self.server.tags[0], "application/json", self.server.tags[1])
        elif "/manifests/" in path:
            body = self.server.manifests.get(path.rsplit("/", 1)[1])
            if body is None:
                self._send(404, "application/json", b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            else:
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                self._send(200, "application/vnd.oci.image.index.v1+json", body, digest=digest)
        else:
            self._send(404, "application/json", b"{}")

    def _send(self, status: int, content_type: str, body: bytes, digest: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def liar() -> Iterator[LyingRegistry]:
    server = LyingRegistry(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


FALLBACK_INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "cd" * 32,
            "size": 512,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "annotations": {"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"},
        }
    ],
}


@FUZZ
@given(data=st.data())
def test_referrers_from_a_lying_registry(liar: LyingRegistry, data: st.DataObject) -> None:
    document = mutate(data, FALLBACK_INDEX, json_values)
    body = json.dumps(document).encode()
    if data.draw(st.booleans(), label="raw bytes"):
        body = mangle(data, body)
    where = data.draw(st.sampled_from(["api", "fallback", "backstop"]), label="where")
    liar.referrers = (200, "application/json", body) if where == "api" else (404, "text/plain", b"")
    tag_list = data.draw(st.sampled_from([b'{"tags":[]}', b"not json", b'{"tags":"x"}', b'{"tags":[1,null]}', b"[]"]))
    backstop = fallback_tag(SUBJECT) + "." + "cd" * 8
    liar.tags = (200, tag_list if where != "backstop" else json.dumps({"tags": [backstop]}).encode())
    liar.manifests = {fallback_tag(SUBJECT): body} if where == "fallback" else {backstop: body}
    client = RegistryClient(f"127.0.0.1:{liar.server_port}", RegistryOptions(insecure=True), credentials=False)
    only_envbuild_errors(lambda: list_referrers(client, "team/app", SUBJECT))


# -- signed bundles, and the statements inside them -------------------------------------------

PRIVATE = load_private_key(generate_keypair(None).private_pem, None)
TRUSTED = Policy(keys=(TrustedKey(source="fuzz.pub", public_key=PRIVATE.public_key()),))
STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "127.0.0.1/team/app", "digest": {"sha256": SUBJECT.hex}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {"buildType": "urn:envbuild:buildtype:image:v1", "externalParameters": {}},
        "runDetails": {"builder": {"id": "urn:envbuild:builder:buildah"}},
    },
}


def _signed(payload: bytes) -> bytes:
    envelope = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, PRIVATE)
    return bundle_json(key_bundle(envelope, PRIVATE.public_key()))


def _check(data: bytes) -> None:
    check_bundle(data, SUBJECT, TRUSTED)


@FUZZ
@given(data=st.data())
def test_signed_statements(data: st.DataObject) -> None:
    """A statement signed by a trusted key, with hostile content: the signer is trusted, the content is not."""
    statement = mutate(data, STATEMENT, json_values)
    only_envbuild_errors(lambda: _check(_signed(json.dumps(statement).encode())))


BUNDLE = _signed(json.dumps(STATEMENT).encode())  # once: ECDSA signatures differ each time, examples must not


@FUZZ
@given(data=st.data())
def test_bundle_bytes(data: st.DataObject) -> None:
    bundle = BUNDLE
    mangled = mangle(data, bundle) if data.draw(st.booleans()) else mutate(data, json.loads(bundle), json_values)
    only_envbuild_errors(lambda: _check(mangled if isinstance(mangled, bytes) else json.dumps(mangled).encode()))


# -- verify's policy file ---------------------------------------------------------------------

POLICY = {
    "signers": [{"key": "release.pub"}, {"identity": "https://github.com/o/r/.github/workflows/r.yml@refs/tags/v1",
                                         "issuer": "https://token.actions.githubusercontent.com"}],
    "require": ["signature", "sbom", "provenance"],
    "builder": "buildah",
    "source-repository": "https://github.com/o/r",
}  # fmt: skip


@FUZZ
@given(data=st.data())
def test_policy(scratch: Path, data: st.DataObject) -> None:
    root = fresh(scratch)
    (root / "release.pub").write_bytes(public_pem(PRIVATE.public_key()))
    policy = root / "policy.toml"
    if data.draw(st.booleans(), label="raw bytes"):
        policy.write_bytes(mangle(data, toml_text(POLICY).encode()))
    else:
        policy.write_text(toml_text(mutate(data, POLICY, toml_values)), encoding="utf-8")
    only_envbuild_errors(lambda: load_policy(policy))


# -- ELF files the image checks read (envbuild.image.checks.elf) -------------------------------------

ELF_FILE = make_elf(needed=("libc.so.6", "libstdc++.so.6"), soname="libx.so.1", runpath="$ORIGIN/../lib",
                    interpreter="/lib64/ld-linux-x86-64.so.2")  # fmt: skip


@FUZZ
@given(data=st.data())
def test_elf_bytes(data: st.DataObject) -> None:
    """Bytes cut, flipped or inserted, and header fields set to any value: None, an Elf or an ElfError."""
    raw = bytearray(mangle(data, ELF_FILE))
    for _ in range(data.draw(st.integers(0, 3), label="field edits")):
        at = data.draw(st.integers(0, 64 + 3 * 56), label="field at")
        width = data.draw(st.sampled_from([1, 2, 4, 8]), label="field width")
        value = data.draw(st.integers(0, 2 ** (8 * width) - 1), label="field value")
        raw[at : at + width] = value.to_bytes(width, "little")
    only_envbuild_errors(lambda: read_elf(io.BytesIO(bytes(raw)), name="fuzzed"))

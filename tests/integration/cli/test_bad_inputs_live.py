"""Bad inputs that need something live: a real registry, a lying registry, buildah, a real Ctrl-C.

The twin of tests/unit/cli/test_bad_inputs.py, with the same runner (support.badinputs): each row
must end in a clear refusal, never a traceback, the CLI's "internal error" path, or exit 0.
Responses a real registry cannot be made to give (a malformed referrers index, a tag list that
is not JSON) come from a tiny HTTP server on 127.0.0.1 that this file starts and stops.
"""

# ruff: noqa: E501 (the tables keep one case per line)
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from envbuild.image.builders.buildah import link_dir, pull_layout
from support.badinputs import ZERO_DIGEST, Case, clean_environment, run_case
from support.layouts import make_layout
from support.paths import REPO
from support.registry import Registry
from support.tools import require_tool

# -- buildah and $TMPDIR ----------------------------------------------------------------------


def test_buildah_pulls_a_base_whatever_tmpdir_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A $TMPDIR with upper case and a dot directory broke the pull of a layout base; envbuild picks a plain one."""
    buildah = require_tool("buildah")
    odd = tmp_path / "Users.Ann" / ".cache"
    odd.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(odd))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches $TMPDIR on first use
    made = make_layout(tmp_path / "base")
    storage = tmp_path / "storage"
    common = [buildah, "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs"]
    # What envbuild did before: a link under $TMPDIR, which buildah refuses as an image name.
    link = odd / "envbuild-base-old"
    link.symlink_to(made.path)
    before = subprocess.run([*common, "pull", "--quiet", f"oci:{link}:latest"], capture_output=True, text=True)
    assert before.returncode != 0 and "must be lowercase" in before.stderr
    assert not str(link_dir()).startswith(str(tmp_path))
    image_id = pull_layout(common, dict(os.environ), made.path, name="latest")
    listed = subprocess.run([*common, "images", "--quiet", "--no-trunc"], capture_output=True, text=True, check=True)
    assert image_id.removeprefix("sha256:")[:12] in listed.stdout


# -- the same runner against a real registry ---------------------------------------------------


@pytest.fixture(scope="module")
def pushed(shared_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An unsigned image in the shared registry: ``HOST/badinputs/app@sha256:...``."""
    from envbuild.oci.layout import Layout
    from envbuild.oci.ref import ImageRef
    from envbuild.registry.client import RegistryClient
    from envbuild.registry.options import RegistryOptions
    from envbuild.registry.transfer import push_layout

    made = make_layout(tmp_path_factory.mktemp("badinputs") / "lay")
    ref = ImageRef.parse(f"{shared_registry.host}/badinputs/app:v1")
    client = RegistryClient(ref.registry, RegistryOptions(insecure=True), credentials=False)
    push_layout(Layout.open(made.path), ref, client)
    return f"{shared_registry.host}/badinputs/app@{made.digest}"


def _keys(root: Path) -> None:
    from envbuild.supply.signing.keys import generate_keypair, write_keypair

    write_keypair(root, "envbuild", generate_keypair(None))


MISSING = "{reg}/badinputs/nothing-here"
C = Case
# fmt: off
REGISTRY_CASES: list[Case] = [
    C("tags-missing-repository", ("registry", "tags", "--insecure", MISSING), 2, ("no repository", "nothing-here")),
    C("resolve-missing-tag", ("registry", "resolve", "--insecure", "{reg}/badinputs/app:nope"), 2, ("nope",)),
    C("resolve-missing-repository", ("registry", "resolve", "--insecure", MISSING + ":v1"), 2, ("nothing-here",)),
    C("delete-missing-digest", ("registry", "delete", "--insecure", "{reg}/badinputs/app@" + ZERO_DIGEST), 2, ("sha256:0000",)),
    C("pull-missing-digest", ("pull", "--insecure", "{reg}/badinputs/app@" + ZERO_DIGEST, "-o", "out"), 2, ("sha256:0000",)),
    C("pull-output-is-a-file", ("pull", "--insecure", "{img}", "-o", "f/out"), 2, ("f/out",), {"f": "a file"}),
    C("verify-unsigned", ("verify", "--insecure", "{img}", "--key", "envbuild.pub"), 1, ("did not verify",), setup=_keys),
    C("verify-missing-image", ("verify", "--insecure", "{reg}/badinputs/app@" + ZERO_DIGEST, "--key", "envbuild.pub"), 1, ("did not verify",), setup=_keys),
    C("verify-plain-http-without-insecure", ("verify", "{img}", "--key", "envbuild.pub"), 1, ("{reg}",), setup=_keys),
    C("sign-missing-image", ("sign", "--insecure", "--key", "envbuild.key", "{reg}/badinputs/app@" + ZERO_DIGEST), 2, ("sha256:0000",), setup=_keys),
    C("attest-unbuilt-image", ("attest", "--insecure", "--key", "envbuild.key", "{img}"), 2, ("no local build",), setup=_keys),
    C("sbom-attach-unbuilt-image", ("sbom", "--insecure", "--attach", "{img}"), 2, ("no local build",)),
    C("rebuild-without-provenance", ("rebuild", "--insecure", "{img}", "--key", "envbuild.pub"), 1, ("provenance",), setup=_keys),
    C("vendor-without-provenance", ("vendor", "--insecure", "{img}", "-o", "a.tar", "--key", "envbuild.pub"), 1, ("provenance",), setup=_keys),
]
# fmt: on


@pytest.mark.registry
@pytest.mark.parametrize("case", REGISTRY_CASES, ids=[c.id for c in REGISTRY_CASES])
def test_bad_input_against_a_registry(
    case: Case,
    pushed: str,
    shared_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One bad input against a real registry: refused with the expected code and words, never a traceback."""
    clean_environment(monkeypatch, tmp_path / "home")
    run_case(case, tmp_path, monkeypatch, capsys, reg=shared_registry.host, img=pushed)


# -- a lying registry: answers a real one cannot be made to give --------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
CONFIG_DESCRIPTOR = {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "digest": CONFIG_DIGEST,
    "size": len(CONFIG),
}
MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG_DESCRIPTOR, "layers": []}
).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
FALLBACK_TAG = MANIFEST_DIGEST.replace(":", "-")
HTML_DIGEST = "sha256:" + hashlib.sha256(b"<html>").hexdigest()


class LyingRegistry:
    """A registry on 127.0.0.1 that serves one small image and, for the paths in ``lies``, the bytes given."""

    def __init__(self) -> None:
        self.lies: dict[str, tuple[int, str, bytes]] = {}
        lies = self.lies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self.do_GET(body=False)

            def do_GET(self, body: bool = True) -> None:
                path = self.path.split("?", 1)[0]
                if path in lies:
                    status, kind, data = lies[path]
                elif path == "/v2/":
                    status, kind, data = 200, "application/json", b"{}"
                elif path in (f"/v2/app/manifests/{MANIFEST_DIGEST}", "/v2/app/manifests/v1"):
                    status, kind, data = 200, OCI_MANIFEST, MANIFEST
                elif path == f"/v2/app/blobs/{CONFIG_DIGEST}":
                    status, kind, data = 200, "application/octet-stream", CONFIG
                else:
                    status, kind, data = 404, "application/json", b'{"errors":[{"code":"NOT_FOUND"}]}'
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                if status == 200 and "/manifests/" in path:
                    self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(data).hexdigest())
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fallback_index(self, body: bytes) -> None:
        """Serve ``body`` as the referrers fallback index of the image (the referrers API answers 404)."""
        self.lies[f"/v2/app/manifests/{FALLBACK_TAG}"] = (200, OCI_INDEX, body)


@pytest.fixture
def liar() -> Iterator[LyingRegistry]:
    """A lying registry, stopped when the test ends."""
    server = LyingRegistry()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


Lie = Callable[[LyingRegistry], None]
IMG = "{reg}/app@" + MANIFEST_DIGEST
VERIFY = ("verify", "--insecure", "--no-layers", IMG, "--key", "envbuild.pub")
# fmt: off
LIES: list[tuple[Case, Lie]] = [
    (C("verify-fallback-index-not-json", VERIFY, 1, ("did not verify", "not JSON"), setup=_keys), lambda r: r.fallback_index(b"<html>")),
    (C("verify-fallback-index-a-list", VERIFY, 1, ("did not verify",), setup=_keys), lambda r: r.fallback_index(b"[1, 2]")),
    (C("verify-fallback-manifests-a-string", VERIFY, 1, ("did not verify",), setup=_keys), lambda r: r.fallback_index(b'{"manifests": "x"}')),
    (C("verify-fallback-descriptor-broken", VERIFY, 1, ("did not verify",), setup=_keys), lambda r: r.fallback_index(b'{"manifests": [{"digest": 5}]}')),
    (C("verify-fallback-descriptor-bad-digest", VERIFY, 1, ("did not verify",), setup=_keys), lambda r: r.fallback_index(b'{"manifests": [{"mediaType": "x", "digest": "md5:1", "size": 1}]}')),
    (C("verify-tag-list-not-json", VERIFY, 1, ("did not verify", "not JSON"), setup=_keys), lambda r: r.lies.update({"/v2/app/tags/list": (200, "application/json", b"<html>")})),
    (C("verify-referrers-api-not-json", VERIFY, 1, ("did not verify", "not JSON"), setup=_keys), lambda r: r.lies.update({f"/v2/app/referrers/{MANIFEST_DIGEST}": (200, "application/json", b"{")})),
    (C("tags-not-json", ("registry", "tags", "--insecure", "{reg}/app"), 1, ("not JSON",)), lambda r: r.lies.update({"/v2/app/tags/list": (200, "application/json", b"<html>")})),
    (C("tags-not-strings", ("registry", "tags", "--insecure", "{reg}/app"), 1, ("not a list of strings",)), lambda r: r.lies.update({"/v2/app/tags/list": (200, "application/json", b'{"tags": [1, 2]}')})),
    (C("pull-manifest-not-json", ("pull", "--insecure", "{reg}/app@" + HTML_DIGEST, "-o", "out"), 1, ("not JSON",)), lambda r: r.lies.update({f"/v2/app/manifests/{HTML_DIGEST}": (200, OCI_MANIFEST, b"<html>")})),
]
# fmt: on


@pytest.mark.parametrize(("case", "lie"), LIES, ids=[case.id for case, _ in LIES])
def test_bad_answer_from_a_lying_registry(
    case: Case,
    lie: Lie,
    liar: LyingRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A malformed answer ends in a clear failure (exit 1), never a traceback and never a pass."""
    clean_environment(monkeypatch, tmp_path / "home")
    lie(liar)
    run_case(case, tmp_path, monkeypatch, capsys, reg=liar.host)


# -- a real Ctrl-C -------------------------------------------------------------------------------


# `python -m envbuild`, once the interpreter itself is up: a SIGINT before that is Python's to handle.
RUN_MODULE = "import runpy, sys; sys.stderr.write('ready\\n'); sys.stderr.flush(); runpy.run_module('envbuild', run_name='__main__')"


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.4])
def test_ctrl_c_at_start_up_exits_130_without_a_traceback(delay: float, tmp_path: Path) -> None:
    """SIGINT in the first half second (imports, option parsing, the command): exit 130 and one line."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "builder")}
    argv = ["-C", str(tmp_path), "verify", "127.0.0.1:9/a@" + ZERO_DIGEST, "--key", "/dev/stdin"]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_MODULE, *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stderr.readline() == b"ready\n"
    # --key /dev/stdin with stdin left open: if the imports are done first, the command waits there.
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert b"Traceback" not in err and len(err.strip().splitlines()) == 1, err

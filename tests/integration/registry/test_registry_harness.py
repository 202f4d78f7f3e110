"""The registry test harness itself, checked against the real docker-registry with skopeo and raw HTTP."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from http.client import HTTPResponse
from pathlib import Path

import pytest

from support.registry import Registry, run_registry
from support.tools import require_tool

# The registry fixtures; a no-op once tests/conftest.py provides them for every test.
pytest_plugins = ["support.registry_fixtures"]


def get(url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> HTTPResponse:
    """GET ``url``; an HTTP error status is returned as the response instead of raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        response: HTTPResponse = urllib.request.urlopen(request, timeout=5, context=context)
    except urllib.error.HTTPError as error:
        return error  # type: ignore[return-value]  # HTTPError is a response too
    return response


def skopeo(*args: str) -> str:
    """Run skopeo; fail the test with its stderr if it fails."""
    result = subprocess.run([require_tool("skopeo"), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OCI image layout (one one-file layer) made with umoci, tagged ``latest``."""
    umoci = require_tool("umoci")
    root = tmp_path_factory.mktemp("layout")
    image = root / "image"
    (root / "hello.txt").write_text("hello\n", encoding="utf-8")
    for argv in (
        ["init", "--layout", str(image)],
        ["new", "--image", f"{image}:latest"],
        ["insert", "--image", f"{image}:latest", str(root / "hello.txt"), "/hello.txt"],
    ):
        subprocess.run([umoci, *argv], check=True, capture_output=True)
    return image


def layout_digest(layout: Path) -> str:
    """The manifest digest of the ``latest`` tag in an OCI layout."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    return str(index["manifests"][0]["digest"])


def push(layout: Path, reference: str, *extra: str) -> None:
    """``skopeo copy`` the layout's ``latest`` to ``docker://reference``."""
    skopeo("copy", "--quiet", *extra, f"oci:{layout}:latest", f"docker://{reference}")


def inspect_digest(reference: str, *extra: str) -> str:
    """The manifest digest skopeo reads back from the registry."""
    return str(json.loads(skopeo("inspect", *extra, f"docker://{reference}"))["Digest"])


def test_plain_registry_answers_v2(registry: Registry) -> None:
    response = get(f"{registry.url}/v2/")
    assert response.status == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.url.startswith("http://127.0.0.1:")
    assert registry.log_file.is_file()


def test_auth_registry_wants_basic_credentials(auth_registry: Registry) -> None:
    url = f"{auth_registry.url}/v2/"
    anonymous = get(url)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = Registry(root=auth_registry.root, storage=auth_registry.storage, port=0, username="x", password="y")
    assert get(url, headers=wrong.auth_header()).status == 401
    assert get(url, headers=auth_registry.auth_header()).status == 200
    assert auth_registry.username == "envbuild-test"


def test_tls_registry_verifies_only_against_its_ca(tls_registry: Registry) -> None:
    assert tls_registry.url.startswith("https://")
    assert tls_registry.ca_file is not None and tls_registry.other_ca_file is not None
    assert get(f"{tls_registry.url}/v2/", context=tls_registry.ssl_context()).status == 200
    # The certificate names localhost too.
    localhost = f"https://localhost:{tls_registry.port}/v2/"
    assert get(localhost, context=tls_registry.ssl_context()).status == 200
    with pytest.raises(urllib.error.URLError) as excinfo:
        get(f"{tls_registry.url}/v2/", context=tls_registry.ssl_context(tls_registry.other_ca_file))
    assert isinstance(excinfo.value.reason, ssl.SSLCertVerificationError)


def test_push_and_inspect_plain(registry: Registry, layout: Path) -> None:
    push(layout, f"{registry.host}/test/img:v1", "--dest-tls-verify=false")
    assert inspect_digest(f"{registry.host}/test/img:v1", "--tls-verify=false") == layout_digest(layout)


def test_push_with_credentials(auth_registry: Registry, layout: Path) -> None:
    reference = f"{auth_registry.host}/test/img:v1"
    creds = f"{auth_registry.username}:{auth_registry.password}"
    push(layout, reference, "--dest-tls-verify=false", "--dest-creds", creds)
    assert inspect_digest(reference, "--tls-verify=false", "--creds", creds) == layout_digest(layout)


def test_push_over_verified_tls(tls_registry: Registry, layout: Path) -> None:
    assert tls_registry.ca_file is not None
    reference = f"{tls_registry.host}/test/img:v1"
    # TLS verification stays on: Go (skopeo) must accept the CA too, not only Python.
    push(layout, reference, "--dest-cert-dir", str(tls_registry.ca_file.parent))
    assert inspect_digest(reference, "--cert-dir", str(tls_registry.ca_file.parent)) == layout_digest(layout)


def test_kill_and_restart_keep_the_image(registry: Registry, layout: Path) -> None:
    reference = f"{registry.host}/test/img:v1"
    push(layout, reference, "--dest-tls-verify=false")
    host, storage = registry.host, registry.storage
    registry.kill()
    assert registry.proc is not None and registry.proc.returncode == -9
    with pytest.raises(urllib.error.URLError):
        get(f"{registry.url}/v2/")
    registry.restart()
    assert (registry.host, registry.storage) == (host, storage)
    assert inspect_digest(reference, "--tls-verify=false") == layout_digest(layout)


def test_processes_stop_and_env_overrides_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # REGISTRY_* variables override config.yml in the registry; the harness must not pass them on.
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", "127.0.0.1:1")
    with run_registry(tmp_path) as running:
        assert get(f"{running.url}/v2/").status == 200
        proc = running.proc
    assert proc is not None and proc.poll() is not None


def test_shared_storage_between_registries(tmp_path: Path, layout: Path) -> None:
    storage = tmp_path / "shared-storage"
    with run_registry(tmp_path, storage=storage) as first:
        push(layout, f"{first.host}/test/img:v1", "--dest-tls-verify=false")
    with run_registry(tmp_path, storage=storage) as second:
        assert inspect_digest(f"{second.host}/test/img:v1", "--tls-verify=false") == layout_digest(layout)

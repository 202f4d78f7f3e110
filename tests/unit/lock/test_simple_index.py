"""Index credentials: the variables uv reads, sent only to the index's own host."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from envbuild.lock.simple_index import credential_variables, index_auth
from envbuild.lock.spec import Index


def index(name: str, url: str = "https://pkgs.example.test/simple") -> Index:
    return Index(name=name, url=url, packages=("acme",), accelerators=("cpu",), exclude_newer=False)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [("private", "UV_INDEX_PRIVATE_"), ("pytorch-cu128", "UV_INDEX_PYTORCH_CU128_"), ("a.b_C", "UV_INDEX_A_B_C_")],
)
def test_credential_variables_are_uvs(name: str, prefix: str) -> None:
    assert credential_variables(index(name)) == (prefix + "USERNAME", prefix + "PASSWORD")


def test_index_credentials_reach_only_the_index_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("NETRC", raising=False)
    assert index_auth(index("private")) is None
    monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", "ci-bot")
    monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", "pw")
    auth = index_auth(index("private"))
    assert auth is not None

    def authorization(url: str) -> str | None:
        return auth(requests.Request("GET", url).prepare()).headers.get("Authorization")

    assert authorization("https://pkgs.example.test/files/acme-1.whl") == "Basic Y2ktYm90OnB3"
    assert authorization("https://pkgs.example.test:443/simple/acme/") == "Basic Y2ktYm90OnB3"
    assert authorization("https://files.example.test/acme-1.whl") is None  # files on another host
    assert authorization("http://pkgs.example.test/simple/acme/") is None  # nor over plain http
    assert authorization("https://pkgs.example.test:8443/simple/acme/") is None

"""The venv built on the host: the interpreter that compiles, uv's target platform, and what is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.image.hostvenv import build_venv, host_python, python_platform
from envbuild.image.record import BuildRecord
from support.records import record_json


def test_the_host_python_is_one_of_the_images_minor_version() -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = host_python(minor)
    assert found.version.startswith(f"{minor}.") and found.description == f"CPython {found.version}"


def test_no_python_of_that_minor_version_names_both_ways_out() -> None:
    with pytest.raises(UsageError) as caught:
        host_python("3.2")
    assert "CPython 3.2" in caught.value.message
    assert "python3.2" in (caught.value.hint or "") and 'venv = "builder"' in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("platform", "glibc", "expected"),
    [("linux/arm64", "2.28", "aarch64-manylinux_2_28"), ("linux/amd64", "2.17", "x86_64-manylinux_2_17")],
)
def test_uv_installs_for_the_target_platform(platform: str, glibc: str, expected: str) -> None:
    assert python_platform(platform, glibc) == expected


def test_a_missing_mount_point_is_named(tmp_path: Path) -> None:
    """The venv's parent must exist on the host: a scratch tmpfs is mounted over it in a namespace."""
    with pytest.raises(UsageError) as caught:
        build_venv(
            tmp_path / "out", venv="/nonexistent-envbuild-parent/venv", uv="uv", python=host_python(
                f"{sys.version_info[0]}.{sys.version_info[1]}"), platform="linux/arm64", glibc="2.28",
            lockfile=tmp_path / "lock.txt", wheels=tmp_path,
        )  # fmt: skip
    assert "/nonexistent-envbuild-parent" in caught.value.message or "root" in caught.value.message
    assert not (tmp_path / "out").exists()


def test_the_record_names_the_interpreter_that_compiled(tmp_path: Path) -> None:
    """It is part of the build key: another interpreter builds again; absent, the key is as before."""
    data = record_json(digest="sha256:" + "ab" * 32)
    plain = BuildRecord.from_json(data, source=tmp_path / "build.json")
    host = BuildRecord.from_json({**data, "venv_python": "CPython 3.11.7"}, source=tmp_path / "build.json")
    assert plain.venv_python is None and "venv_python" not in plain.to_json()
    assert host.venv_python == "CPython 3.11.7" and host.to_json()["venv_python"] == "CPython 3.11.7"
    assert host.key() != plain.key()
    assert BuildRecord.from_json(host.to_json(), source=tmp_path / "build.json") == host

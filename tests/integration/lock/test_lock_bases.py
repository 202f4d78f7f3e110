"""Base images at lock time: a registry tag is pinned to its digest, an OCI layout to its manifest's."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from envbuild.oci.layout import Layout
from envbuild.oci.ref import ImageRef
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.transfer import push_layout
from support.layouts import make_layout
from support.registry import Registry

pytestmark = [pytest.mark.network, pytest.mark.registry]


def spec_with_base(root: Path, base: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "envbuild.toml").write_text(
        textwrap.dedent(
            f"""
            python = "3.11"
            exclude-newer = "2026-11-01T00:00:00Z"
            [roles.infer]
            dependencies = ["packaging"]
            [accelerators.cpu]
            base = {base}
            """
        )
    )
    return root


def test_base_tag_is_pinned_to_its_digest(registry: Registry, tmp_path: Path, cli) -> None:
    layout = make_layout(tmp_path / "base", seed="base-v1")
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    pushed = push_layout(Layout.open(layout.path), ImageRef.parse(f"{registry.host}/bases/python:3.11"), client)
    root = spec_with_base(tmp_path / "p", f'{{ image = "{registry.host}/bases/python:3.11" }}')

    assert cli("-C", root, "lock", "--insecure").code == 0
    base = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())["bases"]["cpu"]
    assert base == {"kind": "image", "ref": f"{registry.host}/bases/python:3.11", "digest": str(pushed.digest)}

    # The tag moves: --check (offline) does not care, a relock keeps the pinned digest, --upgrade moves it.
    moved = make_layout(tmp_path / "base2", seed="base-v2")
    moved_digest = push_layout(
        Layout.open(moved.path), ImageRef.parse(f"{registry.host}/bases/python:3.11"), client
    ).digest
    assert cli("-C", root, "lock", "--check").code == 0
    assert cli("-C", root, "lock", "--insecure").code == 0
    assert json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())["bases"]["cpu"]["digest"] == str(
        pushed.digest
    )
    assert cli("-C", root, "lock", "--insecure", "--upgrade").code == 0
    assert json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())["bases"]["cpu"]["digest"] == str(
        moved_digest
    )
    registry.stop()
    assert cli("-C", root, "lock", "--check").code == 0


def test_unknown_base_tag_fails_clearly(registry: Registry, tmp_path: Path, cli) -> None:
    root = spec_with_base(tmp_path / "p", f'{{ image = "{registry.host}/bases/none:1" }}')
    result = cli("-C", root, "lock", "--insecure")
    assert result.code == 2  # the registry's 404: a name that points at nothing is bad input
    assert f"accelerators.cpu.base: cannot pin {registry.host}/bases/none:1 to a digest" in result.err
    assert not (root / "lockfiles").exists()


def test_oci_layout_base_records_its_digest_and_staleness(tmp_path: Path, cli) -> None:
    first = make_layout(tmp_path / "p" / "bases" / "one", seed="one")
    make_layout(tmp_path / "p" / "bases" / "two", seed="two")
    root = spec_with_base(tmp_path / "p", '{ oci-layout = "bases/one" }')
    assert cli("-C", root, "lock").code == 0
    base = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())["bases"]["cpu"]
    assert base == {"kind": "oci-layout", "path": "bases/one", "digest": first.digest}

    spec = root / "envbuild.toml"
    spec.write_text(spec.read_text().replace("bases/one", "bases/two"))
    result = cli("-C", root, "lock", "--check")
    assert result.code == 1
    assert "the cpu base changed: oci-layout bases/one -> oci-layout bases/two" in result.err


def test_oci_layout_base_whose_image_changed_is_stale(tmp_path: Path, cli) -> None:
    """Same path, another image in it: lock would pin the new digest, so --check says stale."""
    make_layout(tmp_path / "p" / "bases" / "one", seed="one")
    root = spec_with_base(tmp_path / "p", '{ oci-layout = "bases/one" }')
    assert cli("-C", root, "lock").code == 0
    assert cli("-C", root, "lock", "--check").code == 0

    replaced = make_layout(tmp_path / "other", seed="replaced")
    shutil.rmtree(root / "bases" / "one")
    shutil.copytree(replaced.path, root / "bases" / "one")
    result = cli("-C", root, "lock", "--check")
    assert result.code == 1
    assert f"the cpu base oci-layout bases/one is {replaced.digest}, locked as" in result.err
    assert cli("-C", root, "lock").code == 0
    assert json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())["bases"]["cpu"]["digest"] == (
        replaced.digest
    )
    assert cli("-C", root, "lock", "--check").code == 0

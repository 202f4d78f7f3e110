"""``envbuild rebuild`` and ``envbuild vendor`` on the real demo image: identical, or explained.

One module fixture builds the demo's cpu-infer image in a fresh repository, pushes it to a
registry on 127.0.0.1 with its signed SBOM and provenance, and every test then audits that
pushed image: rebuilt offline from its vendor archive it is identical; with one input changed
on purpose, the report names exactly that input and what it changed in the image. (A build on
another machine, under other conditions, is test_image.py's test_another_machine_builds_the_same_image.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.demo import built, cli_process
from support.registry import Registry

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.registry]

SECRETS = {"ENVBUILD_SIGNING_KEY_PASSWORD": "audit-key-password"}


@dataclass(frozen=True)
class Released:
    project: Path
    cache: Path
    keys: Path
    ref: str  # registry/repo@sha256:...
    digest: str


@pytest.fixture(scope="module")
def released(
    tmp_path_factory: pytest.TempPathFactory, demo_cache: Path, demo_image: tuple[Path, str], shared_registry: Registry
) -> Released:
    """The session's demo image, pushed with its signed SBOM and provenance (the build itself is shared)."""
    project, digest = demo_image
    keys = tmp_path_factory.mktemp("keys")
    assert cli_process(project, demo_cache, "keygen", "-o", str(keys), env=SECRETS).returncode == 0
    result = cli_process(
        project, demo_cache, "image", "--variant", "cpu-infer", "--push", f"{shared_registry.host}/audit/iris",
        "--insecure", "--sign", "--key", str(keys / "envbuild.key"), env=SECRETS,
    )  # fmt: skip
    assert built(result)["cpu-infer"]["digest"] == digest
    return Released(project, demo_cache, keys, f"{shared_registry.host}/audit/iris@{digest}", digest)


def clone(released: Released, where: Path) -> Path:
    """Another checkout of the project: a git clone in another directory."""
    subprocess.run(["git", "clone", "-q", str(released.project), str(where)], check=True)
    return where


def rebuild(checkout: Path, released: Released, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    key = ("--key", str(released.keys / "envbuild.pub"), "--insecure")
    return cli_process(checkout, released.cache, "rebuild", released.ref, *key, *args, **kwargs)  # type: ignore[arg-type]


def different(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The JSON report of a rebuild that differed (exit 1)."""
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] is False
    return dict(report)


def changed_entries(report: dict[str, object]) -> dict[str, dict[str, object]]:
    """Every changed, added or removed file of every layer, by path."""
    diff = report["diff"]
    assert isinstance(diff, dict)
    return {e["path"]: e for layer in diff["layers"] for e in layer.get("entries", [])}


def test_another_source_date_epoch_is_named(released: Released, tmp_path: Path) -> None:
    report = different(rebuild(clone(released, tmp_path / "c"), released, "--source-date-epoch", "1700000000"))
    assert [i["name"] for i in report["inputs"]] == ["source_date_epoch"]  # type: ignore[union-attr]
    entries = changed_entries(report)
    assert entries and all([a["name"] for a in e["attributes"]] == ["mtime"] for e in entries.values())
    diff = report["diff"]
    assert isinstance(diff, dict)
    assert {c["path"] for c in diff["config"]} >= {"created", "history[1].created"}


def test_a_changed_project_file_is_named(released: Released, tmp_path: Path) -> None:
    checkout = clone(released, tmp_path / "c")
    predict = checkout / "demo" / "iris_demo" / "predict.py"
    predict.write_text(predict.read_text() + "# audit: one line more\n")
    report = different(rebuild(checkout, released, "--worktree", "--report", str(tmp_path / "report.html")))

    assert [i["name"] for i in report["inputs"]] == ["files"]  # type: ignore[union-attr]
    entries = changed_entries(report)
    changed = entries["/app/iris_demo/predict.py"]
    assert {a["name"] for a in changed["attributes"]} == {"sha256", "size"}  # type: ignore[union-attr]
    assert any("+# audit: one line more" in line for line in changed["text_diff"])  # type: ignore[union-attr]
    assert all("predict" in path for path in entries), sorted(entries)  # the file (and its bytecode), nothing else
    page = (tmp_path / "report.html").read_text()
    assert "DIFFERENT" in page and "/app/iris_demo/predict.py" in page


def test_a_replaced_wheel_is_named(released: Released, tmp_path: Path) -> None:
    checkout = clone(released, tmp_path / "c")
    lockfile = checkout / "lockfiles" / "cpu-infer.txt"
    older = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "compile", "-", "--generate-hashes", "--no-header", "--no-annotate",
         "--python-version", "3.11", "--quiet"],
        input="packaging==25.0\n", capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    text = lockfile.read_text()
    start = text.index("packaging==26.3")
    end = text.index("    # via onnxruntime", start)
    lockfile.write_text(text[:start] + older + "\n" + text[end:])

    report = different(rebuild(checkout, released, "--worktree"))
    inputs = {i["name"]: i for i in report["inputs"]}  # type: ignore[union-attr]
    assert inputs["wheel removed"]["recorded"] == "packaging-26.3-py3-none-any.whl"
    assert inputs["wheel added"]["rebuilt"] == "packaging-25.0-py3-none-any.whl"
    assert "lockfile" in inputs and not {"spec", "files", "base", "source_date_epoch"} & inputs.keys()
    entries = changed_entries(report)
    assert any("packaging-26.3.dist-info" in p and e["change"] == "removed" for p, e in entries.items())
    assert any("packaging-25.0.dist-info" in p and e["change"] == "added" for p, e in entries.items())


def test_vendor_then_rebuild_offline(released: Released, tmp_path: Path) -> None:
    archive = tmp_path / "iris.vendor.tar"
    key = ("--key", str(released.keys / "envbuild.pub"), "--insecure")
    made = cli_process(released.project, released.cache, "vendor", released.ref, "-o", str(archive), *key)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["bytes"] == archive.stat().st_size

    empty_cache = tmp_path / "no-cache"
    empty_cache.mkdir()
    result = cli_process(
        tmp_path, empty_cache, "rebuild", released.ref, "--from", str(archive), *key, prefix=("unshare", "-n", "--")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] is True and report["rebuilt"] == released.digest
    assert report["inputs"] == [] and report["diff"] is None
    assert list(empty_cache.iterdir()) == []  # nothing came from (or went to) the machine's cache


def test_provenance_that_does_not_verify_is_refused(released: Released, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert cli_process(released.project, released.cache, "keygen", "-o", str(other), "--no-password").returncode == 0
    result = cli_process(
        released.project, released.cache, "rebuild", released.ref, "--key", str(other / "envbuild.pub"), "--insecure"
    )
    assert result.returncode == 1
    assert "does not verify" in result.stderr and "signed by another key" in result.stderr
    assert "building" not in result.stderr and "Traceback" not in result.stderr

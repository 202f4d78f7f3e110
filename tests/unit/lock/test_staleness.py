"""The offline staleness check (lock/staleness.py) on a copy of the demo's committed lock: what makes it stale."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.lock.spec import load_spec
from envbuild.lock.staleness import Staleness, check
from support.paths import REPO


@pytest.fixture
def locked(demo: Path) -> Path:
    """The demo project with its committed lock: current, as CI's 'envbuild lock --check' says."""
    shutil.copytree(REPO / "lockfiles", demo / "lockfiles")
    return demo


def reasons(stale: tuple[Staleness, ...]) -> dict[str, tuple[str, ...]]:
    return {s.target: s.reasons for s in stale}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_committed_lock_is_current(locked: Path) -> None:
    assert check(load_spec(locked)) == ()


def test_a_project_never_locked_is_stale_in_every_target(demo: Path) -> None:
    got = reasons(check(load_spec(demo)))
    assert got == {name: ("never locked",) for name in ("cpu-train", "cpu-infer", "gpu-train", "gpu-infer")}


def test_an_edited_lockfile_is_named_and_nothing_else(locked: Path) -> None:
    with (locked / "lockfiles" / "cpu-infer.txt").open("a", encoding="utf-8") as f:
        f.write("# a hand edit\n")
    assert reasons(check(load_spec(locked))) == {
        "cpu-infer": ("lockfiles/cpu-infer.txt was edited since it was locked",)
    }


def test_a_missing_lockfile_is_named(locked: Path) -> None:
    (locked / "lockfiles" / "gpu-train.txt").unlink()
    assert reasons(check(load_spec(locked))) == {"gpu-train": ("lockfiles/gpu-train.txt is missing",)}


def test_a_changed_requirement_makes_every_target_that_takes_it_stale(locked: Path) -> None:
    edit(locked / "demo" / "pyproject.toml", '"onnxruntime>=1.20",', '"onnxruntime>=1.20",\n    "rich>=13",')
    got = reasons(check(load_spec(locked)))
    assert set(got) == {"cpu-train", "cpu-infer", "gpu-train", "gpu-infer"}
    assert got["cpu-infer"] == ("requirement added: rich>=13",)


def test_a_train_only_change_leaves_infer_current(locked: Path) -> None:
    edit(locked / "demo" / "pyproject.toml", '"skl2onnx>=1.17",', '"skl2onnx>=1.17",\n    "rich>=13",')
    assert reasons(check(load_spec(locked))) == {
        "cpu-train": ("requirement added: rich>=13",),
        "gpu-train": ("requirement added: rich>=13",),
    }


def test_a_changed_cutoff_is_said_with_both_values(locked: Path) -> None:
    edit(locked / "envbuild.toml", 'exclude-newer = "2026-11-01T00:00:00Z"', 'exclude-newer = "2026-10-01T00:00:00Z"')
    got = reasons(check(load_spec(locked)))
    assert got["cpu-infer"] == ('exclude-newer changed: "2026-11-01T00:00:00Z" -> "2026-10-01T00:00:00Z"',)
    assert "tools" not in got  # the tools lock takes no cutoff


def test_a_changed_base_makes_that_accelerators_targets_stale(locked: Path) -> None:
    gpu_base = '"libstdc++6", "libgomp1"] }\n\n[image]'  # the second base in envbuild.toml: the GPU's
    edit(locked / "envbuild.toml", gpu_base, gpu_base.replace('"libgomp1"', '"libgomp1", "curl"'))
    got = reasons(check(load_spec(locked)))
    assert set(got) == {"gpu-train", "gpu-infer"}
    (reason,) = got["gpu-infer"]
    assert reason.startswith("the gpu base changed: debian bookworm [ca-certificates, libgomp1, libstdc++6, python3]")
    assert reason.endswith("-> debian bookworm [ca-certificates, curl, libgomp1, libstdc++6, python3]")


def test_an_edited_tools_lock_is_stale(locked: Path) -> None:
    edit(locked / "lockfiles" / "tools.txt", "uv==", "uv ==")
    assert reasons(check(load_spec(locked))) == {"tools": ("lockfiles/tools.txt was edited since it was locked",)}


def test_a_tools_lock_for_another_uv_is_stale(locked: Path) -> None:
    meta = locked / "lockfiles" / "envbuild.lock.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    data["tools"]["tools"]["inputs"]["requirements"] = ["uv==0.0.1"]
    meta.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    got = reasons(check(load_spec(locked)))
    assert list(got) == ["tools"]
    assert "requirement removed: uv==0.0.1" in got["tools"]


def test_metadata_another_envbuild_wrote_would_be_written_anew(locked: Path) -> None:
    edit(locked / "lockfiles" / "envbuild.lock.json", '"envbuild": "0.1.0"', '"envbuild": "0.0.9"')
    assert reasons(check(load_spec(locked))) == {
        "lockfiles/envbuild.lock.json": (
            "would be written anew: its envbuild not as this envbuild writes it (another envbuild, or a hand edit)",
        )
    }


def test_the_image_build_loads_the_staleness_check_not_the_resolver() -> None:
    # The build only asks whether the lock is current; resolving (threads, scratch dirs, uv runs) is lock's.
    code = "import sys, envbuild.image.build; print(sorted(m for m in sys.modules if m.startswith('envbuild.lock.')))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "'envbuild.lock.staleness'" in loaded
    assert "'envbuild.lock.resolve'" not in loaded


def test_a_base_that_reads_the_same_says_what_really_changed(locked: Path) -> None:
    """A Debian recipe digest edited in the lock: not "debian bookworm [...] -> debian bookworm [...]"."""
    meta = locked / "lockfiles" / "envbuild.lock.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    real = data["bases"]["gpu"]["recipe-sha256"]
    data["bases"]["gpu"]["recipe-sha256"] = "0" * 64
    meta.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (reason,) = reasons(check(load_spec(locked)))["gpu-infer"]
    assert reason.startswith("the gpu base debian bookworm [")
    assert reason.endswith(f"is not the locked one: recipe-sha256 {'0' * 64} -> {real}")
    before, _, after = reason.partition(" -> ")
    assert before != after


def test_long_values_that_begin_alike_are_shown_where_they_differ() -> None:
    from envbuild.lock.staleness import _changed

    old, new = ["x" * 200 + "a"], ["x" * 200 + "b"]
    shown = _changed(old, new)
    left, right = shown.split(" -> ")
    assert left != right and left.startswith("...x") and left.endswith('a" ]') and right.endswith('b" ]')
    assert _changed("2026-11-01", "2026-10-01") == '"2026-11-01" -> "2026-10-01"'

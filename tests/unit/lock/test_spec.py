"""Unit tests for the spec parser (envbuild.lock.spec): valid specs, cutoff normalisation, bad input."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from envbuild.errors import SpecError, UsageError
from envbuild.lock.spec import Base, Index, load_spec
from support.paths import REPO

# A project whose pyproject.toml the specs below reuse.
PROJECT = """
[project]
name = "iris-demo"
version = "1.0.0"
requires-python = ">=3.11"
dependencies = ["numpy>=2.0", "onnxruntime>=1.20"]

[dependency-groups]
train = ["scikit-learn>=1.5", "skl2onnx>=1.17"]
inference = ["fastapi>=0.110", { include-group = "train" }]
"""

# Pieces of a minimal valid envbuild.toml, combined by the bad-input cases.
HEAD = """
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
dependencies = ["numpy>=2.0", "onnxruntime>=1.20"]
"""
ROLE = """
[roles.infer]
entrypoint = ["python", "-m", "app"]
"""
CPU = """
[accelerators.cpu]
base = { debian = "bookworm", packages = ["python3"] }
"""
GPU = """
[accelerators.gpu]
cuda = "12"
base = { debian = "bookworm" }
"""
VALID = HEAD + ROLE + CPU


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> TOML text) under ``root``; return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------
# Valid specs


def test_envbuild_toml_reuses_project_and_groups(tmp_path: Path) -> None:
    """envbuild.toml with `project = "proj"` reads proj/pyproject.toml's deps and groups."""
    write(
        tmp_path,
        {
            "proj/pyproject.toml": PROJECT,
            "envbuild.toml": """
            project = "proj"
            python = "3.11"
            platforms = ["linux/amd64", "linux/arm64"]
            exclude-newer = "2026-11-01"
            index-url = "https://mirror.example/simple"
            dependencies = ["requests>=2.32"]

            [roles.train]
            groups = ["train"]
            entrypoint = ["python", "-m", "iris_demo.train"]

            [roles.infer]
            groups = ["inference"]
            entrypoint = ["python", "-m", "iris_demo.predict"]

            [accelerators.cpu]
            base = { debian = "bookworm", packages = ["python3", "ca-certificates"] }

            [accelerators.gpu]
            cuda = "12.8"
            replace = { OnnxRuntime = "onnxruntime-gpu[cuda,cudnn]" }
            base = { image = "nvcr.example/cuda:12.8.0-runtime" }

            [[indexes]]
            name = "pytorch-cu128"
            url = "https://download.example/whl/cu128"
            packages = ["Torch"]
            accelerators = ["gpu"]
            exclude-newer = false

            [image]
            files = ["proj/src"]
            workdir = "/srv"
            user = "model"
            env = { B = "2", A = "1" }
            """,
        },
    )
    spec = load_spec(tmp_path)

    assert spec.file == tmp_path.resolve() / "envbuild.toml"
    assert spec.root == tmp_path.resolve()
    assert spec.digest == hashlib.sha256(spec.file.read_bytes()).hexdigest()
    assert spec.name == "iris-demo"  # from [project].name
    assert spec.python == "3.11"
    assert spec.platforms == ("linux/amd64", "linux/arm64")
    assert spec.glibc == "2.28"
    assert spec.exclude_newer == "2026-11-01T00:00:00Z"
    assert spec.index_url == "https://mirror.example/simple"
    # [project].dependencies first, then the spec's own.
    assert spec.dependencies == ("numpy>=2.0", "onnxruntime>=1.20", "requests>=2.32")
    assert [r.name for r in spec.roles] == ["train", "infer"]
    assert spec.role("train").dependencies == ("scikit-learn>=1.5", "skl2onnx>=1.17")
    # {include-group = ...} entries are skipped, plain strings kept.
    assert spec.role("infer").dependencies == ("fastapi>=0.110",)
    assert spec.role("infer").entrypoint == ("python", "-m", "iris_demo.predict")
    cpu, gpu = spec.accelerators
    assert cpu.name == "cpu" and cpu.cuda is None and cpu.replace == ()
    assert cpu.base == Base(debian="bookworm", packages=("python3", "ca-certificates"))
    assert cpu.base.kind == "debian"
    assert gpu.cuda == "12.8"
    assert gpu.replace == (("onnxruntime", "onnxruntime-gpu[cuda,cudnn]"),)
    assert gpu.base.kind == "image" and gpu.base.image == "nvcr.example/cuda:12.8.0-runtime"
    assert spec.indexes == (
        Index(
            name="pytorch-cu128",
            url="https://download.example/whl/cu128",
            packages=("torch",),
            accelerators=("gpu",),
            exclude_newer=False,
        ),
    )
    assert spec.image.files == ("proj/src",)
    assert spec.image.workdir == "/srv"
    assert spec.image.user == "model"
    assert spec.image.env == (("A", "1"), ("B", "2"))


def test_pyproject_tool_envbuild_form(tmp_path: Path) -> None:
    """[tool.envbuild] in pyproject.toml reuses the same file's [project] and groups."""
    write(
        tmp_path,
        {
            "pyproject.toml": PROJECT
            + """
[tool.envbuild]
python = "3.13"
exclude-newer = "2026-11-01T00:00:00Z"

[tool.envbuild.roles.train]
groups = ["train"]

[tool.envbuild.accelerators.cpu]
base = { debian = "trixie" }
""",
        },
    )
    spec = load_spec(tmp_path)

    assert spec.file == tmp_path.resolve() / "pyproject.toml"
    assert spec.name == "iris-demo"
    assert spec.python == "3.13"
    assert spec.platforms == ("linux/amd64",)  # the default
    assert spec.dependencies == ("numpy>=2.0", "onnxruntime>=1.20")
    assert [r.name for r in spec.roles] == ["train"]
    assert spec.role("train").dependencies == ("scikit-learn>=1.5", "skl2onnx>=1.17")
    assert spec.role("train").entrypoint == ()
    assert [a.name for a in spec.accelerators] == ["cpu"]
    assert spec.accelerator("cpu").base.debian == "trixie"
    assert spec.image.workdir == "/app" and spec.image.user == "app"  # defaults


def test_sibling_pyproject_is_reused_without_project_key(tmp_path: Path) -> None:
    """Without `project`, envbuild.toml reuses the pyproject.toml beside it."""
    write(tmp_path, {"pyproject.toml": PROJECT, "envbuild.toml": VALID})
    spec = load_spec(tmp_path)
    assert spec.name == "iris-demo"
    # [project].dependencies, then the spec's own (the same two again, kept as written).
    assert spec.dependencies[:2] == ("numpy>=2.0", "onnxruntime>=1.20")
    assert len(spec.dependencies) == 4


def test_name_falls_back_to_directory(tmp_path: Path) -> None:
    """With no name and no pyproject.toml, the directory names the image."""
    root = tmp_path / "my-model"
    write(root, {"envbuild.toml": VALID})
    assert load_spec(root).name == "my-model"


def test_shipped_example_spec_loads() -> None:
    """The repository's own envbuild.toml (the demo) is a valid spec."""
    spec = load_spec(REPO)
    assert spec.file.name == "envbuild.toml"
    assert spec.exclude_newer.endswith("Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"2026-11-01"', "2026-11-01T00:00:00Z", id="date-only"),
        pytest.param('"2026-11-01T00:00:00Z"', "2026-11-01T00:00:00Z", id="utc"),
        pytest.param('"2026-11-01T12:30:00+02:00"', "2026-11-01T10:30:00Z", id="plus-offset"),
        pytest.param('"2026-11-01T00:30:00+02:00"', "2026-10-31T22:30:00Z", id="offset-day"),
        pytest.param('"2026-11-01T19:00:00-05:00"', "2026-11-02T00:00:00Z", id="minus-offset"),
        pytest.param("2026-11-01T12:00:00Z", "2026-11-01T12:00:00Z", id="toml-literal-utc"),
        pytest.param("2026-11-01T12:00:00+02:00", "2026-11-01T10:00:00Z", id="toml-literal-off"),
    ],
)
def test_exclude_newer_normalised_to_utc(tmp_path: Path, value: str, expected: str) -> None:
    """Every accepted cutoff becomes RFC 3339 UTC with a Z."""
    head = HEAD.replace('"2026-11-01T00:00:00Z"', value)
    write(tmp_path, {"envbuild.toml": head + ROLE + CPU})
    assert load_spec(tmp_path).exclude_newer == expected


# ---------------------------------------------------------------------------
# Bad input: every case names the file, the key, the problem and the fix.

GROUPS_PROJECT = '[project]\nname = "p"\n[dependency-groups]\ntrain = ["scikit-learn"]\n'
TOOL_ENVBUILD = """
[tool.envbuild]
python = "3.11"
"""

BAD = [
    # (files, file named in the message, dotted key or None, problem fragment, hint fragment)
    pytest.param({}, ".", None, "no envbuild spec", "envbuild init", id="no-spec"),
    pytest.param(
        {"envbuild.toml": 'python = "3.11\n'},
        "envbuild.toml",
        None,
        "not valid TOML",
        "fix the syntax",
        id="toml-syntax",
    ),
    pytest.param(
        {"envbuild.toml": HEAD.replace("exclude-newer", "exclude_newer") + ROLE + CPU},
        "envbuild.toml",
        "exclude_newer",
        "unknown key",
        "did you mean 'exclude-newer'",
        id="unknown-top-key-typo",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + 'index_url = "https://mirror.example/simple"\n' + ROLE + CPU},
        "envbuild.toml",
        "index_url",
        "unknown key",
        "did you mean 'index-url'",
        id="unknown-top-key",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + ROLE.replace("entrypoint", "entrypoints") + CPU},
        "envbuild.toml",
        "roles.infer.entrypoints",
        "unknown key",
        "did you mean 'entrypoint'",
        id="unknown-nested-key",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + ROLE + "[roles.serve]\n" + CPU},
        "envbuild.toml",
        "roles.serve",
        "unknown key",
        "valid keys here: train, infer",
        id="unknown-role",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('python = "3.11"', "")},
        "envbuild.toml",
        "python",
        "missing",
        'python = "3.11"',
        id="missing-python",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('python = "3.11"', 'python = "3"')},
        "envbuild.toml",
        "python",
        "'3' is not a Python version",
        'python = "3.11"',
        id="bad-python",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + 'platforms = ["linux/s390x"]\n' + ROLE + CPU},
        "envbuild.toml",
        "platforms",
        "unsupported platform 'linux/s390x'",
        "linux/amd64, linux/arm64",
        id="bad-platform",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('exclude-newer = "2026-11-01T00:00:00Z"', "")},
        "envbuild.toml",
        "exclude-newer",
        "missing: a lock needs an absolute resolution cutoff",
        'exclude-newer = "2026-11-01T00:00:00Z"',
        id="missing-cutoff",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('"2026-11-01T00:00:00Z"', '"7 days"')},
        "envbuild.toml",
        "exclude-newer",
        "relative spans are not reproducible",
        "absolute UTC time",
        id="relative-cutoff",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('"2026-11-01T00:00:00Z"', '"2026-11-01T12:00:00"')},
        "envbuild.toml",
        "exclude-newer",
        "has no time zone",
        "absolute UTC time",
        id="cutoff-no-tz",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('"2026-11-01T00:00:00Z"', "2026-11-01T12:00:00")},
        "envbuild.toml",
        "exclude-newer",
        "has no time zone",
        "absolute UTC time",
        id="cutoff-toml-local-datetime",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('"numpy>=2.0"', '"numpy>=>1"')},
        "envbuild.toml",
        "dependencies[0]",
        "'numpy>=>1' is not a valid requirement",
        "PEP 508",
        id="bad-requirement",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('"numpy>=2.0"', '"pkg @ https://host.example/pkg.whl"')},
        "envbuild.toml",
        "dependencies[0]",
        "is a direct URL",
        "route it there with [[indexes]]",
        id="direct-url",
    ),
    pytest.param(
        {"pyproject.toml": PROJECT.replace('"numpy>=2.0"', '"numpy>=>1"'), "envbuild.toml": VALID},
        "pyproject.toml",
        "project.dependencies[0]",
        "is not a valid requirement",
        "PEP 508",
        id="bad-reused-requirement",
    ),
    pytest.param(
        {
            "pyproject.toml": GROUPS_PROJECT,
            "envbuild.toml": HEAD + ROLE + 'groups = ["eval"]\n' + CPU,
        },
        "envbuild.toml",
        "roles.infer.groups",
        "unknown dependency group 'eval'",
        "add the group to [dependency-groups]",
        id="unknown-group",
    ),
    pytest.param(
        {"envbuild.toml": VALID + GPU.replace('cuda = "12"', "")},
        "envbuild.toml",
        "accelerators.gpu.cuda",
        "missing",
        'cuda = "12"',
        id="gpu-without-cuda",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + ROLE + CPU + 'cuda = "12"\n'},
        "envbuild.toml",
        "accelerators.cpu.cuda",
        "a CPU image has no CUDA",
        "move cuda to [accelerators.gpu]",
        id="cuda-on-cpu",
    ),
    pytest.param(
        {"envbuild.toml": VALID + GPU.replace('"12"', '"12x"')},
        "envbuild.toml",
        "accelerators.gpu.cuda",
        "'12x' is not a CUDA version",
        'cuda = "12"',
        id="bad-cuda",
    ),
    pytest.param(
        {
            "envbuild.toml": HEAD + ROLE + "[accelerators.cpu]\n"
            'base = { debian = "bookworm", image = "python:3.11-slim" }\n'
        },
        "envbuild.toml",
        "accelerators.cpu.base.image",
        "names debian and image: conflicting",
        "choose exactly one of debian, image, oci-layout",
        id="base-debian-and-image",
    ),
    pytest.param(
        {
            "envbuild.toml": HEAD + ROLE + "[accelerators.cpu]\n"
            'base = { image = "python:3.11-slim", packages = ["curl"] }\n'
        },
        "envbuild.toml",
        "accelerators.cpu.base.packages",
        "only a debian base takes a package list",
        "remove packages",
        id="packages-with-image",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('python = "3.11"', 'python = "3.13"')},
        "envbuild.toml",
        "accelerators.cpu.base.debian",
        "bookworm ships Python 3.11, but python = '3.13'",
        "make python and the suite agree",
        id="suite-python-mismatch",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + ROLE + '[accelerators.cpu]\nbase = { image = "registry.example:5000/python" }\n'},
        "envbuild.toml",
        "accelerators.cpu.base.image",
        "has neither a tag nor a digest",
        "REF@sha256:DIGEST",
        id="image-without-tag",
    ),
    pytest.param(
        {
            "envbuild.toml": VALID + '[[indexes]]\nname = "private"\n'
            'url = "https://alice:s3cr3t@pypi.example/simple"\npackages = ["mylib"]\n'
        },
        "envbuild.toml",
        "indexes[0].url",
        "carries credentials",
        "UV_INDEX_",
        id="index-credentials",
    ),
    pytest.param(
        {
            "envbuild.toml": HEAD.replace("dependencies", 'index-url = "https://bob:pw@m.example/s"\ndependencies')
            + ROLE
            + CPU
        },
        "envbuild.toml",
        "index-url",
        "carries credentials",
        "~/.netrc",
        id="index-url-credentials",
    ),
    pytest.param(
        {
            "envbuild.toml": VALID
            + '[[indexes]]\nname = "a"\nurl = "https://a.example/simple"\npackages = ["torch"]\n'
            + '[[indexes]]\nname = "a"\nurl = "https://b.example/simple"\npackages = ["jax"]\n'
        },
        "envbuild.toml",
        "indexes[1].name",
        "index 'a' is defined twice",
        "give each index its own name",
        id="duplicate-index",
    ),
    pytest.param(
        {
            "envbuild.toml": VALID
            + '[[indexes]]\nname = "a"\nurl = "https://a.example/simple"\npackages = ["torch"]\n'
            + '[[indexes]]\nname = "b"\nurl = "https://b.example/simple"\npackages = ["Torch"]\n'
        },
        "envbuild.toml",
        "indexes",
        "'torch' is routed to both 'a' and 'b' for cpu",
        "route each package to one index per accelerator",
        id="package-two-indexes",
    ),
    pytest.param(
        {"envbuild.toml": VALID + '[[indexes]]\nname = "a"\nurl = "https://a.example/simple"\n'},
        "envbuild.toml",
        "indexes[0].packages",
        "routes no package",
        'packages = ["torch"]',
        id="index-no-packages",
    ),
    pytest.param(
        {"envbuild.toml": VALID + GPU + 'replace = { torch = "torch-gpu" }\n'},
        "envbuild.toml",
        "accelerators.gpu.replace",
        "replaces 'torch', which no role or shared dependency names",
        "fix the package name",
        id="replace-unused",
    ),
    pytest.param(
        {"envbuild.toml": VALID + '[image]\nuser = "root"\n'},
        "envbuild.toml",
        "image.user",
        "non-root",
        'user = "app"',
        id="user-root",
    ),
    pytest.param(
        {"envbuild.toml": VALID + '[image]\nworkdir = "app"\n'},
        "envbuild.toml",
        "image.workdir",
        "'app' is not absolute",
        'workdir = "/app"',
        id="workdir-relative",
    ),
    pytest.param(
        {"envbuild.toml": VALID, "pyproject.toml": GROUPS_PROJECT + TOOL_ENVBUILD},
        ".",
        None,
        "two specs: envbuild.toml and [tool.envbuild] in pyproject.toml",
        "keep one",
        id="two-specs",
    ),
    pytest.param(
        {"envbuild.toml": 'project = "nope"\n' + VALID},
        "envbuild.toml",
        "project",
        "no pyproject.toml in 'nope'",
        "point it at the directory of your Python project",
        id="project-dir-missing",
    ),
    pytest.param(
        {"pyproject.toml": GROUPS_PROJECT + TOOL_ENVBUILD + 'project = "x"\n'},
        "pyproject.toml",
        "tool.envbuild.project",
        "not allowed in [tool.envbuild]",
        "this pyproject.toml is the project",
        id="project-key-in-pyproject",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('["numpy>=2.0", "onnxruntime>=1.20"]', '"numpy"')},
        "envbuild.toml",
        "dependencies",
        "expected a list of non-empty strings, got str 'numpy'",
        'dependencies = ["numpy>=1.26"]',
        id="dependencies-not-a-list",
    ),
    pytest.param(
        {"envbuild.toml": VALID.replace('python = "3.11"', "python = 3.11")},
        "envbuild.toml",
        "python",
        "expected a non-empty string, got float 3.11",
        'python = "3.11"',
        id="python-not-a-string",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + 'roles = "infer"\n' + CPU},
        "envbuild.toml",
        "roles",
        "expected a table, got str",
        "[roles]",
        id="roles-not-a-table",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + CPU},
        "envbuild.toml",
        "roles",
        "missing",
        "[roles.train]",
        id="no-roles",
    ),
    pytest.param(
        {"envbuild.toml": HEAD + ROLE + "[accelerators.cpu]\n"},
        "envbuild.toml",
        "accelerators.cpu.base",
        "missing",
        'debian = "bookworm"',
        id="no-base",
    ),
]


@pytest.mark.parametrize(("files", "where", "key", "problem", "hint"), BAD)
def test_bad_spec(
    tmp_path: Path,
    files: dict[str, str],
    where: str,
    key: str | None,
    problem: str,
    hint: str,
) -> None:
    """A bad spec is a usage error (exit 2) naming file, key, problem and fix."""
    root = tmp_path / "project"
    root.mkdir()
    write(root, files)
    with pytest.raises(UsageError) as info:
        load_spec(root)
    exc = info.value
    assert isinstance(exc, SpecError)
    assert exc.exit_code == 2
    named = (root.resolve() / where).resolve()
    assert f"{named}:" in exc.message or f"in {named}" in exc.message
    if key is not None:
        assert f": {key}: " in exc.message or f": {key}[" in exc.message
    assert problem in exc.message
    assert exc.hint is not None and hint in exc.hint


def test_toml_error_says_where(tmp_path: Path) -> None:
    """A TOML syntax error carries the line and column."""
    write(tmp_path, {"envbuild.toml": VALID + "[image\n"})
    with pytest.raises(SpecError, match=r"not valid TOML: .*\(at line 10, column 7\)"):
        load_spec(tmp_path)


def test_credentials_never_echoed(tmp_path: Path) -> None:
    """The credentials of a rejected index URL are not repeated in the message."""
    write(
        tmp_path,
        {
            "envbuild.toml": VALID + '[[indexes]]\nname = "p"\n'
            'url = "https://alice:s3cr3t@pypi.example/simple"\npackages = ["mylib"]\n'
        },
    )
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert "s3cr3t" not in info.value.message + (info.value.hint or "")


def test_unknown_group_lists_known_groups(tmp_path: Path) -> None:
    """The unknown-group message names the pyproject and the groups it does define."""
    write(
        tmp_path,
        {"pyproject.toml": GROUPS_PROJECT, "envbuild.toml": HEAD + 'groups = ["eval"]\n' + ROLE + CPU},
    )
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert f"[dependency-groups] of {tmp_path.resolve() / 'pyproject.toml'}" in info.value.message
    assert "known: train" in info.value.message


def test_repository_is_the_source_url(tmp_path: Path) -> None:
    """``repository`` is kept as written; without it the spec names none."""
    write(tmp_path / "a", {"envbuild.toml": 'repository = "https://github.com/org/repo"\n' + VALID})
    assert load_spec(tmp_path / "a").repository == "https://github.com/org/repo"
    write(tmp_path / "b", {"envbuild.toml": VALID})
    assert load_spec(tmp_path / "b").repository is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://github.com/org/repo", "is not an https URL"),
        ("git@github.com:org/repo.git", "is not an https URL"),
        ("https://bob:s3cr3t@github.com/org/repo", "credentials"),
        ("https://github.com/org/repo?tab=readme", "query or fragment"),
        ("https://github.com/org/repo#readme", "query or fragment"),
        ("https://github.com", "names a host, not a repository"),
        ("https://github.com/org/my repo", "characters"),
        ("https://github.com:x/org/repo", "is not an https URL"),
    ],
)
def test_bad_repository(tmp_path: Path, url: str, problem: str) -> None:
    """A repository that is not a public https URL is refused, naming the key, and credentials are not echoed."""
    write(tmp_path / "project", {"envbuild.toml": f"repository = {url!r}\n" + VALID})
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "project")
    assert ": repository: " in info.value.message and problem in info.value.message
    assert info.value.hint is not None and 'repository = "https://' in info.value.hint
    assert "s3cr3t" not in info.value.message

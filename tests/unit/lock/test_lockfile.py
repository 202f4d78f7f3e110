"""Unit tests for lockfile parsing and rendering (resolvers.base, lockfile)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envbuild.errors import ResolutionError, StaleLockError
from envbuild.lock.lockfile import (
    DebianBase,
    ImageBase,
    LayoutBase,
    LockEntry,
    LockSet,
    PinnedBase,
    base_from_json,
    pins_only,
    render_lockfile,
)
from envbuild.lock.resolvers.base import Pin, ResolveRequest, parse_requirements
from envbuild.lock.spec import Index
from support import paths
from support.paths import REPO

ASSETS = paths.ASSETS / "unit"

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64
H3 = "sha256:" + "a" * 64


def request(**overrides: object) -> ResolveRequest:
    """A resolution request with plain defaults."""
    values: dict[str, object] = {
        "requirements": ("numpy>=2.0",),
        "python": "3.11",
        "platform": "linux/amd64",
        "glibc": "2.28",
        "exclude_newer": "2026-11-01T00:00:00Z",
        "index_url": None,
        "indexes": (),
    }
    values.update(overrides)
    return ResolveRequest(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# parse_requirements


def test_parse_uv_output() -> None:
    """uv's output: every pin, hashes sorted, via lines joined, the input project is 'spec'."""
    text = (ASSETS / "uv-compile-gpu-infer.txt").read_text(encoding="utf-8")
    pins = parse_requirements(text, source="uv output")
    by_name = {p.name: p for p in pins}

    assert [p.name for p in pins] == [
        "coloredlogs",
        "flatbuffers",
        "humanfriendly",
        "mpmath",
        "numpy",
        "onnxruntime-gpu",
        "packaging",
        "protobuf",
        "sympy",
    ]
    numpy = by_name["numpy"]
    assert numpy.version == "2.1.3"
    assert numpy.hashes == (
        "sha256:4e48062a602e5f93c1ab1be9881999ed963d2768cbdee09e1c4fc64254f2817f",
        "sha256:69d52f636f0b3a89a61419ce96e1f79d8c7c9b0fcd37e4f960749796fc69e2ea",
        "sha256:bde5c1a759081a467b3051711735d91dd525034305cc6227bd3297be5f9d373a",
    )
    assert numpy.via == ("onnxruntime-gpu", "spec")  # multi-line via block
    assert by_name["onnxruntime-gpu"].via == ("spec",)  # one-line via
    assert by_name["onnxruntime-gpu"].version == "1.20.1"
    assert len(by_name["onnxruntime-gpu"].hashes) == 2
    assert by_name["humanfriendly"].via == ("coloredlogs",)
    assert all(p.hashes == tuple(sorted(p.hashes)) for p in pins)


def test_parse_pip_compile_output() -> None:
    """pip-compile's output: extras dropped from the name, names canonical, -r/-c via mapped."""
    text = (ASSETS / "pip-compile-cpu-train.txt").read_text(encoding="utf-8")
    pins = parse_requirements(text, source="pip-compile output")
    by_name = {p.name: p for p in pins}

    assert [p.name for p in pins] == [
        "jax",
        "jaxlib",
        "ml-dtypes",
        "numpy",
        "opt-einsum",
        "pyyaml",
        "scikit-learn",
        "scipy",
        "setuptools",  # below the 'unsafe packages' comment, still pinned
    ]
    assert by_name["jax"].version == "0.4.35"  # jax[cpu]==0.4.35
    assert by_name["jax"].via == ("spec",)
    assert by_name["pyyaml"].version == "6.0.2"
    assert by_name["pyyaml"].hashes == (
        "sha256:04e9dab46a93521239af9f212efad4656aaff9bc7a3ffb3fba3db8d77155fd35",
        "sha256:de4528d1289fe24efc23463a138222eb6c6f1dc4d1ae1a5fb312de2a6d677a06",
    )
    assert by_name["numpy"].via == (
        "constraint",
        "jax",
        "jaxlib",
        "ml-dtypes",
        "scikit-learn",
        "scipy",
        "spec",
    )
    assert by_name["scipy"].via == ("jax", "jaxlib", "scikit-learn")
    assert by_name["setuptools"].via == ("jaxlib",)


def test_pin_without_hash_is_an_error() -> None:
    """A pin without --hash cannot be installed with --require-hashes: ResolutionError."""
    text = (
        "numpy==2.1.3 \\\n"
        f"    --hash={H1}\n"
        "    # via -r requirements.in\n"
        "onnxruntime==1.20.1\n"
        "    # via -r requirements.in\n"
    )
    with pytest.raises(ResolutionError) as info:
        parse_requirements(text, source="pip-compile output")
    assert "pip-compile output: onnxruntime==1.20.1 has no hash" in info.value.message
    assert info.value.exit_code == 1


def test_unreadable_line_is_an_error() -> None:
    """Text before any pin that is neither option nor comment is refused, not skipped."""
    with pytest.raises(ResolutionError, match="cannot read line 'what is this'"):
        parse_requirements("what is this\n", source="uv output")


# ---------------------------------------------------------------------------
# render_lockfile and pins_only

PINS = (
    Pin(name="numpy", version="2.1.3", hashes=(H1, H2), via=("onnxruntime", "spec")),
    Pin(name="onnxruntime", version="1.20.1", hashes=(H3,), via=("spec",)),
)

EXPECTED = f"""\
# envbuild lock: cpu-infer
# Python 3.11, linux/amd64, packages uploaded before 2026-11-01T00:00:00Z.
# Generated by 'envbuild lock'; do not edit. Install with: pip install --require-hashes --no-deps -r THIS

numpy==2.1.3 \\
    --hash={H1} \\
    --hash={H2}
    # via onnxruntime, spec
onnxruntime==1.20.1 \\
    --hash={H3}
    # via spec
"""


def test_render_exact_and_deterministic() -> None:
    """The same pins give the same, exactly expected, bytes."""
    first = render_lockfile(title="cpu-infer", request=request(), pins=PINS)
    second = render_lockfile(title="cpu-infer", request=request(), pins=PINS)
    assert first == EXPECTED
    assert first == second


def test_render_sorts_hashes() -> None:
    """Hashes are written sorted, whatever order the pin holds them in."""
    shuffled = (Pin(name="numpy", version="2.1.3", hashes=(H3, H1, H2)),)
    text = render_lockfile(title="t", request=request(), pins=shuffled)
    positions = [text.index(h) for h in (H1, H2, H3)]
    assert positions == sorted(positions)


def test_render_round_trips_versions_and_hashes() -> None:
    """What envbuild writes, envbuild reads back to the same names, versions and hashes."""
    text = render_lockfile(title="cpu-infer", request=request(), pins=PINS)
    parsed = parse_requirements(text, source="lockfile")
    assert [(p.name, p.version, p.hashes) for p in parsed] == [(p.name, p.version, p.hashes) for p in PINS]


def test_render_round_trips_via() -> None:
    """The via names survive a render/parse round trip."""
    text = render_lockfile(title="cpu-infer", request=request(), pins=PINS)
    assert parse_requirements(text, source="lockfile") == PINS


def test_render_strips_credentials() -> None:
    """Index URLs with user:pass@ are written without them."""
    index = Index(
        name="pytorch",
        url="https://token:s3cr3t@download.example/whl/cu124",
        packages=("torch",),
        accelerators=("gpu",),
        exclude_newer=True,
    )
    req = request(index_url="https://alice:hunter22@mirror.example/simple", indexes=(index,))
    text = render_lockfile(title="gpu-infer", request=req, pins=PINS)
    assert "--index-url https://mirror.example/simple\n" in text
    assert "--extra-index-url https://download.example/whl/cu124\n" in text
    for secret in ("s3cr3t", "hunter22", "alice", "token:"):
        assert secret not in text


def test_pins_only() -> None:
    """Just the name==version lines, for the resolver's preferences."""
    req = request(index_url="https://mirror.example/simple")
    text = render_lockfile(title="cpu-infer", request=req, pins=PINS)
    assert pins_only(text) == "numpy==2.1.3\nonnxruntime==1.20.1\n"


def test_pins_only_of_uv_output() -> None:
    """pins_only also reads a resolver's own output (the previous lock may be one)."""
    text = (ASSETS / "uv-compile-gpu-infer.txt").read_text(encoding="utf-8")
    lines = pins_only(text).splitlines()
    assert len(lines) == 9
    assert "numpy==2.1.3" in lines and "onnxruntime-gpu==1.20.1" in lines


# ---------------------------------------------------------------------------
# LockSet metadata


def lockset() -> LockSet:
    """A two-entry lock set."""
    entry = LockEntry(
        name="cpu-infer",
        variant="cpu-infer",
        platform="linux/amd64",
        file="cpu-infer.txt",
        sha256="ab" * 32,
        inputs={"requirements": ["numpy>=2.0"], "python": "3.11", "index-url": None},
        packages={"numpy": {"version": "2.1.3", "index": "default"}},
    )
    other = LockEntry(
        name="gpu-infer",
        variant="gpu-infer",
        platform="linux/amd64",
        file="gpu-infer.txt",
        sha256="cd" * 32,
        inputs={"requirements": ["onnxruntime-gpu>=1.20"], "python": "3.11"},
        packages={"onnxruntime-gpu": {"version": "1.20.1", "index": "default"}},
    )
    return LockSet(
        envbuild_version="0.1.0",
        resolver="uv",
        resolver_version="0.13.9",
        spec_file="envbuild.toml",
        python="3.11",
        exclude_newer="2026-11-01T00:00:00Z",
        index_url=None,
        indexes=[],
        bases={"cpu": DebianBase(suite="bookworm", packages=("python3",), recipe_sha256="ab" * 32)},
        entries=(entry, other),
    )


def test_lockset_round_trip(tmp_path: Path) -> None:
    """from_json(to_json(x)) == x, and the text is stable and key-sorted."""
    original = lockset()
    text = original.to_json()
    parsed = LockSet.from_json(text, source=tmp_path / "envbuild.lock.json")
    assert parsed == original
    assert parsed.to_json() == text
    assert text.endswith("}\n")
    assert '"inputs-sha256"' in text
    assert parsed.entry("gpu-infer") == original.entries[1]
    assert parsed.entry("gpu-train") is None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="list"),
        pytest.param("null", id="null"),
        pytest.param('{"schema": 2}', id="future-schema"),
        pytest.param('{"schema": 1}', id="missing-keys"),
        pytest.param('{"schema": 1, "locks": {"x": "y"}}', id="bad-entry"),
    ],
)
def test_lockset_garbage_is_stale(tmp_path: Path, text: str) -> None:
    """Damaged metadata is a StaleLockError naming the file, never a traceback."""
    source = tmp_path / "envbuild.lock.json"
    with pytest.raises(StaleLockError) as info:
        LockSet.from_json(text, source=source)
    assert str(source) in info.value.message
    assert "unreadable lock metadata" in info.value.message
    assert info.value.hint is not None and "envbuild lock" in info.value.hint


def test_lockset_future_schema_says_which(tmp_path: Path) -> None:
    """A schema mismatch says which schema was found."""
    with pytest.raises(StaleLockError, match="schema 2, expected 1"):
        LockSet.from_json('{"schema": 2}', source=tmp_path / "m.json")


# ---------------------------------------------------------------------------
# pinned bases: typed values that write envbuild.lock.json's bytes


def test_the_committed_metadata_reads_as_typed_bases_and_writes_back_byte_for_byte() -> None:
    source = REPO / "lockfiles" / "envbuild.lock.json"
    text = source.read_text(encoding="utf-8")
    lockset = LockSet.from_json(text, source=source)
    assert set(lockset.bases) == {"cpu", "gpu"}
    cpu = lockset.bases["cpu"]
    assert isinstance(cpu, DebianBase) and cpu.suite == "bookworm" and "python3" in cpu.packages
    assert lockset.to_json() == text


@pytest.mark.parametrize(
    ("recorded", "pinned"),
    [
        (
            {"kind": "image", "ref": "registry.example/ml/py:3.11", "digest": H3},
            ImageBase(ref="registry.example/ml/py:3.11", digest=H3),
        ),
        ({"kind": "oci-layout", "path": "bases/one", "digest": H3}, LayoutBase(path="bases/one", digest=H3)),
        (
            {"kind": "debian", "suite": "bookworm", "packages": ["a", "b"], "recipe-sha256": "ab" * 32},
            DebianBase(suite="bookworm", packages=("a", "b"), recipe_sha256="ab" * 32),
        ),
    ],
)
def test_each_kind_of_base_reads_and_writes_its_json(recorded: dict[str, object], pinned: PinnedBase) -> None:
    assert base_from_json(recorded, "bases.cpu") == pinned
    assert pinned.to_json() == recorded
    described = pinned.described()  # what the spec says, before any digest
    assert described.digest is None and "digest" not in described.to_json()


@pytest.mark.parametrize(
    ("recorded", "problem"),
    [
        ({"kind": "docker", "ref": "x"}, "bases.cpu.kind is 'docker', not one of debian, image, oci-layout"),
        ({"kind": "image", "ref": "x"}, "bases.cpu.digest is a NoneType, not a str"),
        ({"kind": "oci-layout", "path": 3, "digest": H3}, "bases.cpu.path is a int, not a str"),
        ({"kind": "debian", "suite": "b", "recipe-sha256": "ab"}, "bases.cpu.packages is a NoneType, not a list"),
        ({"kind": "debian", "suite": "b", "packages": [1], "recipe-sha256": "ab"}, "bases.cpu.packages holds a value"),
    ],
)
def test_a_damaged_base_is_a_stale_lock_naming_the_field(
    tmp_path: Path, recorded: dict[str, object], problem: str
) -> None:
    source = REPO / "lockfiles" / "envbuild.lock.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    data["bases"]["cpu"] = recorded
    with pytest.raises(StaleLockError, match=re.escape(problem)):
        LockSet.from_json(json.dumps(data), source=tmp_path / "envbuild.lock.json")

"""Unit tests for envbuild.lock.variants: variant order, selection, lock targets, requirements."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from envbuild.errors import UsageError
from envbuild.lock.spec import Spec, load_spec
from envbuild.lock.variants import (
    NoVariantError,
    Variant,
    indexes,
    left_out,
    requirements,
    select,
    targets,
    variants,
)
from support.specs import MINIMAL, write_spec

FULL = """
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
dependencies = ["numpy>=2.0", 'onnxruntime>=1.20; sys_platform == "linux"']

[roles.infer]
dependencies = ["fastapi>=0.110"]

[roles.train]
dependencies = ["scikit-learn>=1.5", "numpy>=2.0"]

[accelerators.gpu]
cuda = "12"
dependencies = ["cupy-cuda12x>=13"]
replace = { onnxruntime = "onnxruntime-gpu[cuda]" }
base = { debian = "bookworm" }

[accelerators.cpu]
base = { debian = "bookworm" }

[[indexes]]
name = "pytorch-cu124"
url = "https://download.example/whl/cu124"
packages = ["torch"]
accelerators = ["gpu"]

[[indexes]]
name = "pytorch-cpu"
url = "https://download.example/whl/cpu"
packages = ["torch"]
accelerators = ["cpu"]

[[indexes]]
name = "internal"
url = "https://pypi.internal.example/simple"
packages = ["mylib"]
"""


def spec_from(tmp_path: Path, text: str) -> Spec:
    """Load a spec whose envbuild.toml is ``text``."""
    (tmp_path / "envbuild.toml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return load_spec(tmp_path)


def v(name: str) -> Variant:
    """The variant called ``name``, e.g. ``gpu-infer``."""
    accelerator, role = name.split("-")
    return Variant(accelerator=accelerator, role=role)  # type: ignore[arg-type]


@pytest.fixture
def full(tmp_path: Path) -> Spec:
    """Both accelerators and both roles, declared in the 'wrong' order on purpose."""
    return spec_from(tmp_path, FULL)


def test_variants_fixed_order(full: Spec) -> None:
    """cpu before gpu, train before infer, whatever order the spec declares them in."""
    assert [x.name for x in variants(full)] == ["cpu-train", "cpu-infer", "gpu-train", "gpu-infer"]


def test_variants_only_declared(tmp_path: Path) -> None:
    """Only declared roles and accelerators make variants."""
    spec = spec_from(
        tmp_path,
        """
        python = "3.11"
        exclude-newer = "2026-11-01"
        [roles.infer]
        [accelerators.cpu]
        base = { debian = "bookworm" }
        """,
    )
    assert variants(spec) == (v("cpu-infer"),)
    assert str(variants(spec)[0]) == "cpu-infer"


def test_select_all_when_empty(full: Spec) -> None:
    """No names selects every variant."""
    assert select(full, ()) == variants(full)


def test_select_keeps_canonical_order_and_dedupes(full: Spec) -> None:
    """Selected variants come back in the fixed order, each once."""
    chosen = select(full, ("gpu-infer", "cpu-train", "gpu-infer"))
    assert chosen == (v("cpu-train"), v("gpu-infer"))


def test_select_unknown_suggests_nearest(full: Spec) -> None:
    """A misspelt variant is a usage error that suggests the nearest name."""
    with pytest.raises(UsageError) as info:
        select(full, ("cpu-infer", "gpu-infr"))
    assert info.value.exit_code == 2
    assert "unknown variant 'gpu-infr'" in info.value.message
    assert info.value.hint is not None
    assert info.value.hint.startswith("did you mean gpu-infer?")
    assert "cpu-train, cpu-infer, gpu-train, gpu-infer" in info.value.hint


def test_select_unknown_without_near_match(full: Spec) -> None:
    """Far from every name: no suggestion, but the list of valid names."""
    with pytest.raises(UsageError) as info:
        select(full, ("serve",))
    assert info.value.hint is not None
    assert "did you mean" not in info.value.hint
    assert "this spec defines: cpu-train" in info.value.hint


def test_targets_single_platform(full: Spec) -> None:
    """One platform: file names carry no platform."""
    got = targets(full)
    assert [t.filename for t in got] == [
        "cpu-train.txt",
        "cpu-infer.txt",
        "gpu-train.txt",
        "gpu-infer.txt",
    ]
    assert {t.platform for t in got} == {"linux/amd64"}
    assert got[0].name == "cpu-train"


def test_targets_two_platforms(tmp_path: Path) -> None:
    """Two platforms: one target per variant and platform, machine name in the file name."""
    spec = spec_from(
        tmp_path, FULL.replace("dependencies", 'platforms = ["linux/arm64", "linux/amd64"]\ndependencies', 1)
    )
    got = targets(spec, (v("cpu-infer"),))
    assert [(t.filename, t.platform) for t in got] == [
        ("cpu-infer-aarch64.txt", "linux/arm64"),
        ("cpu-infer-x86_64.txt", "linux/amd64"),
    ]
    assert len(targets(spec)) == 8
    assert len({t.filename for t in targets(spec)}) == 8


def test_requirements_cpu_infer(full: Spec) -> None:
    """Shared + role requirements, sorted by name; no GPU swap, no GPU additions."""
    assert requirements(full, v("cpu-infer")) == (
        "fastapi>=0.110",
        "numpy>=2.0",
        'onnxruntime>=1.20; sys_platform == "linux"',
    )


def test_requirements_replace_carries_specifier_and_marker(full: Spec) -> None:
    """onnxruntime>=1.20 becomes onnxruntime-gpu[cuda]>=1.20, with the marker kept."""
    assert requirements(full, v("gpu-infer")) == (
        "cupy-cuda12x>=13",
        "fastapi>=0.110",
        "numpy>=2.0",
        'onnxruntime-gpu[cuda]>=1.20; sys_platform == "linux"',
    )


def test_requirements_dedupes_shared_and_role(full: Spec) -> None:
    """numpy>=2.0 named by both shared and train dependencies appears once."""
    reqs = requirements(full, v("cpu-train"))
    assert reqs == (
        "numpy>=2.0",
        'onnxruntime>=1.20; sys_platform == "linux"',
        "scikit-learn>=1.5",
    )


def test_requirements_replacement_keeps_its_own_specifier(tmp_path: Path) -> None:
    """A replacement that states a version keeps it instead of the replaced one."""
    text = FULL.replace('"onnxruntime-gpu[cuda]"', '"onnxruntime-gpu==1.20.1"')
    spec = spec_from(tmp_path, text)
    assert 'onnxruntime-gpu==1.20.1; sys_platform == "linux"' in requirements(spec, v("gpu-train"))
    assert not any(r.startswith("onnxruntime>") for r in requirements(spec, v("gpu-train")))


JAX = """
python = "3.11"
exclude-newer = "2026-11-01T00:00:00Z"
dependencies = ["jax[cpu]>=0.4", "numpy"]

[roles.train]
dependencies = ["optax", "jax>=0.4.30"]

[accelerators.cpu]
base = { debian = "bookworm" }

[accelerators.gpu]
cuda = "12"
replace = { REPLACE }
base = { debian = "bookworm" }
"""


def test_a_replace_key_with_extras_replaces_exactly_that_requirement(tmp_path: Path) -> None:
    """jax[cpu] -> jax[cuda12], keeping the version; a plain jax requirement is not jax[cpu]."""
    spec = spec_from(tmp_path, JAX.replace("REPLACE", '"JAX[CPU]" = "jax[cuda12]"'))
    assert spec.accelerator("gpu").replace == (("jax[cpu]", "jax[cuda12]"),)
    assert requirements(spec, v("gpu-train")) == ("jax>=0.4.30", "jax[cuda12]>=0.4", "numpy", "optax")
    assert requirements(spec, v("cpu-train")) == ("jax>=0.4.30", "jax[cpu]>=0.4", "numpy", "optax")


def test_a_bare_replace_key_replaces_every_requirement_of_the_name(tmp_path: Path) -> None:
    spec = spec_from(tmp_path, JAX.replace("REPLACE", 'jax = "jax[cuda12]"'))
    assert requirements(spec, v("gpu-train")) == ("jax[cuda12]>=0.4", "jax[cuda12]>=0.4.30", "numpy", "optax")


@pytest.mark.parametrize(
    ("replace", "words"),
    [
        (
            '"jax[cuda]" = "jax[cuda12]"',
            "replaces 'jax[cuda]', but the dependencies ask for jax as jax>=0.4.30, jax[cpu]>=0.4",
        ),
        ('"jax>=0.4" = "jax[cuda12]"', "key 'jax>=0.4' is not a package name (with optional extras)"),
        ('"jax[cpu]" = "jax[cuda12]", "JAX[Cpu]" = "jax"', "replaces jax[cpu] twice"),
        ('"jaxx[cpu]" = "jax[cuda12]"', "replaces 'jaxx[cpu]', which no role or shared dependency names"),
    ],
)
def test_bad_replace_keys_say_what_to_write(tmp_path: Path, replace: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        spec_from(tmp_path, JAX.replace("REPLACE", replace))
    assert words in caught.value.message
    assert caught.value.hint


def test_indexes_filtered_by_accelerator(full: Spec) -> None:
    """Each variant sees the indexes of its accelerator (and the unrestricted ones)."""
    assert [i.name for i in indexes(full, v("cpu-infer"))] == ["pytorch-cpu", "internal"]
    assert [i.name for i in indexes(full, v("gpu-train"))] == ["pytorch-cu124", "internal"]


def test_select_by_accelerator_and_role(full: Spec) -> None:
    """The filters --gpu, --role and --all choose: by accelerator, by role, or every variant."""
    assert select(full, accelerator="cpu") == (v("cpu-train"), v("cpu-infer"))
    assert select(full, accelerator="gpu", role="infer") == (v("gpu-infer"),)
    assert select(full, accelerator="all", role="train") == (v("cpu-train"), v("gpu-train"))
    assert select(full, accelerator="all") == variants(full)
    assert select(full, role="infer") == (v("cpu-infer"), v("gpu-infer"))


@pytest.mark.parametrize(
    ("accelerator", "role", "reason"),
    [
        ("gpu", None, "this spec defines no gpu accelerator"),
        ("cpu", "train", "this spec defines no train role"),
        ("all", "train", "this spec defines no train role"),
    ],
)
def test_select_nothing_is_a_usage_error(
    tmp_path: Path, accelerator: Literal["cpu", "gpu", "all"], role: Literal["train", "infer"] | None, reason: str
) -> None:
    """Filters that match no variant say so (exit 2) instead of choosing something else."""
    spec = spec_from(tmp_path, MINIMAL)  # cpu-infer only
    with pytest.raises(NoVariantError) as info:
        select(spec, accelerator=accelerator, role=role)
    assert info.value.exit_code == 2
    assert reason in info.value.message
    assert info.value.hint is not None and "cpu-infer" in info.value.hint


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--gpu",), "this spec defines no gpu accelerator"),
        (("--role", "train"), "this spec defines no train role"),
        (("--all", "--role", "train"), "this spec defines no train role"),
        (("--variant", "cpu-infer", "--gpu"), "--variant names the variants"),
    ],
)
def test_image_builds_nothing_it_was_not_asked_for(
    tmp_path: Path, cli: Callable[..., Any], flags: tuple[str, ...], words: str
) -> None:
    """envbuild image --gpu on a CPU-only spec (or --role train on an infer-only one) is exit 2, not a CPU build.

    The project is not even locked: the choice is refused before any lock check or download.
    """
    write_spec(tmp_path)  # cpu-infer only
    result = cli("-C", tmp_path, "image", *flags)
    assert result.code == 2, result.err
    assert words in result.err
    assert "lock" not in result.err
    assert result.out == ""


def kept(tmp_path: Path, line: str) -> Spec:
    """FULL with a top-level ``variants`` line."""
    return spec_from(tmp_path, FULL.replace("dependencies = [", f"{line}\ndependencies = [", 1))


def test_a_spec_can_leave_variants_out(tmp_path: Path) -> None:
    """variants keeps some of role x accelerator; every consumer asks variants() and targets()."""
    spec = kept(tmp_path, 'variants = ["gpu-train", "cpu-infer", "cpu-train"]')
    assert spec.variants == ("cpu-train", "cpu-infer", "gpu-train")  # the fixed order
    assert variants(spec) == (v("cpu-train"), v("cpu-infer"), v("gpu-train"))
    assert [t.name for t in targets(spec)] == ["cpu-train", "cpu-infer", "gpu-train"]
    assert left_out(spec) == (v("gpu-infer"),)
    assert select(spec, accelerator="gpu") == (v("gpu-train"),)
    assert select(spec, role="infer") == (v("cpu-infer"),)
    assert select(spec) == variants(spec)


def test_asking_for_a_left_out_variant_says_so(tmp_path: Path) -> None:
    spec = kept(tmp_path, 'variants = ["cpu-train", "cpu-infer", "gpu-train"]')
    with pytest.raises(NoVariantError) as named:
        select(spec, ("gpu-infer",))
    assert (
        named.value.message
        == "variant 'gpu-infer' is left out by the spec (variants = [cpu-train, cpu-infer, gpu-train])"
    )
    assert named.value.hint is not None and "add 'gpu-infer' to variants in envbuild.toml" in named.value.hint
    with pytest.raises(NoVariantError) as filtered:
        select(spec, accelerator="gpu", role="infer")
    assert "the spec leaves gpu-infer out" in filtered.value.message


def test_without_variants_every_role_and_accelerator_pair_is_kept(full: Spec) -> None:
    assert full.variants is None and left_out(full) == ()
    assert len(variants(full)) == 4


@pytest.mark.parametrize(
    ("line", "message", "hint"),
    [
        ('variants = ["gpu-infr"]', "unknown variant 'gpu-infr'", "did you mean 'gpu-infer'?"),
        ("variants = []", "keeps no variant", "list the variants to build"),
        ('variants = ["cpu-train", "cpu-train", "gpu-infer"]', "lists a variant twice", "list each variant once"),
        (
            'variants = ["cpu-train", "cpu-infer"]',
            "keeps no variant of [accelerators.gpu]",
            "remove [accelerators.gpu]",
        ),
        ('variants = ["cpu-infer", "gpu-infer"]', "keeps no variant of [roles.train]", "remove [roles.train]"),
        ('variants = "cpu-train"', "variants: expected a list", "write variants = ["),
    ],
)
def test_bad_variants_name_the_problem_and_the_fix(tmp_path: Path, line: str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as caught:
        kept(tmp_path, line)
    assert message in caught.value.message
    assert caught.value.hint is not None and hint in caught.value.hint


def test_a_variant_whose_table_is_missing_names_the_table(tmp_path: Path) -> None:
    text = FULL.replace("[roles.train]", "[roles.unused]").replace(
        'dependencies = ["scikit-learn>=1.5", "numpy>=2.0"]', ""
    )
    text = text.replace("[roles.unused]\n", "")
    with pytest.raises(UsageError) as caught:
        spec_from(tmp_path, text.replace("dependencies = [", 'variants = ["cpu-train"]\ndependencies = [', 1))
    assert "keeps cpu-train, but the spec has no [roles.train]" in caught.value.message

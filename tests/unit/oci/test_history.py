"""Image history told truthfully: one non-empty entry per layer, naming the step that made it."""

from __future__ import annotations

from typing import Any

import pytest

from envbuild.errors import EnvbuildError
from envbuild.oci.writer import layer_history, step_instruction

T = "2026-11-02T12:00:00Z"
NOP = "/bin/sh -c #(nop) "


def entry(created_by: str, *, empty: bool = True) -> dict[str, Any]:
    return {"created": T, "created_by": created_by, **({"empty_layer": True} if empty else {})}


# What buildah 1.28 `bud --layers=false` wrote for the demo's cpu-infer stage: one layer, credited
# to ENTRYPOINT, while the RUN and both COPY steps that wrote it are marked empty.
BUILDAH_SQUASHED = [
    entry(NOP + "ARG SOURCE_DATE_EPOCH"),
    entry(NOP + "ARG REVISION SOURCE_DATE_EPOCH"),
    entry('|2 REVISION=c0ffee SOURCE_DATE_EPOCH=1793620800 /bin/sh -c echo "app:x:10001:10001::/app" >> /etc/passwd'),
    entry(NOP + "COPY dir:7c745f2c8d4337b179fc26c7d84e51a1 in /opt/venv "),
    entry(NOP + "COPY dir:5766143089de58319b84c5048e293943 in /app/iris_demo "),
    entry(NOP + 'ENV PATH="/opt/venv/bin:/usr/bin"'),
    entry(NOP + 'LABEL org.opencontainers.image.revision="${REVISION}"'),
    entry(NOP + "USER 10001:10001"),
    entry(NOP + "WORKDIR /app"),
    entry(NOP + 'ENTRYPOINT ["python", "-m", "iris_demo.predict"]', empty=False),
]


def non_empty(history: list[dict[str, Any]]) -> list[str]:
    return [e["created_by"] for e in history if not e.get("empty_layer")]


def test_a_squashed_stage_is_one_entry_naming_the_steps_that_wrote_it() -> None:
    history = layer_history([dict(e) for e in BUILDAH_SQUASHED], 1)
    [layer] = non_empty(history)
    assert "COPY dir:7c745f2c8d4337b179fc26c7d84e51a1 in /opt/venv" in layer
    assert "/etc/passwd" in layer and "in /app/iris_demo" in layer
    assert [step_instruction(e["created_by"]) for e in history if e.get("empty_layer")] == [
        "ARG", "ARG", "ENV", "LABEL", "USER", "WORKDIR", "ENTRYPOINT",
    ]  # fmt: skip
    assert len(history) == len(BUILDAH_SQUASHED) - 2  # the three writers are one entry, where the last stood
    assert history[2]["created_by"] == layer


def test_one_layer_per_step_maps_each_writer_to_its_layer() -> None:
    # BuildKit's forms, as if it had (wrongly) marked the COPY empty and the ENV not.
    steps = [
        entry("ARG SOURCE_DATE_EPOCH"),
        entry("RUN |1 SOURCE_DATE_EPOCH=1 /bin/sh -c echo x >> /etc/passwd # buildkit", empty=False),
        entry("COPY /opt/venv /opt/venv # buildkit"),
        entry('ENV PATH="/opt/venv/bin"', empty=False),
    ]
    history = layer_history(steps, 2)
    assert non_empty(history) == [steps[1]["created_by"], steps[2]["created_by"]]
    assert len(history) == 4


def test_a_builders_own_account_holds_when_a_writer_made_no_layer() -> None:
    steps = [entry("RUN /bin/sh -c true # buildkit"), entry("COPY a /a # buildkit", empty=False), entry("USER 1")]
    assert layer_history(steps, 1) == steps  # BuildKit: the RUN changed nothing, so made no layer


def test_a_config_step_that_made_a_layer_keeps_it() -> None:
    steps = [entry("COPY a /a # buildkit", empty=False), entry("WORKDIR /w", empty=False), entry("USER 1")]
    assert layer_history([dict(e) for e in steps], 2) == steps  # BuildKit's WORKDIR made its directory


def test_an_unexplainable_history_is_an_error_not_a_guess() -> None:
    steps = [entry("RUN /bin/sh -c a"), entry("RUN /bin/sh -c b")]
    with pytest.raises(EnvbuildError, match="3 layers in 2 steps"):
        layer_history(steps, 3)

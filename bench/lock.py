"""Benchmark locking: envbuild (four variants) against one raw ``uv pip compile`` and pip-compile.

Run from the repository root::

    .venv/bin/python bench/lock.py [--runs 5] [--skip-pip-compile] [--json]

Every row gets one untimed warm-up first, so all figures are warm-cache figures;
then the rows are timed in turn, ``--runs`` times, and each row reports the
median, min and max wall-clock seconds. The demo spec (envbuild.toml + demo/)
is copied to a temporary directory, so the repository's lockfiles/ are never
touched. See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchlib import BIN, REPO, Timings, log, pip_env, run, timed, timing_table

VARIANTS = ("cpu-train", "cpu-infer", "gpu-train", "gpu-infer")
LARGEST = "gpu-train"
# pip-compile's own cache, fixed so the warm-up run fills it for the timed runs.
PIP_CACHE = Path(tempfile.gettempdir()) / "envbuild-bench-pip-cache"
# uv's --python-platform names for the spec's platforms (as envbuild maps them).
UV_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}

ENVBUILD_FULL = "envbuild lock, 4 variants (full resolve)"
ENVBUILD_RELOCK = "envbuild lock, 4 variants (no change)"
RAW_UV = f"uv pip compile, {LARGEST} only"
PIP_COMPILE = "pip-compile, 4 variants in sequence"


@dataclass(frozen=True, kw_only=True)
class Ratio:
    """One goal: ``numerator / denominator`` compared with a bound."""

    name: str
    value: float
    goal: str
    passed: bool


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What a variant is resolved from, read from the lock metadata envbuild wrote."""

    requirements: tuple[str, ...]
    python: str
    wheel_platform: str
    exclude_newer: str


def copy_demo(dest: Path) -> Path:
    """Copy the spec and the demo project into ``dest``; return the copy's root."""
    root = dest / "repo"
    root.mkdir()
    shutil.copy2(REPO / "envbuild.toml", root / "envbuild.toml")
    shutil.copytree(REPO / "demo", root / "demo", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def envbuild_lock(root: Path, *, fresh: bool) -> None:
    """Run ``envbuild lock`` in ``root``; ``fresh`` deletes lockfiles/ first, so all resolve."""
    # With lockfiles present, uv starts from the previous pins; the honest full
    # resolve needs them gone.
    if fresh:
        shutil.rmtree(root / "lockfiles", ignore_errors=True)
    run([BIN / "envbuild", "-q", "lock"], cwd=root)


def read_inputs(root: Path) -> dict[str, Inputs]:
    """Each variant's resolution inputs from the copy's lockfiles/envbuild.lock.json."""
    meta = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text(encoding="utf-8"))
    out = {}
    for name in VARIANTS:
        inputs = meta["locks"][name]["inputs"]
        glibc = inputs["glibc"]
        out[name] = Inputs(
            requirements=tuple(inputs["requirements"]),
            python=inputs["python"],
            wheel_platform=f"{UV_ARCH[inputs['platform']]}-manylinux_{glibc.replace('.', '_')}",
            exclude_newer=inputs["exclude-newer"],
        )
    return out


def uv_env() -> dict[str, str]:
    """The environment without UV_* settings (except the cache location), as envbuild runs uv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k == "UV_CACHE_DIR"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    return env


def raw_uv(work: Path, inputs: Inputs) -> None:
    """One ``uv pip compile`` of ``inputs`` with envbuild's flags, into a fresh output file."""
    (work / "requirements.in").write_text("\n".join(inputs.requirements) + "\n", encoding="utf-8")
    output = work / "requirements.txt"
    output.unlink(missing_ok=True)  # an existing output file would seed the pins
    args: list[str | Path] = [
        BIN / "uv", "pip", "compile", "requirements.in",
        "--output-file", output.name, "--quiet",
        "--generate-hashes", "--no-config", "--only-binary", ":all:",
        "--python-version", inputs.python,
        "--python-platform", inputs.wheel_platform,
        "--exclude-newer", inputs.exclude_newer,
    ]  # fmt: skip
    run(args, cwd=work, env=uv_env())


def pip_compile_all(work: Path, inputs: dict[str, Inputs]) -> None:
    """pip-compile every variant, one after another, each into a fresh output file."""
    env = pip_env()
    for name in VARIANTS:
        variant = work / name
        variant.mkdir(exist_ok=True)
        (variant / "requirements.in").write_text("\n".join(inputs[name].requirements) + "\n", encoding="utf-8")
        output = variant / "requirements.txt"
        output.unlink(missing_ok=True)  # pip-compile, too, keeps pins from an existing output
        args: list[str | Path] = [
            sys.executable, "-m", "piptools", "compile", "requirements.in",
            "--output-file", output.name, "--quiet",
            "--generate-hashes", "--allow-unsafe",
            "--uploaded-prior-to", inputs[name].exclude_newer,
            "--pip-args", "--only-binary :all:",
            "--cache-dir", PIP_CACHE,
        ]  # fmt: skip
        run(args, cwd=variant, env=env)


def measure(actions: dict[str, Callable[[], None]], runs: int) -> list[Timings]:
    """Warm each action up once, then time them in turn ``runs`` times.

    Interleaving the rows, rather than timing each row's runs back to back, makes
    drift in network latency or machine load hit every row alike.
    """
    for name, action in actions.items():
        log(f"warm-up: {name}")
        action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for i in range(runs):
        for name, action in actions.items():
            times[name].append(timed(action)[0])
            log(f"run {i + 1}/{runs}: {name}: {times[name][-1]:.2f} s")
    return [Timings(name=name, times=tuple(t)) for name, t in times.items()]


def ratios(rows: dict[str, Timings]) -> list[Ratio]:
    """The two goals: envbuild near raw uv, and far ahead of pip-compile."""
    envbuild = rows[ENVBUILD_FULL].median
    out = []
    value = envbuild / rows[RAW_UV].median
    out.append(Ratio(name="envbuild-four / raw-uv-one", value=value, goal="<= 2.0", passed=value <= 2.0))
    if PIP_COMPILE in rows:
        value = rows[PIP_COMPILE].median / envbuild
        out.append(
            Ratio(
                name="pip-compile-four / envbuild-four",
                value=value,
                goal=">= 10",
                passed=value >= 10,
            )
        )
    return out


def table(rows: list[Timings], goals: list[Ratio]) -> str:
    """The figures as a plain-text table."""
    lines = timing_table(rows)
    lines.append("")
    lines += [f"{g.name:<34} {g.value:>7.2f}  (goal {g.goal})  {'PASS' if g.passed else 'FAIL'}" for g in goals]
    if not any(g.name.startswith("pip-compile") for g in goals):
        lines.append("pip-compile-four / envbuild-four: skipped (--skip-pip-compile)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the benchmark, print the table (or JSON on stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    parser.add_argument("--skip-pip-compile", action="store_true", help="leave out the (slow) pip-compile row")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="envbuild-bench-") as tmp:
        root = copy_demo(Path(tmp))
        # The first lock also tells the other rows what to resolve: the exact
        # requirements and cutoff envbuild derived from the spec.
        log("initial lock of the demo copy")
        envbuild_lock(root, fresh=True)
        inputs = read_inputs(root)
        uv_work = Path(tmp) / "uv"
        pip_work = Path(tmp) / "pip"
        uv_work.mkdir()
        pip_work.mkdir()
        actions: dict[str, Callable[[], None]] = {
            ENVBUILD_FULL: lambda: envbuild_lock(root, fresh=True),
            # Runs right after a full lock, so the lockfiles are present and current.
            ENVBUILD_RELOCK: lambda: envbuild_lock(root, fresh=False),
            RAW_UV: lambda: raw_uv(uv_work, inputs[LARGEST]),
        }
        if not args.skip_pip_compile:
            actions[PIP_COMPILE] = lambda: pip_compile_all(pip_work, inputs)
        rows = measure(actions, args.runs)

    goals = ratios({r.name: r for r in rows})
    if args.json:
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "rows": [r.summary() for r in rows],
                    "ratios": [asdict(g) for g in goals],
                },
                indent=2,
            )
        )
    else:
        print(table(rows, goals))
    return 0


if __name__ == "__main__":
    sys.exit(main())

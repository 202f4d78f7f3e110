"""The builder stage's bytecode step, run as the Dockerfile runs it: a source that does not compile is no error.

Wheels may hold sources for a newer Python than the image's: torch's cp311 wheels ship
torch/testing/_internal/py312_intrinsics.py, in Python 3.12 syntax. pip and uv install them
and write no .pyc for them; the Dockerfile must do the same, not fail the build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.paths import ASSETS

VENV = "/opt/venv"
CHECKED_HASH = 0b11  # PEP 552 flags: hash-based, check the source


def compile_step(python: str | Path, lib: Path) -> str:
    """The bytecode step of the demo's rendered Dockerfile (the golden copy), as a shell command on ``lib``."""
    dockerfile = (ASSETS / "golden" / "images" / "cpu-infer.Dockerfile").read_text(encoding="utf-8")
    run = dockerfile.split("\nRUN ", 2)[1].split("\n# ", 1)[0].replace("\\\n", " ")
    step = re.sub(r"\s+", " ", next(part for part in run.split(" && ") if "compileall" in part)).strip()
    return step.replace(f"{VENV}/bin/python", str(python)).replace(f"{VENV}/lib", str(lib))


def test_sources_that_do_not_compile_get_no_pyc_and_do_not_fail_the_build(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3" / "site-packages" / "torch"
    site.mkdir(parents=True)
    (site / "ok.py").write_text("def f(a):\n    return a\n", encoding="utf-8")
    (site / "py312_intrinsics.py").write_text("def f[T](a: T) -> T:\n    return a\n", encoding="utf-8")
    step = compile_step(sys.executable, tmp_path / "lib")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("PYTHONPYCACHEPREFIX", None)  # the .pyc files must land beside their sources
    done = subprocess.run(["/bin/sh", "-c", step], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "py312_intrinsics.py" in done.stdout + done.stderr  # named in the build log
    compiled = sorted(p.name for p in site.glob("__pycache__/*.pyc"))
    if sys.version_info < (3, 12):
        assert [name.split(".")[0] for name in compiled] == ["ok"]
    pyc = next((site / "__pycache__").glob("ok.*.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == CHECKED_HASH


def test_the_step_still_fails_when_the_interpreter_is_missing(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    step = compile_step(tmp_path / "no-python", tmp_path / "lib")
    assert subprocess.run(["/bin/sh", "-c", step], capture_output=True, timeout=60).returncode != 0

"""The builder stage's bytecode step, run as the Dockerfile runs it (the golden Dockerfile's command).

- Wheels may hold sources for a newer Python than the image's: torch's cp311 wheels ship
  torch/testing/_internal/py312_intrinsics.py, in Python 3.12 syntax. pip and uv install them
  and write no .pyc for them; the Dockerfile must do the same, not fail the build.
- Only compileall writes bytecode: setuptools' distutils-precedence.pth imports _distutils_hack
  whenever the venv's Python starts, and the import system would write a timestamp .pyc for it,
  with the install time inside, which compileall keeps (it matches the source's mtime). That
  made every image holding setuptools (every torch image) differ from build to build.
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


def run_step(step: str) -> subprocess.CompletedProcess[str]:
    """Run ``step`` with the environment of the build's RUN step: SOURCE_DATE_EPOCH, nothing about bytecode."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["SOURCE_DATE_EPOCH"] = "1700000000"
    return subprocess.run(["/bin/sh", "-c", step], env=env, capture_output=True, text=True, timeout=120)


def flags(pyc: Path) -> int:
    """A .pyc's PEP 552 flags."""
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_sources_that_do_not_compile_get_no_pyc_and_do_not_fail_the_build(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3" / "site-packages" / "torch"
    site.mkdir(parents=True)
    (site / "ok.py").write_text("def f(a):\n    return a\n", encoding="utf-8")
    (site / "py312_intrinsics.py").write_text("def f[T](a: T) -> T:\n    return a\n", encoding="utf-8")
    done = run_step(compile_step(sys.executable, tmp_path / "lib"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "py312_intrinsics.py" in done.stdout + done.stderr  # named in the build log
    compiled = sorted(p.name for p in site.glob("__pycache__/*.pyc"))
    if sys.version_info < (3, 12):
        assert [name.split(".")[0] for name in compiled] == ["ok"]
    assert flags(next((site / "__pycache__").glob("ok.*.pyc"))) == CHECKED_HASH


def test_only_compileall_writes_bytecode_though_a_pth_file_imports_at_start_up(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "_hack").mkdir()
    (site / "_hack" / "__init__.py").write_text("def add_shim():\n    pass\n", encoding="utf-8")
    (site / "hack-precedence.pth").write_text("import _hack; _hack.add_shim()\n", encoding="utf-8")
    done = run_step(compile_step(venv / "bin" / "python", venv / "lib"))
    assert done.returncode == 0, done.stdout + done.stderr
    written = {p.relative_to(site).as_posix(): flags(p) for p in site.rglob("*.pyc")}
    assert written == {f"_hack/__pycache__/__init__.{sys.implementation.cache_tag}.pyc": CHECKED_HASH}


def test_the_step_still_fails_when_the_interpreter_is_missing(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    step = compile_step(tmp_path / "no-python", tmp_path / "lib")
    assert run_step(step).returncode != 0

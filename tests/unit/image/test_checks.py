"""The library and entrypoint checks (envbuild.image.checks) on hand-made image roots, without a build.

The imports need the image's own Python: tests/integration/image/test_image_checks.py runs them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from envbuild.errors import UsageError
from envbuild.image import checks
from envbuild.image.checks.rootfs import RootFS
from envbuild.lock.lockfile import LockEntry, LockSet
from envbuild.lock.spec import load_spec
from envbuild.lock.variants import targets
from support.elf import make_elf
from support.specs import MINIMAL, write_spec

SITE = "/opt/venv/lib/python3.11/site-packages"
LIB = "/usr/lib/x86_64-linux-gnu"
GPU = """
[accelerators.gpu]
cuda = "13"
base = { image = "registry.example/cuda@sha256:%s" }
""" % ("a" * 64)


def put(root: Path, path: str, data: bytes, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def project(tmp_path: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    write_spec(tmp_path, MINIMAL + GPU + extra)
    spec = load_spec(tmp_path)
    return spec, {t.variant.name: t for t in targets(spec)}


def image(tmp_path: Path) -> tuple[RootFS, set[str], checks._Owner]:
    """A base with libc, and a venv whose numpy needs libstdc++ and whose onnxruntime has plugins."""
    root = tmp_path / "root"
    put(root, f"{LIB}/libc.so.6", make_elf(soname="libc.so.6"))
    new = {
        f"{SITE}/numpy/_core/_umath.cpython-311-x86_64-linux-gnu.so": make_elf(needed=("libc.so.6", "libstdc++.so.6")),
        f"{SITE}/onnxruntime/capi/_state.cpython-311-x86_64-linux-gnu.so": make_elf(needed=("libonnxruntime.so.1",)),
        f"{SITE}/onnxruntime/capi/libonnxruntime.so.1": make_elf(soname="libonnxruntime.so.1", runpath="$ORIGIN"),
        f"{SITE}/onnxruntime/capi/libonnxruntime_providers_cuda.so": make_elf(needed=("libcuda.so.1", "libc.so.6")),
        f"{SITE}/onnxruntime/capi/libonnxruntime_providers_tensorrt.so": make_elf(needed=("libnvinfer.so.10",)),
        f"{SITE}/numpy/data.txt": b"not ELF",
    }
    for path, data in new.items():
        put(root, path, data)
    owners = {p: p.split("/")[6] for p in new}
    return RootFS(root), set(new), checks._Owner(owners, "/app", SITE)


def test_a_missing_library_names_its_package_and_who_needs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec, variants = project(tmp_path)
    root, new, owner = image(tmp_path)
    with caplog.at_level(logging.WARNING):
        count, problems, hints = checks._check_libraries(spec, variants["cpu-infer"], root, new, {}, owner)
    assert count == 5
    assert problems == [
        "libstdc++.so.6 is missing (Debian package libstdc++6), needed by numpy "
        "(numpy/_core/_umath.cpython-311-x86_64-linux-gnu.so)"
    ]
    assert hints == {
        "libraries": "add libstdc++6 to accelerators.cpu.base.packages in envbuild.toml, then run 'envbuild lock'"
    }
    # Plugins nothing links to: a warning each (libcuda.so.1 is the driver's, allowed only in GPU variants).
    warned = caplog.text
    assert "libonnxruntime_providers_tensorrt.so (onnxruntime) needs libnvinfer.so.10" in warned
    assert "libonnxruntime_providers_cuda.so (onnxruntime) needs libcuda.so.1" in warned


def test_gpu_variants_allow_the_driver_and_allow_missing_is_honoured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec, variants = project(tmp_path, '\n[checks]\nallow-missing = ["libnvinfer.so.10", "libstdc++.so.6"]\n')
    root, new, owner = image(tmp_path)
    with caplog.at_level(logging.WARNING):
        _, problems, _ = checks._check_libraries(spec, variants["gpu-infer"], root, new, {}, owner)
    assert problems == [] and caplog.text == ""


def test_an_image_base_gets_the_base_image_hint(tmp_path: Path) -> None:
    spec, variants = project(tmp_path)
    root, new, owner = image(tmp_path)
    _, _, hints = checks._check_libraries(spec, variants["gpu-infer"], root, new, {}, owner)
    assert hints["libraries"].startswith("install libstdc++6 in the gpu base image (registry.example/cuda@sha256:")


def test_the_entrypoint(tmp_path: Path) -> None:
    root = tmp_path / "root"
    put(root, "/opt/venv/bin/python3.11", b"#!", mode=0o755)
    os.symlink("python3.11", root / "opt/venv/bin/python")
    put(root, "/usr/local/bin/data", b"x", mode=0o644)
    tree = RootFS(root)
    env = {"PATH": "/opt/venv/bin:/usr/local/bin"}

    def entry(*argv: str) -> tuple[str, str | None, str | None]:
        return checks._entrypoint(tree, {"Entrypoint": list(argv)}, env, None)  # type: ignore[arg-type]

    assert entry("python", "-m", "app.serve") == ("ok", None, "app.serve")
    assert entry("python", "-u", "-m", "app") == ("ok", None, "app")
    assert entry("python", "-mapp") == ("ok", None, "app")
    assert entry("python", "-c", "print()") == ("ok", None, None)
    assert entry("/opt/venv/bin/python", "serve.py") == ("ok", None, None)
    assert entry() == ("none", None, None)
    assert entry("serve")[1] == "the entrypoint's command 'serve' is not an executable file on the image's PATH " \
        "(/opt/venv/bin:/usr/local/bin)"  # fmt: skip
    assert entry("data")[1] is not None  # there, but not executable
    assert (
        entry("/usr/bin/serve")[1] == "the entrypoint's command '/usr/bin/serve' is not an executable file in the image"
    )


def test_skip_import_names_are_checked_against_every_lock(tmp_path: Path) -> None:
    spec, _ = project(tmp_path, '\n[checks]\nskip-import = ["tensorrt", "nunpy"]\n')
    entry = LockEntry(
        name="gpu-infer", variant="gpu-infer", platform="linux/amd64", file="gpu-infer.txt", sha256="0" * 64, inputs={},
        packages={"numpy": {"version": "2.4.6"}, "tensorrt": {"version": "10.0"}},
    )  # fmt: skip
    lockset = LockSet(
        envbuild_version="0", resolver="uv", resolver_version="0", spec_file="envbuild.toml", python="3.11",
        exclude_newer="2026-11-01T00:00:00Z", index_url=None, indexes=[], bases={}, entries=(entry,),
    )  # fmt: skip
    with pytest.raises(
        UsageError, match=r"checks.skip-import: 'nunpy' \(did you mean 'numpy'\?\) locked by no variant"
    ):
        checks.check_opt_outs(spec, lockset)


def test_the_summary_line() -> None:
    report = checks.CheckReport(elf_files=214, modules=31, skipped=2, entrypoint="ok")
    assert report.summary() == "checks: 214 ELF files, 31 modules (2 skipped), entrypoint ok"

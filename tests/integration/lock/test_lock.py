"""``envbuild lock`` with real uv against the package index, on the demo and on small specs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envbuild.lock.resolvers.base import parse_requirements
from support.index import make_wheel, serve_index
from support.paths import REPO

pytestmark = pytest.mark.network

CUTOFF = "2026-11-01T00:00:00Z"


def write_spec(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "envbuild.toml").write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return root


def small_spec(
    root: Path, *, cpu: str = "", gpu: str = "", train: str = "", infer: str = '"numpy"', extra: str = ""
) -> Path:
    """A one- or two-accelerator spec with configurable dependencies."""
    gpu_table = f'[accelerators.gpu]\n{gpu}\nbase = {{ debian = "bookworm" }}\n' if gpu else ""
    train_table = f"[roles.train]\ndependencies = [{train}]\n" if train else ""
    return write_spec(
        root,
        f"""
        python = "3.11"
        exclude-newer = "{CUTOFF}"
        {extra}
        {train_table}
        [roles.infer]
        dependencies = [{infer}]

        [accelerators.cpu]
        {cpu}
        base = {{ debian = "bookworm" }}

        {gpu_table}
        """,
    )


def pins(path: Path) -> dict[str, str]:
    return {p.name: p.version for p in parse_requirements(path.read_text(), source=str(path))}


def snapshot(lock_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(lock_dir.iterdir())}


def test_demo_locks_four_variants_deterministically(demo: Path, cli) -> None:
    first = cli("-C", demo, "--json", "lock")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert sorted(report["locks"]) == ["cpu-infer", "cpu-train", "gpu-infer", "gpu-train"]
    lock_dir = demo / "lockfiles"
    cpu_infer, gpu_infer = pins(lock_dir / "cpu-infer.txt"), pins(lock_dir / "gpu-infer.txt")
    assert "onnxruntime" in cpu_infer and "scikit-learn" not in cpu_infer
    assert not any(n.startswith("nvidia-") for n in cpu_infer)
    assert "onnxruntime-gpu" in gpu_infer and "onnxruntime" not in gpu_infer
    assert "nvidia-cudnn-cu13" in gpu_infer
    assert "skl2onnx" in pins(lock_dir / "cpu-train.txt")
    before = snapshot(lock_dir)

    # Relock from scratch: the same bytes.
    for path in lock_dir.iterdir():
        path.unlink()
    assert cli("-C", demo, "lock").code == 0
    assert snapshot(lock_dir) == before
    # Relock over the existing files: nothing rewritten.
    again = cli("-C", demo, "--json", "lock")
    assert json.loads(again.out)["changed"] == []
    assert snapshot(lock_dir) == before

    meta = json.loads((lock_dir / "envbuild.lock.json").read_text())
    assert meta["resolver"]["name"] == "uv" and re.fullmatch(r"\d+\.\d+\.\d+", meta["resolver"]["version"])
    assert meta["exclude-newer"] == CUTOFF and meta["python"] == "3.11"
    assert meta["bases"]["cpu"]["kind"] == "debian"
    assert meta["locks"]["gpu-infer"]["platform"] == "linux/amd64"


def test_committed_demo_locks_are_current(cli) -> None:
    """CI fails when the repository's own lockfiles/ are stale against envbuild.toml."""
    result = cli("-C", REPO, "lock", "--check")
    assert result.code == 0, result.err


def test_check_says_which_variant_is_stale_and_why_offline(demo: Path, cli) -> None:
    assert cli("-C", demo, "lock").code == 0
    assert cli("-C", demo, "lock", "--check").code == 0
    spec = demo / "envbuild.toml"
    original = spec.read_text()

    spec.write_text(original.replace(CUTOFF, "2026-10-01T00:00:00Z"))
    result = cli("-C", demo, "--json", "lock", "--check")
    assert result.code == 1
    stale = {s["target"]: s["reasons"] for s in json.loads(result.out)["stale"]}
    assert set(stale) == {"cpu-train", "cpu-infer", "gpu-train", "gpu-infer"}
    assert any("exclude-newer changed" in r and "2026-10-01" in r for r in stale["cpu-infer"])

    demo_pyproject = demo / "demo" / "pyproject.toml"
    spec.write_text(original)
    demo_pyproject.write_text(
        demo_pyproject.read_text().replace('"skl2onnx>=1.17",', '"skl2onnx>=1.17",\n    "joblib",')
    )
    result = cli("-C", demo, "lock", "--check")
    assert result.code == 1
    assert "cpu-train: requirement added: joblib" in result.err
    assert "cpu-infer" not in result.err  # infer does not use the train group

    demo_pyproject.write_text(demo_pyproject.read_text().replace('\n    "joblib",', ""))
    lockfile = demo / "lockfiles" / "cpu-infer.txt"
    lockfile.write_text(lockfile.read_text().replace("numpy==", "numpy>="))
    result = cli("-C", demo, "lock", "--check")
    assert result.code == 1 and "cpu-infer.txt was edited" in result.err

    # The check needs no network: point every proxy at a dead port.
    lockfile.unlink()
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "envbuild", "-C", demo, "lock", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "cpu-infer.txt is missing" in proc.stderr


def test_lockfile_installs_with_pip_require_hashes_and_uv_pip_sync(tmp_path: Path) -> None:
    lock = REPO / "lockfiles" / "cpu-infer.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's pip config adds indexes and constraints
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", "--only-binary", ":all:",
         "--target", tmp_path / "pip", "-r", lock],
        env=env, check=True, timeout=600,
    )  # fmt: skip
    assert (tmp_path / "pip" / "onnxruntime").is_dir()

    uv = str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, tmp_path / "venv"], check=True, timeout=120)
    subprocess.run(
        [uv, "pip", "sync", "--quiet", "--require-hashes", "--python", tmp_path / "venv", lock], check=True, timeout=600
    )
    out = subprocess.run(
        [tmp_path / "venv" / "bin" / "python", "-c", "import onnxruntime, numpy; print(numpy.__version__)"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == pins(lock)["numpy"]


def test_cpu_lock_with_cuda_packages_is_refused(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"numpy", "nvidia-cuda-runtime-cu12==12.8.*"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    assert "cpu-infer: the CPU lock contains CUDA packages: nvidia-cuda-runtime-cu12==12.8" in result.err
    assert "(CUDA 12)" in result.err and "hint:" in result.err
    assert not (root / "lockfiles").exists()


def test_gpu_lock_with_another_cuda_major_is_refused(tmp_path: Path, cli) -> None:
    root = small_spec(
        tmp_path / "p",
        infer='"onnxruntime"',
        gpu='cuda = "12"\nreplace = { onnxruntime = "onnxruntime-gpu[cuda,cudnn]" }',
    )
    result = cli("-C", root, "lock")
    assert result.code == 1
    assert re.search(
        r"gpu-infer: the spec says CUDA 12, but the lock has .*nvidia-cudnn-cu13==[\d.]+ \(CUDA 13\)", result.err
    )


def test_train_and_infer_share_versions(tmp_path: Path, cli) -> None:
    """Training caps numpy; inference alone would take a newer one; the lock aligns them."""
    root = small_spec(tmp_path / "p", train='"numpy<2.3"', infer='"numpy"')
    assert cli("-C", root, "lock").code == 0
    train, infer = pins(root / "lockfiles" / "cpu-train.txt"), pins(root / "lockfiles" / "cpu-infer.txt")
    assert train["numpy"].startswith("2.2.")
    assert infer["numpy"] == train["numpy"]


def test_train_and_infer_that_cannot_share_versions_fail_naming_the_package(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", train='"numpy<2.3"', infer='"numpy>=2.3"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    assert re.search(
        r"cpu-infer cannot use the versions cpu-train was locked with: numpy: train 2\.2\.\d+, infer 2\.\d+", result.err
    )
    assert "served with the library versions it was trained with" in result.err


def test_unsatisfiable_requirements_show_the_resolver_explanation(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"numpy<2", "numpy>=2"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    assert "cpu-infer: the requirements cannot be satisfied together" in result.err
    assert "numpy" in result.err and "Traceback" not in result.err


def test_a_package_with_no_wheels_is_named_with_the_wheels_only_fix(tmp_path: Path, cli) -> None:
    """docopt publishes only a source distribution."""
    root = small_spec(tmp_path / "p", infer='"numpy", "docopt"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    said = " ".join(result.err.split())
    assert "cpu-infer: docopt has no wheel for Python 3.11 on linux/amd64 (manylinux_2_28)" in said
    assert "envbuild installs wheels only" in said and 'replace = { "docopt" = "ANOTHER-PACKAGE" }' in said
    assert "loosen" not in said and "Traceback" not in said


def test_a_misspelt_name_suggests_the_real_one(tmp_path: Path, cli) -> None:
    """uv asks the index for 'scikitlearn'; the suggestion comes from the index's list (the seeded cache)."""
    root = small_spec(tmp_path / "p", infer='"numpy", "scikitlearn>=1.5"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    said = " ".join(result.err.split())
    assert "cpu-infer: the index (https://pypi.org/simple) has no package named scikitlearn" in said
    assert "did you mean scikit-learn" in said and "loosen" not in said


def test_a_misspelt_name_on_a_mirror_is_checked_against_the_mirrors_list(tmp_path: Path, cli) -> None:
    """index-url is a real index on 127.0.0.1: its root page is read for the nearest names, once."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    served = [make_wheel(wheels, name, "1.0.0") for name in ("scikit-learn", "scikit-image", "numpy")]
    with serve_index(served) as index:
        root = small_spec(tmp_path / "p", infer='"scikitlearn"', extra=f'index-url = "{index.url}"')
        result = cli("-C", root, "lock")
    assert result.code == 1
    said = " ".join(result.err.split())
    assert f"the index ({index.url}) has no package named scikitlearn" in said
    assert "did you mean scikit-learn?" in said
    assert index.requests.count("/simple/") == 1


def test_a_real_conflict_keeps_the_loosen_hint(tmp_path: Path, cli) -> None:
    """pandas 2.2.3 needs numpy>=1.23.2 on Python 3.11."""
    root = small_spec(tmp_path / "p", infer='"numpy<1.20", "pandas==2.2.3"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    said = " ".join(result.err.split())
    assert "cpu-infer: the requirements cannot be satisfied together" in said
    assert "loosen the conflicting requirements named above" in said and "pandas==2.2.3 depends on numpy" in said


def test_unreachable_index_names_the_url(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", extra='index-url = "http://127.0.0.1:9/simple"')
    result = cli("-C", root, "lock")
    assert result.code == 1
    assert "unreachable" in result.err and "127.0.0.1:9" in result.err


def test_failed_lock_leaves_the_previous_lock_intact(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"numpy"')
    assert cli("-C", root, "lock").code == 0
    before = snapshot(root / "lockfiles")
    spec = root / "envbuild.toml"
    spec.write_text(
        spec.read_text().replace('dependencies = ["numpy"]', 'dependencies = ["numpy", "envbuild-no-such-package-xyz"]')
    )
    assert cli("-C", root, "lock").code == 1
    assert snapshot(root / "lockfiles") == before
    assert not [p for p in (root / "lockfiles").iterdir() if p.name.endswith(".tmp")]


def test_upgrade_package_moves_only_that_package(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"numpy", "packaging"')
    spec = root / "envbuild.toml"
    spec.write_text(spec.read_text().replace(CUTOFF, "2025-03-01T00:00:00Z"))
    assert cli("-C", root, "lock").code == 0
    old = pins(root / "lockfiles" / "cpu-infer.txt")
    spec.write_text(spec.read_text().replace("2025-03-01T00:00:00Z", CUTOFF))

    assert cli("-C", root, "lock").code == 0  # a new cutoff alone keeps the pins
    assert pins(root / "lockfiles" / "cpu-infer.txt") == old
    assert cli("-C", root, "lock", "--upgrade-package", "numpy").code == 0
    moved = pins(root / "lockfiles" / "cpu-infer.txt")
    assert moved["numpy"] != old["numpy"] and moved["packaging"] == old["packaging"]
    assert cli("-C", root, "lock", "--upgrade").code == 0
    assert pins(root / "lockfiles" / "cpu-infer.txt")["packaging"] != old["packaging"]


def test_two_platforms_get_one_lockfile_each(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"onnxruntime"', extra='platforms = ["linux/amd64", "linux/arm64"]')
    assert cli("-C", root, "lock").code == 0
    amd, arm = root / "lockfiles" / "cpu-infer-x86_64.txt", root / "lockfiles" / "cpu-infer-aarch64.txt"
    assert "linux/amd64" in amd.read_text() and "linux/arm64" in arm.read_text()
    assert "onnxruntime" in pins(arm)


def test_private_index_routing_and_credentials(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    private = make_wheel(wheels, "envbuild-private-pkg", "1.0.0")
    decoy = make_wheel(wheels, "numpy", "99.0.0")  # dependency confusion: must never be picked
    password = "s3cret-index-pass"
    with serve_index([private, decoy], username="ci-bot", password=password) as index:
        root = small_spec(
            tmp_path / "p",
            infer='"numpy", "envbuild-private-pkg"',
            extra=f'[[indexes]]\nname = "private"\nurl = "{index.url}"\n'
            'packages = ["envbuild-private-pkg"]\nexclude-newer = false',
        )
        denied = cli("-C", root, "lock")
        assert denied.code == 1
        assert f"envbuild-private-pkg was not found on index 'private' ({index.url})" in denied.err
        assert "UV_INDEX_PRIVATE_PASSWORD" in denied.err

        monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", "ci-bot")
        monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", password)
        result = cli("-C", root, "-vv", "lock")
        assert result.code == 0, result.err
        assert not any(r.startswith("/simple/numpy") for r in index.requests)  # explicit routing
    lock = root / "lockfiles" / "cpu-infer.txt"
    locked = pins(lock)
    assert locked["envbuild-private-pkg"] == "1.0.0" and locked["numpy"] != "99.0.0"
    assert f"--extra-index-url {index.url}" in lock.read_text()
    everything = result.out + result.err + denied.err + "".join(p.read_text() for p in (root / "lockfiles").iterdir())
    assert password not in everything
    meta = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())
    assert meta["locks"]["cpu-infer"]["packages"]["envbuild-private-pkg"]["index"] == "private"


@pytest.mark.slow
def test_pip_tools_resolver_writes_the_same_pins(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", infer='"numpy", "onnxruntime"')
    assert cli("-C", root, "lock").code == 0
    by_uv = pins(root / "lockfiles" / "cpu-infer.txt")
    result = cli("-C", root, "lock", "--resolver", "pip-tools")
    assert result.code == 0, result.err
    assert pins(root / "lockfiles" / "cpu-infer.txt") == by_uv
    meta = json.loads((root / "lockfiles" / "envbuild.lock.json").read_text())
    assert meta["resolver"]["name"] == "pip-tools"


def test_pip_tools_refuses_what_it_cannot_resolve(tmp_path: Path, cli) -> None:
    root = small_spec(tmp_path / "p", extra='platforms = ["linux/arm64"]')
    result = cli("-C", root, "lock", "--resolver", "pip-tools")
    assert result.code == 2
    assert "pip-tools resolves for the interpreter it runs on" in result.err and "--resolver uv" in result.err


@pytest.mark.slow
def test_pip_tools_tells_a_package_without_wheels_from_an_unknown_name(tmp_path: Path, cli) -> None:
    """pip says "from versions: none" for both; the project's page on the index tells them apart."""
    for name, words in (
        ("docopt", "docopt has no wheel for Python 3.11 on linux/amd64"),
        ("scikitlearn", "has no package named scikitlearn"),
    ):
        root = small_spec(tmp_path / name, infer=f'"{name}"')
        result = cli("-C", root, "lock", "--resolver", "pip-tools")
        assert result.code == 1, result.err
        said = " ".join(result.err.split())
        assert words in said and "loosen" not in said, result.err  # (pip-compile's own traceback is its details)
    assert "did you mean scikit-learn" in said


def test_a_left_out_variant_is_never_locked_and_its_old_lockfile_goes(tmp_path: Path, cli) -> None:
    """variants = [...]: lock, lock --check and image all use the one selection."""
    root = small_spec(
        tmp_path / "p", train='"numpy"', infer='"numpy"', gpu='cuda = "12"',
        extra='variants = ["cpu-train", "cpu-infer", "gpu-train"]',
    )  # fmt: skip
    result = cli("-C", root, "lock")
    assert result.code == 0, result.err
    lock_dir = root / "lockfiles"
    assert sorted(p.name for p in lock_dir.glob("*-*.txt")) == ["cpu-infer.txt", "cpu-train.txt", "gpu-train.txt"]
    # gpu-train locks nothing that uses a GPU: no "no CUDA library" noise, but the way to leave it out.
    said = " ".join(result.err.split())
    assert "no CUDA library" not in said
    assert "gpu-train: no locked package is known to use a GPU" in said
    assert 'leave it out with variants = ["cpu-train", "cpu-infer"] in the spec' in said
    assert cli("-C", root, "lock", "--check").code == 0

    refused = cli("-C", root, "image", "--variant", "gpu-infer")
    assert refused.code == 2 and "variant 'gpu-infer' is left out by the spec" in refused.err

    spec = root / "envbuild.toml"
    spec.write_text(spec.read_text().replace('"gpu-train"]', '"gpu-infer"]'))
    stale = cli("-C", root, "lock", "--check")
    assert stale.code == 1
    assert "gpu-train: locked, but no longer in the spec" in stale.err and "gpu-infer: never locked" not in stale.err
    relocked = cli("-C", root, "lock")
    assert relocked.code == 0, relocked.err
    assert "1 removed (gpu-train.txt)" in relocked.err
    assert sorted(p.name for p in lock_dir.glob("*-*.txt")) == ["cpu-infer.txt", "cpu-train.txt", "gpu-infer.txt"]
    assert cli("-C", root, "lock", "--check").code == 0


def test_gpu_variants_lock_and_render_for_arm64(tmp_path: Path, cli) -> None:
    """CUDA wheels for aarch64 where they exist (cupy, the nvidia-* libraries): the GPU variants lock per
    platform, and the one Dockerfile installs each build's staged lockfile, CUDA's libraries on the path.
    Building the arm64 GPU image is a benchmark's job (gigabytes of wheels), not this test's."""
    root = small_spec(
        tmp_path / "gpu-arm",
        infer='"numpy>=2"',
        gpu='cuda = "12"\ndependencies = ["cupy-cuda12x", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"]',
        extra='platforms = ["linux/amd64", "linux/arm64"]',
    )
    locked = cli("-C", root, "--json", "lock")
    assert locked.code == 0, locked.err
    lock_dir = root / "lockfiles"
    arm, amd = pins(lock_dir / "gpu-infer-aarch64.txt"), pins(lock_dir / "gpu-infer-x86_64.txt")
    assert {"cupy-cuda12x", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"} <= set(arm)
    assert set(arm) == set(amd)
    assert "# envbuild lock: gpu-infer (linux/arm64)" in (lock_dir / "gpu-infer-aarch64.txt").read_text()
    rendered = cli("-C", root, "dockerfile")
    assert rendered.code == 0, rendered.err
    dockerfile = (root / "images" / "gpu-infer.Dockerfile").read_text()
    assert "source=.envbuild/stage/gpu-infer/lock.txt" in dockerfile
    assert "lockfiles/gpu-infer-x86_64.txt, lockfiles/gpu-infer-aarch64.txt" in dockerfile.splitlines()[0]
    assert "site-packages/nvidia/cublas/lib" in dockerfile

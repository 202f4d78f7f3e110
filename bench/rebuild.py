"""Benchmark an audit rebuild against the original build, and a vendor archive against its image.

Run from the repository root::

    .venv/bin/python bench/rebuild.py [--runs 3] [--json]

It copies the demo project into a fresh git repository (tests/support/demo.py, fixed commit
date), starts a real registry on 127.0.0.1 (tests/support/registry.py), makes a throwaway
key, builds the cpu-infer image, pushes it with its signed SBOM and provenance, and writes a
vendor archive. Then, interleaved, ``--runs`` times:

- ``envbuild image`` (the original build): the project's previous image removed first, so it
  builds; the cache of bases and wheels is warm, as on a build machine;
- ``envbuild rebuild REF@DIGEST``: provenance fetched and verified, source exported from the
  recorded commit, inputs found by digest in the same cache, built, digests compared;
- ``envbuild rebuild --from ARCHIVE`` under ``unshare -n``: everything from the archive, no network.

Every rebuild must be identical (exit status 1 otherwise). It uses envbuild's cache
(``$ENVBUILD_CACHE_DIR`` or ``~/.cache/envbuild``) for bases and wheels.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import BIN, REPO, envbuild_env, log, run, timed

sys.path.insert(0, str(REPO / "tests"))

from support.demo import make_project
from support.registry import run_registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-rebuild-") as tmp:
        work = Path(tmp)
        project = make_project(work / "demo")
        env = envbuild_env(work / "pycache")
        env["ENVBUILD_SIGNING_KEY_PASSWORD"] = "bench-only-password"
        envbuild = [str(BIN / "python"), "-m", "envbuild", "-C", str(project)]
        with run_registry(work) as registry:
            run([*envbuild, "keygen", "-o", work], env=env)
            log("building, pushing and signing the demo image")
            pushed = json.loads(
                run(
                    [*envbuild, "--json", "image", "--variant", "cpu-infer", "--push", f"{registry.host}/bench/iris",
                     "--insecure", "--sign", "--key", work / "envbuild.key"],
                    env=env,
                )
            )["images"][0]  # fmt: skip
            digest = pushed["digest"]
            ref = f"{registry.host}/bench/iris@{digest}"
            trust = ("--key", str(work / "envbuild.pub"), "--insecure")
            archive = work / "iris.vendor.tar"
            vendor_seconds, _ = timed(lambda: run([*envbuild, "vendor", ref, "-o", archive, *trust], env=env))
            layout = project / ".envbuild" / "images" / "cpu-infer"
            image_bytes = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
            archive_bytes = archive.stat().st_size

            def original() -> list[str | Path]:
                shutil.rmtree(project / ".envbuild" / "images", ignore_errors=True)
                return [*envbuild, "image", "--variant", "cpu-infer"]

            rows = {
                "original build (envbuild image)": original,
                "rebuild from the registry and checkout": lambda: [*envbuild, "--json", "rebuild", ref, *trust],
                "rebuild --from archive, offline": lambda: [
                    "unshare", "-n", "--", *envbuild, "--json", "rebuild", ref, "--from", archive, *trust,
                ],
            }  # fmt: skip
            times: dict[str, list[float]] = {name: [] for name in rows}
            for i in range(1, args.runs + 1):
                for name, command in rows.items():
                    argv_ = command()
                    took, out = timed(functools.partial(run, argv_, env=env))
                    times[name].append(took)
                    if "rebuild" in name and json.loads(out)["rebuilt"] != digest:
                        log(f"bench: {name} was not identical")
                        return 1
                    log(f"run {i}/{args.runs}: {name}: {times[name][-1]:.1f} s")
    summary = {
        "image_bytes": image_bytes,
        "archive_bytes": archive_bytes,
        "vendor_seconds": round(vendor_seconds, 2),
        "rows": {n: {"median": round(statistics.median(t), 1), "min": round(min(t), 1), "max": round(max(t), 1)}
                 for n, t in times.items()},
    }  # fmt: skip
    return _print(summary, as_json=args.json, runs=args.runs)


def _print(summary: dict[str, object], *, as_json: bool, runs: int) -> int:
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    rows = summary["rows"]
    assert isinstance(rows, dict)
    print(f"demo cpu-infer image, {runs} runs (median, min-max), warm cache of bases and wheels:")
    for name, row in rows.items():
        print(f"  {name:<42} {row['median']:6.1f} s   ({row['min']:.1f}-{row['max']:.1f})")
    image, archive = summary["image_bytes"], summary["archive_bytes"]
    assert isinstance(image, int) and isinstance(archive, int)
    print(f"  image blobs {image / 1e6:.1f} MB; vendor archive {archive / 1e6:.1f} MB ({archive / image:.2f}x)")
    print(f"  envbuild vendor took {summary['vendor_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

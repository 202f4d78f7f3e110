"""Benchmark ``envbuild verify`` against a loopback registry, beside skopeo reading the same image.

Run from the repository root, after ``envbuild image --variant cpu-infer`` has built the demo image::

    .venv/bin/python bench/verify.py [--runs 5] [--json]

It starts a real registry (docker-registry 2.8, tests/support/registry.py) on 127.0.0.1, makes a
throwaway key pair, pushes the demo's cpu-infer image and attaches its SBOM, provenance and
signature with ``envbuild attest`` and ``envbuild sign`` (each timed once: the SBOM is made
from the image's layers). Then, interleaved, ``--runs`` times after one warm-up each:

- ``envbuild verify`` (full): tag already pinned by digest; manifest, config and every layer
  fetched and hashed; referrers listed; three bundles fetched and checked; SBOM and
  provenance content checked;
- ``envbuild verify --no-layers``: the same without fetching the layers;
- ``skopeo inspect``: reads the manifest and config only, checks no signature — the floor for
  any tool that starts, talks to the registry and prints;
- ``skopeo copy`` to a directory: fetches every blob and checks its digest, as the full verify
  does, but checks no signature.

cosign is not installable here (its release binaries come from a host this machine does not
reach), so it is not a row. envbuild runs with a private bytecode cache (see bench/benchlib.py
``envbuild_env``): an installed envbuild has its .pyc files. Exit status 1 when a verify
does not pass.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import BIN, REPO, envbuild_env, log, run, timed

sys.path.insert(0, str(REPO / "tests"))

from push import skopeo_env
from support.registry import run_registry

LAYOUT = REPO / ".envbuild" / "images" / "cpu-infer"


def run_timed(argv: list[str | Path], env: dict[str, str]) -> float:
    """Wall-clock seconds one command takes."""
    return timed(lambda: run(argv, env=env))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (LAYOUT / "build.json").is_file():
        sys.exit(f"bench: no demo image at {LAYOUT}: run '.venv/bin/envbuild image --variant cpu-infer' first")
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        sys.exit("bench: skopeo is not installed (bash scripts/setup.sh --with-test-tools)")
    envbuild = [str(BIN / "python"), "-m", "envbuild", "-C", str(REPO)]
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-verify-") as tmp:
        work = Path(tmp)
        env = envbuild_env(work / "pycache")
        env["ENVBUILD_SIGNING_KEY_PASSWORD"] = "bench-only-password"
        s_env = skopeo_env(work / "skopeo-cache")
        with run_registry(work) as registry:
            repo = f"{registry.host}/bench/iris"
            run([*envbuild, "keygen", "-o", work], env=env)
            pushed = json.loads(run([*envbuild, "--json", "push", LAYOUT, f"{repo}:cpu-infer", "--insecure"], env=env))
            ref = f"{repo}:cpu-infer@{pushed['digest']}"
            by_digest = f"{repo}@{pushed['digest']}"  # skopeo takes a tag or a digest, not both
            key = ("--key", str(work / "envbuild.key"), "--insecure")
            once = {
                "envbuild attest (SBOM + provenance, signed)": run_timed([*envbuild, "attest", ref, *key], env),
                "envbuild sign": run_timed([*envbuild, "sign", ref, *key], env),
            }
            verify = [*envbuild, "-q", "verify", ref, "--key", work / "envbuild.pub", "--insecure"]
            rows = {
                "envbuild verify": lambda i: verify,
                "envbuild verify --no-layers": lambda i: [*verify, "--no-layers"],
                "skopeo inspect": lambda i: [skopeo, "inspect", "--tls-verify=false", f"docker://{by_digest}"],
                "skopeo copy (all blobs)": lambda i: [
                    skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{by_digest}", f"dir:{work}/copy-{i}",
                ],
            }  # fmt: skip
            times: dict[str, list[float]] = {name: [] for name in rows}
            for i in range(args.runs + 1):
                for name, command in rows.items():
                    took = run_timed(command(i), s_env if name.startswith("skopeo") else env)
                    if i:  # run 0 warms up
                        times[name].append(took)
                        log(f"run {i}/{args.runs}: {name}: {took:.2f} s")
            checked = [*envbuild, "--json", *verify[len(envbuild) + 1 :]]
            report = json.loads(subprocess.run(list(map(str, checked)), env=env, capture_output=True, text=True).stdout)
    size = sum(p.stat().st_size for p in (LAYOUT / "blobs" / "sha256").iterdir())
    summary = {
        "image": {"ref": "cpu-infer", "digest": pushed["digest"], "blob_bytes": size},
        "once": {k: round(v, 2) for k, v in once.items()},
        "rows": {
            name: {"median": round(statistics.median(t), 3), "min": round(min(t), 3), "max": round(max(t), 3)}
            for name, t in times.items()
        },
        "verified": report.get("verified") is True,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"demo cpu-infer image, {size / 1e6:.1f} MB of blobs, {args.runs} runs (median, min-max):")
        for name, row in summary["rows"].items():
            print(f"  {name:<30} {row['median']:6.2f} s   ({row['min']:.2f}-{row['max']:.2f})")
        for name, seconds in summary["once"].items():
            print(f"  {name:<30} {seconds:6.2f} s   (once)")
        print(f"  verified: {summary['verified']}")
    return 0 if summary["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())

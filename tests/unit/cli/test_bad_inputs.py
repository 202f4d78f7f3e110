"""Bad inputs across every command, as one table: each ends in a clear refusal, never a traceback or exit 0.

Issue 11 ("keep every promise on machines and projects we never saw") listed bad inputs that
ended in a Python traceback or, worse, in exit 0. Each row here is one such input: files
written into a fresh project, a command line, the exit code (2: bad input, 1: a failure) and
the words stderr must hold. The runner (support.badinputs) also checks that no row reaches
the CLI's last-resort "internal error" handler: every cause has its own message and hint.
Nothing here needs the network; rows that need a registry are in
tests/integration/cli/test_bad_inputs_live.py.
"""

# ruff: noqa: E501 (the table keeps one case per line)
from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from envbuild.supply.signing.keys import generate_keypair, write_keypair
from support.badinputs import ZERO_DIGEST, Case, clean_environment, run_case
from support.layouts import make_files_layout, make_layout
from support.records import record_json
from support.specs import MINIMAL

NOWHERE = "127.0.0.1:9"  # a closed port: rows that reach the network fail there, never elsewhere
REF = f"{NOWHERE}/team/app@{ZERO_DIGEST}"
DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"


def spec(text: str = "", *, base: str = MINIMAL) -> dict[str, str]:
    """An envbuild.toml: the valid one plus ``text`` (TOML lets later tables follow)."""
    return {"envbuild.toml": base + text}


def spec_with(old: str, new: str) -> dict[str, str]:
    """The valid spec with one line changed."""
    assert old in MINIMAL, old
    return {"envbuild.toml": MINIMAL.replace(old, new)}


def pyproject(text: str) -> dict[str, str]:
    """The valid spec reusing a pyproject.toml holding ``text``."""
    return {"envbuild.toml": 'project = "."\n' + MINIMAL, "pyproject.toml": text}


def keys(root: Path) -> None:
    """An unencrypted key pair: envbuild.key and envbuild.pub."""
    write_keypair(root, "envbuild", generate_keypair(None))


def layout(root: Path) -> None:
    """A small valid OCI layout in lay/."""
    make_layout(root / "lay")


def edit_layout(change: str) -> object:
    """A layout in lay/ damaged by ``change``: what a truncated copy or a tampered file leaves."""

    def setup(root: Path) -> None:
        made = make_layout(root / "lay")
        index = root / "lay" / "index.json"
        if change == "no-oci-layout":
            (root / "lay" / "oci-layout").unlink()
        elif change == "index-not-json":
            index.write_text("{not json", encoding="utf-8")
        elif change == "index-not-utf8":
            index.write_bytes(b'{"manifests": "\xff\xfe"}')
        elif change == "index-list":
            index.write_text("[]", encoding="utf-8")
        elif change == "manifests-string":
            index.write_text('{"schemaVersion": 2, "manifests": "x"}', encoding="utf-8")
        elif change == "descriptor-no-type":
            index.write_text(json.dumps({"manifests": [{"digest": made.digest, "size": 1}]}), encoding="utf-8")
        elif change == "descriptor-bad-size":
            entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": made.digest, "size": "big"}
            index.write_text(json.dumps({"manifests": [entry]}), encoding="utf-8")
        elif change == "descriptor-bad-digest":
            entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "md5:00", "size": 1}
            index.write_text(json.dumps({"manifests": [entry]}), encoding="utf-8")
        elif change == "manifest-missing":
            made.blob_path(made.digest).unlink()
        elif change == "manifest-not-json":
            _replace_manifest(root / "lay", b"not json")
        elif change == "manifest-list":
            _replace_manifest(root / "lay", b"[1, 2]")
        elif change == "manifest-config-string":
            _replace_manifest(root / "lay", b'{"schemaVersion": 2, "config": "x", "layers": []}')
        elif change == "layer-missing":
            made.blob_path(made.layers[0]).unlink()
        elif change == "layer-corrupt":
            made.blob_path(made.layers[0]).write_bytes(b"tampered")
        else:
            raise AssertionError(change)

    return setup


def _replace_manifest(path: Path, data: bytes) -> None:
    """Store ``data`` as a blob and point index.json's only entry at it."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    (path / "blobs" / "sha256" / digest).write_bytes(data)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{digest}", "size": len(data)}
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}), encoding="utf-8")


def local_build(change: str = "") -> object:
    """A local build of cpu-infer as 'envbuild image' leaves it, with a valid spec and key; then ``change``."""

    def setup(root: Path) -> None:
        (root / "envbuild.toml").write_text(MINIMAL, encoding="utf-8")
        keys(root)
        where = root / ".envbuild" / "images" / "cpu-infer"
        made = make_files_layout(where, [[("app/x.py", b"print(1)\n", 0o644, 0, 0)]], name="cpu-infer")
        record = record_json(digest=made.digest, variant="cpu-infer", source_date_epoch=0)
        (where / "build.json").write_text(json.dumps(record), encoding="utf-8")
        if change == "manifest-missing":
            made.blob_path(made.digest).unlink()
        elif change == "index-list":
            (where / "index.json").write_text("[]", encoding="utf-8")
        elif change == "descriptor-no-type":
            (where / "index.json").write_text(json.dumps({"manifests": [{"digest": made.digest}]}), encoding="utf-8")
        elif change == "manifest-not-json":
            _replace_manifest(where, b"not json")
            index = json.loads((where / "index.json").read_text(encoding="utf-8"))
            record["digest"] = index["manifests"][0]["digest"]
            (where / "build.json").write_text(json.dumps(record), encoding="utf-8")
        elif change:
            raise AssertionError(change)

    return setup


def locked(meta: bytes | str, lockfile: bytes | str = "numpy==2.0.0\n") -> dict[str, str | bytes]:
    """A valid spec with lockfiles/: the metadata file and one lockfile as given."""
    return {**spec(), "lockfiles/envbuild.lock.json": meta, "lockfiles/cpu-infer-linux-amd64.txt": lockfile}


def file_as_parent(rel: str) -> object:
    """Make ``rel`` a regular file, so nothing can be written below it (we run as root: modes do not stop us)."""

    def setup(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("a file, not a directory\n", encoding="utf-8")

    return setup


def both(*setups: object) -> object:
    """Run several setups in turn."""

    def setup(root: Path) -> None:
        for one in setups:
            one(root)  # type: ignore[operator]

    return setup


C = Case
# One row per line, so the table reads as a table.
# fmt: off
CASES: list[Case] = [
    # --- global options -------------------------------------------------------------------------------
    C("global-dir-missing", ("-C", "{p}/nope", "lock", "--check"), 2, ("is not a directory",), hint=False),
    C("global-dir-is-file", ("-C", "{p}/f", "lock", "--check"), 2, ("is a file",), {"f": "x"}, hint=False),
    C("global-unknown-command", ("lokc",), 2, ("No such command",), hint=False),
    C("global-unknown-option", ("--colour", "lock"), 2, ("No such option",), hint=False),
    C("global-C-without-value", ("-C",), 2, ("requires an argument",), hint=False),
    C("global-env-dir-missing", ("lock", "--check"), 2, ("is not a directory",), env={"ENVBUILD_DIR": "{p}/nope"}, hint=False),
    C("global-env-json-not-bool", ("lock", "--check"), 2, ("not a valid boolean",), env={"ENVBUILD_JSON": "perhaps"}, hint=False),
    C("global-env-jobs-text", ("push", "lay", f"{NOWHERE}/a"), 2, ("not a valid integer",), setup=layout, env={"ENVBUILD_JOBS": "many"}, hint=False),
    C("global-env-jobs-zero", ("push", "lay", f"{NOWHERE}/a"), 2, ("0 is not in the range",), setup=layout, env={"ENVBUILD_JOBS": "0"}, hint=False),
    C("global-jobs-too-many", ("pull", REF, "-o", "out", "-j", "99"), 2, ("99 is not in the range",), hint=False),
    # --- init -----------------------------------------------------------------------------------------
    C("docs-unknown-topic", ("docs", "spce"), 2, ("no documentation topic 'spce'", "spec"), spec()),
    C("init-spec-exists", ("init",), 2, ("already", "--force"), spec()),
    C("init-pyproject-not-toml", ("init",), 2, ("not valid TOML",), {"pyproject.toml": "[project\n"}),
    C("init-pyproject-not-utf8", ("init",), 2, ("not UTF-8",), {"pyproject.toml": b'[project]\nname = "\xff"\n'}),
    C("init-pyproject-deep", ("init",), 2, ("nested too deeply",), {"pyproject.toml": DEEP}),
    C("init-project-not-table", ("init",), 2, ("[project]",), {"pyproject.toml": 'project = "x"\n'}),
    C("init-name-not-string", ("init",), 2, ("project.name",), {"pyproject.toml": "[project]\nname = 5\n"}),
    C("init-requires-python-int", ("init",), 2, ("requires-python",), {"pyproject.toml": '[project]\nname = "a"\nrequires-python = 3\n'}),
    C("init-spec-path-is-dir", ("init", "--force"), 2, ("cannot write",), setup=lambda r: (r / "envbuild.toml").mkdir()),
    # --- the spec (read by lock, dockerfile, image, ci) ----------------------------------------------
    C("spec-none", ("lock",), 2, ("no envbuild spec",)),
    C("spec-not-utf8", ("lock",), 2, ("not UTF-8",), {"envbuild.toml": b'python = "3.11"\nname = "\xe9t\xe9"\n'}),
    C("spec-not-toml", ("lock",), 2, ("not valid TOML",), {"envbuild.toml": "python = \n"}),
    C("spec-deeply-nested", ("lock",), 2, ("nested too deeply",), {"envbuild.toml": DEEP}),
    C("spec-deep-inline-tables", ("lock",), 2, ("nested too deeply",), {"envbuild.toml": "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"}),
    C("spec-is-directory", ("lock",), 2, ("envbuild.toml",), setup=lambda r: (r / "envbuild.toml").mkdir()),
    C("spec-unknown-key", ("lock",), 2, ("exclude_newer: unknown key", "did you mean 'exclude-newer'"), {"envbuild.toml": MINIMAL.replace("exclude-newer", "exclude_newer")}),
    C("spec-python-missing", ("lock",), 2, ("python: missing",), spec_with('python = "3.11"\n', "")),
    C("spec-python-float", ("lock",), 2, ("python: expected a non-empty string",), spec_with('python = "3.11"', "python = 3.11")),
    C("spec-python-two", ("lock",), 2, ("is not a Python version",), spec_with('python = "3.11"', 'python = "2.7.18.1"')),
    C("spec-platforms-string", ("lock",), 2, ("platforms: expected a list",), spec('platforms = "linux/amd64"\n', base='platforms = "linux/amd64"\n' + MINIMAL)),
    C("spec-platform-unknown", ("lock",), 2, ("unsupported platform 'windows/amd64'",), spec("", base='platforms = ["windows/amd64"]\n' + MINIMAL)),
    C("spec-platform-twice", ("lock",), 2, ("lists a platform twice",), spec("", base='platforms = ["linux/amd64", "linux/amd64"]\n' + MINIMAL)),
    C("spec-glibc-bad", ("lock",), 2, ("is not a glibc version",), spec("", base='glibc = "2.x"\n' + MINIMAL)),
    C("spec-exclude-newer-missing", ("lock",), 2, ("exclude-newer: missing",), spec_with('exclude-newer = "2026-11-01T00:00:00Z"\n', "")),
    C("spec-exclude-newer-relative", ("lock",), 2, ("not an absolute date",), spec_with("2026-11-01T00:00:00Z", "7 days")),
    C("spec-exclude-newer-no-zone", ("lock",), 2, ("has no time zone",), spec_with("2026-11-01T00:00:00Z", "2026-11-01T00:00:00")),
    C("spec-exclude-newer-number", ("lock",), 2, ("expected a date string",), spec_with('"2026-11-01T00:00:00Z"', "20261101")),
    C("spec-exclude-newer-year-1", ("lock",), 2, ("exclude-newer", "out of range"), spec_with("2026-11-01T00:00:00Z", "0001-01-01T00:00:00+01:00")),
    C("spec-exclude-newer-year-9999", ("lock",), 2, ("exclude-newer", "out of range"), spec_with("2026-11-01T00:00:00Z", "9999-12-31T23:59:59-01:00")),
    C("spec-exclude-newer-literal-year-1", ("lock",), 2, ("exclude-newer", "out of range"), spec_with('"2026-11-01T00:00:00Z"', "0001-01-01T00:30:00+01:00")),
    C("spec-exclude-newer-year-9999-utc", ("lock",), 2, ("exclude-newer", "out of range"), spec_with("2026-11-01T00:00:00Z", "9999-12-31T23:59:59Z")),
    C("spec-exclude-newer-year-1-utc", ("lock",), 2, ("exclude-newer", "out of range"), spec_with("2026-11-01T00:00:00Z", "0001-01-01T00:00:00Z")),
    C("spec-index-url-credentials", ("lock",), 2, ("carries credentials",), spec("", base='index-url = "https://u:secret@mirror.example/simple"\n' + MINIMAL)),
    C("spec-index-url-ftp", ("lock",), 2, ("not an http(s) or file URL",), spec("", base='index-url = "ftp://mirror.example/simple"\n' + MINIMAL)),
    C("spec-dependencies-string", ("lock",), 2, ("dependencies: expected a list",), spec_with('["numpy>=2.0"]', '"numpy"')),
    C("spec-dependencies-int", ("lock",), 2, ("dependencies",), spec_with('["numpy>=2.0"]', "[1]")),
    C("spec-dependency-invalid", ("lock",), 2, ("numpy>>>2",), spec_with('"numpy>=2.0"', '"numpy>>>2"')),
    C("spec-name-bad", ("lock",), 2, ("is not a valid image name",), spec("", base='name = "My Model"\n' + MINIMAL)),
    C("spec-name-int", ("lock",), 2, ("name: expected a non-empty string",), spec("", base="name = 5\n" + MINIMAL)),
    C("spec-roles-list", ("lock",), 2, ("roles",), {"envbuild.toml": MINIMAL.replace("[roles.infer]\n", "roles = []\n[x]\n")}),
    C("spec-role-unknown", ("lock",), 2, ("serve",), spec('[roles.serve]\nentrypoint = ["x"]\n')),
    C("spec-role-entrypoint-string", ("lock",), 2, ("entrypoint",), spec_with('entrypoint = ["python", "-m", "app"]', 'entrypoint = "python -m app"')),
    C("spec-role-group-unknown", ("lock",), 2, ("nope",), spec_with('entrypoint = ["python", "-m", "app"]', 'entrypoint = ["x"]\ngroups = ["nope"]')),
    C("spec-accelerator-unknown", ("lock",), 2, ("tpu",), spec("[accelerators.tpu]\n")),
    C("spec-base-string", ("lock",), 2, ("base",), spec_with('base = { debian = "bookworm" }', 'base = "bookworm"')),
    C("spec-base-two-kinds", ("lock",), 2, ("base",), spec_with('base = { debian = "bookworm" }', 'base = { debian = "bookworm", image = "x/y:1" }')),
    C("spec-base-suite-unknown", ("lock",), 2, ("debian",), spec_with('"bookworm"', '"hamm"')),
    C("spec-cuda-int", ("lock",), 2, ("cuda",), spec('[accelerators.gpu]\ncuda = 12\nbase = { debian = "bookworm" }\n')),
    C("spec-cuda-on-cpu", ("lock",), 2, ("cuda",), spec('cuda = "12"\n')),
    C("spec-replace-list", ("lock",), 2, ("replace",), spec('replace = ["x"]\n')),
    C("spec-variants-unknown", ("lock",), 2, ("variants: unknown variant 'cpu-infr'", "did you mean 'cpu-infer'?"), spec("", base='variants = ["cpu-infr"]\n' + MINIMAL)),
    C("spec-variants-table-missing", ("lock",), 2, ("keeps gpu-infer, but the spec has no [accelerators.gpu]",), spec("", base='variants = ["cpu-infer", "gpu-infer"]\n' + MINIMAL)),
    C("spec-replace-key-version", ("lock",), 2, ("key 'numpy>=2' is not a package name", "not the key"), spec('replace = { "numpy>=2" = "numpy" }\n')),
    C("spec-replace-key-other-extras", ("lock",), 2, ("replaces 'numpy[x]', but the dependencies ask for numpy as numpy>=2.0", "bare name"), spec('replace = { "numpy[x]" = "numpy" }\n')),
    C("spec-indexes-table", ("lock",), 2, ("indexes",), spec('[indexes]\nname = "x"\n')),
    C("spec-index-name-bad", ("lock",), 2, ("name",), spec('[[indexes]]\nname = "-x"\nurl = "https://i.example/simple"\npackages = ["torch"]\n')),
    C("spec-index-url-missing", ("lock",), 2, ("url",), spec('[[indexes]]\nname = "x"\npackages = ["torch"]\n')),
    C("spec-image-files-string", ("lock",), 2, ("files",), spec('[image]\nfiles = "src"\n')),
    C("spec-image-env-list", ("lock",), 2, ("env",), spec('[image]\nenv = ["A=B"]\n')),
    C("spec-image-unknown-key", ("lock",), 2, ("image.cmd: unknown key",), spec('[image]\ncmd = "x"\n')),
    C("spec-image-compression-unknown", ("lock",), 2, ("image.compression", "'bzip2'"), spec('[image]\ncompression = "bzip2"\n')),
    C("spec-image-threshold-words", ("lock",), 2, ("image.layer-threshold", "not a size"), spec('[image]\nlayer-threshold = "lots"\n')),
    C("spec-image-threshold-negative", ("lock",), 2, ("image.layer-threshold", "not a size"), spec("[image]\nlayer-threshold = -1\n")),
    C("spec-image-threshold-bool", ("lock",), 2, ("image.layer-threshold", "not a size"), spec("[image]\nlayer-threshold = true\n")),
    C("spec-image-venv-unknown", ("lock",), 2, ("image.venv", "'docker'", '"host" (on this machine'), spec('[image]\nvenv = "docker"\n')),
    C("image-endpoint-with-buildah", ("image", "--endpoint", "linux/amd64=tcp://127.0.0.1:1"), 2, ("buildah builds on this machine", "--builder docker"), spec()),
    C("image-endpoint-malformed", ("image", "--builder", "docker", "--endpoint", "arm64"), 2, ("'arm64' is not PLATFORM=URL", "linux/arm64=tcp://"), spec(), hint=False),
    C("image-endpoint-twice", ("image", "--builder", "docker", "--endpoint", "linux/amd64=tcp://a:1", "--endpoint", "linux/amd64=tcp://b:1"), 2, ("two endpoints",), spec(), hint=False),
    C("image-platform-not-in-spec", ("image", "--platform", "linux/arm64"), 2, ("does not build for linux/arm64", "platforms"), spec()),
    C("spec-image-cap-tiny", ("lock",), 2, ("image.layer-cap", "below 1 MiB"), spec('[image]\nlayer-cap = "10KiB"\n')),
    C("spec-image-cap-huge", ("lock",), 2, ("image.layer-cap", "larger than any layer"), spec('[image]\nlayer-cap = "99999999GiB"\n')),
    C("image-compression-unknown", ("image", "--compression", "lz4"), 2, ("'lz4' is not one of",), spec(), hint=False),
    C("spec-checks-unknown-key", ("lock",), 2, ("checks.skip-imports: unknown key", "skip-import"), spec('[checks]\nskip-imports = ["numpy"]\n')),
    C("spec-checks-skip-string", ("lock",), 2, ("checks.skip-import", "list of non-empty strings"), spec('[checks]\nskip-import = "numpy"\n')),
    C("spec-checks-skip-requirement", ("lock",), 2, ("checks.skip-import", "'numpy>=2' is not a distribution name"), spec('[checks]\nskip-import = ["numpy>=2"]\n')),
    C("spec-checks-allow-path", ("lock",), 2, ("checks.allow-missing", "not a library file name"), spec('[checks]\nallow-missing = ["/usr/lib/libfoo.so.1"]\n')),
    C("spec-project-missing-dir", ("lock",), 2, ("no pyproject.toml",), spec("", base='project = "nowhere"\n' + MINIMAL)),
    C("spec-two-specs", ("lock",), 2, ("two specs",), {**spec(), "pyproject.toml": '[tool.envbuild]\npython = "3.11"\n'}),
    C("pyproject-tool-string", ("lock",), 2, ("tool",), {"pyproject.toml": 'tool = "envbuild"\n'}),
    C("pyproject-tool-envbuild-int", ("lock",), 2, ("tool.envbuild",), {"pyproject.toml": "[tool]\nenvbuild = 5\n"}),
    C("pyproject-tool-envbuild-project", ("lock",), 2, ("not allowed in [tool.envbuild]",), {"pyproject.toml": '[tool.envbuild]\nproject = "."\n'}),
    C("pyproject-not-utf8", ("lock",), 2, ("not UTF-8",), {**pyproject(""), "pyproject.toml": b'[project]\nname = "\xff"\n'}),
    C("pyproject-deep", ("lock",), 2, ("nested too deeply",), pyproject(DEEP)),
    C("pyproject-project-string", ("lock",), 2, ("project",), pyproject('project = "x"\n')),
    C("pyproject-dependencies-string", ("lock",), 2, ("project.dependencies",), pyproject('[project]\nname = "a"\ndependencies = "numpy"\n')),
    C("pyproject-dependencies-ints", ("lock",), 2, ("project.dependencies",), pyproject('[project]\nname = "a"\ndependencies = [1, 2]\n')),
    C("pyproject-name-int", ("lock",), 2, ("name",), pyproject("[project]\nname = 5\n")),
    C("pyproject-groups-string", ("lock",), 2, ("dependency-groups",), pyproject('dependency-groups = "train"\n')),
    C("pyproject-groups-ints", ("lock",), 2, ("dependency-groups",), {"envbuild.toml": 'project = "."\n' + MINIMAL.replace('entrypoint = ["python", "-m", "app"]', 'entrypoint = ["x"]\ngroups = ["train"]'), "pyproject.toml": "[dependency-groups]\ntrain = 5\nserve = 6\n"}),
    C("pyproject-group-items-ints", ("lock",), 2, ("dependency-groups",), {"envbuild.toml": 'project = "."\n' + MINIMAL.replace('entrypoint = ["python", "-m", "app"]', 'entrypoint = ["x"]\ngroups = ["train"]'), "pyproject.toml": "[dependency-groups]\ntrain = [5]\n"}),
    # --- lock -----------------------------------------------------------------------------------------
    C("lock-resolver-unknown", ("lock", "--resolver", "poetry"), 2, ("'poetry' is not one of",), spec(), hint=False),
    C("lock-env-resolver-unknown", ("lock",), 2, ("is not one of",), spec(), env={"ENVBUILD_RESOLVER": "pdm"}, hint=False),
    C("lock-upgrade-package-no-value", ("lock", "-P"), 2, ("requires an argument",), spec(), hint=False),
    C("lock-ca-file-missing", ("lock", "--ca-file", "nope.pem"), 2, ("does not exist",), spec(), hint=False),
    C("lock-lockfiles-is-file", ("lock",), 2, ("lockfiles",), spec(), setup=file_as_parent("lockfiles")),
    # --- lock --check -----------------------------------------------------------------------------------
    C("check-never-locked", ("lock", "--check"), 1, ("never locked",), spec()),
    C("check-meta-not-utf8", ("lock", "--check"), 1, ("envbuild.lock.json", "not UTF-8"), locked(b'{"schema": "\xff\xfe"}')),
    C("check-meta-not-json", ("lock", "--check"), 1, ("unreadable lock metadata",), locked("{")),
    C("check-meta-list", ("lock", "--check"), 1, ("unreadable lock metadata",), locked("[]")),
    C("check-meta-schema", ("lock", "--check"), 1, ("unreadable lock metadata",), locked('{"schema": 99}')),
    C("check-meta-is-dir", ("lock", "--check"), 1, ("never locked",), spec(), setup=lambda r: (r / "lockfiles" / "envbuild.lock.json").mkdir(parents=True)),
    C("check-meta-deep", ("lock", "--check"), 1, ("envbuild.lock.json",), locked("[" * 100000 + "]" * 100000)),
    C("check-meta-huge-number", ("lock", "--check"), 1, ("unreadable lock metadata",), locked('{"schema": ' + "9" * 5000 + "}")),
    C("spec-repository-http", ("dockerfile",), 2, ("repository", "is not an https URL"), spec(base='repository = "http://git.example/team/app"\n' + MINIMAL)),
    C("spec-repository-credentials", ("dockerfile",), 2, ("repository", "credentials"), spec(base='repository = "https://me:pw@git.example/team/app"\n' + MINIMAL)),
    # --- dockerfile -----------------------------------------------------------------------------------
    C("dockerfile-no-spec", ("dockerfile",), 2, ("no envbuild spec",)),
    C("dockerfile-meta-not-utf8", ("dockerfile",), 1, ("not UTF-8",), locked(b"\xff\xfe{}")),
    C("dockerfile-meta-not-json", ("dockerfile",), 1, ("unreadable lock metadata",), locked("not json")),
    C("dockerfile-meta-wrong-types", ("dockerfile",), 1, ("unreadable lock metadata",), locked('{"schema": 1, "locks": []}')),
    C("dockerfile-check-meta-not-utf8", ("dockerfile", "--check"), 1, ("not UTF-8",), locked(b"\xff")),
    # --- image ----------------------------------------------------------------------------------------
    C("image-epoch-negative", ("image", "--source-date-epoch", "-1"), 2, ("--source-date-epoch", "not in the range"), spec(), hint=False),
    C("image-epoch-huge", ("image", "--source-date-epoch", "100000000000000000000"), 2, ("not in the range",), spec(), hint=False),
    C("image-epoch-float", ("image", "--source-date-epoch", "1e20"), 2, ("not a valid integer",), spec(), hint=False),
    C("image-env-epoch-negative", ("image",), 2, ("SOURCE_DATE_EPOCH", "-5 is not in the range"), spec(), env={"SOURCE_DATE_EPOCH": "-5"}, hint=False),
    C("image-env-epoch-huge", ("image",), 2, ("SOURCE_DATE_EPOCH", "not in the range"), spec(), env={"SOURCE_DATE_EPOCH": "4294967296"}, hint=False),
    C("image-env-epoch-text", ("image",), 2, ("not a valid integer",), spec(), env={"SOURCE_DATE_EPOCH": "yesterday"}, hint=False),
    C("image-role-unknown", ("image", "--role", "serve"), 2, ("'serve' is not one of",), spec(), hint=False),
    C("image-builder-unknown", ("image", "--builder", "kaniko"), 2, ("'kaniko' is not one of",), spec(), hint=False),
    C("image-push-no-host", ("image", "--push", "team/app"), 2, ("does not name a registry host",), spec()),
    C("image-push-port-too-big", ("image", "--push", "localhost:99999/app"), 2, ("99999", "port"), spec()),
    C("image-push-port-text", ("image", "--push", "localhost:abc/app"), 2, ("abc", "port"), spec()),
    C("image-key-without-sign", ("image", "--key", "envbuild.key"), 2, ("need --sign",), spec(), setup=keys),
    C("image-sign-nothing", ("image", "--sign"), 2, ("nothing to sign with",), spec()),
    C("image-sign-dev-zero", ("image", "--sign", "--key", "/dev/zero"), 2, ("/dev/zero", "too large"), spec()),
    C("image-not-locked", ("image",), 1, ("not locked", "envbuild lock"), spec()),
    # --- push -----------------------------------------------------------------------------------------
    C("push-layout-missing", ("push", "nope", f"{NOWHERE}/a"), 2, ("does not exist",), hint=False),
    C("push-not-a-layout", ("push", "dir", f"{NOWHERE}/a"), 2, ("is not an OCI image layout",), setup=lambda r: (r / "dir").mkdir()),
    C("push-no-oci-layout-file", ("push", "lay", f"{NOWHERE}/a"), 2, ("oci-layout",), setup=edit_layout("no-oci-layout")),
    C("push-index-not-json", ("push", "lay", f"{NOWHERE}/a"), 2, ("index.json", "not valid JSON"), setup=edit_layout("index-not-json")),
    C("push-index-not-utf8", ("push", "lay", f"{NOWHERE}/a"), 2, ("index.json",), setup=edit_layout("index-not-utf8")),
    C("push-index-list", ("push", "lay", f"{NOWHERE}/a"), 2, ("index.json",), setup=edit_layout("index-list")),
    C("push-manifests-string", ("push", "lay", f"{NOWHERE}/a"), 2, ("index.json", "manifests"), setup=edit_layout("manifests-string")),
    C("push-descriptor-no-type", ("push", "lay", f"{NOWHERE}/a"), 2, ("mediaType",), setup=edit_layout("descriptor-no-type")),
    C("push-descriptor-bad-size", ("push", "lay", f"{NOWHERE}/a"), 2, ("size",), setup=edit_layout("descriptor-bad-size")),
    C("push-descriptor-bad-digest", ("push", "lay", f"{NOWHERE}/a"), 2, ("not a sha256 digest",), setup=edit_layout("descriptor-bad-digest")),
    C("push-manifest-missing", ("push", "lay", f"{NOWHERE}/a"), 2, ("is missing",), setup=edit_layout("manifest-missing")),
    C("push-manifest-not-json", ("push", "lay", f"{NOWHERE}/a"), 2, ("manifest",), setup=edit_layout("manifest-not-json")),
    C("push-manifest-list", ("push", "lay", f"{NOWHERE}/a"), 2, ("manifest",), setup=edit_layout("manifest-list")),
    C("push-manifest-config-string", ("push", "lay", f"{NOWHERE}/a"), 2, ("manifest",), setup=edit_layout("manifest-config-string")),
    C("push-layer-missing", ("push", "lay", f"{NOWHERE}/a"), 2, ("is missing",), setup=edit_layout("layer-missing")),
    C("push-layer-corrupt", ("push", "lay", f"{NOWHERE}/a"), 2, ("has 8 bytes",), setup=edit_layout("layer-corrupt")),
    C("push-name-unknown", ("push", "lay", f"{NOWHERE}/a", "--name", "nope"), 2, ("named 'nope'",), setup=layout),
    C("push-ref-no-host", ("push", "lay", "team/app"), 2, ("does not name a registry host",), setup=layout),
    C("push-ref-port-too-big", ("push", "lay", "127.0.0.1:99999/app"), 2, ("99999", "port"), setup=layout),
    C("push-ref-port-text", ("push", "lay", "127.0.0.1:abc/app"), 2, ("abc", "port"), setup=layout),
    C("push-ref-port-zero", ("push", "lay", "127.0.0.1:0/app"), 2, ("port",), setup=layout),
    C("push-ref-bad-tag", ("push", "lay", f"{NOWHERE}/app:-bad"), 2, ("is not a valid tag",), setup=layout),
    C("push-ref-upper-repo", ("push", "lay", f"{NOWHERE}/Team/App"), 2, ("is not a valid repository name",), setup=layout),
    C("push-ref-bad-digest", ("push", "lay", f"{NOWHERE}/app@sha256:xyz"), 2, ("not a sha256 digest",), setup=layout),
    C("push-ref-empty", ("push", "lay", ""), 2, ("does not name a registry host",), setup=layout),
    C("push-ref-empty-host", ("push", "lay", ":5000/app"), 2, ("registry host",), setup=layout),
    # --- pull -----------------------------------------------------------------------------------------
    C("pull-no-output", ("pull", REF), 2, ("Missing option",), hint=False),
    C("pull-no-host", ("pull", "team/app@" + ZERO_DIGEST, "-o", "out"), 2, ("does not name a registry host",)),
    C("pull-port-too-big", ("pull", f"127.0.0.1:99999/app@{ZERO_DIGEST}", "-o", "out"), 2, ("99999", "port")),
    C("pull-output-under-file", ("pull", REF, "-o", "f/out"), 2, ("f/out",), setup=file_as_parent("f")),
    C("pull-output-is-file", ("pull", REF, "-o", "f"), 2, ("is a file",), {"f": "x"}, hint=False),
    # --- registry resolve / tags / delete -----------------------------------------------------------------
    C("resolve-no-host", ("registry", "resolve", "app:v1"), 2, ("does not name a registry host",)),
    C("resolve-port-too-big", ("registry", "resolve", "localhost:99999/app:v1"), 2, ("99999", "port")),
    C("resolve-port-text", ("registry", "resolve", "localhost:abc/app:v1"), 2, ("abc", "port")),
    C("resolve-bad-tag", ("registry", "resolve", f"{NOWHERE}/app:" + "t" * 200), 2, ("is not a valid tag",)),
    C("tags-no-host", ("registry", "tags", "app"), 2, ("does not name a registry host",)),
    C("tags-port-too-big", ("registry", "tags", "127.0.0.1:65536/app"), 2, ("65536", "port")),
    C("tags-docker-config-auths-list", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json", "auths"), {"docker/config.json": '{"auths": []}'}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-auths-string", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json", "auths"), {"docker/config.json": '{"auths": "x"}'}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-helpers-list", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json", "credHelpers"), {"docker/config.json": '{"credHelpers": ["x"]}'}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-not-json", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json",), {"docker/config.json": "{"}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-not-utf8", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json",), {"docker/config.json": b'{"auths": {"\xff": 1}}'}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-auth-not-utf8", ("registry", "tags", f"{NOWHERE}/app"), 2, ("config.json",), {"docker/config.json": json.dumps({"auths": {NOWHERE: {"auth": "/w=="}}})}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("tags-docker-config-helper-missing", ("registry", "tags", f"{NOWHERE}/app"), 2, ("docker-credential-nope",), {"docker/config.json": json.dumps({"credHelpers": {NOWHERE: "nope"}})}, env={"DOCKER_CONFIG": "{p}/docker"}),
    C("delete-no-digest", ("registry", "delete", f"{NOWHERE}/app:v1"), 2, ("has no digest",)),
    C("delete-port-text", ("registry", "delete", f"localhost:x/app@{ZERO_DIGEST}"), 2, ("port",)),
    C("delete-bad-digest", ("registry", "delete", f"{NOWHERE}/app@sha256:00"), 2, ("not a sha256 digest",)),
    C("registry-no-subcommand-arg", ("registry", "tags"), 2, ("Missing argument",), hint=False),
    # --- keygen ---------------------------------------------------------------------------------------
    C("keygen-name-traversal", ("keygen", "--no-password", "-o", "keys", "--name", "../../x"), 2, ("key name", "not a plain file name")),
    C("keygen-name-slash", ("keygen", "--no-password", "--name", "a/b"), 2, ("key name", "not a plain file name")),
    C("keygen-name-dot", ("keygen", "--no-password", "--name", ".hidden"), 2, ("key name", "not a plain file name")),
    C("keygen-name-dotdot", ("keygen", "--no-password", "--name", ".."), 2, ("key name", "not a plain file name")),
    C("keygen-name-empty", ("keygen", "--no-password", "--name", ""), 2, ("key name", "not a plain file name")),
    C("keygen-name-absolute", ("keygen", "--no-password", "--name", "/tmp/evil"), 2, ("key name", "not a plain file name")),
    C("keygen-output-under-file", ("keygen", "--no-password", "-o", "f/keys"), 2, ("f/keys",), setup=file_as_parent("f")),
    C("keygen-output-is-file", ("keygen", "--no-password", "-o", "f"), 2, ("is a file",), {"f": "x"}, hint=False),
    C("keygen-exists", ("keygen", "--no-password"), 2, ("already exists",), setup=keys),
    C("keygen-no-password", ("keygen",), 2, ("no password",)),
    # --- load -----------------------------------------------------------------------------------------
    C("load-not-built", ("load", "cpu-infer"), 2, ("no local build of cpu-infer", "envbuild image --variant cpu-infer"), spec()),
    C("load-nothing-built", ("load",), 2, ("no local build of any variant",), spec()),
    C("load-unknown-store", ("load", "--into", "podman", "cpu-infer"), 2, ("Invalid value for '--into'",), spec(), hint=False),
    C("load-no-spec", ("load", "cpu-infer"), 2, ("no envbuild spec",)),
    # --- sign -----------------------------------------------------------------------------------------
    C("sign-no-target", ("sign",), 2, ("Missing argument",), hint=False),
    C("sign-nothing-to-sign-with", ("sign", "cpu-infer"), 2, ("nothing to sign with",), spec()),
    C("sign-key-dev-zero", ("sign", "--key", "/dev/zero", "cpu-infer"), 2, ("/dev/zero", "too large"), spec()),
    C("sign-key-garbage", ("sign", "--key", "k", "cpu-infer"), 2, ("k",), {"k": "not a key"}),
    C("sign-key-public", ("sign", "--key", "envbuild.pub", "cpu-infer"), 2, ("envbuild.pub",), setup=keys),
    C("sign-key-binary", ("sign", "--key", "k", "cpu-infer"), 2, ("k",), {"k": b"\x00\xff" * 100}),
    C("sign-key-missing", ("sign", "--key", "nope.key", "cpu-infer"), 2, ("does not exist",), hint=False),
    C("sign-key-env-garbage", ("sign", "cpu-infer"), 2, ("ENVBUILD_SIGNING_KEY",), env={"ENVBUILD_SIGNING_KEY": "garbage"}),
    C("sign-keyless-and-key", ("sign", "--keyless", "--key", "envbuild.key", "cpu-infer"), 2, ("exclude each other",), setup=keys),
    C("sign-token-without-keyless", ("sign", "--identity-token", "t", "cpu-infer"), 2, ("--identity-token",)),
    C("sign-not-built", ("sign", "--key", "envbuild.key", "cpu-infer"), 2, ("no local build",), spec(), setup=keys),
    C("sign-no-spec-variant", ("sign", "--key", "envbuild.key", "cpu-infer"), 2, ("no local build",), setup=keys),
    C("sign-ref-port-too-big", ("sign", "--key", "envbuild.key", f"127.0.0.1:99999/app@{ZERO_DIGEST}"), 2, ("port",), setup=keys),
    C("sign-ref-no-host", ("sign", "--key", "envbuild.key", f"team/app@{ZERO_DIGEST}"), 2, ("does not name a registry host",), setup=keys),
    C("sign-manifest-blob-missing", ("sign", "--key", "envbuild.key", "cpu-infer"), 2, ("lacks blob",), setup=local_build("manifest-missing")),
    C("sign-manifest-not-json", ("sign", "--key", "envbuild.key", "cpu-infer"), 1, ("manifest", "is not JSON"), setup=local_build("manifest-not-json")),
    C("sign-layout-index-list", ("sign", "--key", "envbuild.key", "cpu-infer"), 2, ("cpu-infer",), setup=local_build("index-list")),
    C("sign-layout-descriptor-no-type", ("sign", "--key", "envbuild.key", "cpu-infer"), 2, ("cpu-infer",), setup=local_build("descriptor-no-type")),
    # --- attest ---------------------------------------------------------------------------------------
    C("attest-type-unknown", ("attest", "--type", "vex", "cpu-infer"), 2, ("'vex' is not one of",), hint=False),
    C("attest-no-target", ("attest",), 2, ("Missing argument",), hint=False),
    C("attest-not-built", ("attest", "--key", "envbuild.key", "cpu-infer"), 2, ("no local build",), spec(), setup=keys),
    C("attest-key-dev-zero", ("attest", "--key", "/dev/zero", "cpu-infer"), 2, ("/dev/zero", "too large")),
    C("attest-manifest-blob-missing", ("attest", "--key", "envbuild.key", "cpu-infer"), 2, ("lacks blob",), setup=local_build("manifest-missing")),
    C("attest-ref-port-text", ("attest", "--key", "envbuild.key", f"127.0.0.1:http/app@{ZERO_DIGEST}"), 2, ("port",), setup=keys),
    # --- sbom -----------------------------------------------------------------------------------------
    C("sbom-attach-variant", ("sbom", "--attach", "cpu-infer"), 2, ("--attach needs an image in a registry",)),
    C("sbom-not-built", ("sbom", "cpu-infer"), 2, ("no local build",), spec()),
    C("sbom-output-under-file", ("sbom", "cpu-infer", "-o", "f/sbom.json"), 2, ("f/sbom.json",), setup=both(local_build(), file_as_parent("f"))),
    C("sbom-output-is-dir", ("sbom", "cpu-infer", "-o", "d"), 2, ("is a directory",), setup=both(local_build(), lambda r: (r / "d").mkdir()), hint=False),
    C("sbom-manifest-blob-missing", ("sbom", "cpu-infer"), 2, ("lacks blob",), setup=local_build("manifest-missing")),
    C("sbom-ref-port-too-big", ("sbom", f"127.0.0.1:70000/app@{ZERO_DIGEST}"), 2, ("port",)),
    # --- verify ---------------------------------------------------------------------------------------
    C("verify-no-host", ("verify", "app:v1", "--key", "envbuild.pub"), 2, ("does not name a registry host",), setup=keys),
    C("verify-port-too-big", ("verify", f"127.0.0.1:99999/app@{ZERO_DIGEST}", "--key", "envbuild.pub"), 2, ("port",), setup=keys),
    C("verify-key-dev-zero", ("verify", REF, "--key", "/dev/zero"), 2, ("/dev/zero", "too large")),
    C("verify-policy-dev-zero", ("verify", REF, "--policy", "/dev/zero"), 2, ("/dev/zero", "too large")),
    C("verify-key-garbage", ("verify", REF, "--key", "k.pub"), 2, ("k.pub",), {"k.pub": "garbage"}),
    C("verify-key-private", ("verify", REF, "--key", "envbuild.key"), 2, ("envbuild.key",), setup=keys),
    C("verify-key-not-utf8", ("verify", REF, "--key", "k.pub"), 2, ("k.pub",), {"k.pub": b"\xff\xfe\x00"}),
    C("verify-identity-without-issuer", ("verify", REF, "--certificate-identity", "me"), 2, ("go together",)),
    C("verify-policy-not-utf8", ("verify", REF, "--policy", "p.toml"), 2, ("p.toml",), {"p.toml": b"require = ['\xff']\n"}),
    C("verify-policy-not-toml", ("verify", REF, "--policy", "p.toml"), 2, ("not valid TOML",), {"p.toml": "require = [\n"}),
    C("verify-policy-deep", ("verify", REF, "--policy", "p.toml"), 2, ("nested too deeply",), {"p.toml": DEEP}),
    C("verify-policy-require-empty", ("verify", REF, "--policy", "p.toml", "--key", "envbuild.pub"), 2, ("require", "empty"), {"p.toml": "require = []\n"}, setup=keys),
    C("verify-policy-require-unknown", ("verify", REF, "--policy", "p.toml"), 2, ("unknown attestation 'vex'",), {"p.toml": 'require = ["vex"]\n'}),
    C("verify-policy-require-string", ("verify", REF, "--policy", "p.toml"), 2, ("require: expected a list",), {"p.toml": 'require = "sbom"\n'}),
    C("verify-policy-signers-string", ("verify", REF, "--policy", "p.toml"), 2, ("signers",), {"p.toml": 'signers = "me"\n'}),
    C("verify-policy-signer-both", ("verify", REF, "--policy", "p.toml"), 2, ("not both",), {"p.toml": '[[signers]]\nkey = "a.pub"\nidentity = "me"\nissuer = "x"\n'}),
    C("verify-policy-signer-key-missing", ("verify", REF, "--policy", "p.toml"), 2, ("cannot read the public key",), {"p.toml": '[[signers]]\nkey = "nope.pub"\n'}),
    C("verify-policy-signer-key-dev-zero", ("verify", REF, "--policy", "p.toml"), 2, ("/dev/zero", "too large"), {"p.toml": '[[signers]]\nkey = "/dev/zero"\n'}),
    C("verify-policy-signer-key-is-dir", ("verify", REF, "--policy", "p.toml"), 2, ("public key",), {"p.toml": '[[signers]]\nkey = "."\n'}),
    C("verify-policy-signer-key-int", ("verify", REF, "--policy", "p.toml"), 2, ("signers[0].key",), {"p.toml": "[[signers]]\nkey = 5\n"}),
    C("verify-policy-unknown-key", ("verify", REF, "--policy", "p.toml"), 2, ("builders: unknown key",), {"p.toml": 'builders = "buildah"\n'}),
    C("verify-no-trust", ("verify", REF), 2, ("trust",)),
    C("verify-jobs-zero", ("verify", REF, "-j", "0"), 2, ("not in the range",), hint=False),
    C("verify-bad-digest", ("verify", f"{NOWHERE}/app@sha256:abc", "--key", "envbuild.pub"), 2, ("not a sha256 digest",), setup=keys),
    # --- rebuild --------------------------------------------------------------------------------------
    C("rebuild-no-digest", ("rebuild", f"{NOWHERE}/app:v1", "--key", "envbuild.pub"), 2, ("digest",), setup=keys),
    C("rebuild-from-and-source", ("rebuild", REF, "--from", "a.tar", "--source", "."), 2, ("--from takes the source",), {"a.tar": "x"}),
    C("rebuild-epoch-negative", ("rebuild", REF, "--key", "envbuild.pub", "--source-date-epoch", "-1"), 2, ("not in the range",), setup=keys, hint=False),
    C("rebuild-epoch-huge", ("rebuild", REF, "--key", "envbuild.pub", "--source-date-epoch", str(2**40)), 2, ("not in the range",), setup=keys, hint=False),
    C("rebuild-report-suffix", ("rebuild", REF, "--key", "envbuild.pub", "--report", "r.txt"), 2, ("r.txt", ".json"), setup=keys),
    C("rebuild-report-under-file", ("rebuild", REF, "--key", "envbuild.pub", "--report", "f/r.json"), 2, ("f/r.json",), setup=both(keys, file_as_parent("f"))),
    C("rebuild-report-is-dir", ("rebuild", REF, "--key", "envbuild.pub", "--report", "d.json"), 2, ("d.json", "is a directory"), setup=both(keys, lambda r: (r / "d.json").mkdir()), hint=False),
    C("rebuild-policy-require-empty", ("rebuild", REF, "--policy", "p.toml", "--key", "envbuild.pub"), 2, ("require", "empty"), {"p.toml": "require = []\n"}, setup=keys),
    C("rebuild-policy-dev-zero", ("rebuild", REF, "--policy", "/dev/zero"), 2, ("too large",)),
    C("rebuild-from-missing", ("rebuild", REF, "--from", "nope.tar"), 2, ("does not exist",), hint=False),
    C("rebuild-from-not-tar", ("rebuild", REF, "--key", "envbuild.pub", "--from", "a.tar"), 2, ("a.tar",), {"a.tar": "not a tar"}, setup=keys),
    C("rebuild-no-trust", ("rebuild", REF), 2, ("trust",)),
    # --- vendor ---------------------------------------------------------------------------------------
    C("vendor-no-output", ("vendor", REF), 2, ("Missing option",), hint=False),
    C("vendor-no-digest", ("vendor", f"{NOWHERE}/app:v1", "-o", "a.tar", "--key", "envbuild.pub"), 2, ("digest",), setup=keys),
    C("vendor-output-under-file", ("vendor", REF, "-o", "f/a.tar", "--key", "envbuild.pub"), 2, ("f/a.tar",), setup=both(keys, file_as_parent("f"))),
    C("vendor-output-is-dir", ("vendor", REF, "-o", "d", "--key", "envbuild.pub"), 2, ("is a directory",), setup=both(keys, lambda r: (r / "d").mkdir()), hint=False),
    C("vendor-key-dev-zero", ("vendor", REF, "-o", "a.tar", "--key", "/dev/zero"), 2, ("too large",)),
    C("vendor-no-trust", ("vendor", REF, "-o", "a.tar"), 2, ("trust",)),
    C("vendor-port-text", ("vendor", f"127.0.0.1:z/app@{ZERO_DIGEST}", "-o", "a.tar", "--key", "envbuild.pub"), 2, ("port",), setup=keys),
    # --- normalize ------------------------------------------------------------------------------------
    C("normalize-no-spec", ("normalize", "g.tar", "--variant", "cpu-infer", "-o", "out"), 2, ("no envbuild spec",), {"g.tar": "garbage"}),
    C("normalize-no-variant", ("normalize", "g.tar", "-o", "out"), 2, ("Missing option '--variant'",), {"g.tar": "x"}, hint=False),
    C("normalize-no-output", ("normalize", "g.tar", "--variant", "cpu-infer"), 2, ("Missing option '-o'",), {"g.tar": "x"}, hint=False),
    C("normalize-source-missing", ("normalize", "nope", "--variant", "cpu-infer", "-o", "out"), 2, ("does not exist",), hint=False),
    C("normalize-epoch-negative", ("normalize", "g.tar", "--variant", "cpu-infer", "-o", "out", "--source-date-epoch", "-3"), 2, ("not in the range",), {"g.tar": "x"}, hint=False),
    C("normalize-variant-unknown", ("normalize", "g.tar", "--variant", "tpu-x", "-o", "out", "--source-date-epoch", "0"), 2, ("tpu-x",), {**spec(), "g.tar": "garbage"}),
    C("normalize-garbage-source", ("normalize", "g.tar", "--variant", "cpu-infer", "-o", "out", "--source-date-epoch", "0"), 2, ("g.tar",), {**spec(), "g.tar": "garbage"}),
    C("normalize-empty-dir-source", ("normalize", "d", "--variant", "cpu-infer", "-o", "out", "--source-date-epoch", "0"), 2, ("d",), spec(), setup=lambda r: (r / "d").mkdir()),
    # --- ci github ------------------------------------------------------------------------------------
    C("ci-no-spec", ("ci", "github"), 2, ("no envbuild spec",)),
    C("ci-source-and-requirements", ("ci", "github", "--envbuild-source", "x", "--envbuild-requirements", "r.txt"), 2, ("both say how to install",), spec()),
    C("ci-variant-unknown", ("ci", "github", "--variant", "tpu-infer", "--output-dir", "out"), 2, ("tpu-infer",), spec()),
    C("ci-spec-not-utf8", ("ci", "github"), 2, ("not UTF-8",), {"envbuild.toml": b"\xff"}),
    C("ci-output-dir-is-file", ("ci", "github", "--output-dir", "f"), 2, ("is a file",), {**spec(), "f": "x"}, hint=False),
    C("ci-output-dir-under-file", ("ci", "github", "--output-dir", "f/repo"), 2, ("f/repo",), spec(), setup=file_as_parent("f")),
    C("ci-release-file-traversal", ("ci", "github", "--output-dir", ".", "--release-file", "../../evil.yml"), 2, ("--release-file",), spec()),
    C("ci-verify-file-slash", ("ci", "github", "--output-dir", ".", "--verify-file", "a/b.yml"), 2, ("--verify-file",), spec()),
    C("ci-no-subcommand-option", ("ci", "github", "--tag"), 2, ("requires an argument",), spec(), hint=False),
]
# fmt: on


def _ids() -> list[str]:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return ids


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_bad_input_is_refused(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bad input: the expected exit code and words, an error and a hint, no traceback, no internal error."""
    clean_environment(monkeypatch, tmp_path / "home")
    run_case(case, tmp_path, monkeypatch, capsys)


def test_table_covers_every_command() -> None:
    """The table reaches every command of the CLI, and has at least 150 rows."""
    from envbuild.cli.main import cli

    commands = {" ".join(c.argv[:2]) if c.argv[:1] in (("registry",), ("ci",)) else c.argv[0] for c in CASES}
    expected = {
        name if not hasattr(command, "commands") else f"{name} {sub}"
        for name, command in cli.commands.items()  # type: ignore[attr-defined]
        for sub in (getattr(command, "commands", None) or {"": None})
    }
    expected = {e.strip() for e in expected}
    assert expected <= commands, sorted(expected - commands)
    assert len(CASES) >= 150


# -- the last resort and Ctrl-C ----------------------------------------------------------------


def _explode(*args: object, **kwargs: object) -> None:
    raise RuntimeError("a bug the table did not foresee")


def test_an_unexpected_exception_is_a_short_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug ends in one 'internal error' line and where to report it; the traceback only with -vv."""
    from envbuild.cli.main import main

    (tmp_path / "envbuild.toml").write_text(MINIMAL, encoding="utf-8")
    monkeypatch.setattr("envbuild.lock.spec._parse", _explode)
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: a bug the table did not foresee" in err
    assert "report it" in err and "-vv" in err and "Traceback" not in err
    assert main(["-vv", "-C", str(tmp_path), "lock", "--check"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" in err and "_explode" in err


def test_ctrl_c_in_a_command_exits_130_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while a command runs: exit 130 and one line, no traceback."""
    from envbuild.cli.main import main

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    (tmp_path / "envbuild.toml").write_text(MINIMAL, encoding="utf-8")
    monkeypatch.setattr("envbuild.lock.spec._parse", interrupt)
    assert main(["-C", str(tmp_path), "lock", "--check"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_while_the_cli_is_imported_exits_130_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the imports at start-up (click, rich, the library): exit 130, no traceback."""
    from envbuild.__main__ import run

    real_import = builtins.__import__

    def interrupted_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "envbuild.cli.main":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "envbuild.cli.main")
    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    assert run() == 130
    assert capsys.readouterr().err == "interrupted\n"


# -- libraries under the commands --------------------------------------------------------------

DAMAGE = ["index-not-json", "index-not-utf8", "index-list", "manifests-string", "descriptor-no-type",
          "descriptor-bad-size", "descriptor-bad-digest", "manifest-missing", "manifest-not-json", "manifest-list",
          "manifest-config-string", "layer-missing", "layer-corrupt"]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE)
def test_imagediff_names_a_damaged_layout(damage: str, tmp_path: Path) -> None:
    """Comparing with a damaged layout (what rebuild does) is an EnvbuildError naming it, never a crash."""
    from envbuild.audit.imagediff import diff_images
    from envbuild.errors import EnvbuildError
    from envbuild.oci.layout import Layout

    good = make_layout(tmp_path / "good", seed="other")
    edit_layout(damage)(tmp_path)  # type: ignore[operator]
    with pytest.raises(EnvbuildError) as caught:
        diff_images(Layout.open(good.path), Layout.open(tmp_path / "lay"))
    assert "lay" in caught.value.message and caught.value.hint


def test_an_unwritable_output_is_named(tmp_path: Path) -> None:
    """atomic_write under a file or onto a directory: a UsageError naming the path, not an OSError."""
    from envbuild.errors import UsageError
    from envbuild.fsutil import atomic_write

    (tmp_path / "f").write_text("a file", encoding="utf-8")
    (tmp_path / "d").mkdir()
    for path in (tmp_path / "f" / "out.json", tmp_path / "d"):
        with pytest.raises(UsageError, match="cannot write") as caught:
            atomic_write(path, "{}")
        assert str(path) in caught.value.message and caught.value.hint


def test_a_report_that_cannot_be_written_keeps_the_rebuilds_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """rebuild --report on a disk that fills up meanwhile: the verdict is printed first, then the error.

    A real rebuild takes minutes; its result is made here (the rebuild itself is tested in
    tests/integration/audit/test_rebuild.py), and the report write fails as a full disk would.
    """
    from envbuild.audit import rebuild as rebuild_module
    from envbuild.cli.main import main
    from envbuild.errors import EnvbuildError
    from envbuild.oci.ref import Digest

    digest = Digest.of(b"image")
    result = rebuild_module.RebuildResult(
        image=f"{NOWHERE}/app@{digest}", variant="cpu-infer", expected=digest, rebuilt=digest, inputs=(),
        diff=None, notes=(), seconds=1.0,
    )  # fmt: skip

    def full_disk(*args: object) -> None:
        raise EnvbuildError("cannot write report.json: No space left on device", hint="free some space")

    monkeypatch.setattr(rebuild_module, "rebuild", lambda *args, **kwargs: result)
    monkeypatch.setattr(rebuild_module, "write_result", full_disk)
    keys(tmp_path)
    argv = ["-C", str(tmp_path), "rebuild", f"{NOWHERE}/app@{digest}", "--key", str(tmp_path / "envbuild.pub")]
    assert main([*argv, "--report", str(tmp_path / "report.json")]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("identical: the rebuild of cpu-infer is") and "No space left" in err

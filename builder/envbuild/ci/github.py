"""``ci``: GitHub Actions workflows that release a project's images, and verify them before a deploy.

Two workflows, rendered from templates/github/ as a pure function of :class:`GithubOptions`:

- the release workflow: on a version tag, check the locks are current, build every
  variant in a matrix, push it, sign it (keyless with the workflow's GitHub OIDC
  identity, or with a key from the repository's secrets), attach its SBOM and
  provenance, then verify what was pushed;
- the verify workflow: a reusable workflow (``workflow_call``) that a deploy pipeline
  runs on one image, pinned by digest, before deploying it.

Every action is pinned by commit, permissions are ``{}`` at the top and granted per job,
and no ``${{ }}`` expression is expanded inside a ``run:`` script: values reach scripts
through ``env:``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from envbuild.errors import EnvbuildError, UsageError
from envbuild.fsutil import atomic_write
from envbuild.lock.spec import PLATFORMS

if TYPE_CHECKING:
    import jinja2

    from envbuild.lock.variants import Variant

WORKFLOWS_DIR = ".github/workflows"
DEFAULT_REPOSITORY = "ghcr.io/${{ github.repository }}"
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"

# Expressions a registry reference may contain: GitHub fills them in, and none carries
# input an outsider controls (a pull request title, a branch name).
_SAFE_EXPRESSION = re.compile(r"github\.repository|github\.repository_owner|vars\.[A-Za-z_][A-Za-z0-9_]*")
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"[A-Za-z0-9._/-]+")  # paths go into scripts unquoted by GitHub: keep them plain
_LABEL = re.compile(r"[A-Za-z0-9._-]+")
_TAG_PATTERN = re.compile(r"[A-Za-z0-9._*+?!/\[\]-]+")
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+\.ya?ml")


@dataclass(frozen=True, kw_only=True)
class PinnedAction:
    """An action pinned by the full commit its release tag points at (a tag can be moved; a commit cannot)."""

    name: str
    sha: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.sha} # {self.version}"


# Update these together, each to the commit its release tag points at, and regenerate
# the golden files and .github/workflows/ (see docs/ci.md).
CHECKOUT = PinnedAction(name="actions/checkout", sha="08c6903cd8c0fde910a37f88322edcfb5dd907a8", version="v5.0.0")
UPLOAD_ARTIFACT = PinnedAction(
    name="actions/upload-artifact", sha="330a01c490aca151604b8cf639adc76d48f6c5d4", version="v5.0.0"
)
DOWNLOAD_ARTIFACT = PinnedAction(
    name="actions/download-artifact", sha="634f93cb2916e3fdff6788551b99b062d0335ce0", version="v5.0.0"
)


@dataclass(frozen=True, kw_only=True)
class Keyless:
    """Sign keyless: Sigstore certifies the release workflow's GitHub OIDC identity (``id-token: write``)."""


@dataclass(frozen=True, kw_only=True)
class KeyFromSecrets:
    """Sign with the PEM key in the secret ENVBUILD_SIGNING_KEY (password: ENVBUILD_SIGNING_KEY_PASSWORD).

    ``public_key`` is the committed public key, relative to the repository root, that
    verification checks the signatures against.
    """

    public_key: str = "envbuild.pub"


@dataclass(frozen=True, kw_only=True)
class FromRequirements:
    """Install envbuild with ``pip install --require-hashes -r FILE`` (FILE relative to the repository root).

    The file pins envbuild and every dependency with hashes, so the release runs exactly
    the envbuild that was reviewed: a bare ``pip install envbuild==X`` would trust
    whatever the index serves that day.
    """

    file: str = "envbuild-requirements.txt"


@dataclass(frozen=True, kw_only=True)
class FromSource:
    """Install envbuild from a source checkout at ``path`` in the repository, with its ``scripts/setup.sh``.

    That script installs the locked toolchain (uv.lock) into ``path/.venv``: for envbuild's own
    repository (``path="."``), or a project that vendors envbuild as a submodule.
    """

    path: str = "."


Signing = Keyless | KeyFromSecrets
Install = FromRequirements | FromSource


@dataclass(frozen=True, kw_only=True)
class GithubOptions:
    """What ``envbuild ci github`` renders: validated on construction (bad input is a UsageError)."""

    variants: tuple[Variant, ...]  # chosen by envbuild.lock.variants.select
    spec_variants: tuple[Variant, ...] | None = None  # every variant of the spec (None: all four)
    platforms: tuple[str, ...] = ("linux/amd64",)  # the spec's: those not the runner's are built under emulation
    repository: str = DEFAULT_REPOSITORY  # REGISTRY/REPO; each variant is pushed as REGISTRY/REPO:<variant>
    signing: Signing = field(default_factory=Keyless)
    install: Install = field(default_factory=FromRequirements)
    project_dir: str = "."  # the spec's directory, relative to the repository root
    name: str = "envbuild release"
    tags: tuple[str, ...] = ("v*",)
    runs_on: str = "ubuntu-latest"
    environment: str | None = None  # a GitHub environment for the signing job (protection rules, its secrets)
    release_file: str = "envbuild-release.yml"
    verify_file: str = "envbuild-verify.yml"

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", _check_repository(self.repository))
        _check_variants(self.variants)
        if isinstance(self.install, FromRequirements):
            _check_path("--envbuild-requirements", self.install.file)
        else:
            _check_path("--envbuild-source", self.install.path)
        if isinstance(self.signing, KeyFromSecrets):
            _check_path("--public-key", self.signing.public_key)
        _check_path("-C", self.project_dir)
        if not self.name.strip() or any(c in self.name for c in "\r\n"):
            raise UsageError(f"workflow name {self.name!r} must be one non-empty line", hint="e.g. --name 'Release'")
        if not self.tags:
            raise UsageError("no tag pattern: the release would never run", hint="e.g. --tag 'v*'")
        for tag in self.tags:
            if not _TAG_PATTERN.fullmatch(tag):
                raise UsageError(f"tag pattern {tag!r} has characters a GitHub filter does not take", hint="e.g. 'v*'")
        if not _LABEL.fullmatch(self.runs_on):
            raise UsageError(f"runner label {self.runs_on!r} is not a plain label", hint="e.g. --runs-on ubuntu-latest")
        if self.environment is not None and not _LABEL.fullmatch(self.environment):
            raise UsageError(f"environment {self.environment!r} is not a plain name", hint="e.g. --environment release")
        for option, name in (("--release-file", self.release_file), ("--verify-file", self.verify_file)):
            if not _FILE_NAME.fullmatch(name):
                raise UsageError(f"{option} {name!r} is not a workflow file name", hint="e.g. envbuild-release.yml")
        unknown = [p for p in self.platforms if p not in PLATFORMS]
        if not self.platforms or unknown:
            raise UsageError(f"platforms {list(self.platforms)}: want some of {', '.join(PLATFORMS)}")
        if self.release_file == self.verify_file:
            raise UsageError("the release and verify workflows need two file names", hint="change --verify-file")

    @property
    def keyless(self) -> bool:
        """Whether the images are signed keyless."""
        return isinstance(self.signing, Keyless)

    @property
    def emulated(self) -> tuple[str, ...]:
        """The architectures (``aarch64``) of the platforms the runner builds under emulation: not its own.

        A runner label with ``arm`` in it (``ubuntu-24.04-arm``) is an arm64 machine, any other an amd64 one.
        """
        parts = re.split(r"[-_.]", self.runs_on.lower())
        runner = "linux/arm64" if "arm" in parts or "arm64" in parts or "aarch64" in parts else "linux/amd64"
        return tuple(PLATFORMS[p] for p in self.platforms if p != runner)

    @property
    def ghcr(self) -> bool:
        """Whether the registry is GitHub's, reached with the workflow's own GITHUB_TOKEN."""
        return self.repository.split("/", 1)[0].lower() == "ghcr.io"


def _check_repository(text: str) -> str:
    """``text`` as REGISTRY/REPO with its expressions spelt ``${{ x }}``; a UsageError if it is anything else."""
    hint = "write REGISTRY/REPO, e.g. ghcr.io/${{ github.repository }} or registry.example.com/team/app"
    for expression in _EXPRESSION.findall(text):
        if not _SAFE_EXPRESSION.fullmatch(expression):
            raise UsageError(
                f"--registry {text!r}: ${{{{ {expression} }}}} is not allowed in a registry reference",
                hint="use github.repository, github.repository_owner or vars.NAME",
            )
    normalised = _EXPRESSION.sub(lambda m: f"${{{{ {m.group(1)} }}}}", text)
    # Fill the expressions with something of their shape, then check what remains.
    probe = _EXPRESSION.sub("expr", normalised).lower()
    if "${{" in probe or "}}" in probe or any(c.isspace() or c in "'\"`$\\;&|<>" for c in probe):
        raise UsageError(f"--registry {text!r} is not a registry reference", hint=hint)
    host, _, path = probe.partition("/")
    if not path or not ("." in host or ":" in host or host in ("localhost", "expr")):
        raise UsageError(f"--registry {text!r} does not name a registry host", hint=hint)
    if "@" in probe or ":" in path:
        raise UsageError(
            f"--registry {text!r} names a tag or digest",
            hint="give only REGISTRY/REPO: each variant is pushed as REGISTRY/REPO:<variant>",
        )
    if not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", path):
        raise UsageError(f"--registry {text!r}: {path!r} is not a repository name", hint=hint)
    return normalised


def _check_variants(variants: tuple[Variant, ...]) -> None:
    # Which variants exist is select()'s to say; a workflow only needs some, each once.
    if not variants:
        raise UsageError("no variants to release", hint="the spec defines none, or pass --variant NAME")
    if len(set(variants)) != len(variants):
        names = ", ".join(v.name for v in variants)
        raise UsageError(f"a variant is named twice in {names}", hint="name each variant once")


def _check_path(option: str, path: str) -> None:
    """A relative path inside the repository, in characters a script can use without quoting surprises."""
    pure = PurePosixPath(path)
    if not _PATH.fullmatch(path) or pure.is_absolute() or ".." in pure.parts:
        raise UsageError(
            f"{option} {path!r}: want a relative path inside the repository",
            hint="letters, digits, '.', '_', '-' and '/', no '..'",
        )


@dataclass(frozen=True, kw_only=True)
class WorkflowFile:
    """One rendered workflow: its path relative to the repository root, and its text."""

    path: str
    text: str


@dataclass(frozen=True, kw_only=True)
class Written:
    """What :func:`write_github_workflows` did."""

    files: tuple[Path, ...]
    changed: tuple[Path, ...]
    warnings: tuple[str, ...]


class StaleWorkflowError(EnvbuildError):
    """A committed workflow differs from what the generator renders now. Exit 1."""


def command_line(options: GithubOptions) -> str:
    """The ``envbuild ci github`` command that renders ``options`` (for the generated files' header)."""
    args = ["envbuild"]
    if options.project_dir != ".":
        args += ["-C", options.project_dir]
    args += ["ci", "github"]
    if options.repository != DEFAULT_REPOSITORY:
        args += ["--registry", options.repository]
    from envbuild.lock.variants import ALL_VARIANTS  # here, not at start-up: every command imports this module

    # Every variant of the spec is what the command does without --variant.
    if options.variants != (options.spec_variants or ALL_VARIANTS):
        for variant in options.variants:
            args += ["--variant", variant.name]
    if isinstance(options.signing, KeyFromSecrets):
        args += ["--key-env"]
        if options.signing.public_key != KeyFromSecrets().public_key:
            args += ["--public-key", options.signing.public_key]
    if isinstance(options.install, FromSource):
        args += ["--envbuild-source", options.install.path]
    elif options.install.file != FromRequirements().file:
        args += ["--envbuild-requirements", options.install.file]
    defaults = GithubOptions(variants=options.variants, spec_variants=options.spec_variants)
    if options.name != defaults.name:
        args += ["--name", options.name]
    if options.tags != defaults.tags:
        for tag in options.tags:
            args += ["--tag", tag]
    for flag, value, default in (
        ("--runs-on", options.runs_on, defaults.runs_on),
        ("--environment", options.environment, defaults.environment),
        ("--release-file", options.release_file, defaults.release_file),
        ("--verify-file", options.verify_file, defaults.verify_file),
    ):
        if value is not None and value != default:
            args += [flag, value]
    return shlex.join(args)


def _environment() -> jinja2.Environment:
    # Imported here: every envbuild command loads this module through the CLI, few render workflows.
    import jinja2

    from envbuild.workspace import templates_dir

    # Workflows are full of GitHub's own ${{ }}: Jinja's markers here are [= =], [% %] and [# #].
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # YAML, not HTML
        variable_start_string="[=",
        variable_end_string="=]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
    env.filters["q"] = json.dumps  # a JSON string is a YAML double-quoted scalar
    env.filters["sh"] = shlex.quote
    return env


def _context(options: GithubOptions) -> dict[str, object]:
    if isinstance(options.install, FromSource):
        source = PurePosixPath(options.install.path)
        envbuild = (source / ".venv/bin/envbuild").as_posix()
        setup = (source / "scripts/setup.sh").as_posix()
        # scripts/setup.sh installs what it needs itself, but not the Debian keyring an Ubuntu runner lacks.
        packages, build_packages = [], ["debian-archive-keyring"]
    else:
        envbuild, setup = '"$RUNNER_TEMP/envbuild/bin/envbuild"', ""
        packages = ["python3-venv"]
        build_packages = sorted({*packages, "buildah", "debian-archive-keyring", "mmdebstrap", "util-linux"})
    if options.emulated:  # qemu-user runs the other architecture's programs; mmdebstrap asks arch-test first
        build_packages = sorted({*build_packages, "arch-test", "binfmt-support", "qemu-user-static"})
    return {
        "options": options,
        "command": command_line(options),
        "envbuild": envbuild,
        "setup": setup,
        "submodules": isinstance(options.install, FromSource) and options.install.path != ".",
        "packages": packages,
        "build_packages": build_packages,
        "issuer": GITHUB_OIDC_ISSUER,
        "checkout_action": str(CHECKOUT),
        "upload_artifact": str(UPLOAD_ARTIFACT),
        "download_artifact": str(DOWNLOAD_ARTIFACT),
    }


def render_github_workflow(options: GithubOptions) -> str:
    """The release workflow: lock check, build/push/sign/attest matrix, verification of what was pushed."""
    return _environment().get_template("github/release.yml.j2").render(_context(options))


def render_github_verify_workflow(options: GithubOptions) -> str:
    """The reusable workflow (``workflow_call``) a deploy pipeline runs to verify one image before deploying."""
    return _environment().get_template("github/verify.yml.j2").render(_context(options))


def github_workflows(options: GithubOptions) -> tuple[WorkflowFile, ...]:
    """Both workflows, at their paths under ``.github/workflows/``."""
    return (
        WorkflowFile(path=f"{WORKFLOWS_DIR}/{options.release_file}", text=render_github_workflow(options)),
        WorkflowFile(path=f"{WORKFLOWS_DIR}/{options.verify_file}", text=render_github_verify_workflow(options)),
    )


def project_dir(root: Path, project: Path) -> str:
    """``project`` relative to the repository ``root``, as the workflows' ``-C``; a UsageError when outside."""
    try:
        return project.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"the project {project} is not inside {root}", hint="pass --output-dir the repository that holds it"
        ) from None


def stale_github_workflows(root: Path, options: GithubOptions) -> list[str]:
    """The workflows under ``root`` whose text differs from a fresh render."""
    stale = []
    for workflow in github_workflows(options):
        try:
            current = (root / workflow.path).read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != workflow.text:
            stale.append(workflow.path)
    return stale


def check_github_workflows(root: Path, options: GithubOptions) -> None:
    """Raise :class:`StaleWorkflowError` unless the workflows under ``root`` equal a fresh render."""
    stale = stale_github_workflows(root, options)
    if stale:
        raise StaleWorkflowError(
            f"out of date: {', '.join(stale)}", hint=f"run '{command_line(options)} --force' and commit the result"
        )


def write_github_workflows(root: Path, options: GithubOptions, *, force: bool = False) -> Written:
    """Write both workflows under ``root`` (atomically); an existing different file only with ``force``."""
    workflows = github_workflows(options)
    if not force:
        clashing = [w.path for w in workflows if (root / w.path).exists() and _read(root / w.path) != w.text]
        if clashing:
            raise UsageError(
                f"would overwrite a different {', '.join(clashing)}",
                hint="review the difference (--check tells which file), then pass --force to overwrite",
            )
    warnings = _preflight(root, options)
    changed = []
    for workflow in workflows:
        path = root / workflow.path
        if _read(path) != workflow.text:
            atomic_write(path, workflow.text)
            changed.append(path)
    return Written(files=tuple(root / w.path for w in workflows), changed=tuple(changed), warnings=tuple(warnings))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _preflight(root: Path, options: GithubOptions) -> list[str]:
    """Warnings about files the workflows need; a UsageError for a requirements file that is not hash-pinned."""
    warnings = []
    if isinstance(options.install, FromRequirements):
        requirements = root / options.install.file
        text = _read(requirements)
        if text is None:
            warnings.append(
                f"{options.install.file} does not exist yet: the workflows install envbuild from it. Write it with "
                f"'uv pip compile --generate-hashes' from a file naming envbuild==<version>, and commit it"
            )
        elif "--hash=" not in text:
            raise UsageError(
                f"{options.install.file} pins nothing by hash: pip install --require-hashes would refuse it",
                hint="regenerate it with 'uv pip compile --generate-hashes' (or pip-compile --generate-hashes)",
            )
    else:
        if not (root / options.install.path / "scripts" / "setup.sh").is_file():
            raise UsageError(
                f"--envbuild-source {options.install.path}: no scripts/setup.sh there",
                hint="point it at an envbuild source checkout inside the repository",
            )
    if isinstance(options.signing, KeyFromSecrets) and not (root / options.signing.public_key).is_file():
        warnings.append(
            f"{options.signing.public_key} does not exist yet: verification checks signatures against it; commit the "
            f"public key, and store the private key and its password as the secrets ENVBUILD_SIGNING_KEY and "
            f"ENVBUILD_SIGNING_KEY_PASSWORD"
        )
    return warnings

"""Hostile spec values never add a Dockerfile instruction: a clear refusal, or a value quoted as itself.

A newline, a quote, a backslash, $(), ${VAR} or unicode in workdir, user, files, env, the
project's version, the name or the base must either be refused by the spec (a SpecError naming
file, key, problem and fix) or reach the Dockerfile quoted, so that its instruction list is
exactly the template's and hadolint finds nothing. Values that slip past the spec (a Spec built
in code, a hand-edited lock) are refused by render itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_render import FIXTURE, GOLDEN, VARIANTS, args_of, hadolint, instructions

from envbuild.errors import SpecError, UsageError
from envbuild.image.render import render
from envbuild.lock.lockfile import ImageBase, read_lockset
from envbuild.lock.spec import load_spec
from support.paths import REPO

INJECTED = "\nUSER 0:0\nRUN id"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch copy of the render fixture project."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    return root


def edit(root: Path, rel: str, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) with ``new`` in one of the project's files."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=True)


# -- refused by the spec ---------------------------------------------------------------------

IMAGE = """[image]
files = ["fixture_app", "config/serve.toml"]
workdir = "/srv/app"
user = "svc"
env = { OMP_NUM_THREADS = "1", APP_MODE = "production" }
"""

REFUSED = [
    # (file, old text, new text, key in the message, problem fragment, hint fragment)
    pytest.param(
        "envbuild.toml", '"/srv/app"', toml_string("/srv/app" + INJECTED), "image.workdir",
        "not an absolute path", 'workdir = "/app"', id="workdir-newline",
    ),
    pytest.param(
        "envbuild.toml", '"/srv/app"', toml_string('/srv/"app'), "image.workdir",
        "not an absolute path", "letters, digits", id="workdir-quote",
    ),
    pytest.param(
        "envbuild.toml", '"/srv/app"', toml_string("/srv/$(id)"), "image.workdir",
        "not an absolute path", "letters, digits", id="workdir-subst",
    ),
    pytest.param(
        "envbuild.toml", '"/srv/app"', toml_string("/srv/app:/bin"), "image.workdir",
        "not an absolute path", "letters, digits", id="workdir-colon",
    ),
    pytest.param(
        "envbuild.toml", '"/srv/app"', toml_string("/srv/../etc"), "image.workdir",
        "'..'", 'workdir = "/app"', id="workdir-dotdot",
    ),
    pytest.param(
        "envbuild.toml", 'user = "svc"', "user = " + toml_string("svc" + INJECTED), "image.user",
        "not a valid user name", "lower-case", id="user-newline",
    ),
    pytest.param(
        "envbuild.toml", '"config/serve.toml"', toml_string("config/serve.toml" + INJECTED), "image.files",
        "control character", "rename", id="files-newline",
    ),
    pytest.param(
        "envbuild.toml", '"config/serve.toml"', toml_string("config/*.toml"), "image.files",
        "'*'", "list the file itself", id="files-glob",
    ),
    pytest.param(
        "envbuild.toml", '"config/serve.toml"', toml_string("config\\serve.toml"), "image.files",
        "'\\\\'", "'/'", id="files-backslash",
    ),
    pytest.param(
        "envbuild.toml", '"production"', toml_string("production" + INJECTED), "image.env",
        "APP_MODE", "without control characters", id="env-value-newline",
    ),
    pytest.param(
        "envbuild.toml", '"production"', toml_string("a\u2028b"), "image.env",
        "APP_MODE", "without control characters", id="env-value-line-separator",
    ),
    pytest.param(
        "envbuild.toml", '"production"', toml_string("C:\\dir\\"), "image.env",
        "backslash at the end", "no backslash before a quote", id="env-value-trailing-backslash",
    ),
    pytest.param(
        "envbuild.toml", "APP_MODE", toml_string("APP MODE"), "image.env",
        "not a valid environment variable name", "letters, digits", id="env-name",
    ),
    pytest.param(
        "pyproject.toml", '"0.3.1"', toml_string("0.3.1" + INJECTED), "project.version",
        "not a PEP 440 version", 'version = "1.0.0"', id="version-newline",
    ),
    pytest.param(
        "pyproject.toml", '"0.3.1"', toml_string('0.3.1" \\'), "project.version",
        "not a PEP 440 version", 'version = "1.0.0"', id="version-quote",
    ),
    pytest.param(
        "envbuild.toml", '"registry.example:5000/ml/python-cuda:3.11-cuda12"',
        toml_string("registry.example:5000/ml/python-cuda:3.11-cuda12" + INJECTED), "accelerators.gpu.base.image",
        "not an image reference", "REF:TAG", id="base-image-newline",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "old", "new", "key", "problem", "hint"), REFUSED)
def test_hostile_value_is_refused_by_the_spec(
    project: Path, rel: str, old: str, new: str, key: str, problem: str, hint: str
) -> None:
    """A value that cannot be written safely is a SpecError naming file, key, problem and fix."""
    edit(project, rel, old, new)
    with pytest.raises(SpecError) as info:
        load_spec(project)
    exc = info.value
    assert exc.exit_code == 2
    assert f"{project.resolve() / rel}: {key}" in exc.message
    assert problem in exc.message
    assert exc.hint is not None and hint in exc.hint


# -- quoted by the render --------------------------------------------------------------------

HOSTILE_ENV = {
    "QUOTED": "say \"hi\" 'there'",
    "BACKSLASHES": "C:\\new\\table\\$HOME\\\\x",
    "SUBSTITUTIONS": "$(id) `id` ${HOME} $HOME ${REVISION}",
    "FAKE_INSTRUCTION": 'x" \\ USER 0:0 \\ ',
    "UNICODE": "café ☕ 日本語",
}
HOSTILE_FILES = ("my data", 'it\'s "$HOME" (v2).toml')
HOSTILE_ENTRYPOINT = ["python", "-c", 'print("]")\nUSER 0:0', "${HOME}"]


def hostile_project(root: Path) -> None:
    """The fixture with env values, file names and an entrypoint that need quoting, all valid."""
    env = ", ".join(f"{k} = {toml_string(v)}" for k, v in HOSTILE_ENV.items())
    edit(root, "envbuild.toml", 'env = { OMP_NUM_THREADS = "1", APP_MODE = "production" }', f"env = {{ {env} }}")
    files = ", ".join(toml_string(f) for f in HOSTILE_FILES)
    edit(root, "envbuild.toml", 'files = ["fixture_app", "config/serve.toml"]', f"files = [{files}]")
    entry = ", ".join(toml_string(a) for a in HOSTILE_ENTRYPOINT)
    edit(root, "envbuild.toml", 'entrypoint = ["python", "-m", "fixture_app.serve"]', f"entrypoint = [{entry}]")
    train = 'entrypoint = ["python", "-m", "fixture_app.train", "--out", "/srv/app/model"]'
    edit(root, "envbuild.toml", train, f"entrypoint = [{entry}]")


def unquote_env(value: str) -> str:
    """A double-quoted Dockerfile ENV/LABEL word as the builder reads it: \\\\, \\" and \\$ are escapes."""
    assert value.startswith('"') and value.endswith('"'), value
    return re.sub(r'\\(["\\$])', r"\1", value[1:-1])


def env_values(text: str) -> dict[str, str]:
    """The variables the ENV instructions set, unquoted."""
    args = " ".join(args_of(text, "ENV"))
    pair = r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*")'
    assert not re.sub(pair, "", args).strip(), 'ENV holds something besides KEY="VALUE" pairs'
    pairs = re.findall(pair, args)
    return {k: unquote_env(v) for k, v in pairs}


def copy_pairs(text: str) -> list[tuple[str, str]]:
    """(source, target) of the project COPYs, JSON form decoded and word escapes removed."""
    out = []
    for args in args_of(text, "COPY"):
        if args.startswith("--from") or "/project" not in args:
            continue
        words = json.loads(args) if args.startswith("[") else args.split(" ")
        source, target = (re.sub(r"\\(.)", r"\1", w) for w in words)
        out.append((source, target))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_hostile_values_are_quoted(project: Path, variant: str, tmp_path: Path) -> None:
    """Quotes, backslashes, $(), ${VAR}, unicode: the template's instructions exactly, each value as itself."""
    hostile_project(project)
    spec = load_spec(project)
    text = render(spec, read_lockset(project)).text(f"images/{variant}.Dockerfile")
    golden = (GOLDEN / "images" / f"{variant}.Dockerfile").read_text(encoding="utf-8")
    assert [kw for kw, _ in instructions(text)] == [kw for kw, _ in instructions(golden)]
    assert args_of(text, "USER") == ["10001:10001"]
    env = env_values(text)
    assert {k: env[k] for k in HOSTILE_ENV} == HOSTILE_ENV
    assert copy_pairs(text) == [(f".envbuild/stage/project/{name}", f"/srv/app/{name}") for name in HOSTILE_FILES]
    assert json.loads(args_of(text, "ENTRYPOINT")[0]) == HOSTILE_ENTRYPOINT
    path = tmp_path / f"{variant}.Dockerfile"
    path.write_text(text, encoding="utf-8")
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env_vars.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    lint = subprocess.run(
        [hadolint(), "--no-color", str(path)], cwd=REPO, env=env_vars,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


# -- refused by the render (defence in depth) ------------------------------------------------


def image_field(field: str, value: object) -> object:
    """A change to spec.image, for values the spec parser would refuse."""
    return lambda spec: dataclasses.replace(spec, image=dataclasses.replace(spec.image, **{field: value}))


BYPASSES = [
    pytest.param(image_field("workdir", "/srv/app" + INJECTED), "workdir", id="workdir"),
    pytest.param(image_field("user", "svc" + INJECTED), "user", id="user"),
    pytest.param(image_field("files", ("fixture_app" + INJECTED,)), "files", id="files"),
    pytest.param(image_field("env", (("APP_MODE", "x" + INJECTED),)), "APP_MODE", id="env-value"),
    pytest.param(image_field("env", (("A=1\nUSER 0:0\nENV B", "x"),)), "environment variable", id="env-name"),
    pytest.param(lambda spec: dataclasses.replace(spec, version="1" + INJECTED), "version", id="version"),
    pytest.param(lambda spec: dataclasses.replace(spec, name="x" + INJECTED), "name", id="name"),
]


@pytest.mark.parametrize(("change", "named"), BYPASSES)
def test_render_refuses_what_the_spec_would(project: Path, change: object, named: str) -> None:
    """A Spec built in code with an unsafe value is refused, not written into a Dockerfile."""
    spec = load_spec(project)
    assert callable(change)
    with pytest.raises(UsageError) as info:
        render(change(spec), read_lockset(project))
    assert named in info.value.message
    assert info.value.hint


def test_render_refuses_a_tampered_base_reference(project: Path) -> None:
    """A lock whose base reference carries a newline cannot add instructions after FROM."""
    spec = load_spec(project)
    lockset = read_lockset(project)
    assert lockset is not None
    gpu = ImageBase(ref="registry.example/evil:1" + INJECTED, digest="sha256:" + "0" * 64 + INJECTED)
    tampered = dataclasses.replace(lockset, bases={**lockset.bases, "gpu": gpu})
    with pytest.raises(UsageError, match="base reference"):
        render(spec, tampered)

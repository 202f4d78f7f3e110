"""BuildKit outside envbuild: the exact commands that build a variant, and the way back to envbuild's image.

:func:`build_recipes` stages a variant's inputs as ``envbuild image`` does (the base,
the hash-checked wheels, uv, the project's files) and returns the commands that build
its Dockerfile with BuildKit: the same SOURCE_DATE_EPOCH, REVISION, base and flags as
envbuild's docker builder (:func:`envbuild.image.builders.docker.build_command` makes both),
then ``envbuild normalize``. :func:`normalize` writes the canonical image
(:func:`envbuild.image.build.write_final_image`) of what BuildKit wrote — a ``docker save``
archive, an OCI archive or an OCI layout — so its digest is the one
``envbuild image --builder docker`` prints, whatever times BuildKit put in its layers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuild.errors import UsageError
from envbuild.fsutil import atomic_write
from envbuild.image import store as imagestore
from envbuild.image.build import (
    ImageOptions,
    base_image,
    build_args,
    build_date,
    build_project_wheel,
    build_source,
    build_targets,
    chosen_variants,
    current_lock,
    fetch_wheels,
    stage_inputs,
    workspace_of,
    write_final_image,
)
from envbuild.image.builders.base import BuildRequest
from envbuild.image.builders.docker import build_command, build_env, docker_archive, from_docker_archive
from envbuild.image.projectfiles import project_files
from envbuild.image.render import dockerfile_path, render, write_rendered
from envbuild.lock.spec import PLATFORMS, Spec
from envbuild.lock.variants import select
from envbuild.oci.layout import INDEX_TYPES, Descriptor, Layout
from envbuild.oci.ref import Digest
from envbuild.progress import SILENT, Progress
from envbuild.workspace import BUILDKIT_DIR, STAGE_DIR

FORMS = ("docker", "buildx")  # DOCKER_BUILDKIT=1 docker build (dockerd's BuildKit), or docker buildx build
_BLOB = re.compile(r"blobs/sha256/[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Command:
    """One command of a recipe: its argument list and the environment it adds."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def shell(self) -> str:
        """The command for a POSIX shell; a long one with each option on a continuation line."""
        words = [f"{k}={shlex.quote(v)}" for k, v in self.env] + [shlex.quote(a) for a in self.argv]
        if len(" ".join(words)) <= 100:
            return " ".join(words)
        lines = [words[0]]
        for word in words[1:]:
            if word.startswith("--"):
                lines.append(f"  {word}")
            else:
                lines[-1] += f" {word}"
        return " \\\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """``{"argv": [...], "env": {...}}``."""
        return {"argv": list(self.argv), "env": dict(self.env)}


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How to build one variant with BuildKit and get envbuild's image of it."""

    variant: str
    platform: str
    epoch: int  # SOURCE_DATE_EPOCH
    revision: str  # the REVISION build argument
    output: str  # the normalised OCI layout, relative to the project root
    commands: tuple[Command, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The recipe as JSON (``envbuild --json dockerfile --print-build-command``)."""
        return {
            "variant": self.variant,
            "platform": self.platform,
            "source_date_epoch": self.epoch,
            "revision": self.revision,
            "output": self.output,
            "commands": [c.to_json() for c in self.commands],
        }


def build_recipes(
    spec: Spec, options: ImageOptions, *, form: str = "docker", progress: Progress = SILENT
) -> list[Recipe]:
    """Render and stage every input of the chosen variants; return the commands that build them with BuildKit."""
    if form not in FORMS:
        raise UsageError(f"unknown BuildKit command form {form!r}", hint=f"use one of: {', '.join(FORMS)}")
    chosen = build_targets(spec, chosen_variants(spec, options), _one_platform(spec, options))
    lockset = current_lock(spec)
    write_rendered(spec, render(spec, lockset))
    workspace = workspace_of(spec, options)
    options = dataclasses.replace(options, workspace=workspace)  # one cache for every step
    workspace.buildkit.mkdir(parents=True, exist_ok=True)
    entries = project_files(spec)  # one walk for every variant, as envbuild image does
    recipes = []
    for target in chosen:
        variant = target.variant.name
        name = target.name  # for a spec of several platforms, the variant and architecture: cpu-infer-aarch64
        source = build_source(spec, target, options)
        epoch, revision = source.epoch, source.revision_label
        with progress.phase(variant, "preparing the base") as phase:
            base, base_name = base_image(spec, lockset, target, options, progress=phase)
        with progress.phase(variant, "fetching wheels", items="wheels") as phase:
            wheels, tools = fetch_wheels(spec, target, cache=workspace.cache, progress=phase)
        package = build_project_wheel(spec, target, source, tools, options, progress=progress)
        stage_inputs(spec, target, wheels, tools, entries, workspace=workspace, package=package)
        request = BuildRequest(
            context=Path("."), dockerfile=Path(dockerfile_path(target.variant)), base_name=base_name,
            base_layout=base.path, epoch=epoch, platform=target.platform, build_args=build_args(revision, package),
        )  # fmt: skip
        tag = f"envbuild.local/{spec.name}/{name}:buildkit"
        env = tuple(sorted(build_env(request).items()))
        archive = f"{BUILDKIT_DIR}/{name}.{form}.tar"
        if form == "docker":
            # dockerd's BuildKit takes the base from the daemon's images, as envbuild's docker builder loads it.
            arch = f"-{PLATFORMS[target.platform]}" if len(spec.platforms) > 1 else ""
            loadable = f"{STAGE_DIR}/bases/{target.variant.accelerator}{arch}.docker.tar"
            atomic_write(workspace.root / loadable, docker_archive(base, base_name))
            build = [
                Command(argv=("docker", "load", "--input", loadable)),
                Command(argv=tuple(build_command(request, docker="docker", tag=tag)), env=env),
                Command(argv=("docker", "save", "--output", archive, tag)),
            ]
        else:
            context = f"{base_name}=oci-layout://{base.path.resolve()}@{base.select().digest}"
            output = f"type=oci,dest={archive}"
            argv = build_command(request, docker="docker", tag=tag, output=output, contexts=(context,))
            build = [Command(argv=tuple(argv), env=env)]
        out = f"{BUILDKIT_DIR}/{name}"
        normalize_argv = ["envbuild", "normalize", archive, "--variant", variant, "--source-date-epoch", str(epoch)]
        normalize_argv += ["--platform", target.platform] if len(spec.platforms) > 1 else []
        normalize_argv += [*(["--allow-dirty"] if options.allow_dirty else []), "--output", out]
        recipes.append(
            Recipe(
                variant=variant, platform=target.platform, epoch=epoch, revision=revision, output=out,
                commands=(*build, Command(argv=tuple(normalize_argv))),
            )
        )  # fmt: skip
        progress.status(variant, "staged")
    return recipes


def script(spec: Spec, recipes: list[Recipe], *, form: str) -> str:
    """The recipes as one shell script, run from anywhere (``| sh -e``)."""
    how = "DOCKER_BUILDKIT=1 docker build" if form == "docker" else "docker buildx build"
    lines = [
        f"# {spec.name}: build with BuildKit ({how}), then write envbuild's image of the result.",
        f"# Printed by 'envbuild dockerfile --print-build-command', which staged the inputs in {STAGE_DIR}/.",
        f"cd {shlex.quote(str(spec.root.resolve()))}",
    ]
    if len(spec.platforms) > 1:
        others = [p for p in spec.platforms if p not in {r.platform for r in recipes}]
        lines.append(f"# For {recipes[0].platform} only (--platform {others[0]} stages and prints another).")
    for recipe in recipes:
        lines += ["", f"# {recipe.variant}: SOURCE_DATE_EPOCH={recipe.epoch} REVISION={recipe.revision}"]
        lines += [c.shell() for c in recipe.commands]
    return "\n".join(lines) + "\n"


def normalize(spec: Spec, variant: str, source: Path, out: Path, options: ImageOptions) -> Descriptor:
    """Write envbuild's canonical image of ``source`` (what BuildKit built for ``variant``) into the layout ``out``."""
    if not source.exists():
        raise UsageError(f"{source} does not exist", hint="run the BuildKit commands first; they write it")
    if out.exists() and not (out / "index.json").is_file():
        raise UsageError(f"{out} exists and is not an OCI layout", hint="choose another --output, or remove it")
    (target,) = build_targets(spec, select(spec, (variant,)), _one_platform(spec, options))
    workspace = workspace_of(spec, options)
    options = dataclasses.replace(options, workspace=workspace)  # one cache for every step
    work_root = workspace.work
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_root, prefix=f"normalize-{variant}-") as tmp:
        built = _read_built(source, Path(tmp) / "raw", platform=target.platform)  # a bad file fails before any work
        lockset = current_lock(spec)
        epoch, _ = build_date(spec, target, options)
        base, _ = base_image(spec, lockset, target, options)
        if not _built_on(built, base):
            raise UsageError(
                f"{source} was not built from the {target.variant.accelerator} base of {variant} "
                "(its first layers are not the base's)",
                hint=f"build it with the commands of 'envbuild dockerfile --print-build-command --variant {variant}', "
                "and normalize it with the --variant it was built for",
            )
        staged = Path(tmp) / "image"
        descriptor = write_final_image(
            spec, options, built=built, base=base, out=staged, epoch=epoch, name=f"{spec.name}-{variant}"
        )
        imagestore.replace(staged, out)  # at every instant, the old image or the new one, whole
    return descriptor


def _one_platform(spec: Spec, options: ImageOptions) -> str:
    """The platform of ``options.platforms`` (default: the spec's first): one, as a variant's inputs are staged
    for one platform at a time."""
    if len(options.platforms) > 1:
        raise UsageError(
            f"--platform {' and '.join(options.platforms)}: BuildKit's commands are for one platform at a time",
            hint="run once per platform: each stages its own inputs and writes its own image",
        )
    return options.platforms[0] if options.platforms else spec.platforms[0]


def _read_built(source: Path, dest: Path, *, platform: str) -> Layout:
    """BuildKit's output as an OCI layout whose index names the one image to normalise."""
    if source.is_dir():
        layout = Layout.open(source)
        chosen = _image_of(layout, platform)
        if chosen == layout.select():
            return layout
        # Another image than the index's only entry (a multi-platform or attested index): a view of it.
        dest.mkdir(parents=True)
        (dest / "blobs").symlink_to((source / "blobs").resolve(), target_is_directory=True)
        Layout.create(dest).add_manifest(chosen)
        return Layout.open(dest)
    try:
        with tarfile.open(source) as tar:
            names = {m.name.removeprefix("./") for m in tar.getmembers()}
            if "manifest.json" in names:  # docker save (also the OCI-shaped one of docker 25+)
                return from_docker_archive(source, dest)
            if "index.json" not in names:
                raise UsageError(
                    f"{source} is neither a 'docker save' archive nor an OCI archive",
                    hint="give the file 'docker save' or 'docker buildx build --output type=oci,dest=FILE' wrote",
                )
            _extract_layout(tar, dest)
    except (tarfile.TarError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"{source} is not an image archive envbuild can read ({exc})",
            hint="give the file 'docker save' or 'docker buildx build --output type=oci,dest=FILE' wrote",
        ) from None
    layout = Layout.open(dest)
    chosen = _image_of(layout, platform)
    atomic_write(dest / "index.json", json.dumps({"schemaVersion": 2, "manifests": [chosen.to_json()]}))
    return layout


def _extract_layout(tar: tarfile.TarFile, dest: Path) -> None:
    """The layout files of an OCI archive (index.json, oci-layout, blobs), and nothing else, into ``dest``."""
    (dest / "blobs" / "sha256").mkdir(parents=True)
    for member in tar.getmembers():
        name = member.name.removeprefix("./")
        if not member.isfile() or not (name in ("index.json", "oci-layout") or _BLOB.fullmatch(name)):
            continue
        data = tar.extractfile(member)
        if data is None:
            continue
        with (dest / name).open("wb") as f:
            while chunk := data.read(1 << 20):
                f.write(chunk)


def _image_of(layout: Layout, platform: str) -> Descriptor:
    """The image manifest for ``platform``: the layout's only manifest, or its entry in an image index."""
    top = layout.select()
    if top.media_type not in INDEX_TYPES:
        return top
    os_name, arch = platform.split("/", 1)
    entries = json.loads(layout.read_blob(top.digest)).get("manifests", [])
    found = [
        Descriptor.from_json(m)
        for m in entries
        if (m.get("platform") or {}).get("os") == os_name and (m.get("platform") or {}).get("architecture") == arch
    ]
    if len(found) != 1:
        raise UsageError(
            f"{layout.path}: the image index has {len(found)} images for {platform}",
            hint="build for one platform (docker buildx build --platform)",
        )
    return found[0]


def _built_on(built: Layout, base: Layout) -> bool:
    """Whether the built image's first layers are the base's (compared by diff ID, as assemble does)."""

    def diff_ids(layout: Layout) -> list[str]:
        manifest = json.loads(layout.read_blob(layout.select().digest))
        config = json.loads(layout.read_blob(Digest.parse(manifest["config"]["digest"])))
        return list(config.get("rootfs", {}).get("diff_ids", []))

    base_ids = diff_ids(base)
    return diff_ids(built)[: len(base_ids)] == base_ids

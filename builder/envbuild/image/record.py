"""The build record: what one image was built from, as a typed value, and the image it describes.

:class:`BuildRecord` holds every input of a build (envbuild and builder versions, the
spec, lockfile, Dockerfile and project files by digest, the base by digest, every wheel and
tool by URL and sha256, the project's own wheel by name and sha256, SOURCE_DATE_EPOCH and
the commit). Its :meth:`~BuildRecord.key` is
the build key that decides whether an image is rebuilt; its JSON (with the image digest) is
the ``build.json`` beside the image, from which the SBOM and the provenance are made.
:class:`BuiltImage` is one image envbuild built: its layout, name, digest and record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from envbuild.errors import EnvbuildError
from envbuild.oci.layout import REF_NAME, Layout
from envbuild.oci.ref import Digest

BUILD_RECORD = "build.json"
_HINT = "rebuild the image with 'envbuild image' (the record is rewritten), or delete that directory"
_T = TypeVar("_T")


class BuildRecordError(EnvbuildError):
    """A build.json that is not a build record envbuild can read. Exit 1."""


@dataclass(frozen=True, kw_only=True)
class WheelRecord:
    """A wheel (or tool wheel) the image installed: where it came from and its sha256."""

    name: str
    version: str
    filename: str
    url: str  # credentials stripped
    sha256: str

    def to_json(self) -> dict[str, str]:
        """The record's entry for this wheel."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class BaseRecord:
    """The base image: the FROM name the Dockerfile gives it and its manifest digest."""

    name: str
    digest: Digest


@dataclass(frozen=True, kw_only=True)
class BuilderRecord:
    """The builder that ran the Dockerfile, and its version."""

    name: str
    version: str

    def to_json(self) -> dict[str, str]:
        """The record's ``builder`` entry."""
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True, kw_only=True)
class DirtyRecord:
    """Inputs that differed from the recorded commit, and a digest of them as they were on disk."""

    paths: tuple[str, ...]
    sha256: str


@dataclass(frozen=True, kw_only=True)
class ChecksRecord:
    """The checks the image passed (envbuild.image.checks): their version and the spec's opt-outs."""

    version: int
    skip_import: tuple[str, ...] = ()
    allow_missing: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The record's ``checks`` entry."""
        return {
            "version": self.version,
            "skip_import": list(self.skip_import),
            "allow_missing": list(self.allow_missing),
        }


@dataclass(frozen=True, kw_only=True)
class BuildRecord:
    """Every input of one build; :meth:`to_json` gives build.json, :meth:`key` the build key."""

    envbuild: str
    variant: str
    platform: str
    builder: BuilderRecord
    compressor: str
    source_date_epoch: int
    revision: str | None  # None: built outside git
    dirty: DirtyRecord | None
    spec: str  # paths relative to the project
    spec_sha256: str
    base: BaseRecord
    dockerfile: str
    dockerfile_sha256: str
    lockfile: str
    lockfile_sha256: str
    wheels: tuple[WheelRecord, ...]
    tools: tuple[WheelRecord, ...]
    files: tuple[str, ...]
    files_sha256: str
    # The project's wheel, built on the host (envbuild.image.projectwheel); its url is the project's
    # directory relative to the spec's. None when the project is not a package.
    project: WheelRecord | None = None
    # What the image was checked for before it was kept: a change (a new opt-out, a new check) checks again.
    checks: ChecksRecord | None = None
    # [image] venv = "host": the CPython on the host that compiled the venv's bytecode (envbuild.image.hostvenv).
    venv_python: str | None = None
    digest: Digest | None = None  # the image's manifest digest, once built; not part of the key

    def to_json(self) -> dict[str, Any]:
        """The record as build.json holds it (``digest`` only once the image is built)."""
        data: dict[str, Any] = {
            "envbuild": self.envbuild,
            "variant": self.variant,
            "platform": self.platform,
            "builder": self.builder.to_json(),
            "compressor": self.compressor,
            "source_date_epoch": self.source_date_epoch,
            "revision": self.revision,
            "dirty": {"paths": list(self.dirty.paths), "sha256": self.dirty.sha256} if self.dirty else None,
            "spec": self.spec,
            "spec_sha256": self.spec_sha256,
            "base": {"name": self.base.name, "digest": str(self.base.digest)},
            "dockerfile": self.dockerfile,
            "dockerfile_sha256": self.dockerfile_sha256,
            "lockfile": self.lockfile,
            "lockfile_sha256": self.lockfile_sha256,
            "wheels": [w.to_json() for w in self.wheels],
            "tools": [w.to_json() for w in self.tools],
            "files": list(self.files),
            "files_sha256": self.files_sha256,
        }
        if self.project is not None:  # absent otherwise, so the keys of other builds stay as they were
            data["project"] = self.project.to_json()
        if self.checks is not None:  # absent in records written before the checks
            data["checks"] = self.checks.to_json()
        if self.venv_python is not None:  # absent when the builder stage built the venv
            data["venv_python"] = self.venv_python
        if self.digest is not None:
            data["digest"] = str(self.digest)
        return data

    def key(self) -> str:
        """The build key: a digest of every input (not of the result), so an unchanged build is skipped."""
        inputs = dataclasses.replace(self, digest=None).to_json()
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def with_digest(self, digest: Digest) -> BuildRecord:
        """This record, naming the image it built."""
        return dataclasses.replace(self, digest=digest)

    def file_text(self) -> str:
        """build.json's text: indented, keys sorted, one trailing newline."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: object, *, source: Path) -> BuildRecord:
        """The record in ``data`` (parsed build.json); :class:`BuildRecordError` names ``source`` and the key."""
        read = _Reader(source)
        top = read.mapping(data, "the record")
        dirty = read.present(top, "dirty")
        digest = top.get("digest")  # absent in a record not yet written beside its image
        project = top.get("project")  # absent when the project is not a package
        checks = top.get("checks")  # absent in records written before the checks
        venv_python = top.get("venv_python")  # absent when the builder stage built the venv
        return cls(
            envbuild=read.field(top, "envbuild", str),
            variant=read.field(top, "variant", str),
            platform=read.field(top, "platform", str),
            builder=BuilderRecord(
                name=read.field(read.entry(top, "builder"), "name", str, "builder."),
                version=read.field(read.entry(top, "builder"), "version", str, "builder."),
            ),
            compressor=read.field(top, "compressor", str),
            source_date_epoch=read.field(top, "source_date_epoch", int),
            revision=None if read.present(top, "revision") is None else read.field(top, "revision", str),
            dirty=None if dirty is None else DirtyRecord(
                paths=read.strings(read.entry(top, "dirty"), "paths", "dirty."),
                sha256=read.field(read.entry(top, "dirty"), "sha256", str, "dirty."),
            ),
            spec=read.field(top, "spec", str),
            spec_sha256=read.field(top, "spec_sha256", str),
            base=BaseRecord(
                name=read.field(read.entry(top, "base"), "name", str, "base."),
                digest=read.digest(read.entry(top, "base"), "digest", "base."),
            ),
            dockerfile=read.field(top, "dockerfile", str),
            dockerfile_sha256=read.field(top, "dockerfile_sha256", str),
            lockfile=read.field(top, "lockfile", str),
            lockfile_sha256=read.field(top, "lockfile_sha256", str),
            wheels=read.wheels(top, "wheels"),
            tools=read.wheels(top, "tools"),
            files=read.strings(top, "files"),
            files_sha256=read.field(top, "files_sha256", str),
            project=None if project is None else read.wheel(project, "project"),
            checks=None if checks is None else read.checks(checks, "checks"),
            venv_python=None if venv_python is None else read.field(top, "venv_python", str),
            digest=None if digest is None else read.digest(top, "digest"),
        )  # fmt: skip

    @classmethod
    def read(cls, path: Path) -> BuildRecord:
        """The record in the build.json at ``path``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise BuildRecordError(f"{path} is not a readable build record: {exc}", hint=_HINT) from exc
        return cls.from_json(data, source=path)


class _Reader:
    """Typed access to parsed JSON, each failure a :class:`BuildRecordError` naming the file and the key."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, key: str, problem: str) -> BuildRecordError:
        return BuildRecordError(f"{self.source}: {key} {problem}", hint=_HINT)

    def mapping(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"is {type(value).__name__}, not an object")
        return value

    def entry(self, data: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        if key not in data:
            raise self.fail(prefix + key, "is missing")
        return self.mapping(data[key], prefix + key)

    def present(self, data: dict[str, Any], key: str) -> object:
        """The value of ``key``, which may be null but must be there (null says something: clean, no commit)."""
        if key not in data:
            raise self.fail(key, "is missing")
        return data[key]

    def field(self, data: dict[str, Any], key: str, kind: type[_T], prefix: str = "") -> _T:
        if key not in data:
            raise self.fail(prefix + key, "is missing")
        value = data[key]
        # bool is an int to Python, never to a build record.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(prefix + key, f"is {type(value).__name__}, not {kind.__name__}")
        return value

    def digest(self, data: dict[str, Any], key: str, prefix: str = "") -> Digest:
        text = self.field(data, key, str, prefix)
        try:
            return Digest.parse(text)
        except EnvbuildError as exc:
            raise self.fail(prefix + key, f"is not a sha256 digest: {text!r}") from exc

    def items(self, data: dict[str, Any], key: str, prefix: str, check: Callable[[object, str], _T]) -> tuple[_T, ...]:
        values = self.field(data, key, list, prefix)
        return tuple(check(value, f"{prefix}{key}[{i}]") for i, value in enumerate(values))

    def strings(self, data: dict[str, Any], key: str, prefix: str = "") -> tuple[str, ...]:
        def string(value: object, where: str) -> str:
            if not isinstance(value, str):
                raise self.fail(where, f"is {type(value).__name__}, not str")
            return value

        return self.items(data, key, prefix, string)

    def wheel(self, value: object, where: str) -> WheelRecord:
        entry = self.mapping(value, where)
        fields = {name: self.field(entry, name, str, f"{where}.") for name in _WHEEL_FIELDS}
        return WheelRecord(**fields)

    def checks(self, value: object, where: str) -> ChecksRecord:
        entry = self.mapping(value, where)
        return ChecksRecord(
            version=self.field(entry, "version", int, f"{where}."),
            skip_import=self.strings(entry, "skip_import", f"{where}."),
            allow_missing=self.strings(entry, "allow_missing", f"{where}."),
        )

    def wheels(self, data: dict[str, Any], key: str) -> tuple[WheelRecord, ...]:
        return self.items(data, key, "", self.wheel)


_WHEEL_FIELDS = tuple(f.name for f in dataclasses.fields(WheelRecord))


@dataclass(frozen=True, kw_only=True)
class BuiltImage:
    """One image envbuild built: its layout directory, name, manifest digest and build record."""

    variant: str
    layout: Path
    name: str  # the layout's org.opencontainers.image.ref.name
    digest: Digest
    record: BuildRecord  # names ``digest``
    cached: bool = False  # True when an unchanged build returned the image already there

    @classmethod
    def open(cls, out: Path) -> BuiltImage | None:
        """The image built into ``out`` (``.envbuild/images/<variant>``), or None when there is none.

        A directory without build.json or without a readable layout, or whose record names
        another image than the layout holds, is not a build (half removed, or foreign). A
        build.json that is not a build record raises :class:`BuildRecordError`.
        """
        record_file = out / BUILD_RECORD
        if not record_file.is_file():
            return None
        try:
            descriptor = Layout.open(out).select()
        except (OSError, ValueError, EnvbuildError):
            return None
        record = BuildRecord.read(record_file)
        if record.digest != descriptor.digest:
            return None
        name = dict(descriptor.annotations).get(REF_NAME, out.name)
        return cls(variant=out.name, layout=out, name=name, digest=descriptor.digest, record=record)


@dataclass(frozen=True, kw_only=True)
class BuiltIndex:
    """The image of a variant built for several platforms: one OCI image index over one image per platform.

    Its layout (``.envbuild/images/<variant>``) holds the index and every platform's blobs; each
    platform's image, with its own build record, is built in ``.envbuild/images/<variant>-<arch>``.
    """

    variant: str
    layout: Path
    name: str
    digest: Digest  # the index's
    platforms: tuple[BuiltImage, ...]  # in the spec's order of platforms
    cached: bool = False

    @property
    def platform_digests(self) -> dict[str, Digest]:
        """Each platform (``linux/arm64``) and its image's manifest digest."""
        return {image.record.platform: image.digest for image in self.platforms}

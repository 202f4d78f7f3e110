"""Where envbuild keeps things: a project's outputs and the cache, as one value passed down.

Every path envbuild writes inside a project, and where its cache is, is named here and nowhere
else. The cache directory is read from the environment in one place (:func:`default_cache`);
library code takes a :class:`Workspace` (or its ``cache``) as an argument, so a caller that
wants another cache (an audit rebuild from a vendor archive) passes one instead of changing
the environment. The module is light (it imports only envbuild.errors): every command can import it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import UsageError

# Relative to the project root, as Dockerfiles, .dockerignore and printed commands name them.
LOCK_DIR = "lockfiles"  # the lockfiles and envbuild.lock.json, committed
IMAGES_DIR = "images"  # the rendered Dockerfiles, committed
STAGE_DIR = ".envbuild/stage"  # wheels, uv and the project's files, fetched and hash-checked on the host
IMAGES_OUT = ".envbuild/images"  # one OCI layout per variant, with build.json and the supply-chain files
WORK_DIR = ".envbuild/work"  # a running build's scratch directories
BUILDKIT_DIR = ".envbuild/buildkit"  # what the printed BuildKit commands write: the archive, the normalised layout


def default_cache() -> Path:
    """envbuild's cache: ``$ENVBUILD_CACHE_DIR``, else ``$XDG_CACHE_HOME/envbuild``, else ``~/.cache/envbuild``."""
    if os.environ.get("ENVBUILD_CACHE_DIR"):
        return Path(os.environ["ENVBUILD_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envbuild"


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """A project (``root``) and the cache its builds use (wheels/, bases/, pulled/ under ``cache``)."""

    root: Path
    cache: Path

    @classmethod
    def at(cls, root: Path, *, cache: Path | None = None) -> Workspace:
        """The workspace of the project in ``root``: with ``cache``, else the user's (:func:`default_cache`)."""
        return cls(root=root, cache=cache if cache is not None else default_cache())

    def with_cache(self, cache: Path) -> Workspace:
        """The same project with another cache."""
        return dataclasses.replace(self, cache=cache)

    @property
    def locks(self) -> Path:
        """The lockfiles and envbuild.lock.json."""
        return self.root / LOCK_DIR

    @property
    def images(self) -> Path:
        """The built images, one OCI layout per variant."""
        return self.root / IMAGES_OUT

    @property
    def stage(self) -> Path:
        """What the Dockerfiles copy: ``<variant>/wheels``, ``tools/uv``, ``project``, ``bases``."""
        return self.root / STAGE_DIR

    @property
    def work(self) -> Path:
        """Scratch directories of running builds (removed by the next run when a build was killed)."""
        return self.root / WORK_DIR

    @property
    def buildkit(self) -> Path:
        """What the printed BuildKit commands write."""
        return self.root / BUILDKIT_DIR


def templates_dir() -> Path:
    """The templates: inside the installed package, or templates/ of a source checkout."""
    here = Path(__file__).resolve().parent  # the package
    for candidate in (here / "templates", here.parents[1] / "templates"):
        if (candidate / "Dockerfile.j2").is_file():
            return candidate
    raise UsageError("envbuild's templates are missing", hint="reinstall envbuild")


def docs_dir() -> Path:
    """The reference documentation (docs/*.md): inside the installed package, or docs/ of a source checkout."""
    here = Path(__file__).resolve().parent  # the package
    for candidate in (here / "docs", here.parents[1] / "docs"):
        if (candidate / "spec.md").is_file():
            return candidate
    raise UsageError("envbuild's documentation is missing", hint="reinstall envbuild")


def doc_topics() -> dict[str, str]:
    """Each documentation topic (a docs/*.md file's stem, e.g. ``spec``) and its title, by name."""
    topics = {}
    for path in sorted(docs_dir().glob("*.md")):
        first = path.read_text(encoding="utf-8").partition("\n")[0]
        topics[path.stem] = first.lstrip("#").strip()
    return topics


def read_doc(topic: str) -> str:
    """The Markdown text of documentation ``topic``; an unknown topic is a UsageError listing the topics."""
    topics = doc_topics()
    if topic not in topics:
        raise UsageError(f"no documentation topic {topic!r}", hint=f"choose one of: {', '.join(topics)}")
    return (docs_dir() / f"{topic}.md").read_text(encoding="utf-8")

"""envbuild: hermetic, reproducible, signed container images for ML projects.

The package is a library first; :mod:`envbuild.cli` is a thin layer over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("envbuild")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]

"""envbuild: hermetic, reproducible, signed container images for ML projects.

The package is a library first; :mod:`envbuild.cli.main` is a thin layer over it.
"""

# The single source of the version (pyproject.toml reads it through hatch).
__version__ = "0.1.0"

__all__ = ["__version__"]

"""What envbuild's layer annotations say: which part of the image a layer is, and which distributions it holds.

envbuild writes its own layers (after the base's, which carry none) with two annotations on
their descriptors in the image manifest:

- :data:`LAYER` names the layer: ``venv``, ``python:<name>``, ``python:<name>:<i>/<n>`` (part i
  of n of a distribution split by files), ``python-group:<label>``, ``project`` or ``config``.
- :data:`DISTRIBUTIONS`, on python and python-group layers: the distributions the layer holds,
  as sorted, space-separated ``name==version`` with canonical (PEP 503) names.

The SBOM reads them to say which layer holds each Python component; imagediff pairs layers by
name, so that a layer added in the middle does not shift every later comparison.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name, canonicalize_version

from envbuild.oci.layout import Descriptor, DescriptorError

LAYER = "dev.envbuild.layer"
DISTRIBUTIONS = "dev.envbuild.layer.distributions"

Distribution = tuple[str, str]
"""A distribution as a layer annotation names it: (canonical name, canonical version)."""


def layer_name(layer: Descriptor) -> str | None:
    """The layer's :data:`LAYER` annotation; None for a layer envbuild did not write (a base's)."""
    return dict(layer.annotations).get(LAYER) or None


def layer_distributions(layer: Descriptor) -> tuple[Distribution, ...]:
    """The distributions the layer's :data:`DISTRIBUTIONS` annotation lists, canonicalised; () without one.

    Names and versions are canonicalised again on reading, so that a reader matches them with
    ``canonicalize_name`` and ``canonicalize_version`` whatever spelling the writer used.
    """
    text = dict(layer.annotations).get(DISTRIBUTIONS, "")
    found = []
    for item in text.split():
        name, sep, version = item.partition("==")
        if not sep or not name or not version:
            raise DescriptorError(f"layer {layer.digest}: {DISTRIBUTIONS} lists {item!r}, not name==version")
        found.append(canonical_distribution(name, version))
    return tuple(found)


def canonical_distribution(name: str, version: str) -> Distribution:
    """(name, version) as layer annotations compare them: PEP 503 name, canonical version."""
    return canonicalize_name(name), canonicalize_version(version)

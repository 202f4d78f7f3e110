"""CycloneDX 1.6 SBOMs of built images, read from the image's own layers.

:func:`read_image_files` streams an image's layers in order, applies OCI whiteouts, and keeps
only the few files an SBOM needs (dpkg's status, os-release, every ``*.dist-info/METADATA``
under a ``site-packages``); nothing is extracted to disk. :func:`make_sbom` turns those files
and the build record into a CycloneDX JSON document whose bytes depend only on the image and
the record, and :func:`validate_sbom` checks a document against the 1.6 JSON schema.
"""

from __future__ import annotations

import email.parser
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.exception import MissingOptionalDependencyException
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from envbuild.errors import EnvbuildError
from envbuild.image.record import BuildRecord
from envbuild.oci.annotations import Distribution, canonical_distribution, layer_distributions
from envbuild.oci.imagefs import json_blob, read_image_files
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.ref import Digest

DPKG_STATUS = "/var/lib/dpkg/status"
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")  # the first is usually a symlink to the second
_DIST_METADATA = re.compile(r"^/.+/site-packages/[^/]+\.dist-info/METADATA$")
_HEAD = ("$schema", "bomFormat", "specVersion", "serialNumber", "version", "metadata")
# Serial numbers are uuid5(_SERIAL_NAMESPACE, manifest digest): the same image always gets the same serial.
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:envbuild:sbom-serial-number")
# One property per layer that holds (part of) a Python component, valued with the layer's digest.
LAYER_PROPERTY = "envbuild:layer"
# A License field longer than this, or with a line break, is a license text, not a license name.
_SHORT_LICENSE = 100
# Trove classifiers that name exactly one SPDX license; "Apache Software License", "BSD License" and
# the like do not say which version or variant, so they stay names.
_TROVE_SPDX = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "zlib/libpng License": "Zlib",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}


class SbomError(EnvbuildError):
    """An SBOM could not be made or is not valid CycloneDX."""


@dataclass(frozen=True, kw_only=True)
class PythonDist:
    """An installed Python distribution, as its ``.dist-info/METADATA`` describes it."""

    name: str
    version: str
    license_expression: str | None = None
    license: str | None = None
    classifiers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DebPackage:
    """A Debian package that dpkg records as installed."""

    name: str
    version: str
    arch: str


def sbom_paths(path: str) -> bool:
    """Whether an SBOM needs the file at ``path`` (an absolute path inside the image)."""
    return path == DPKG_STATUS or path in OS_RELEASE or bool(_DIST_METADATA.match(path))


def make_sbom(
    layout: Layout, *, name: str | None, record: BuildRecord, envbuild_version: str, image_ref_name: str
) -> bytes:
    """The CycloneDX 1.6 JSON SBOM of image ``name`` in ``layout``, as deterministic bytes.

    The image is ``metadata.component`` (``image_ref_name`` at its manifest digest); the components
    are the Python distributions installed in any ``site-packages`` (with the SHA-256 of the wheel
    ``record.wheels`` says was installed), the Debian packages dpkg lists as installed,
    and the base image. A Python component gets one ``envbuild:layer`` property per layer whose
    ``dev.envbuild.layer.distributions`` annotation lists it, valued with the layer's digest, in
    manifest order; layers without that annotation (a base's, an older envbuild's) name none.
    The same image and record always give the same bytes: the timestamp is the record's
    SOURCE_DATE_EPOCH and the serial number is derived from the manifest digest.
    """
    descriptor = layout.select(name)
    if record.digest is not None and record.digest != descriptor.digest:
        raise SbomError(
            f"the build record is for image {record.digest}, not {descriptor.digest}",
            hint="use the build.json written next to this image",
        )
    files = read_image_files(layout, name, sbom_paths)
    layers = [Descriptor.from_json(raw) for raw in json_blob(layout, descriptor.digest, "manifest").get("layers", [])]

    components = [*_python_components(files, record, _holders(layers)), *_debian_components(files)]
    components.append(_oci_component(record.base.name or "base", record.base.digest, description="base image"))
    properties = [Property(name="envbuild:variant", value=record.variant)] if record.variant else []
    image = _oci_component(image_ref_name, descriptor.digest, description=None, properties=properties)
    unique = {str(c.bom_ref.value): c for c in components}  # the same distribution in two venvs is one component
    bom = Bom(
        serial_number=serial_number(descriptor.digest),
        version=1,
        metadata=BomMetaData(
            timestamp=datetime.fromtimestamp(record.source_date_epoch, UTC),
            component=image,
            tools=ToolRepository(
                components=[Component(type=ComponentType.APPLICATION, name="envbuild", version=envbuild_version)]
            ),
        ),
        components=unique.values(),
    )
    bom.register_dependency(image, unique.values())
    text = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string()
    return _canonical(json.loads(text), layer_positions={str(d.digest): i for i, d in enumerate(layers)})


def validate_sbom(data: bytes) -> None:
    """Check ``data`` against the strict CycloneDX 1.6 JSON schema; raise :class:`SbomError` naming the problems."""
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SbomError(f"the SBOM is not JSON: {exc}", hint="regenerate the SBOM from its image") from exc
    try:
        errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    except MissingOptionalDependencyException as exc:
        raise SbomError(
            f"cannot validate SBOMs: {exc}", hint="install envbuild with cyclonedx-python-lib[json-validation]"
        ) from exc
    if errors is None:
        return
    problems = []
    for error in errors:
        problems.append(_describe(error.data))
        if len(problems) == 5:
            break
    raise SbomError(
        "the SBOM is not valid CycloneDX 1.6: " + "; ".join(problems),
        hint="this is a bug in how envbuild writes SBOMs; report it with the SBOM",
    )


def serial_number(digest: Digest) -> uuid.UUID:
    """The SBOM serial number of the image with manifest ``digest``: a name-based UUID (version 5)."""
    return uuid.uuid5(_SERIAL_NAMESPACE, str(digest))


def parse_dist_metadata(data: bytes, *, path: str = "METADATA") -> PythonDist:
    """The fields of a core-metadata file an SBOM uses; a file without Name or Version is an error."""
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise SbomError(f"{path} names no distribution (Name or Version missing)", hint="reinstall that package")
    return PythonDist(
        name=str(name).strip(),
        version=str(version).strip(),
        license_expression=_header(headers.get("License-Expression")),
        license=_header(headers.get("License")),
        classifiers=tuple(str(c).strip() for c in headers.get_all("Classifier") or ()),
    )


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """The packages of a dpkg status file whose Status is ``install ok installed``."""
    packages = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status") != "install ok installed":
            continue
        if not fields.get("Package") or not fields.get("Version"):
            raise SbomError(
                f"dpkg status lists an installed package without Package or Version: {paragraph[:80]!r}",
                hint="the image's /var/lib/dpkg/status is damaged; rebuild the base",
            )
        packages.append(
            DebPackage(name=fields["Package"], version=fields["Version"], arch=fields.get("Architecture", ""))
        )
    return packages


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of an os-release file, quotes removed."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def dist_licenses(dist: PythonDist) -> list[License]:
    """What a distribution says its license is, most precise statement first.

    License-Expression (PEP 639) wins; then a short License field that is an SPDX id or
    expression; then classifiers that name one SPDX license; then the License field as a name;
    then the remaining classifiers as names. Nothing stated gives no license.
    """
    factory = LicenseFactory()
    if dist.license_expression:
        return [factory.make_from_string(dist.license_expression)]
    short = dist.license if dist.license and "\n" not in dist.license and len(dist.license) <= _SHORT_LICENSE else None
    stated = factory.make_from_string(short) if short else None
    if isinstance(stated, LicenseExpression) or (isinstance(stated, DisjunctiveLicense) and stated.id):
        return [stated]
    trove = [c.split("::")[-1].strip() for c in dist.classifiers if c.startswith("License ::")]
    trove = [t for t in trove if t and t != "OSI Approved"]
    spdx = sorted({_TROVE_SPDX[t] for t in trove if t in _TROVE_SPDX})
    if spdx:
        return [DisjunctiveLicense(id=i) for i in spdx]
    if stated is not None:
        return [stated]
    return [DisjunctiveLicense(name=t) for t in sorted(set(trove))]


def _header(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and text.upper() != "UNKNOWN" else None


def _holders(layers: list[Descriptor]) -> dict[Distribution, list[str]]:
    """The digests of the layers that hold each distribution, by their annotations, in manifest order."""
    holders: dict[Distribution, list[str]] = {}
    for layer in layers:
        for distribution in layer_distributions(layer):
            holders.setdefault(distribution, []).append(str(layer.digest))
    return holders


def _python_components(
    files: dict[str, bytes], record: BuildRecord, holders: dict[Distribution, list[str]]
) -> list[Component]:
    installed = (*record.wheels, *((record.project,) if record.project else ()))  # the project's own wheel too
    wheels = {canonical_distribution(w.name, w.version): w for w in installed}
    components = []
    for path in sorted(p for p in files if _DIST_METADATA.match(p)):
        dist = parse_dist_metadata(files[path], path=path)
        purl = PackageURL(type="pypi", name=dist.name, version=dist.version)
        key = canonical_distribution(dist.name, dist.version)
        wheel = wheels.get(key)
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=wheel.sha256)] if wheel and wheel.sha256 else []
        references = (
            [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(wheel.url))]
            if wheel and wheel.url and wheel != record.project  # the project's url is its directory
            else []
        )
        components.append(
            Component(
                type=ComponentType.APPLICATION if wheel and wheel == record.project else ComponentType.LIBRARY,
                name=dist.name,
                version=dist.version,
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=hashes,
                licenses=dist_licenses(dist),
                external_references=references,
                properties=[Property(name=LAYER_PROPERTY, value=digest) for digest in holders.get(key, ())],
            )
        )
    return components


def _debian_components(files: dict[str, bytes]) -> list[Component]:
    if DPKG_STATUS not in files:
        return []
    release = next((parse_os_release(files[p].decode("utf-8", "replace")) for p in OS_RELEASE if p in files), {})
    distro = f"{release['ID']}-{release['VERSION_ID']}" if release.get("ID") and release.get("VERSION_ID") else None
    components = []
    for package in parse_dpkg_status(files[DPKG_STATUS].decode("utf-8", "replace")):
        qualifiers = {"arch": package.arch} if package.arch else {}
        if distro:
            qualifiers["distro"] = distro
        purl = PackageURL(
            type="deb",
            namespace=release.get("ID", "debian"),
            name=package.name,
            version=package.version,
            qualifiers=qualifiers,
        )
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    return components


def _oci_component(
    reference: str, digest: Digest, *, description: str | None, properties: list[Property] | None = None
) -> Component:
    """A container image as a component: ``reference`` is [REGISTRY/]REPOSITORY[:TAG], its version the digest."""
    repository = reference.split("@", 1)[0]
    tag = None
    if ":" in repository.rsplit("/", 1)[-1]:
        repository, tag = repository.rsplit(":", 1)
    qualifiers = {}
    if "/" in repository:
        qualifiers["repository_url"] = repository
    if tag:
        qualifiers["tag"] = tag
    purl = PackageURL(
        type="oci", name=repository.rsplit("/", 1)[-1].lower(), version=str(digest), qualifiers=qualifiers
    )
    return Component(
        type=ComponentType.CONTAINER,
        name=repository,
        version=str(digest),
        purl=purl,
        bom_ref=purl.to_string(),
        description=description,
        properties=properties or [],
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest.hex)],
    )


def _canonical(document: dict[str, Any], *, layer_positions: dict[str, int]) -> bytes:
    """The document with components and dependencies sorted by bom-ref, as indented UTF-8 JSON.

    Dependency entries without dependencies are dropped: cyclonedx-python-lib adds one for every
    component, which would claim each has none, while envbuild only knows what the image contains.
    ``envbuild:layer`` properties follow the manifest (``layer_positions``: digest -> index), so
    that the parts of a split distribution read in order; the library sorts properties by value.
    """
    document["components"] = sorted(document.get("components", []), key=lambda c: str(c.get("bom-ref")))
    for component in document["components"]:
        if "properties" in component:
            component["properties"] = sorted(
                component["properties"],
                key=lambda p: (p["name"], layer_positions.get(p["value"], -1) if p["name"] == LAYER_PROPERTY else -1),
            )
    document["dependencies"] = sorted(
        ({**d, "dependsOn": sorted(d["dependsOn"])} for d in document.get("dependencies", []) if d.get("dependsOn")),
        key=lambda d: str(d["ref"]),
    )
    if not document["dependencies"]:
        del document["dependencies"]
    # The library appends the format keys last; readers expect them first.
    ordered = {key: document[key] for key in _HEAD if key in document}
    ordered.update((key, value) for key, value in document.items() if key not in ordered)
    return (json.dumps(ordered, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _describe(error: Any) -> str:
    where = getattr(error, "json_path", None) or "$"
    return f"{where}: {getattr(error, 'message', error)}"

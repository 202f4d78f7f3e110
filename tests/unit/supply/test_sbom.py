"""SBOMs of images: layers read as streams with whiteouts applied, CycloneDX 1.6 out, valid and deterministic.

The images are small OCI layouts written here (two gzip'ed tar layers, config and manifest
through :func:`envbuild.oci.writer.write_image`), so every expected component is known; one
more test reads the demo project's real cpu-infer image when it has been built.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.model.license import License, LicenseExpression

from envbuild.image.record import BuildRecordError
from envbuild.oci.annotations import DISTRIBUTIONS, LAYER
from envbuild.oci.imagefs import ImageReadError
from envbuild.oci.layout import DescriptorError, Layout
from envbuild.oci.ref import Digest
from envbuild.oci.writer import OCI_LAYER_GZIP, write_image
from envbuild.supply.sbom import (
    PythonDist,
    SbomError,
    dist_licenses,
    make_sbom,
    parse_dpkg_status,
    read_image_files,
    sbom_paths,
    serial_number,
    validate_sbom,
)
from support.records import build_record, record_json

SITE = "opt/venv/lib/python3.11/site-packages"
EPOCH = 1_700_000_000
FOO_SHA = "f" * 64
BAR_SHA = "b" * 64
BASE_DIGEST = "sha256:" + "c" * 64

DPKG_STATUS = b"""Package: python3.11
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: allowed
Version: 3.11.2-6+deb12u9
Depends: python3.11-minimal (= 3.11.2-6+deb12u9),
 mime-support
Description: Interactive high-level object-oriented language (version 3.11)
 Python is a high-level, interactive, object-oriented language.

Package: oldpkg
Status: deinstall ok config-files
Architecture: all
Version: 1.0-1
Description: removed, only its configuration files remain
"""
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
FOO_METADATA = b"""Metadata-Version: 2.4
Name: foo
Version: 1.0
License-Expression: Apache-2.0 OR MIT
Classifier: License :: OSI Approved :: MIT License

The long description is the body and never read.
"""
BAR_METADATA = b"""Metadata-Version: 2.1
Name: bar
Version: 2.0
Classifier: Programming Language :: Python :: 3
Classifier: License :: OSI Approved :: MIT License
"""
BAZ_METADATA = b"Metadata-Version: 2.1\nName: baz\nVersion: 3.0\nLicense: MIT\n"


@dataclass(frozen=True)
class Entry:
    """One tar member: a file (``data``), a directory, a symlink or a hard link (``link``)."""

    name: str
    data: bytes = b""
    kind: str = "file"
    link: str = ""


def _layer(entries: list[Entry]) -> tuple[bytes, str]:
    """A gzip'ed tar of ``entries`` with fixed metadata, and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime = EPOCH
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif entry.kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if entry.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = entry.link
                tar.addfile(info)
            else:
                info.size, info.mode = len(entry.data), 0o644
                tar.addfile(info, io.BytesIO(entry.data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _image(
    path: Path,
    layers: list[list[Entry]],
    *,
    name: str = "demo-image",
    created: int = EPOCH,
    annotations: list[dict[str, str]] | None = None,
) -> Layout:
    """An OCI layout at ``path`` holding one image named ``name`` made of ``layers``, with layer ``annotations``."""
    layout = Layout.create(path)
    descriptors, diff_ids = [], []
    for entries, layer_annotations in zip(layers, annotations or [{}] * len(layers), strict=True):
        blob, diff_id = _layer(entries)
        digest = layout.write_blob(blob)
        descriptor: dict[str, Any] = {"mediaType": OCI_LAYER_GZIP, "digest": str(digest), "size": len(blob)}
        if layer_annotations:
            descriptor["annotations"] = layer_annotations
        descriptors.append(descriptor)
        diff_ids.append(diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": str(created),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    write_image(layout, config=config, layers=descriptors, annotations={}, name=name)
    return layout


def _demo_layers(*, foo_version: bytes = b"1.0") -> list[list[Entry]]:
    """A base layer (dpkg, os-release, a venv with baz) and an app layer (foo, bar, baz whited out)."""
    base = [
        Entry("./etc", kind="dir"),
        Entry("./etc/os-release", kind="symlink", link="../usr/lib/os-release"),
        Entry("./usr/lib/os-release", OS_RELEASE),
        Entry("./var/lib/dpkg/status", DPKG_STATUS),
        Entry(f"{SITE}/baz-3.0.dist-info", kind="dir"),
        Entry(f"{SITE}/baz-3.0.dist-info/METADATA", BAZ_METADATA),
        Entry(f"{SITE}/baz/__init__.py", b""),
    ]
    app = [
        Entry(f"{SITE}/.wh.baz-3.0.dist-info"),
        Entry(f"{SITE}/foo-1.0.dist-info", kind="dir"),
        Entry(f"{SITE}/foo-1.0.dist-info/METADATA", FOO_METADATA.replace(b"Version: 1.0", b"Version: " + foo_version)),
        Entry(f"{SITE}/bar-2.0.dist-info/METADATA", BAR_METADATA),
    ]
    return [base, app]


def _record(**overrides: Any) -> dict[str, Any]:
    record = record_json(
        base={"name": "envbuild.local/demo/base:abc123", "digest": BASE_DIGEST},
        source_date_epoch=EPOCH,
        variant="cpu",
        envbuild="0.1.0",
        wheels=[
            # Matched by canonical name and version: "Foo" is foo, "2.0.0" is 2.0.
            {"name": "Foo", "version": "1.0", "filename": "foo-1.0-py3-none-any.whl", "sha256": FOO_SHA,
             "url": "https://files.example/foo-1.0-py3-none-any.whl"},
            {"name": "bar", "version": "2.0.0", "filename": "bar-2.0.0-py3-none-any.whl", "sha256": BAR_SHA,
             "url": "https://files.example/bar-2.0.0-py3-none-any.whl"},
        ],
    )  # fmt: skip
    record.update(overrides)
    return record


def _sbom(layout: Layout, record: dict[str, Any] | None = None) -> bytes:
    return make_sbom(
        layout,
        name="demo-image",
        record=build_record(record or _record()),
        envbuild_version="9.9.9",
        image_ref_name="demo-image",
    )


@pytest.fixture
def image(tmp_path: Path) -> Layout:
    return _image(tmp_path / "image", _demo_layers())


def _components(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in document["components"]}


# -- reading layers ------------------------------------------------------------------------------


def test_read_image_files_honours_whiteouts_and_keeps_only_wanted_files(image: Layout) -> None:
    files = read_image_files(image, "demo-image", sbom_paths)

    assert files == {
        "/usr/lib/os-release": OS_RELEASE,  # /etc/os-release is a symlink: not content, not followed
        "/var/lib/dpkg/status": DPKG_STATUS,
        f"/{SITE}/foo-1.0.dist-info/METADATA": FOO_METADATA,
        f"/{SITE}/bar-2.0.dist-info/METADATA": BAR_METADATA,
    }


def test_read_image_files_opaque_dirs_replacements_and_hard_links(tmp_path: Path) -> None:
    lower = [
        Entry("data/x/one", b"1"),
        Entry("data/x/two", b"2"),
        Entry("data/keep", b"old"),
        Entry("data/dir/inside", b"gone with its directory"),
        Entry("data/sym", b"a file that a symlink replaces"),
    ]
    upper = [
        Entry("data/x/three", b"3"),  # the opaque marker hides lower layers only, wherever it comes in the tar
        Entry("data/x/.wh..wh..opq"),
        Entry("data/keep", b"new"),
        Entry("data/dir", kind="symlink", link="/elsewhere"),
        Entry("data/sym", kind="symlink", link="keep"),
        Entry("data/link", kind="hardlink", link="data/keep"),
        Entry("/data/absolute", b"abs"),
    ]
    layout = _image(tmp_path / "image", [lower, upper], name="t")

    files = read_image_files(layout, "t", lambda path: path.startswith("/data/"))

    assert files == {"/data/x/three": b"3", "/data/keep": b"new", "/data/link": b"new", "/data/absolute": b"abs"}


def test_read_image_files_rejects_a_corrupt_layer(tmp_path: Path, image: Layout) -> None:
    manifest = json.loads(image.read_blob(image.select("demo-image").digest))
    app_layer = Digest.parse(manifest["layers"][1]["digest"])
    other, _ = _layer([Entry("something/else", b"x")])
    image.blob_path(app_layer).write_bytes(other)

    with pytest.raises(ImageReadError, match="corrupt") as exc:
        read_image_files(image, "demo-image", sbom_paths)
    assert exc.value.hint


def test_parse_dpkg_status_keeps_installed_packages_only() -> None:
    packages = parse_dpkg_status(DPKG_STATUS.decode())

    assert [(p.name, p.version, p.arch) for p in packages] == [("python3.11", "3.11.2-6+deb12u9", "amd64")]


# -- the SBOM ------------------------------------------------------------------------------------


def test_sbom_components_purls_hashes_and_licenses(image: Layout) -> None:
    document = json.loads(_sbom(image))
    components = _components(document)

    deb = "pkg:deb/debian/python3.11@3.11.2-6%2Bdeb12u9?arch=amd64&distro=debian-12"
    base = f"pkg:oci/base@{BASE_DIGEST}?repository_url=envbuild.local/demo/base&tag=abc123"
    assert sorted(components) == sorted([deb, base, "pkg:pypi/foo@1.0", "pkg:pypi/bar@2.0"])
    assert [c["bom-ref"] for c in document["components"]] == sorted(components)
    assert all(c["purl"] == ref for ref, c in components.items())

    foo, bar = components["pkg:pypi/foo@1.0"], components["pkg:pypi/bar@2.0"]
    assert foo["hashes"] == [{"alg": "SHA-256", "content": FOO_SHA}]
    assert bar["hashes"] == [{"alg": "SHA-256", "content": BAR_SHA}]
    assert foo["externalReferences"] == [
        {"type": "distribution", "url": "https://files.example/foo-1.0-py3-none-any.whl"}
    ]
    assert foo["licenses"] == [{"expression": "Apache-2.0 OR MIT"}]  # License-Expression beats classifiers
    assert bar["licenses"] == [{"license": {"id": "MIT"}}]  # from the classifier
    assert components[deb]["version"] == "3.11.2-6+deb12u9"
    assert components[deb]["type"] == "library"
    assert components[base]["type"] == "container"
    assert components[base]["version"] == BASE_DIGEST
    assert not any("oldpkg" in ref or "baz" in ref for ref in components)
    assert not any("properties" in c for c in components.values())  # no layer annotations: no envbuild:layer


def _split_foo() -> tuple[list[Entry], list[Entry]]:
    """foo's two parts, padded so that their digests sort against manifest order (which must win)."""
    for pad in range(64):
        first = [Entry(f"{SITE}/foo/a.py", b"a = %d\n" % pad)]
        second = [Entry(f"{SITE}/foo-1.0.dist-info/METADATA", FOO_METADATA)]
        if _layer(first)[1] > _layer(second)[1]:
            return first, second
    raise AssertionError("no padding puts part 1's digest after part 2's")


def _layered_image(path: Path) -> Layout:
    """A base, then layers as envbuild writes them: venv, foo split in two, a group (bar, baz), project."""
    first, second = _split_foo()
    layers = [
        [Entry("./var/lib/dpkg/status", DPKG_STATUS)],
        [Entry("opt/venv/pyvenv.cfg", b"home = /usr/bin\n")],
        first,
        second,
        [
            Entry(f"{SITE}/bar-2.0.dist-info/METADATA", BAR_METADATA),
            Entry(f"{SITE}/baz-3.0.dist-info/METADATA", BAZ_METADATA),
        ],
        [Entry("app/main.py", b"print()\n")],
    ]
    annotations = [
        {},
        {LAYER: "venv"},
        {LAYER: "python:foo:1/2", DISTRIBUTIONS: "foo==1.0"},
        {LAYER: "python:foo:2/2", DISTRIBUTIONS: "foo==1.0"},
        {LAYER: "python-group:a-c", DISTRIBUTIONS: "bar==2.0.0 baz==3"},  # versions as canonical forms match
        {LAYER: "project"},
    ]
    return _image(path, layers, annotations=annotations)


def test_sbom_names_the_layers_that_hold_each_python_component(tmp_path: Path) -> None:
    layout = _layered_image(tmp_path / "image")
    manifest = json.loads(layout.read_blob(layout.select("demo-image").digest))
    digests = [layer["digest"] for layer in manifest["layers"]]

    sbom = _sbom(layout)
    components = _components(json.loads(sbom))

    def layers_of(ref: str) -> list[str]:
        return [p["value"] for p in components[ref].get("properties", []) if p["name"] == "envbuild:layer"]

    assert layers_of("pkg:pypi/foo@1.0") == [digests[2], digests[3]]  # manifest order, not digest order
    assert layers_of("pkg:pypi/bar@2.0") == layers_of("pkg:pypi/baz@3.0") == [digests[4]]
    assert [ref for ref in components if "properties" in components[ref]] == [
        "pkg:pypi/bar@2.0",
        "pkg:pypi/baz@3.0",
        "pkg:pypi/foo@1.0",
    ]
    validate_sbom(sbom)
    assert _sbom(layout) == sbom


def test_a_malformed_distributions_annotation_is_named(tmp_path: Path) -> None:
    entries = [Entry(f"{SITE}/bar-2.0.dist-info/METADATA", BAR_METADATA)]
    layout = _image(tmp_path / "image", [entries], annotations=[{LAYER: "python:bar", DISTRIBUTIONS: "bar 2.0"}])

    with pytest.raises(DescriptorError, match=r"dev\.envbuild\.layer\.distributions lists 'bar', not name==version"):
        _sbom(layout)


def test_sbom_metadata_names_the_image_envbuild_and_the_epoch(image: Layout) -> None:
    digest = image.select("demo-image").digest
    document = json.loads(_sbom(image))

    assert document["specVersion"] == "1.6"
    assert list(document)[:3] == ["$schema", "bomFormat", "specVersion"]
    metadata = document["metadata"]
    assert metadata["timestamp"] == "2023-11-14T22:13:20+00:00"
    assert metadata["tools"] == {"components": [{"type": "application", "name": "envbuild", "version": "9.9.9"}]}
    image_component = metadata["component"]
    assert image_component["type"] == "container"
    assert image_component["name"] == "demo-image"
    assert image_component["version"] == str(digest)
    assert image_component["purl"] == image_component["bom-ref"] == f"pkg:oci/demo-image@sha256:{digest.hex}"
    assert {"name": "envbuild:variant", "value": "cpu"} in image_component["properties"]
    # One dependency entry: the image on everything it contains; nothing is claimed about the rest.
    assert document["dependencies"] == [{"ref": image_component["bom-ref"], "dependsOn": sorted(_components(document))}]


def test_sbom_is_schema_valid_and_byte_identical_twice(image: Layout) -> None:
    first, second = _sbom(image), _sbom(image)

    assert first == second
    validate_sbom(first)
    assert b"BomRef" not in first  # no random bom-refs from cyclonedx-python-lib's discriminator


def test_serial_number_is_derived_from_the_manifest_digest(tmp_path: Path, image: Layout) -> None:
    digest = image.select("demo-image").digest
    other = _image(tmp_path / "other", _demo_layers(), created=EPOCH + 1)
    other_digest = other.select("demo-image").digest
    assert other_digest != digest

    serial = json.loads(_sbom(image))["serialNumber"]
    other_serial = json.loads(_sbom(other))["serialNumber"]

    assert serial == f"urn:uuid:{serial_number(digest)}"
    assert serial_number(digest) == uuid.uuid5(
        uuid.uuid5(uuid.NAMESPACE_URL, "urn:envbuild:sbom-serial-number"), str(digest)
    )
    assert serial_number(digest).version == 5
    assert other_serial == f"urn:uuid:{serial_number(other_digest)}" != serial


def test_a_record_of_another_image_or_without_epoch_is_refused(image: Layout) -> None:
    with pytest.raises(SbomError, match="not sha256:"):
        _sbom(image, _record(digest="sha256:" + "0" * 64))
    with pytest.raises(BuildRecordError, match="source_date_epoch is NoneType, not int"):
        _sbom(image, _record(source_date_epoch=None))


def test_validate_sbom_names_the_problems(image: Layout) -> None:
    document = json.loads(_sbom(image))
    document["components"][0]["type"] = "gadget"
    document["metadata"]["surprise"] = True

    with pytest.raises(SbomError, match=r"components\[0\]\.type") as exc:
        validate_sbom(json.dumps(document).encode())
    assert "surprise" in exc.value.message
    with pytest.raises(SbomError, match="not JSON"):
        validate_sbom(b"{")


OSI = "License :: OSI Approved"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"license_expression": "MIT", "license": "BSD"}, [{"id": "MIT"}]),
        ({"license": "bsd-3-clause"}, [{"id": "BSD-3-Clause"}]),
        ({"license": "Apache-2.0 OR MIT"}, [{"expression": "Apache-2.0 OR MIT"}]),
        ({"license": "MIT License", "classifiers": (f"{OSI} :: MIT License",)}, [{"id": "MIT"}]),
        ({"license": "Apache 2.0", "classifiers": (f"{OSI} :: Apache Software License",)}, [{"name": "Apache 2.0"}]),
        (
            {"license": "Permission is granted\n" * 20, "classifiers": (f"{OSI} :: BSD License",)},
            [{"name": "BSD License"}],
        ),
        ({"classifiers": (OSI,)}, []),
        ({}, []),
    ],
)
def test_dist_licenses_prefers_the_most_precise_statement(
    fields: dict[str, Any], expected: list[dict[str, str]]
) -> None:
    dist = PythonDist(name="a", version="1", **fields)
    assert [_license_view(found) for found in dist_licenses(dist)] == expected


def _license_view(found: License) -> dict[str, str]:
    if isinstance(found, LicenseExpression):
        return {"expression": found.value}
    return {"id": found.id} if found.id else {"name": str(found.name)}


def test_the_project_installed_from_its_own_wheel_is_the_application_with_its_version(image: Layout) -> None:
    """bar stands for the project: its wheel is the record's project, built by envbuild, not locked."""
    project = {"name": "bar", "version": "2.0", "filename": "bar-2.0-py3-none-any.whl", "sha256": "cd" * 32, "url": "."}
    record = _record(wheels=[w for w in _record()["wheels"] if w["name"] != "bar"], project=project)
    components = _components(json.loads(_sbom(image, record)))
    bar = components["pkg:pypi/bar@2.0"]
    assert (bar["type"], bar["version"]) == ("application", "2.0")
    assert bar["hashes"] == [{"alg": "SHA-256", "content": "cd" * 32}]
    assert "externalReferences" not in bar  # its url is the project's directory, not a download
    assert components["pkg:pypi/foo@1.0"]["type"] == "library"

"""Offline unit tests for the registry package's pure parts: refs, auth, layouts, referrers, URLs.

No registry process and no network: the credential helper is a small script on PATH,
layouts live in tmp_path, and the client is only constructed, never asked to send.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from envbuild.errors import EXIT_USAGE, UsageError
from envbuild.oci.layout import REF_NAME, Descriptor, Layout, children
from envbuild.oci.ref import Digest, ImageRef
from envbuild.registry.auth import Challenge, Credentials, find_credentials
from envbuild.registry.client import RegistryClient
from envbuild.registry.options import RegistryOptions
from envbuild.registry.referrers import Blob, artifact_manifest, backstop_tag, fallback_tag

HEX_A = "a" * 64
HEX_B = "b" * 64
DIGEST_A = f"sha256:{HEX_A}"
DIGEST_B = f"sha256:{HEX_B}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _assert_usage_error(exc: pytest.ExceptionInfo[UsageError]) -> None:
    assert exc.value.exit_code == EXIT_USAGE == 2
    assert exc.value.hint


# -- ImageRef / Digest ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        pytest.param("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1", None, id="host-port-tag"),
        pytest.param("reg.example/a/b/c@" + DIGEST_A, "reg.example", "a/b/c", None, DIGEST_A, id="deep-digest"),
        pytest.param(
            "reg.example:443/app:1.0-rc_1@" + DIGEST_B, "reg.example:443", "app", "1.0-rc_1", DIGEST_B, id="tag-digest"
        ),
        pytest.param("localhost/x", "localhost", "x", None, None, id="localhost"),
        pytest.param("localhost:5000/my-app.v2/sub__x", "localhost:5000", "my-app.v2/sub__x", None, None, id="seps"),
    ],
)
def test_image_ref_parse_valid(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    """Each part lands in its field, and str() gives the text back."""
    ref = ImageRef.parse(text)
    assert ref.registry == registry
    assert ref.repository == repository
    assert ref.tag == tag
    assert (str(ref.digest) if ref.digest else None) == digest
    assert str(ref) == text
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        pytest.param("h.io/app:v1@" + DIGEST_A, DIGEST_A, id="digest-over-tag"),
        pytest.param("h.io/app@" + DIGEST_A, DIGEST_A, id="digest"),
        pytest.param("h.io/app:v1", "v1", id="tag"),
        pytest.param("h.io/app", "latest", id="default-latest"),
    ],
)
def test_image_ref_reference(text: str, reference: str) -> None:
    """What goes after /manifests/: the digest when known, else the tag, else 'latest'."""
    assert ImageRef.parse(text).reference == reference


def test_image_ref_with_digest_and_with_tag() -> None:
    """with_digest keeps the tag for display; with_tag drops the digest."""
    ref = ImageRef.parse("h.io:5000/team/app:v1")
    pinned = ref.with_digest(Digest(DIGEST_A))
    assert str(pinned) == f"h.io:5000/team/app:v1@{DIGEST_A}"
    assert pinned.reference == DIGEST_A
    retagged = pinned.with_tag("v2")
    assert retagged.digest is None
    assert str(retagged) == "h.io:5000/team/app:v2"
    untagged = pinned.with_tag(None)
    assert str(untagged) == "h.io:5000/team/app"
    assert untagged.reference == "latest"
    assert str(ref) == "h.io:5000/team/app:v1"  # values, not mutated


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("library/ubuntu:22.04", "registry host", id="no-host-docker-hub-style"),
        pytest.param("ubuntu", "registry host", id="bare-name"),
        pytest.param("ubuntu:22.04", "registry host", id="bare-name-tag"),
        pytest.param("h.io/Team/App:v1", "repository name", id="uppercase-repo"),
        pytest.param("h.io/app:-bad", "tag", id="tag-leading-dash"),
        pytest.param("h.io/app:" + "x" * 129, "tag", id="tag-too-long"),
        pytest.param("h.io/app:", "tag", id="empty-tag"),
        pytest.param("h.io/app@sha256:abc", "digest", id="short-digest"),
        pytest.param("h.io/app@md5:" + "a" * 32, "digest", id="other-algorithm"),
        pytest.param("h.io/app//x", "repository name", id="empty-component"),
    ],
)
def test_image_ref_parse_invalid(text: str, needle: str) -> None:
    """A bad reference is a usage error (exit 2) that says what is wrong and carries a hint."""
    with pytest.raises(UsageError) as exc:
        ImageRef.parse(text)
    _assert_usage_error(exc)
    assert needle in exc.value.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("h.io/app\n", id="repo-newline"),
        pytest.param("h.io/app:v1\n", id="tag-newline"),
        pytest.param(f"h.io/app@{DIGEST_A}\n", id="digest-newline"),
    ],
)
def test_image_ref_parse_rejects_trailing_newline(text: str) -> None:
    """A newline is not part of any valid reference."""
    with pytest.raises(UsageError):
        ImageRef.parse(text)


def test_digest_of_parse_hex() -> None:
    """Digest.of hashes bytes; parse validates; hex is the 64 digits."""
    data = b"hello registry"
    digest = Digest.of(data)
    expected = hashlib.sha256(data).hexdigest()
    assert str(digest) == f"sha256:{expected}"
    assert digest.hex == expected
    assert Digest.parse(str(digest)) == digest
    assert Digest.of(b"{}") == Digest.parse(EMPTY_DIGEST)


@pytest.mark.parametrize(
    "text", ["sha256:abc", "sha256:" + "A" * 64, "sha512:" + "a" * 128, HEX_A, "sha256:" + "g" * 64, ""]
)
def test_digest_parse_invalid(text: str) -> None:
    """Anything but sha256:<64 lower-case hex> is a usage error with a hint."""
    with pytest.raises(UsageError) as exc:
        Digest.parse(text)
    _assert_usage_error(exc)


# -- Challenge ---------------------------------------------------------------------------------


def test_challenge_bearer_with_commas_in_scope() -> None:
    """Commas inside a quoted scope stay in the scope."""
    header = 'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push"'
    challenge = Challenge.parse(header)
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg.example",
        "scope": "repository:a/b:pull,push",
    }


def test_challenge_basic() -> None:
    """A basic challenge: scheme lower-cased, realm parsed."""
    challenge = Challenge.parse('Basic realm="Registry Realm"')
    assert challenge.scheme == "basic"
    assert challenge.params == {"realm": "Registry Realm"}


# -- find_credentials --------------------------------------------------------------------------

HOST = "reg.example:5000"

HELPER = """\
import json, sys
host = sys.stdin.read().strip()
if host != {host!r}:
    print("credentials not found in native keychain")
    sys.exit(1)
print(json.dumps({{"ServerURL": host, "Username": "helper-user", "Secret": "helper-secret"}}))
"""


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG directory, with the ENVBUILD_REGISTRY_* variables cleared."""
    config = tmp_path / "docker"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("ENVBUILD_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("ENVBUILD_REGISTRY_PASSWORD", raising=False)
    return config


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``docker-credential-envtest`` on PATH: knows HOST only; returns the helper's name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-envtest"
    script.write_text(f"#!{sys.executable}\n" + HELPER.format(host=HOST), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return "envtest"


def _write_config(config_dir: Path, value: object) -> None:
    (config_dir / "config.json").write_text(json.dumps(value), encoding="utf-8")


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_none_without_config(docker_config: Path) -> None:
    """No env, no config.json: try anonymously."""
    assert find_credentials(HOST) is None


def test_credentials_env_wins(docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVBUILD_REGISTRY_USERNAME/PASSWORD beat config.json."""
    _write_config(docker_config, {"auths": {HOST: {"auth": _auth("cfg", "cfgpw")}}})
    monkeypatch.setenv("ENVBUILD_REGISTRY_USERNAME", "envuser")
    monkeypatch.setenv("ENVBUILD_REGISTRY_PASSWORD", "envpw")
    creds = find_credentials(HOST)
    assert creds is not None
    assert (creds.username, creds.secret) == ("envuser", "envpw")


def test_credentials_env_needs_both(docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A username without a password falls through to config.json."""
    _write_config(docker_config, {"auths": {HOST: {"auth": _auth("cfg", "cfgpw")}}})
    monkeypatch.setenv("ENVBUILD_REGISTRY_USERNAME", "envuser")
    creds = find_credentials(HOST)
    assert creds is not None
    assert (creds.username, creds.secret) == ("cfg", "cfgpw")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(HOST, id="bare-host"),
        pytest.param(f"https://{HOST}/v1/", id="https-url"),
        pytest.param(f"http://{HOST}", id="http-url"),
    ],
)
def test_credentials_auths(docker_config: Path, key: str) -> None:
    """auths entries keyed by a bare host or by a URL; other hosts do not match."""
    _write_config(
        docker_config,
        {"auths": {"other.example": {"auth": _auth("no", "no")}, key: {"auth": _auth("alice", "pa:ss")}}},
    )
    creds = find_credentials(HOST)
    assert creds is not None
    assert (creds.username, creds.secret) == ("alice", "pa:ss")
    assert creds.source == str(docker_config / "config.json")
    assert find_credentials("unknown.example") is None


def test_credentials_auths_host_must_match_exactly(docker_config: Path) -> None:
    """reg.example does not get the credentials of reg.example:5000."""
    _write_config(docker_config, {"auths": {HOST: {"auth": _auth("alice", "pw")}}})
    assert find_credentials("reg.example") is None


def test_credentials_identitytoken(docker_config: Path) -> None:
    """An identity token is used as the secret."""
    _write_config(docker_config, {"auths": {f"https://{HOST}/v1/": {"auth": "", "identitytoken": "tok-123"}}})
    creds = find_credentials(HOST)
    assert creds is not None
    assert creds.secret == "tok-123"


def test_credentials_bad_auth_base64(docker_config: Path) -> None:
    """An auth value that is not base64 is a usage error."""
    _write_config(docker_config, {"auths": {HOST: {"auth": "%%%not base64"}}})
    with pytest.raises(UsageError) as exc:
        find_credentials(HOST)
    assert exc.value.exit_code == EXIT_USAGE


def test_credentials_cred_helpers(docker_config: Path, helper_on_path: str) -> None:
    """credHelpers[host] runs docker-credential-<helper>; it beats auths."""
    _write_config(
        docker_config,
        {"credHelpers": {HOST: helper_on_path}, "auths": {HOST: {"auth": _auth("cfg", "cfgpw")}}},
    )
    creds = find_credentials(HOST)
    assert creds is not None
    assert (creds.username, creds.secret) == ("helper-user", "helper-secret")
    assert creds.source == "docker-credential-envtest"


def test_credentials_helper_knows_nothing(docker_config: Path, helper_on_path: str) -> None:
    """A helper that exits non-zero for the host means no credentials."""
    other = "other.example"
    _write_config(docker_config, {"credHelpers": {other: helper_on_path}})
    assert find_credentials(other) is None


def test_credentials_creds_store(docker_config: Path, helper_on_path: str) -> None:
    """credsStore is the default helper when nothing else matches."""
    _write_config(docker_config, {"credsStore": helper_on_path, "auths": {"other.example": {"auth": _auth("x", "y")}}})
    creds = find_credentials(HOST)
    assert creds is not None
    assert (creds.username, creds.secret) == ("helper-user", "helper-secret")
    assert find_credentials("unknown.example") is None


@pytest.mark.parametrize("where", ["credHelpers", "credsStore"])
def test_credentials_helper_missing(docker_config: Path, where: str) -> None:
    """A helper that is not installed is a usage error naming it."""
    config: dict[str, object] = (
        {"credHelpers": {HOST: "nosuchhelper-xyz"}} if where == "credHelpers" else {"credsStore": "nosuchhelper-xyz"}
    )
    _write_config(docker_config, config)
    with pytest.raises(UsageError) as exc:
        find_credentials(HOST)
    _assert_usage_error(exc)
    assert "docker-credential-nosuchhelper-xyz" in exc.value.message


def test_credentials_corrupt_config(docker_config: Path) -> None:
    """config.json that is not JSON is a usage error naming the file."""
    (docker_config / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError) as exc:
        find_credentials(HOST)
    _assert_usage_error(exc)
    assert "config.json" in exc.value.message


@pytest.mark.parametrize("text", ["[]", "null"])
def test_credentials_config_not_an_object(docker_config: Path, text: str) -> None:
    """config.json that is JSON but not an object is a usage error too."""
    (docker_config / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(UsageError):
        find_credentials(HOST)


def test_credentials_repr_hides_secret() -> None:
    """The secret never appears in repr/str; basic() still encodes it."""
    creds = Credentials("bob", "hunter2-very-secret", "test")
    assert "hunter2-very-secret" not in repr(creds)
    assert "hunter2-very-secret" not in str(creds)
    assert "bob" in repr(creds)
    assert creds.basic() == "Basic " + _auth("bob", "hunter2-very-secret")


# -- Layout ------------------------------------------------------------------------------------


def _descriptor(data: bytes, media_type: str = OCI_MANIFEST) -> Descriptor:
    return Descriptor(media_type=media_type, digest=Digest.of(data), size=len(data))


def test_layout_create(tmp_path: Path) -> None:
    """create() writes oci-layout, an empty index.json and blobs/sha256; open() accepts it."""
    layout = Layout.create(tmp_path / "lay")
    assert json.loads((layout.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert layout.index() == {"schemaVersion": 2, "manifests": []}
    assert (layout.path / "blobs" / "sha256").is_dir()
    assert Layout.open(layout.path).manifests() == []
    Layout.create(layout.path)  # idempotent


def test_layout_blob_round_trip(tmp_path: Path) -> None:
    """write_blob stores under blobs/sha256/<hex>; read_blob gives the bytes back."""
    layout = Layout.create(tmp_path)
    data = b"layer bytes \x00\xff"
    digest = layout.write_blob(data)
    assert digest == Digest.of(data)
    assert layout.blob_path(digest) == tmp_path / "blobs" / "sha256" / digest.hex
    assert layout.has_blob(digest)
    assert layout.read_blob(digest) == data
    assert layout.write_blob(data) == digest  # writing again is harmless


def test_layout_corrupt_blob(tmp_path: Path) -> None:
    """A blob whose bytes do not match its name is a usage error saying 'corrupt'."""
    layout = Layout.create(tmp_path)
    digest = layout.write_blob(b"original")
    layout.blob_path(digest).write_bytes(b"tampered")
    with pytest.raises(UsageError, match="corrupt") as exc:
        layout.read_blob(digest)
    _assert_usage_error(exc)


def test_layout_missing_blob(tmp_path: Path) -> None:
    """A missing blob is a usage error naming the digest."""
    layout = Layout.create(tmp_path)
    with pytest.raises(UsageError, match=HEX_A):
        layout.read_blob(Digest(DIGEST_A))
    assert not layout.has_blob(Digest(DIGEST_A))


def test_layout_add_manifest_moves_the_name(tmp_path: Path) -> None:
    """Adding under an existing name moves the name; the entry that had it stays, unnamed; other names stay."""
    layout = Layout.create(tmp_path)
    one, two, other = _descriptor(b"one"), _descriptor(b"two"), _descriptor(b"other")
    layout.add_manifest(one, name="app")
    layout.add_manifest(other, name="tools")
    layout.add_manifest(two, name="app")
    entries = layout.manifests()
    assert [(e.digest, dict(e.annotations)) for e in entries] == [
        (one.digest, {}),
        (other.digest, {REF_NAME: "tools"}),
        (two.digest, {REF_NAME: "app"}),
    ]
    assert layout.select("app").digest == two.digest
    assert layout.select("tools").digest == other.digest
    assert dict(layout.select("app").annotations) == {REF_NAME: "app"}
    assert layout.index()["schemaVersion"] == 2


def test_layout_add_manifest_same_digest_unnamed_dedupes(tmp_path: Path) -> None:
    """Adding the same manifest twice without a name leaves one entry."""
    layout = Layout.create(tmp_path)
    one = _descriptor(b"one")
    layout.add_manifest(one)
    layout.add_manifest(one)
    assert [d.digest for d in layout.manifests()] == [one.digest]


def test_layout_add_manifest_same_digest_two_names(tmp_path: Path) -> None:
    """One image under two ref names: both names stay selectable (as with skopeo's oci:DIR:NAME)."""
    layout = Layout.create(tmp_path)
    one = _descriptor(b"one")
    layout.add_manifest(one, name="v1")
    layout.add_manifest(one, name="latest")
    assert layout.select("v1").digest == one.digest
    assert layout.select("latest").digest == one.digest


def test_layout_select(tmp_path: Path) -> None:
    """select(): by name, the only one, or an error listing the names."""
    layout = Layout.create(tmp_path)
    with pytest.raises(UsageError, match="0 images") as exc:
        layout.select()
    assert exc.value.hint is not None
    assert "nothing" in exc.value.hint

    one, two = _descriptor(b"one"), _descriptor(b"two")
    layout.add_manifest(one, name="alpha")
    assert layout.select().digest == one.digest  # the only one
    assert layout.select("alpha").digest == one.digest

    layout.add_manifest(two, name="beta")
    with pytest.raises(UsageError, match="2 images in total") as exc:
        layout.select()
    _assert_usage_error(exc)
    assert exc.value.hint is not None
    assert "alpha, beta" in exc.value.hint

    with pytest.raises(UsageError, match="named 'gamma'") as exc:
        layout.select("gamma")
    assert exc.value.hint is not None
    assert "alpha" in exc.value.hint
    assert "beta" in exc.value.hint
    assert layout.select("beta").digest == two.digest


def test_layout_select_unnamed_listed_by_digest(tmp_path: Path) -> None:
    """Unnamed entries show up by digest in the ambiguity hint."""
    layout = Layout.create(tmp_path)
    one, two = _descriptor(b"one"), _descriptor(b"two")
    layout.add_manifest(one)
    layout.add_manifest(two)
    with pytest.raises(UsageError) as exc:
        layout.select()
    assert exc.value.hint is not None
    assert str(one.digest) in exc.value.hint
    assert str(two.digest) in exc.value.hint


@pytest.mark.parametrize("content", ["empty", "index-only", "blobs-only"])
def test_layout_open_not_a_layout(tmp_path: Path, content: str) -> None:
    """A directory without index.json and blobs/ is a usage error."""
    if content == "index-only":
        (tmp_path / "index.json").write_text("{}", encoding="utf-8")
    elif content == "blobs-only":
        (tmp_path / "blobs").mkdir()
    with pytest.raises(UsageError, match="not an OCI image layout") as exc:
        Layout.open(tmp_path)
    _assert_usage_error(exc)


def test_layout_open_missing_dir(tmp_path: Path) -> None:
    """A path that does not exist is a usage error too."""
    with pytest.raises(UsageError):
        Layout.open(tmp_path / "nope")


def test_children_image_manifest() -> None:
    """An image manifest's children: config then layers as blobs, no sub-manifests."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST_A, "size": 10},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST_B, "size": 20},
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": str(Digest.of(b"x")),
                "size": 1,
                "annotations": {"k": "v"},
            },
        ],
    }
    blobs, subs = children(manifest)
    assert subs == []
    assert [str(b.digest) for b in blobs] == [DIGEST_A, DIGEST_B, str(Digest.of(b"x"))]
    assert [b.size for b in blobs] == [10, 20, 1]
    assert blobs[2].annotations == (("k", "v"),)


@pytest.mark.parametrize("with_media_type", [True, False])
def test_children_index(with_media_type: bool) -> None:
    """An index's children are its manifests, and no blobs."""
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": DIGEST_A, "size": 5, "platform": {"os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": DIGEST_B, "size": 6, "artifactType": "application/x-test"},
        ],
    }
    if with_media_type:
        manifest["mediaType"] = OCI_INDEX
    blobs, subs = children(manifest)
    assert blobs == []
    assert [str(d.digest) for d in subs] == [DIGEST_A, DIGEST_B]
    assert subs[1].artifact_type == "application/x-test"
    assert subs[0].platform is None  # a platform without its architecture names none


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ({"os": "linux", "architecture": "arm64"}, "linux/arm64"),
        ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64/v8"),
        ({"architecture": "arm64"}, None),
        ({"os": "linux", "architecture": ""}, None),
        ({"os": "linux", "architecture": "arm/64"}, None),
        ({"os": "linux", "architecture": 7}, None),
        ({"os": "linux", "architecture": "arm64", "variant": ["v8"]}, None),
        ("linux/arm64", None),
    ],
)
def test_an_index_entry_names_its_platform(platform: object, expected: str | None) -> None:
    """os/architecture[/variant] from the platform object; anything the image spec does not allow names none."""
    descriptor = Descriptor.from_json({"mediaType": OCI_MANIFEST, "digest": DIGEST_A, "size": 5, "platform": platform})
    assert descriptor.platform == expected
    if expected is not None:
        assert descriptor.to_json()["platform"] == platform
        assert Descriptor.from_json(descriptor.to_json()) == descriptor


def test_descriptor_json_round_trip() -> None:
    """to_json/from_json are inverses, keys in spec order."""
    value = {
        "mediaType": OCI_MANIFEST,
        "digest": DIGEST_A,
        "size": 3,
        "artifactType": "application/x-a",
        "annotations": {"b": "2", "a": "1"},
    }
    descriptor = Descriptor.from_json(value)
    out = descriptor.to_json()
    assert list(out) == ["mediaType", "digest", "size", "artifactType", "annotations"]
    assert Descriptor.from_json(out) == descriptor
    assert out["annotations"] == {"a": "1", "b": "2"}


# -- referrers ---------------------------------------------------------------------------------


def _artifact_bytes() -> tuple[Descriptor, list[Blob], bytes]:
    subject = Descriptor(media_type=OCI_MANIFEST, digest=Digest(DIGEST_A), size=1234)
    blobs = [
        Blob(media_type="application/spdx+json", data=b'{"spdxVersion":"SPDX-2.3"}'),
        Blob(media_type="application/x-note", data=b"note", annotations=(("org.example.k", "v"),)),
    ]
    data = artifact_manifest(
        subject=subject, artifact_type="application/vnd.example.sbom", blobs=blobs, annotations={"z": "1", "a": "2"}
    )
    return subject, blobs, data


def test_artifact_manifest_deterministic() -> None:
    """The same inputs give the same bytes."""
    assert _artifact_bytes()[2] == _artifact_bytes()[2]


def test_artifact_manifest_content() -> None:
    """An OCI 1.1 artifact: empty config, artifactType, subject, layers by content digest."""
    subject, blobs, data = _artifact_bytes()
    manifest = json.loads(data)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == "application/vnd.example.sbom"
    config = manifest["config"]
    assert config["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert config["digest"] == EMPTY_DIGEST
    assert config["size"] == 2
    assert base64.b64decode(config.get("data", "e30=")) == b"{}"
    assert manifest["subject"] == subject.to_json()
    assert Descriptor.from_json(manifest["subject"]) == subject
    assert [layer["digest"] for layer in manifest["layers"]] == [
        "sha256:" + hashlib.sha256(b.data).hexdigest() for b in blobs
    ]
    assert [layer["size"] for layer in manifest["layers"]] == [len(b.data) for b in blobs]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [b.media_type for b in blobs]
    assert manifest["layers"][1]["annotations"] == {"org.example.k": "v"}
    assert list(manifest["annotations"]) == ["a", "z"]


def test_artifact_manifest_without_annotations() -> None:
    """No annotations key when there are none."""
    subject = Descriptor(media_type=OCI_MANIFEST, digest=Digest(DIGEST_A), size=1)
    manifest = json.loads(artifact_manifest(subject=subject, artifact_type="application/x", blobs=[]))
    assert "annotations" not in manifest
    assert manifest["layers"] == []


def test_fallback_and_backstop_tags() -> None:
    """sha256-<subject hex>, and that plus .<12 hex of the referrer>: valid tags."""
    subject, referrer = Digest(DIGEST_A), Digest.of(b"referrer")
    assert fallback_tag(subject) == f"sha256-{HEX_A}"
    tag = backstop_tag(subject, referrer)
    assert tag == f"sha256-{HEX_A}.{referrer.hex[:12]}"
    assert len(tag) <= 128
    assert re.fullmatch(r"[\w][\w.-]*", tag)
    assert re.fullmatch(r"[\w][\w.-]*", fallback_tag(subject))
    assert str(ImageRef.parse(f"h.io/app:{tag}")) == f"h.io/app:{tag}"


# -- RegistryClient URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "url"),
    [
        pytest.param("/v2/x", "http://127.0.0.1:5000/v2/x", id="absolute-path"),
        pytest.param("v2/x", "http://127.0.0.1:5000/v2/x", id="relative-path"),
        pytest.param(
            "/v2/r/blobs/uploads/u-1?_state=abc", "http://127.0.0.1:5000/v2/r/blobs/uploads/u-1?_state=abc", id="query"
        ),
        pytest.param("http://other/v2/y?state=1", "http://other/v2/y?state=1", id="absolute-url"),
        pytest.param("https://cdn.example/blob?sig=1", "https://cdn.example/blob?sig=1", id="absolute-https"),
    ],
)
def test_client_url_insecure(path: str, url: str) -> None:
    """insecure=True talks http://; url() joins relative and absolute Locations."""
    client = RegistryClient("127.0.0.1:5000", RegistryOptions(insecure=True), credentials=None)
    assert client.base == "http://127.0.0.1:5000"
    assert client.url(path) == url


def test_client_default_https(docker_config: Path) -> None:
    """Without insecure, the client talks https://; credentials come from find_credentials."""
    client = RegistryClient("reg.example")
    assert client.base == "https://reg.example"
    assert client.url("/v2/") == "https://reg.example/v2/"


def test_clients_one_per_host(docker_config: Path) -> None:
    """RegistryOptions.clients() gives each host one client, made with these options; for_ref names the host."""
    options = RegistryOptions(insecure=True, retries=1)
    client_for = options.clients()
    first = client_for(ImageRef.parse("127.0.0.1:5000/team/app:v1"))
    assert client_for(ImageRef.parse("127.0.0.1:5000/other/repo@sha256:" + "0" * 64)) is first
    other = client_for(ImageRef.parse("localhost:5001/team/app"))
    assert other is not first
    assert (first.host, other.host) == ("127.0.0.1:5000", "localhost:5001")
    assert first.options is options and first.base == "http://127.0.0.1:5000"
    assert options.clients()(ImageRef.parse("127.0.0.1:5000/team/app")) is not first  # a new cache each call
    assert RegistryClient.for_ref(ImageRef.parse("reg.example/team/app")).base == "https://reg.example"


def test_client_insecure_non_loopback_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Plain HTTP to a non-loopback host is allowed, with a warning."""
    with caplog.at_level(logging.WARNING, logger="envbuild.registry.client"):
        RegistryClient("localhost:5000", RegistryOptions(insecure=True), credentials=None)
        assert not caplog.records
        RegistryClient("reg.example:5000", RegistryOptions(insecure=True), credentials=None)
    assert any("plain HTTP" in r.getMessage() for r in caplog.records)

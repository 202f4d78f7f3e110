"""Nothing of the build machine in an image: the Debian base's hooks and key, and builders' mount stubs.

mmdebstrap copies the host's /etc/resolv.conf and /etc/hostname into a root file system, and
buildah's RUN steps leave empty /etc/hosts, /etc/resolv.conf and /etc/hostname files (the mount
points of the runtime's own) in the layers they write. The integration tests prove the whole on
two "machines" (tests/integration/image/test_image.py, audit/test_rebuild.py); these check each part
on small real inputs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from envbuild.image import debian
from envbuild.image.layerplan import LayerSettings, plan_layers
from envbuild.oci.imagefs import LayerReader, read_image_files
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.writer import assemble
from support.layouts import FileEntry, make_files_layout

EPOCH = 1_700_000_000
HOSTS = b"127.0.0.1\tlocalhost\n"
BASE: list[FileEntry] = [
    ("etc/hosts", HOSTS, 0o644, EPOCH, 0),
    ("etc/os-release", b"ID=debian\n", 0o644, EPOCH, 0),
]


def assembled(tmp_path: Path, *new_layers: list[FileEntry]) -> Layout:
    """The final image of a build whose builder wrote ``new_layers`` over BASE."""
    base = make_files_layout(tmp_path / "base", [BASE])
    built = make_files_layout(tmp_path / "built", [BASE, *new_layers])
    out = tmp_path / "final"
    settings = LayerSettings()
    assemble(
        built=Layout.open(built.path), base=Layout.open(base.path), out=out, epoch=EPOCH, name="final",
        plan=lambda files: plan_layers(files, venv="/opt/venv", python="3.11", workdir="/app", settings=settings),
    )  # fmt: skip
    return Layout.open(out)


def new_layer_names(layout: Layout) -> set[str]:
    """Every path in the image's layers after the base's one."""
    manifest = json.loads(layout.read_blob(layout.select().digest))
    names: set[str] = set()
    for raw in manifest["layers"][1:]:
        names |= {m.path for m in LayerReader(layout, Descriptor.from_json(raw)).members()}
    return names


def test_assemble_drops_what_the_builders_mounts_left(tmp_path: Path) -> None:
    """Empty mount points and whiteouts of runtime files leave the new layers; the base's /etc/hosts stays."""
    stubs: list[FileEntry] = [
        ("etc/.wh.hosts", b"", 0o644, EPOCH, 0),  # would hide the base's /etc/hosts
        ("etc/hostname", b"", 0o755, EPOCH, 0),
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, EPOCH, 0),
        ("etc/resolv.conf", b"", 0o755, EPOCH, 0),
        ("run/.containerenv", b"", 0o644, EPOCH, 0),
    ]
    layout = assembled(tmp_path, stubs, [("etc/hosts", b"", 0o755, EPOCH, 0)])

    names = new_layer_names(layout)
    assert "/etc/passwd" in names
    assert not names & {"/etc/.wh.hosts", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}
    files = read_image_files(layout, None, lambda path: path.startswith(("/etc/", "/run/")))
    assert files == {"/etc/hosts": HOSTS, "/etc/os-release": b"ID=debian\n", "/etc/passwd": stubs[2][1]}


def test_a_runtime_file_the_dockerfile_copies_stays(tmp_path: Path) -> None:
    """Content at /etc/hostname is the project's choice, not a mount point: it is kept."""
    layout = assembled(tmp_path, [("etc/hostname", b"inference\n", 0o644, EPOCH, 0)])
    assert read_image_files(layout, None, lambda path: path == "/etc/hostname") == {"/etc/hostname": b"inference\n"}


def test_the_base_hooks_remove_what_mmdebstrap_took_from_the_host(tmp_path: Path) -> None:
    """Run the customize hooks as mmdebstrap does (``sh -c HOOK exec ROOT``) on what its setup step writes."""
    root = tmp_path / "root"
    (root / "etc" / "apt").mkdir(parents=True)
    (root / "var" / "log" / "apt").mkdir(parents=True)
    (root / "etc" / "resolv.conf").write_text("nameserver 10.1.2.3\n")
    (root / "etc" / "hostname").write_text("builder-17\n")
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    signed = f'deb [signed-by="{keyring}"] http://deb.debian.org/debian bookworm main\n'
    (root / "etc" / "apt" / "sources.list").write_text(signed)
    (root / "var" / "log" / "dpkg.log").write_text("2026-12-02 10:00:00 install\n")

    for hook in debian._CUSTOMIZE_HOOKS:
        subprocess.run(["sh", "-c", hook, "exec", str(root)], check=True)

    assert not (root / "etc" / "resolv.conf").exists() and not (root / "etc" / "hostname").exists()
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    assert (root / "etc" / "apt" / "sources.list").read_text() == "deb http://deb.debian.org/debian bookworm main\n"
    assert list((root / "var" / "log").iterdir()) == []

    (root / "etc" / "hosts").write_text("127.0.0.1 localhost packaged\n")  # a package's own hosts file stays
    for hook in debian._CUSTOMIZE_HOOKS:
        subprocess.run(["sh", "-c", hook, "exec", str(root)], check=True)
    assert (root / "etc" / "hosts").read_text() == "127.0.0.1 localhost packaged\n"


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("_PATH_EXCLUDES", ("/usr/share/doc/*",)),
        ("_CUSTOMIZE_HOOKS", ('rm -rf "$1"/var/log/*',)),
        ("COMPRESSOR", "python-zlib 0.0 gzip -9"),
    ],
)
def test_the_base_key_covers_how_the_base_is_made(monkeypatch: pytest.MonkeyPatch, name: str, changed: object) -> None:
    """Changing a hook, a path filter or the compressor gives another key: an old cached base is never reused."""
    monkeypatch.setattr(debian, "mmdebstrap_version", lambda: "1.3.5")
    recipe = {"suite": "bookworm", "packages": ["python3"]}
    before = debian.base_key(recipe, platform="linux/amd64", epoch=EPOCH)
    assert debian.base_key(recipe, platform="linux/amd64", epoch=EPOCH) == before
    monkeypatch.setattr(debian, name, changed)
    assert debian.base_key(recipe, platform="linux/amd64", epoch=EPOCH) != before


def test_the_hooks_reach_mmdebstrap() -> None:
    """The hooks the key covers are the ones mmdebstrap runs."""
    options = debian._options({"suite": "bookworm", "packages": ["python3"]}, "linux/amd64")
    hooks = [o.removeprefix("--customize-hook=") for o in options if o.startswith("--customize-hook=")]
    assert hooks == list(debian._CUSTOMIZE_HOOKS) and options[-1] == "bookworm"

"""Another machine, as far as a build can tell: namespaces with other host files, and a scan for leaks.

:func:`another_machine` gives a command prefix that runs the command in new mount and UTS
namespaces (``unshare --mount --uts``) where /etc/resolv.conf, /etc/hosts and /etc/hostname
are other files (bind mounts seen only inside), the host name is another, apt trusts the
Debian archive keys only through /usr/share/keyrings (as on an Ubuntu machine: mmdebstrap then
adds signed-by to sources.list), and the umask is 077. The host's own files are untouched.
:func:`files_containing` then finds any trace of those files in an image.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from envbuild.oci.imagefs import LayerReader
from envbuild.oci.layout import Descriptor, Layout

HOSTNAME = "envbuild-elsewhere-7f3a"
NAMESERVER = "192.0.2.153"  # TEST-NET-1: never a real server
SEARCH = "elsewhere-7f3a.invalid"


@dataclass(frozen=True)
class Machine:
    """The prefix that runs a command on the other machine, and what would betray it in an image."""

    prefix: tuple[str, ...]
    traces: tuple[bytes, ...]


def another_machine(where: Path) -> Machine:
    """Write the other machine's host files under ``where``; the prefix bind-mounts them over the real ones.

    Its resolv.conf keeps this machine's name servers first (the package index and the Debian
    mirror must still resolve) and adds a search domain and a server of its own.
    """
    where.mkdir(parents=True, exist_ok=True)
    real = Path("/etc/resolv.conf").read_text()
    servers = "".join(line + "\n" for line in real.splitlines() if line.startswith("nameserver"))
    files = {
        "resolv.conf": f"# another machine\nsearch {SEARCH}\n{servers}nameserver {NAMESERVER}\n",
        "hosts": f"127.0.0.1\tlocalhost\n192.0.2.17\t{HOSTNAME}.{SEARCH} {HOSTNAME}\n",
        "hostname": f"{HOSTNAME}\n",
    }
    for name, text in files.items():
        (where / name).write_text(text)
        (where / name).chmod(0o644)
    keys = where / "trusted.gpg.d"
    keys.mkdir(exist_ok=True)
    mounts = [(where / name, f"/etc/{name}") for name in files] + [(keys, "/etc/apt/trusted.gpg.d")]
    script = "\n".join(
        [
            "set -e",
            *(f"mount --bind {shlex.quote(str(source))} {target}" for source, target in mounts),
            f"hostname {HOSTNAME}",
            "umask 077",
            'exec "$@"',
        ]
    )
    own = (real.encode(),) if real.strip() else ()  # this machine's resolv.conf, as mmdebstrap copied it
    traces = (HOSTNAME.encode(), NAMESERVER.encode(), SEARCH.encode(), *own)
    return Machine(prefix=("unshare", "--mount", "--uts", "--", "sh", "-c", script, "sh"), traces=traces)


def files_containing(layout: Layout, traces: tuple[bytes, ...]) -> list[str]:
    """Every entry of every layer of the image whose name, link target or content holds one of ``traces``."""
    manifest = json.loads(layout.read_blob(layout.select().digest))
    found = []
    for raw in manifest["layers"]:
        for member in LayerReader(layout, Descriptor.from_json(raw)).members():
            text = member.info.name.encode() + b"\0" + member.info.linkname.encode() + b"\0" + b"".join(member.chunks())
            found += [f"{member.path}: {trace!r}" for trace in traces if trace in text]
    return found

"""Running a program inside an unpacked image: no network, as the image's user, nothing left behind.

``unshare`` gives the run its own network (empty: no network at all), mount and PID
namespaces, and mounts a fresh /proc; inside, a small bootstrap (this machine's Python)
mounts a /dev with the usual character devices, an empty /tmp and /dev/shm, and a read-only
/sys (not for an image of another machine: :attr:`Sandbox.sysfs`), then chroots into the
image, takes the image user's uid and gid and executes the program with the image's
environment only. Every mount lives in the run's own mount namespace, so all of it is gone
when the run ends, killed or not.

Without root, the run maps the caller to root in a user namespace first: the program then
runs as that mapped root, not as the image's user (logged).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envbuild.proc import Result, run, which

log = logging.getLogger(__name__)

_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
# The bootstrap, run by this machine's Python inside the namespaces (so the image needs no shell).
_BOOT = r"""
import json, os, subprocess, sys
plan = json.loads(sys.argv[1])
root, mount = plan["root"], plan["mount"]
def m(*args, optional=False):
    done = subprocess.run([mount, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode and not optional:
        sys.exit("envbuild sandbox: mount %s: %s" % (" ".join(args), done.stderr.strip()))
m("-t", "tmpfs", "-o", "mode=0755,nosuid,size=16m", "tmpfs", root + "/dev")
for name in ("null", "zero", "full", "random", "urandom", "tty"):
    open(root + "/dev/" + name, "w").close()
    m("--bind", "/dev/" + name, root + "/dev/" + name, optional=name == "tty")
for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
    os.symlink(target, root + "/dev/" + name)
os.mkdir(root + "/dev/shm")
for where in ("/dev/shm", "/tmp"):
    m("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", root + where)
if plan["sysfs"]:
    m("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", root + "/sys", optional=True)
# This process stays PID 1 of the namespace, as root: when unshare is killed (a timeout), the kernel
# kills it (unshare --kill-child), and with it every process of the namespace. The program itself
# cannot be the one signalled: changing to the image's user clears the parent-death signal.
pid = os.fork()
if pid == 0:
    os.chroot(root)
    os.chdir(plan["workdir"])
    if plan["uid"] is not None:
        os.setgroups([])
        os.setgid(plan["gid"])
        os.setuid(plan["uid"])
    os.execve(plan["argv"][0], plan["argv"], plan["env"])
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """How to run programs in the unpacked image at ``root``."""

    root: Path
    uid: int
    gid: int
    env: Mapping[str, str]  # the image's environment, HOME included
    workdir: str = "/"
    # The host's /sys, read-only. Not for an image of another machine, run under qemu-user
    # emulation: its programs would read this machine's CPU topology as their own, and
    # onnxruntime's cpuinfo then crashes the interpreter (SIGSEGV) where without /sys it warns.
    sysfs: bool = True


def run_in_image(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    tool: str,
    timeout: float,
    lines: Callable[[str], None] | None = None,
) -> Result:
    """Run ``argv`` (its first item an absolute path in the image) inside the image; its exit status is not checked."""
    for directory in ("proc", "dev", "tmp", "sys"):
        target = sandbox.root / directory
        if not target.is_dir() or target.is_symlink():
            target.unlink(missing_ok=True)
            target.mkdir()
            target.chmod(0o755)
    root = os.geteuid() == 0
    if not root:
        log.info("%s: not root, so it runs as root mapped to this user, not as uid %d", tool, sandbox.uid)
    plan = {
        "root": str(sandbox.root), "mount": which("mount", hint="apt-get install mount"),
        "workdir": sandbox.workdir, "uid": sandbox.uid if root else None, "gid": sandbox.gid,
        "argv": list(argv), "env": dict(sandbox.env), "sysfs": sandbox.sysfs,
    }  # fmt: skip
    unshare = which("unshare", hint="apt-get install util-linux")
    user = [] if root else ["--user", "--map-root-user"]
    boot = sandbox.root.parent / f".{sandbox.root.name}-boot.py"  # a file, so that -v logs a short command
    boot.write_text(_BOOT, encoding="utf-8")
    command: list[str | Path] = [
        unshare, *user, "--net", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={sandbox.root}/proc",
        "--", sys.executable, "-I", "-S", boot, json.dumps(plan),
    ]  # fmt: skip
    return run(command, tool=tool, env=_HOST_ENV, timeout=timeout, check=False, lines=lines)

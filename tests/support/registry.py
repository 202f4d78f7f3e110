"""Real ``docker-registry`` (distribution 2.8) processes on 127.0.0.1, optionally with basic auth or TLS.

Integration tests push to and pull from these instead of a mock, so what they exercise is what a
real OCI registry answers. Every process is started inside :func:`run_registry` and stopped in its
``finally``; the child is also asked to die with the test process (``PR_SET_PDEATHSIG``), so an
interrupted run cannot leave registries listening behind it.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from support.tools import require_tool

USERNAME = "envbuild-test"
READY_TIMEOUT = 10.0
# A fixed secret: the registry only uses it to sign upload-session state, and a fixed value keeps
# upload URLs valid across restart() (and silences the "No HTTP secret provided" warning).
HTTP_SECRET = "envbuild-test-http-secret"
_PORT_ATTEMPTS = 5
_PR_SET_PDEATHSIG = 1


class RegistryStartError(RuntimeError):
    """The registry process exited or did not answer ``GET /v2/`` in time; carries its log tail."""


class _PortInUseError(RegistryStartError):
    """The chosen port was taken between picking it and the registry binding it."""


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a server certificate it signed (127.0.0.1 and localhost), and an unrelated CA.

    Each CA certificate sits alone in its own directory (its key beside that directory), so
    ``ca_file.parent`` works as a skopeo ``--cert-dir``: that trusts every ``*.crt`` in it and
    would take a ``*.key`` there for a client key and fail for want of the matching ``*.cert``.
    """

    ca_file: Path
    certificate: Path
    key: Path
    other_ca_file: Path


@dataclass
class Registry:
    """One registry instance: where it listens, where it stores blobs, how to reach and control it."""

    root: Path
    storage: Path
    port: int
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None
    htpasswd_file: Path | None = None
    delete: bool = True
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as used in ``docker://HOST/repo:tag`` references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, ``http://`` or ``https://`` depending on TLS."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def ca_file(self) -> Path | None:
        """The CA that signed the server certificate (None without TLS)."""
        return self.tls.ca_file if self.tls else None

    @property
    def other_ca_file(self) -> Path | None:
        """A CA unrelated to the server certificate, for verification-failure tests (None without TLS)."""
        return self.tls.other_ca_file if self.tls else None

    @property
    def config_file(self) -> Path:
        """The config.yml the process was started with."""
        return self.root / "config.yml"

    @property
    def log_file(self) -> Path:
        """stdout+stderr of every run of this registry (appended across restarts)."""
        return self.root / "registry.log"

    def auth_header(self) -> dict[str, str]:
        """An ``Authorization: Basic`` header for the test user, or ``{}`` without auth."""
        if self.username is None or self.password is None:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def ssl_context(self, ca_file: Path | None = None) -> ssl.SSLContext | None:
        """A client context trusting ``ca_file`` (default: this registry's CA); None for plain HTTP."""
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=str(ca_file or self.tls.ca_file))

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the registry log, for failure messages."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Write the config for the current port and start the process; return once it answers."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"registry on {self.host} is already running")
        self.config_file.write_text(_render_config(self), encoding="utf-8")
        self._log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [require_tool("docker-registry"), "serve", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_registry_env(),
            # Runs between fork and exec; safe here because tests start registries from the main thread.
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``GET /v2/`` until it answers 200 or 401; raise with the log tail if it never does."""
        deadline = time.monotonic() + timeout
        context = self.ssl_context()
        last_error: object = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                tail = self.log_tail()
                kind = _PortInUseError if "address already in use" in tail else RegistryStartError
                raise kind(f"registry on {self.host} exited (code {code}) before it was ready:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=context) as response:
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                if error.code == 401:  # auth is on: the API is up, it just wants credentials
                    return
                last_error = error
            except OSError as error:  # connection refused while it is still binding
                last_error = error
            time.sleep(0.02)
        raise RegistryStartError(
            f"registry on {self.host} not ready after {timeout:.0f}s (last: {last_error}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the process, as a crash would, and reap it; storage is left as the crash left it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same storage."""
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def run_registry(
    tmp_path: Path,
    *,
    auth: bool = False,
    tls: bool = False,
    storage: Path | None = None,
    delete: bool = True,
) -> Iterator[Registry]:
    """Run a registry rooted in a fresh directory under ``tmp_path`` until the block ends.

    ``storage`` defaults to a directory next to the config; pass one to share or pre-seed it.
    ``auth`` adds htpasswd basic auth for :data:`USERNAME` with a random password; ``tls`` serves
    HTTPS with a certificate from a throwaway CA (``registry.ca_file``).
    """
    require_tool("docker-registry")
    # A private directory per registry, so several can share one tmp_path (e.g. two fixtures).
    root = Path(tempfile.mkdtemp(prefix="registry-", dir=tmp_path))
    registry = Registry(root=root, storage=storage or root / "storage", port=0, delete=delete)
    registry.storage.mkdir(parents=True, exist_ok=True)
    if auth:
        registry.username = USERNAME
        # hex, so the password can never look like an htpasswd option or need quoting.
        registry.password = os.urandom(16).hex()
        registry.htpasswd_file = _write_htpasswd(root / "htpasswd", registry.username, registry.password)
    if tls:
        registry.tls = make_tls_files(root / "tls")
    try:
        for attempt in range(_PORT_ATTEMPTS):
            registry.port = free_port()
            try:
                registry.start()
                break
            except _PortInUseError:
                # Another process took the port between free_port() closing it and the bind.
                if attempt == _PORT_ATTEMPTS - 1:
                    raise
        yield registry
    finally:
        registry.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller must cope with a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a test CA, a server certificate for 127.0.0.1/localhost signed by it, and a second CA.

    Uses the openssl CLI because the ``cryptography`` package is not in the dev environment.
    Certificates carry key usages and key identifiers so they also pass strict X.509 checks
    (Python 3.13's VERIFY_X509_STRICT, Go's verifier).
    """
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(openssl, directory / "ca", "envbuild test CA")
    other, _ = _make_ca(openssl, directory / "other-ca", "envbuild unrelated test CA")
    key = directory / "server.key"
    csr = directory / "server.csr"
    cert = directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n",
        encoding="utf-8",
    )
    _run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
    _run([openssl, "req", "-new", "-key", str(key), "-subj", "/CN=127.0.0.1", "-out", str(csr)])
    sign = [
        openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
    ]  # fmt: skip
    _run(sign)
    return TlsFiles(ca_file=ca, certificate=cert, key=key, other_ca_file=other)


def _make_ca(openssl: str, directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: ``directory/ca.crt`` alone in ``directory``, its key as ``directory.key`` beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.crt", directory.with_suffix(".key")
    argv = [
        openssl, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-sha256", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    ]  # fmt: skip
    _run(argv)
    return cert, key


def _write_htpasswd(path: Path, username: str, password: str) -> Path:
    """A bcrypt htpasswd file; distribution 2.8 accepts only bcrypt entries."""
    # -C 4: the lowest bcrypt cost, since the registry checks the hash on every request.
    line = _run([require_tool("htpasswd"), "-Bbn", "-C", "4", username, password])
    path.write_text(line.strip() + "\n", encoding="utf-8")
    return path


def _render_config(registry: Registry) -> str:
    """The registry's config.yml; values are JSON-quoted, which YAML reads as plain strings."""
    q = json.dumps
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {q(str(registry.storage))}",
        "  delete:",
        f"    enabled: {q(registry.delete)}",
        "  maintenance:",
        "    uploadpurging:",
        # Purging runs in the background and could race with tests that inspect _uploads.
        "      enabled: false",
        "http:",
        f"  addr: {q(registry.host)}",
        f"  secret: {q(HTTP_SECRET)}",
    ]
    if registry.tls is not None:
        lines += [
            "  tls:",
            f"    certificate: {q(str(registry.tls.certificate))}",
            f"    key: {q(str(registry.tls.key))}",
        ]
    if registry.htpasswd_file is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: envbuild-test",
            f"    path: {q(str(registry.htpasswd_file))}",
        ]
    return "\n".join(lines) + "\n"


def _registry_env() -> dict[str, str]:
    """The test's environment minus ``REGISTRY_*``, which the registry would read as config overrides."""
    return {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}


def _die_with_parent() -> None:
    """In the child: have the kernel SIGKILL it if the test process dies without cleaning up.

    The signal fires when the *thread* that forked exits, hence: start registries from the main thread.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _run(argv: list[str]) -> str:
    """Run a setup command; on failure raise with its stderr rather than a bare CalledProcessError."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout

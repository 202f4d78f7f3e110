#!/usr/bin/env bash
# Set up, then run the main job on the embedded default (envbuild.toml + demo/):
# lock every variant and check the locks are current.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/envbuild lock
.venv/bin/envbuild lock --check

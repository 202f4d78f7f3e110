#!/usr/bin/env bash
# Set up, then run everything CI runs: lint, types, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-test-tools
export CI="${CI:-true}"  # a missing tool fails its test instead of skipping it
.venv/bin/ruff check builder tests bench
.venv/bin/ruff format --check builder tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache  # the layer contracts in pyproject.toml: imports point down the pipeline
exec .venv/bin/python -m pytest --durations=15 "$@"

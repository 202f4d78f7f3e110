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
# Two workers (CI has 2 cores), a test file each at a time: a module's fixtures (a build) are made once.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"

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
# Two workers (CI has 2 cores), each taking a whole test file at a time, and every file using the session's
# demo builds as one (tests/conftest.py): a module's fixtures and those builds are made once.
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"

#!/usr/bin/env bash
# The project's test command: lint, type-check, then the whole test suite (slow tests included).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check tunekit plugins tests bench examples
mypy
python -m pytest "$@"

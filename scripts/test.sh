#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and the real-kernel tests in namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== layers"; .venv/bin/python scripts/check_layers.py
echo "== pytest"; exec .venv/bin/pytest -p no:cacheprovider --strict-markers "$@"

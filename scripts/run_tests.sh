#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure_env.sh
exec python -m pytest -q "$@"

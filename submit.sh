#!/usr/bin/env bash
# Check the kit the way the AIcrowd grader will run it, then submit it (docs/SUBMITTING.md):
#   bash submit.sh VERSION           preflight, then tag submission-VERSION and push branch + tag to "aicrowd"
#   bash submit.sh VERSION --cli     preflight, then `aicrowd submission create` (pip install aicrowd-cli)
#   bash submit.sh VERSION --check   preflight only; nothing is tagged or pushed
# An active virtualenv or conda environment is used as it is; otherwise .venv is set up on first use.
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
  . scripts/ensure_env.sh
fi
exec python -m submission "$@"

#!/usr/bin/env bash
# Create .venv with the pinned requirements on first use; later calls only check a stamp.
# Source it (". scripts/ensure_env.sh") to get the virtualenv activated.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_stamp="$_root/.venv/.requirements.sha256"
_want="$(sha256sum "$_root/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$_root/.venv/bin/python" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "[mdx-kit] setting up $_root/.venv (first use; a few minutes)..." >&2
  python3 -m venv "$_root/.venv" || return 1 2>/dev/null || exit 1
  "$_root/.venv/bin/python" -m pip install -q -r "$_root/requirements.txt" || return 1 2>/dev/null || exit 1
  echo "$_want" > "$_stamp"
fi
. "$_root/.venv/bin/activate"

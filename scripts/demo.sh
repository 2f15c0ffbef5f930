#!/usr/bin/env bash
# The main job on a fresh machine: install, bring the stack up, show it, take it down.
# Uses a throwaway STIGMER_HOME unless you set one, and free ports unless you set them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv (pip --user)"
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "==> installing stigmer from the lock file"
uv sync --frozen --quiet

export STIGMER_HOME="${STIGMER_HOME:-$(mktemp -d -t stigmer-demo.XXXXXX)}"
free_port() { uv run --frozen python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export STIGMER_SERVER_PORT="${STIGMER_SERVER_PORT:-$(free_port)}"
export STIGMER_TEMPORAL_PORT="${STIGMER_TEMPORAL_PORT:-$(free_port)}"
export STIGMER_TEMPORAL_UI_PORT="${STIGMER_TEMPORAL_UI_PORT:-$(free_port)}"
stigmer() { uv run --frozen stigmer "$@"; }

trap 'echo "==> stopping"; stigmer server stop' EXIT
echo "==> stigmer server start (home $STIGMER_HOME)"
stigmer server start
echo "==> stigmer server status"
stigmer server status
echo "==> stigmer server logs -c agent-runner -n 5"
stigmer server logs -c agent-runner -n 5

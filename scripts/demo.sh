#!/usr/bin/env bash
# The main job on a fresh machine: install, bring the stack up, apply an example
# agent, run it on real files, show the result, take the stack down.
#
# Always uses a throwaway STIGMER_HOME, free ports and a runner container name
# of its own: a stack you run yourself (STIGMER_HOME and ports exported or not)
# is never touched. The runner runs in Docker when an engine answers (the image
# is built once if missing), else as a local process; force one with
# STIGMER_RUNNER_MODE=docker|local.
set -euo pipefail
cd "$(dirname "$0")/.."
# every uv call is --quiet (no "Bytecode compiled ..." line each); no progress bars
export UV_NO_PROGRESS=1

if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv (pip --user)"
  export PATH="$HOME/.local/bin:$PATH"
  # a Python managed by the OS (Debian 12, Ubuntu 23.04+: PEP 668) refuses even --user
  # installs unless told; --user keeps it to ~/.local, never the system's packages
  python3 -m pip install --quiet --user uv 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null ||
    python3 -m pip install --quiet uv 2>/dev/null || true
  hash -r
  if ! command -v uv >/dev/null 2>&1; then
    echo "error: could not install uv with pip." >&2
    echo "fix: install uv (https://docs.astral.sh/uv/getting-started/installation/, or" \
      "\`pipx install uv\`), then run this again." >&2
    exit 1
  fi
fi
echo "==> installing stigmer from the lock file   (the first time: a minute or two)"
uv sync --frozen --quiet
venv_python="$(uv run --frozen --quiet python -c 'import sys; print(sys.executable)')"
# the venv's own entry point: no `uv run` (a second or more) per command
stigmer() { "$(dirname "$venv_python")/stigmer" "$@"; }

STIGMER_HOME="$(mktemp -d -t stigmer-demo.XXXXXX)"
export STIGMER_HOME
# below the kernel's ephemeral range: Temporal takes ephemeral ports of its own as it starts
read -r STIGMER_SERVER_PORT STIGMER_TEMPORAL_PORT STIGMER_TEMPORAL_UI_PORT < <(
  "$venv_python" -c 'from stigmer.stack.ports import unused_ports; print(*unused_ports(3))')
export STIGMER_SERVER_PORT STIGMER_TEMPORAL_PORT STIGMER_TEMPORAL_UI_PORT
export STIGMER_RUNNER_MODE="${STIGMER_RUNNER_MODE:-auto}"
# a container name of its own too: another stack on this engine keeps the default one
STIGMER_RUNNER_CONTAINER="stigmer-agent-runner-demo-$(basename "$STIGMER_HOME" | tr -c 'a-zA-Z0-9_.\n-' '-')"
export STIGMER_RUNNER_CONTAINER

if [ "$STIGMER_RUNNER_MODE" != local ]; then
  if docker info >/dev/null 2>&1; then
    image="${STIGMER_RUNNER_IMAGE:-stigmer-agent-runner:local}"
    build_log="$(mktemp -t stigmer-demo-build.XXXXXX)"
    # cached layers make this a few seconds when nothing changed
    echo "==> make build-agent-runner-image IMAGE=$image   (the first time: a few minutes; log: $build_log)"
    if make build-agent-runner-image IMAGE="$image" >"$build_log" 2>&1; then
      rm -f "$build_log"
      export STIGMER_RUNNER_MODE=docker  # what auto picks with an engine and an image
    else
      echo "    the build failed (see $build_log); using the local runner"
      export STIGMER_RUNNER_MODE=local
    fi
  elif [ "$STIGMER_RUNNER_MODE" = auto ]; then
    export STIGMER_RUNNER_MODE=local
  fi
fi

cleanup() {
  echo "==> stigmer server stop"
  stigmer server stop
  rm -rf "$STIGMER_HOME" 2>/dev/null || true
}
trap cleanup EXIT
echo "==> stigmer server start   (home $STIGMER_HOME, runner: $STIGMER_RUNNER_MODE)"
stigmer server start --offline

workspace="$STIGMER_HOME/data/workspace"
echo "==> stigmer init   (the examples' input files)"
stigmer init

echo "==> stigmer apply -f examples/"
stigmer apply -f examples/
prompt="Summarize the notes folder into reports/notes-summary.md"
echo "==> stigmer run summarize-folder \"$prompt\""
stigmer run summarize-folder "$prompt"
echo "==> the report the agent wrote ($workspace/reports/notes-summary.md):"
cat "$workspace/reports/notes-summary.md"
cat <<'TXT'

==> next, with a stack of your own (README "Using it"), and a real model:
    uv sync && . .venv/bin/activate
    export ANTHROPIC_API_KEY=...     # or OPENAI_API_KEY=..., before `server start`
    stigmer server start && stigmer init && stigmer apply -f examples/
    stigmer run summarize-folder "Summarize the notes folder" --model anthropic:claude-sonnet-4-5
TXT

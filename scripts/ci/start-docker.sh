#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine; start dockerd if not.
#
# Idempotent: if `docker info` already works, nothing is done.
# Otherwise dockerd is started in the background (no systemd needed), its log
# going to $STIGMER_CI_LOGS/dockerd.log (default /tmp/stigmer-ci-logs), and we
# wait up to $STIGMER_DOCKER_WAIT seconds (default 60) for `docker info`.
#
# Needs root and Debian's docker.io package (dockerd, containerd, runc).
set -euo pipefail

LOG_DIR="${STIGMER_CI_LOGS:-/tmp/stigmer-ci-logs}"
WAIT_SECS="${STIGMER_DOCKER_WAIT:-60}"
DOCKERD_LOG="$LOG_DIR/dockerd.log"
PIDFILE=/var/run/docker.pid

log() { echo "[start-docker] $*"; }
die() { echo "[start-docker] ERROR: $*" >&2; exit 1; }

docker_ok() { docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1; then
    die "no 'docker' client on PATH (install Debian's docker.io package)"
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix:///var/run/docker.sock" ] \
        && [ "$DOCKER_HOST" != "unix:///run/docker.sock" ]; then
    log "note: DOCKER_HOST=$DOCKER_HOST; a local dockerd listens on /var/run/docker.sock only"
fi

if docker_ok; then
    log "Docker engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing to do"
    exit 0
fi

command -v dockerd >/dev/null 2>&1 || die "no 'dockerd' on PATH (install Debian's docker.io package)"
[ "$(id -u)" = 0 ] || die "dockerd must be started as root"

mkdir -p "$LOG_DIR"

# Is a dockerd already running (e.g. still starting up, or started by an init
# script)?  Then wait for it rather than starting a second one.
existing_pid=""
if [ -r "$PIDFILE" ]; then
    p="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$p" ] && [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = dockerd ]; then
        existing_pid="$p"
    fi
fi

# A dockerd killed without cleanup (e.g. at the end of a previous session)
# leaves pid files behind; remove them unless their pid is still that daemon.
if [ -z "$existing_pid" ]; then
    for f in "$PIDFILE:dockerd" /var/run/docker/containerd/containerd.pid:containerd; do
        file="${f%%:*}" want="${f##*:}"
        [ -e "$file" ] || continue
        p="$(cat "$file" 2>/dev/null || true)"
        if [ -z "$p" ] || [ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$want" ]; then
            log "removing stale $file (pid ${p:-none} is not a running $want)"
            rm -f "$file"
        fi
    done
fi

if [ -n "$existing_pid" ]; then
    log "dockerd (pid $existing_pid) is running but not answering yet; waiting for it"
    dockerd_pid="$existing_pid"
    # Its log may be elsewhere; show ours only if we have one.
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    {
        echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) start-docker.sh starting dockerd"
    } >>"$DOCKERD_LOG"
    # setsid + nohup: detach from this shell's session/process group so the
    # daemon outlives the script (and CI step) that started it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    log "dockerd pid $dockerd_pid"
fi

deadline=$((SECONDS + WAIT_SECS))
while [ "$SECONDS" -lt "$deadline" ]; do
    if docker_ok; then
        log "Docker engine is up after $((SECONDS))s: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || echo '?')"
        exit 0
    fi
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "[start-docker] ERROR: dockerd (pid $dockerd_pid) exited before the engine answered." >&2
        echo "[start-docker] last lines of $DOCKERD_LOG:" >&2
        tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 1
done

echo "[start-docker] ERROR: 'docker info' still fails after ${WAIT_SECS}s (dockerd pid $dockerd_pid)." >&2
echo "[start-docker] docker info says:" >&2
docker info 2>&1 | tail -n 5 >&2 || true
echo "[start-docker] last lines of $DOCKERD_LOG:" >&2
tail -n 40 "$DOCKERD_LOG" >&2 2>/dev/null || true
exit 1

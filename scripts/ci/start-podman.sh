#!/usr/bin/env bash
# Make sure rootful Podman answers on its Docker-compatible socket; start it if not.
#
# Idempotent: if the socket already answers /_ping, nothing is done.
# Otherwise `podman system service --time=0` is started in the background (no
# systemd needed) on $STIGMER_PODMAN_SOCK (default /run/stigmer-ci-podman.sock),
# its log going to $STIGMER_CI_LOGS/podman.log, and we wait up to
# $STIGMER_PODMAN_WAIT seconds (default 60) for it to answer.
#
# Podman gets a registries.conf of its own (CONTAINERS_REGISTRIES_CONF, never
# the system's /etc/containers/registries.conf) that marks the local registry
# 127.0.0.1:5000 insecure (plain http), as dockerd treats loopback registries.
# It keeps its own storage (/var/lib/containers) and networks: dockerd, its
# bridge and its iptables rules are not touched.
#
# The tests find the socket as DOCKER_HOST=unix://$STIGMER_PODMAN_SOCK.
# Needs root and Debian's podman package.
set -euo pipefail

LOG_DIR="${STIGMER_CI_LOGS:-/tmp/stigmer-ci-logs}"
WAIT_SECS="${STIGMER_PODMAN_WAIT:-60}"
SOCK="${STIGMER_PODMAN_SOCK:-/run/stigmer-ci-podman.sock}"
CONF_DIR="${STIGMER_PODMAN_CONF_DIR:-/run/stigmer-ci-podman}"
PODMAN_LOG="$LOG_DIR/podman.log"
PIDFILE="$CONF_DIR/service.pid"

log() { echo "[start-podman] $*"; }
die() { echo "[start-podman] ERROR: $*" >&2; exit 1; }

podman_ok() {
    [ -S "$SOCK" ] || return 1
    [ "$(curl -fsS --max-time 3 --unix-socket "$SOCK" http://podman/_ping 2>/dev/null)" = OK ]
}

command -v podman >/dev/null 2>&1 || die "no 'podman' on PATH (install Debian's podman package)"
command -v curl >/dev/null 2>&1 || die "no 'curl' on PATH"

# a service started from a folder that is gone since (an earlier CI clone, deleted)
# answers, but its conmon cannot start containers ("Failed to get working directory")
cwd_gone() {
    local p
    p="$(cat "$PIDFILE" 2>/dev/null || true)"
    [ -n "$p" ] && readlink "/proc/$p/cwd" 2>/dev/null | grep -q ' (deleted)$'
}

if podman_ok && ! cwd_gone; then
    log "Podman already answers on $SOCK ($(podman --version)); nothing to do"
    exit 0
fi
if cwd_gone; then
    p="$(cat "$PIDFILE")"
    log "podman service (pid $p) runs in a deleted folder; stopping it"
    kill "$p" 2>/dev/null || true
    sleep 1
fi
[ "$(id -u)" = 0 ] || die "rootful Podman must be started as root"

mkdir -p "$LOG_DIR" "$CONF_DIR"
REGISTRIES="$CONF_DIR/registries.conf"
cat >"$REGISTRIES" <<'EOF'
# stigmer CI: Podman's own registries.conf (scripts/ci/start-podman.sh)
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "127.0.0.1:5000"
insecure = true
EOF

# a service of ours that died leaves its pid file and socket behind
if [ -r "$PIDFILE" ]; then
    p="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = podman ]; then
        log "podman service (pid $p) runs but does not answer; stopping it"
        kill "$p" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$PIDFILE"
fi
rm -f "$SOCK"

log "starting podman system service on unix://$SOCK (log: $PODMAN_LOG)"
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) start-podman.sh starting podman system service" >>"$PODMAN_LOG"
# setsid + nohup: detached from this shell, so the service outlives the script
# from /: a working folder that outlives any checkout
(cd / && CONTAINERS_REGISTRIES_CONF="$REGISTRIES" exec setsid nohup \
    podman system service --time=0 "unix://$SOCK" >>"$PODMAN_LOG" 2>&1 </dev/null) &
service_pid=$!
echo "$service_pid" >"$PIDFILE"
log "podman service pid $service_pid"

deadline=$((SECONDS + WAIT_SECS))
while [ "$SECONDS" -lt "$deadline" ]; do
    if podman_ok; then
        log "Podman answers on $SOCK after $((SECONDS))s ($(podman --version))"
        exit 0
    fi
    if ! kill -0 "$service_pid" 2>/dev/null; then
        echo "[start-podman] ERROR: the podman service exited before it answered; last lines of $PODMAN_LOG:" >&2
        tail -n 40 "$PODMAN_LOG" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
echo "[start-podman] ERROR: no answer on $SOCK after ${WAIT_SECS}s; last lines of $PODMAN_LOG:" >&2
tail -n 40 "$PODMAN_LOG" >&2 2>/dev/null || true
exit 1

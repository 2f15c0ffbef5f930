#!/usr/bin/env bash
# Run a local, throw-away Docker registry on 127.0.0.1:5000 (loopback only).
#
# Uses Debian's docker-registry package (/usr/bin/docker-registry, distribution
# 2.8), started in the background with a config written here: filesystem storage
# under $STIGMER_REGISTRY_DIR (default /var/lib/stigmer-ci-registry), no auth,
# deletes enabled. No systemd needed.
#
# Idempotent: if http://127.0.0.1:5000/v2/ already answers 200, no new registry
# is started. Either way, we then check that dockerd treats 127.0.0.1:5000 as an
# insecure (plain HTTP) registry, and configure it if it does not.
#
# Env: STIGMER_CI_LOGS (log dir, default /tmp/stigmer-ci-logs),
#      STIGMER_REGISTRY_DIR, STIGMER_REGISTRY_WAIT (seconds, default 30).
set -euo pipefail

ADDR=127.0.0.1:5000
URL="http://$ADDR/v2/"
BIN=/usr/bin/docker-registry
REG_DIR="${STIGMER_REGISTRY_DIR:-/var/lib/stigmer-ci-registry}"
CONFIG="$REG_DIR/config.yml"
DATA_DIR="$REG_DIR/data"
PIDFILE=/var/run/stigmer-ci-registry.pid
LOG_DIR="${STIGMER_CI_LOGS:-/tmp/stigmer-ci-logs}"
REG_LOG="$LOG_DIR/registry.log"
WAIT_SECS="${STIGMER_REGISTRY_WAIT:-30}"

log() { echo "[start-registry] $*"; }
die() { echo "[start-registry] ERROR: $*" >&2; exit 1; }

# HTTP status code of a GET (000 when nothing answers). curl is not guaranteed
# on a fresh machine; wget comes with debootstrap; python3 is a last resort.
http_status() {
    local url="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$url" 2>/dev/null || true
    elif command -v python3 >/dev/null 2>&1; then
        python3 - "$url" <<'EOF' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
    else
        local code
        code="$(wget -q -S -T 3 -t 1 -O /dev/null "$url" 2>&1 | awk '/^  HTTP\//{c=$2} END{print c}')" || true
        echo "${code:-000}"
    fi
}

# Does dockerd treat $ADDR as insecure (plain HTTP allowed)?  dockerd always
# adds 127.0.0.0/8 to its insecure CIDRs, but check rather than assume.
docker_trusts_registry() {
    local cidrs idx
    cidrs="$(docker info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}' 2>/dev/null)" || return 1
    idx="$(docker info --format '{{json .RegistryConfig.IndexConfigs}}' 2>/dev/null)" || return 1
    case "$cidrs" in *'"127.0.0.0/8"'*|*'"127.0.0.1/32"'*) return 0 ;; esac
    # Explicitly listed as insecure-registries: "127.0.0.1:5000":{...,"Secure":false,...}
    if printf '%s' "$idx" | grep -q "\"$ADDR\":{[^}]*\"Secure\":false"; then
        return 0
    fi
    return 1
}

ensure_docker_insecure() {
    if ! docker info >/dev/null 2>&1; then
        log "warning: no Docker engine answers; cannot check that it allows plain HTTP to $ADDR (run scripts/ci/start-docker.sh first)"
        return 0
    fi
    if docker_trusts_registry; then
        log "dockerd allows plain HTTP to $ADDR (insecure CIDRs: $(docker info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}'))"
        return 0
    fi
    log "dockerd does not list $ADDR as insecure; adding it to /etc/docker/daemon.json and reloading dockerd"
    mkdir -p /etc/docker
    python3 - "$ADDR" <<'EOF'
import json, os, sys
path = "/etc/docker/daemon.json"
cfg = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        cfg = json.load(f)
regs = cfg.setdefault("insecure-registries", [])
if sys.argv[1] not in regs:
    regs.append(sys.argv[1])
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
EOF
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
        kill -HUP "$pid"   # insecure-registries is a live-reloadable option
        sleep 2
    fi
    docker_trusts_registry || die "dockerd still does not treat $ADDR as insecure after updating /etc/docker/daemon.json and SIGHUP; restart dockerd"
    log "dockerd now allows plain HTTP to $ADDR"
}

status="$(http_status "$URL")"
if [ "$status" = 200 ]; then
    log "a registry already answers $URL with 200; nothing to start"
    ensure_docker_insecure
    exit 0
fi

# Something else on the port?  Debian's own init script may have started the
# packaged registry (all interfaces, htpasswd auth -> 401): stop that one.
if [ "$status" != 000 ]; then
    deb_pid="$(cat /var/run/docker-registry.pid 2>/dev/null || true)"
    if [ -n "$deb_pid" ] && [ "$(cat "/proc/$deb_pid/comm" 2>/dev/null)" = docker-registry ]; then
        log "Debian's packaged registry (pid $deb_pid) holds port 5000 and answers $status; stopping it"
        /etc/init.d/docker-registry stop || kill "$deb_pid" || true
        for _ in $(seq 1 10); do
            [ "$(http_status "$URL")" = 000 ] && break
            sleep 1
        done
    fi
    status="$(http_status "$URL")"
    [ "$status" = 000 ] || die "something on $ADDR answers $URL with HTTP $status (not a usable registry); free port 5000 and retry"
fi

if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :5000' 2>/dev/null | grep -q .; then
    die "port 5000 is taken but $URL does not answer: $(ss -Hltnp 'sport = :5000' 2>/dev/null | head -3)"
fi

[ -x "$BIN" ] || die "$BIN not found (install Debian's docker-registry package)"

mkdir -p "$DATA_DIR" "$LOG_DIR"
cat >"$CONFIG" <<EOF
# Written by scripts/ci/start-registry.sh: stigmer's CI/test registry.
version: 0.1
log:
  level: info
  fields:
    service: stigmer-ci-registry
storage:
  filesystem:
    rootdirectory: $DATA_DIR
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF

# If our previous registry is still running (but not answering?), stop it.
old_pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [ -n "$old_pid" ] && [ "$(cat "/proc/$old_pid/comm" 2>/dev/null)" = docker-registry ]; then
    log "stopping unresponsive previous registry pid $old_pid"
    kill "$old_pid" 2>/dev/null || true
    sleep 1
fi

log "starting $BIN serve $CONFIG (log: $REG_LOG)"
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) start-registry.sh starting registry" >>"$REG_LOG"
setsid nohup "$BIN" serve "$CONFIG" >>"$REG_LOG" 2>&1 </dev/null &
reg_pid=$!
echo "$reg_pid" >"$PIDFILE"

deadline=$((SECONDS + WAIT_SECS))
while :; do
    status="$(http_status "$URL")"
    if [ "$status" = 200 ]; then
        log "registry (pid $reg_pid) answers $URL with 200; storage $DATA_DIR"
        break
    fi
    if ! kill -0 "$reg_pid" 2>/dev/null; then
        echo "[start-registry] ERROR: docker-registry (pid $reg_pid) exited; last lines of $REG_LOG:" >&2
        tail -n 30 "$REG_LOG" >&2 || true
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "[start-registry] ERROR: $URL does not answer 200 after ${WAIT_SECS}s (last status: $status); last lines of $REG_LOG:" >&2
        tail -n 30 "$REG_LOG" >&2 || true
        exit 1
    fi
    sleep 1
done

ensure_docker_insecure

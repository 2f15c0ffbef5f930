#!/usr/bin/env bash
# Build the agent-runner image for linux/arm64 on an amd64 machine, under QEMU
# user-mode emulation, and run the runner's version command in it. This is the
# local stand-in for the arm64 half of the release workflow's multi-arch build
# (there: docker/setup-qemu-action + buildx; here: Debian's qemu-user-static,
# since this machine reaches no container registry).
#
# Usage: sudo scripts/release-arm64-check.sh [--image TAG] [--keep] [--no-cache] [--label KEY=VALUE]...
#   --image TAG   tag of the image built (default stigmer-agent-runner:arm64-check)
#   --keep        keep that image (default: removed at the end)
#   --no-cache    build every layer again (docker build --no-cache)
#   --label K=V   extra label for the image (repeatable)
#
# Steps:
#   1. qemu-user-static and binfmt-support from Debian (installed if missing)
#   2. binfmt_misc mounted, `update-binfmts --enable qemu-aarch64`, and an
#      aarch64 binary runs
#   3. the arm64 stand-in base python:3.11-slim-arm64
#      (scripts/standin-base-image.sh --arch arm64; debootstrap, cached)
#   4. make build-agent-runner-image PYTHON_IMAGE=python:3.11-slim-arm64
#   5. in the image: `uname -m` is aarch64, and `python -m stigmer.runner
#      --version` prints the version of this checkout, which is also the
#      image's org.opencontainers.image.version label
#
# Note: `docker import` (how the stand-in base is made) records amd64 in the
# image metadata whatever --platform says; the binaries inside are arm64 and
# run through QEMU, which step 5 shows.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE="stigmer-agent-runner:arm64-check"
KEEP=0
NO_CACHE=0
LABELS=()
BASE="python:3.11-slim-arm64"
UV="${UV:-uv}"

log() { echo "[arm64] $(date -u +%H:%M:%S) $*"; }
die() { echo "[arm64] ERROR: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --image) [ $# -ge 2 ] || die "--image needs a value"; IMAGE="$2"; shift ;;
        --keep) KEEP=1 ;;
        --no-cache) NO_CACHE=1 ;;
        --label) [ $# -ge 2 ] || die "--label needs a value"; LABELS+=("$2"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, binfmt_misc, debootstrap)"
if ! docker info >/dev/null 2>&1; then
    die "no Docker engine answers (scripts/ci/start-docker.sh)"
fi
T0=$SECONDS

# ---------------------------------------------------------------- 1. qemu ---
missing=()
for p in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q </dev/null >/dev/null
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi
command -v qemu-aarch64-static >/dev/null 2>&1 || die "qemu-aarch64-static not found after installing qemu-user-static"

# -------------------------------------------------------------- 2. binfmt ---
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    log "mounting binfmt_misc"
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "no binfmt_misc entry qemu-aarch64 after update-binfmts --enable"
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "binfmt entry qemu-aarch64 is disabled"
log "binfmt qemu-aarch64: $(tr '\n' ' ' </proc/sys/fs/binfmt_misc/qemu-aarch64 | sed 's/magic.*//')"

# ---------------------------------------------------------------- 3. base ---
log "arm64 stand-in base $BASE"
bash scripts/standin-base-image.sh --arch arm64 --tag "$BASE"
out="$(docker run --rm "$BASE" uname -m)"
[ "$out" = aarch64 ] || die "uname -m in $BASE printed '$out', not aarch64"
log "$BASE runs: uname -m -> $out; image metadata says $(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$BASE")"

# --------------------------------------------------------------- 4. build ---
flags=()
if [ "$NO_CACHE" = 1 ]; then flags+=("--no-cache"); fi
for l in "${LABELS[@]}"; do flags+=("--label" "$l"); done
log "make build-agent-runner-image PYTHON_IMAGE=$BASE IMAGE=$IMAGE"
t_build=$SECONDS
cleanup() { if [ "$KEEP" = 0 ]; then docker image rm -f "$IMAGE" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT
BUILD_LOG="$(mktemp -t stigmer-arm64-build.XXXXXX)"
if ! make --no-print-directory build-agent-runner-image PYTHON_IMAGE="$BASE" IMAGE="$IMAGE" \
        BUILD_FLAGS="${flags[*]:-}" UV="$UV" >"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "the arm64 build failed (full log: $BUILD_LOG)"
fi
grep -E '^Step ' "$BUILD_LOG" | cut -c1-110 | sed 's/^/[arm64]   | /' || true
rm -f "$BUILD_LOG"
docker image inspect "$IMAGE" >/dev/null 2>&1 || die "the build did not produce $IMAGE"
log "built $IMAGE in $((SECONDS - t_build))s, $(( $(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000 )) MB"

# ----------------------------------------------------------------- 5. run ---
want="$("$UV" run --frozen python -m stigmer.images.buildinfo version)"
label="$(docker image inspect -f '{{ index .Config.Labels "org.opencontainers.image.version" }}' "$IMAGE")"
arch="$(docker run --rm "$IMAGE" uname -m)"
got="$(docker run --rm "$IMAGE" python -m stigmer.runner --version)"
pyplat="$(docker run --rm "$IMAGE" python -c 'import platform, sysconfig; print(platform.machine(), sysconfig.get_platform())')"
# The native extensions of the runner's wheels load (an amd64 wheel would not).
native="$(docker run --rm "$IMAGE" python -c '
import pydantic_core._pydantic_core as p, temporalio.bridge.temporal_sdk_bridge as t, jiter
import stigmer.runner.worker, stigmer.runner.workflows
print(p.__file__.rsplit("/", 1)[-1], t.__file__.rsplit("/", 1)[-1])')" \
    || die "the runner's native extensions do not load on arm64"
log "uname -m in the image:                 $arch"
log "python platform in the image:          $pyplat"
log "native extensions loaded:              $native"
log "python -m stigmer.runner --version:    $got"
log "org.opencontainers.image.version:      $label"
log "this checkout's version:               $want"
[ "$arch" = aarch64 ] || die "the image runs $arch binaries, not aarch64"
[ "$got" = "$want" ] || die "the runner printed $got, want $want"
[ "$label" = "$want" ] || die "the label says $label, want $want"
log "OK: linux/arm64 runner image built and run under QEMU in $((SECONDS - T0))s"

#!/usr/bin/env bash
# Build a local stand-in for the image python:3.11-slim, which cannot be pulled
# on machines that reach no container registry.
#
# Debian bookworm (debootstrap --variant=minbase) with Debian's python3 (3.11),
# python3-venv and ca-certificates, the host's CA bundle, `python3.11`,
# `python3` and `python` in /usr/local/bin (as in the real image), apt lists,
# caches, docs and man pages removed, then imported with
#   tar -C rootfs -c . | docker import --change ... - python:3.11-slim
#
# Differences from the real image: Python is Debian's /usr/bin/python3.11 (the
# /usr/local/bin names are symlinks to it), and there is no `pip` in the base
# interpreter unless --with-pip is given (`python3 -m venv` works and brings pip
# into the venv from Debian's bundled wheels).
#
# Usage: scripts/standin-base-image.sh [--force] [--rebuild-rootfs] [--arch ARCH]
#                                      [--tag TAG] [--with-pip] [--no-check]
#   --force           re-import the image even if it exists (from the cached
#                     rootfs tarball when there is one)
#   --rebuild-rootfs  also ignore the cached rootfs tarball (runs debootstrap)
#   --arch ARCH       Debian architecture (default: the host's). A foreign arch
#                     needs qemu-user-static + binfmt (not set up by this
#                     script yet); its default tag is python:3.11-slim-ARCH.
#   --tag TAG         image tag (default python:3.11-slim)
#   --with-pip        also install python3-pip and drop PEP 668's
#                     EXTERNALLY-MANAGED marker, so `pip install` works as root
#   --no-check        skip the `docker run` smoke check at the end
#
# Env: STIGMER_STANDIN_CACHE  cache dir (default /var/cache/stigmer-standin):
#                             rootfs tarballs and debootstrap's .deb cache
#      STIGMER_STANDIN_MIRROR Debian mirror (default: what apt uses here,
#                             else http://deb.debian.org/debian)
#
# Idempotent: when the image exists and was made by this script from the same
# recipe and the same host CA bundle, nothing is built. An image of that tag
# that this script did not make (e.g. a real pulled python:3.11-slim) is left
# alone unless --force is given.
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
PYVER=3.11
DEFAULT_TAG="python:${PYVER}-slim"
INCLUDE="python3,python3-venv,ca-certificates"
CACHE_DIR="${STIGMER_STANDIN_CACHE:-/var/cache/stigmer-standin}"
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
HOST_LOCAL_CA_DIR=/usr/local/share/ca-certificates

log() { echo "[standin] $*"; }
die() { echo "[standin] ERROR: $*" >&2; exit 1; }

FORCE=0
REBUILD_ROOTFS=0
WITH_PIP=0
CHECK=1
TAG=""
HOST_ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ARCH="$HOST_ARCH"

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --rebuild-rootfs) FORCE=1; REBUILD_ROOTFS=1 ;;
        --arch) [ $# -ge 2 ] || die "--arch needs a value"; ARCH="$2"; shift ;;
        --arch=*) ARCH="${1#--arch=}" ;;
        --tag) [ $# -ge 2 ] || die "--tag needs a value"; TAG="$2"; shift ;;
        --tag=*) TAG="${1#--tag=}" ;;
        --with-pip) WITH_PIP=1 ;;
        --no-check) CHECK=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

if [ -z "$TAG" ]; then
    if [ "$ARCH" = "$HOST_ARCH" ]; then TAG="$DEFAULT_TAG"; else TAG="$DEFAULT_TAG-$ARCH"; fi
fi
[ "$WITH_PIP" = 1 ] && INCLUDE="$INCLUDE,python3-pip"

# A foreign architecture needs user-mode emulation for debootstrap's second
# stage (and for running the image). Not set up by this script yet.
QARCH=""
if [ "$ARCH" != "$HOST_ARCH" ]; then
    case "$ARCH" in arm64) QARCH=aarch64 ;; armhf|armel) QARCH=arm ;; ppc64el) QARCH=ppc64le ;; *) QARCH="$ARCH" ;; esac
    if ! [ -e "/proc/sys/fs/binfmt_misc/qemu-$QARCH" ] || ! command -v "qemu-$QARCH-static" >/dev/null 2>&1; then
        die "building for $ARCH on $HOST_ARCH needs qemu-user-static and a binfmt_misc entry qemu-$QARCH (not set up yet)"
    fi
fi

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
command -v docker >/dev/null 2>&1 || die "no docker client on PATH"
docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/ci/start-docker.sh first)"

# ---------------------------------------------------------------- helpers ---

sha256_of() { sha256sum | cut -c1-64; }

if [ -r "$HOST_CA_BUNDLE" ]; then
    CA_KEY="$( { cat "$HOST_CA_BUNDLE"; cat "$HOST_LOCAL_CA_DIR"/*.crt 2>/dev/null || true; } | sha256_of | cut -c1-16)"
else
    CA_KEY=none
fi

# Debian mirror that apt uses on this machine, for $SUITE (or $1 suite).
# Reads deb822 .sources files and one-line sources.list files.
apt_mirror_for_suite() {
    local want="$1" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v want="$want" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " want " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; enabled = 1
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "uris:"   { $1 = ""; uris = $0 }
            tolower($1) == "enabled:" && tolower($2) == "no" { types = "" }
            END { if (!found) flush() }
        ' "$f" | sed 's/^ *//' | head -n1 | grep . && return 0
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb [opts] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" \
            | awk -v want="$want" '$1 == "deb" && $3 == want { print $2; exit }' \
            | grep . && return 0
    done
    return 1
}

MIRROR="${STIGMER_STANDIN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
    MIRROR="$(apt_mirror_for_suite "$SUITE" || true)"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi
MIRROR="${MIRROR%/}"
SECURITY_MIRROR="$(apt_mirror_for_suite "$SUITE-security" || true)"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
SECURITY_MIRROR="${SECURITY_MIRROR%/}"

# Unmount anything below $1 (deepest first), then remove it without crossing
# into other file systems (debootstrap may leave /proc, /sys or /dev mounts
# behind when it fails).
safe_rm_tree() {
    local dir="$1" m
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    dir="$(cd "$dir" && pwd -P)"
    case "$dir" in /|/usr|/var|/etc|/tmp) die "refusing to remove $dir" ;; esac
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r)
    rm -rf --one-file-system "$dir"
}

WORK=""
cleanup() { if [ -n "$WORK" ]; then safe_rm_tree "$WORK"; fi; }
trap cleanup EXIT

image_label() {  # image label -> value ("" if absent)
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//'
}

check_image() {
    [ "$CHECK" = 1 ] || return 0
    [ "$ARCH" = "$HOST_ARCH" ] || { log "skipping run check for foreign arch $ARCH"; return 0; }
    log "checking: docker run --rm $TAG python3 -c 'import ssl, venv; print(\"ok\")'"
    local out
    out="$(docker run --rm "$TAG" python3 -c 'import ssl, venv; print("ok")')" \
        || die "check run of $TAG failed"
    [ "$out" = ok ] || die "check run of $TAG printed '$out', not 'ok'"
    out="$(docker run --rm --network none "$TAG" sh -c '
        set -e
        for p in python3.11 python3 python; do command -v "$p" >/dev/null; done
        python -c "import ssl, sys; assert sys.version_info[:2] == (3, 11), sys.version; n = ssl.create_default_context().cert_store_stats()[\"x509_ca\"]; assert n > 0, n; print(sys.version.split()[0], n)"
    ')" || die "check of python names / CA store in $TAG failed"
    log "check ok: python3 -> ok; python $out CA certs loaded"
}

print_size() {
    local bytes
    bytes="$(docker image inspect -f '{{.Size}}' "$TAG")"
    log "image $TAG: $(docker image inspect -f '{{.Id}}' "$TAG" | cut -c1-19), size $((bytes / 1000000)) MB ($bytes bytes)"
}

# ------------------------------------------------------------ the rootfs ---

DEB_CACHE="$CACHE_DIR/debs-$SUITE-$ARCH"

build_rootfs() {
    local rootfs="$WORK/rootfs" t0 t1
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found (apt-get install debootstrap)"
    mkdir -p "$rootfs" "$DEB_CACHE"

    local -a args=(--variant="$VARIANT" --arch="$ARCH" --include="$INCLUDE"
                   --cache-dir="$DEB_CACHE")
    if [ -r /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        args+=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    fi
    local foreign=0
    if [ "$ARCH" != "$HOST_ARCH" ]; then
        foreign=1
        args+=(--foreign)
    fi

    log "debootstrap $SUITE ($VARIANT, $ARCH, +$INCLUDE) from $MIRROR"
    t0=$SECONDS
    if ! debootstrap "${args[@]}" "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.out" 2>&1; then
        tail -n 30 "$WORK/debootstrap.out" >&2
        [ -r "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    if [ "$foreign" = 1 ]; then
        cp "$(command -v "qemu-$QARCH-static")" "$rootfs/usr/bin/"
        chroot "$rootfs" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.out" 2>&1 \
            || { tail -n 30 "$WORK/debootstrap.out" >&2; die "debootstrap --second-stage failed"; }
        rm -f "$rootfs/usr/bin/qemu-$QARCH-static"
    fi
    t1=$SECONDS
    DEBOOTSTRAP_SECS=$((t1 - t0))

    customize_rootfs "$rootfs"

    log "packing the rootfs into $ROOTFS_TAR"
    tar --numeric-owner --xattrs --acls -C "$rootfs" -c . | gzip -6 >"$ROOTFS_TAR.tmp"
    mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    # Drop rootfs tarballs of older recipes for this suite/arch.
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-$ARCH$FLAVOR-????????????????.tar.gz" \
        ! -name "$(basename "$ROOTFS_TAR")" -delete
    safe_rm_tree "$rootfs"
}

customize_rootfs() {
    local r="$1"
    log "customizing the rootfs"

    # python3.11 / python3 / python on PATH where the real image has them.
    mkdir -p "$r/usr/local/bin"
    [ -x "$r/usr/bin/python$PYVER" ] || die "no /usr/bin/python$PYVER in the rootfs (suite $SUITE has another Python?)"
    ln -sfn "/usr/bin/python$PYVER" "$r/usr/local/bin/python$PYVER"
    ln -sfn "python$PYVER" "$r/usr/local/bin/python3"
    ln -sfn python3 "$r/usr/local/bin/python"
    if [ "$WITH_PIP" = 1 ]; then
        # The real image lets root `pip install` into the base interpreter.
        rm -f "$r/usr/lib/python$PYVER/EXTERNALLY-MANAGED"
        ln -sfn /usr/bin/pip3 "$r/usr/local/bin/pip3"
        ln -sfn pip3 "$r/usr/local/bin/pip"
    fi

    # apt sources like the real Debian images (deb822, with updates + security).
    rm -f "$r/etc/apt/sources.list"
    mkdir -p "$r/etc/apt/sources.list.d"
    cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

    # Container conventions of Debian's official images (debuerreotype):
    # no services started by package installs, slim dpkg excludes, small apt.
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 0755 "$r/usr/sbin/policy-rc.d"
    mkdir -p "$r/etc/dpkg/dpkg.cfg.d" "$r/etc/apt/apt.conf.d"
    cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'APT::AutoRemove::SuggestsImportant "false";\n' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
    echo 'APT::Install-Recommends "false";' >"$r/etc/apt/apt.conf.d/docker-no-recommends"

    # Size: docs (but copyright), man/info pages, translations, apt/dpkg leftovers.
    find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$r/usr/share/man/"* "$r/usr/share/info/"* "$r/usr/share/groff/"* \
           "$r/usr/share/lintian/"* "$r/usr/share/linda/"* "$r/usr/share/locale/"*
    rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin \
           "$r/var/cache/apt/archives/"*.deb "$r/var/cache/apt/archives/partial/"* \
           "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/debootstrap"
    mkdir -p "$r/var/lib/apt/lists/partial"
    find "$r/var/log" -type f -delete
    find "$r/tmp" "$r/var/tmp" -mindepth 1 -delete
    # Docker provides these at run time.
    : >"$r/etc/resolv.conf"
    echo localhost >"$r/etc/hostname"
    find "$r/dev" -mindepth 1 -delete
}

# ------------------------------------------------------- already there? ---

# The recipe key: the code that makes the rootfs plus its parameters. A change
# to either invalidates the cached rootfs and marks an existing image as stale.
RECIPE_KEY="$( { declare -f build_rootfs customize_rootfs
                 echo "$SUITE|$VARIANT|$ARCH|$INCLUDE|$WITH_PIP|$MIRROR|$SECURITY_MIRROR"; } \
               | sha256_of | cut -c1-16)"

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    have_recipe="$(image_label "$TAG" io.stigmer.standin.recipe)"
    have_ca="$(image_label "$TAG" io.stigmer.standin.ca)"
    if [ -z "$(image_label "$TAG" io.stigmer.standin)" ]; then
        log "$TAG exists and was not made by this script; keeping it (use --force to replace it)"
        print_size
        check_image
        exit 0
    elif [ "$have_recipe" = "$RECIPE_KEY" ] && [ "$have_ca" = "$CA_KEY" ]; then
        log "$TAG exists and is up to date (recipe $RECIPE_KEY, CA $CA_KEY); nothing to build"
        print_size
        check_image
        exit 0
    else
        log "$TAG exists but is stale (recipe $have_recipe -> $RECIPE_KEY, CA $have_ca -> $CA_KEY); rebuilding"
    fi
fi

# ---------------------------------------------------------- build/import ---

FLAVOR=""
[ "$WITH_PIP" = 1 ] && FLAVOR="-pip"
ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-$ARCH$FLAVOR-$RECIPE_KEY.tar.gz"
mkdir -p "$CACHE_DIR"
WORK="$(mktemp -d "$CACHE_DIR/work.XXXXXX")"

if [ "$REBUILD_ROOTFS" = 0 ] && [ -s "$ROOTFS_TAR" ]; then
    log "using the cached rootfs $ROOTFS_TAR"
    DEBOOTSTRAP_SECS=""
else
    build_rootfs
fi

# --------------------------------------------------------------- import ---

# The host's CAs go in at import time (not into the cached tarball): they can
# differ from machine to machine.
STAGE="$WORK/stage"
mkdir -p "$STAGE"
tar --numeric-owner --xattrs --acls -xzf "$ROOTFS_TAR" -C "$STAGE"
if [ -r "$HOST_CA_BUNDLE" ]; then
    install -m 0644 "$HOST_CA_BUNDLE" "$STAGE/etc/ssl/certs/ca-certificates.crt"
    # Keep the host's local CAs also where update-ca-certificates finds them,
    # so a derived image that reruns it keeps them.
    if compgen -G "$HOST_LOCAL_CA_DIR/*.crt" >/dev/null; then
        mkdir -p "$STAGE/usr/local/share/ca-certificates"
        install -m 0644 "$HOST_LOCAL_CA_DIR"/*.crt "$STAGE/usr/local/share/ca-certificates/"
    fi
    log "copied the host's CA bundle ($(grep -c 'BEGIN CERTIFICATE' "$HOST_CA_BUNDLE") certs) into the image"
else
    log "warning: no $HOST_CA_BUNDLE on the host; the image keeps Debian's bundle"
fi

old_id="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
log "importing as $TAG"
new_id="$(tar --numeric-owner --xattrs --acls -C "$STAGE" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL io.stigmer.standin=1" \
    --change "LABEL io.stigmer.standin.recipe=$RECIPE_KEY" \
    --change "LABEL io.stigmer.standin.ca=$CA_KEY" \
    --change "LABEL io.stigmer.standin.source=debootstrap-$SUITE-$VARIANT-$ARCH" \
    --message "stigmer stand-in for $DEFAULT_TAG (debootstrap $SUITE $VARIANT $ARCH)" \
    - "$TAG")"
log "imported $new_id"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    # The previous image is now untagged; drop it unless something still uses it.
    if docker image rm "$old_id" >/dev/null 2>&1; then
        log "removed the previous image ${old_id:0:19}"
    else
        log "kept the previous image ${old_id:0:19} (still used, e.g. as a parent of other images)"
    fi
fi
safe_rm_tree "$STAGE"

if [ -n "${DEBOOTSTRAP_SECS:-}" ]; then log "debootstrap took ${DEBOOTSTRAP_SECS}s"; fi
print_size
check_image
log "done: $TAG"

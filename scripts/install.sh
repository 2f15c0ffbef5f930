#!/bin/sh
# Install the stigmer CLI with what this machine has: `uv tool`, else `pipx`,
# else pip in a virtualenv of its own.
#
#   curl -fsSL https://raw.githubusercontent.com/stigmer/stigmer/main/scripts/install.sh | sh
#   sh install.sh [--version X.Y.Z] [--wheel PATH|URL] [--method uv|pipx|pip] [--python PY]
#
#   --version X.Y.Z  that release from PyPI (default: the latest release)
#   --wheel W        install this wheel file (or URL) instead of a PyPI release,
#                    e.g. the wheel attached to a GitHub release, or one built
#                    with `uv build`
#   --method M       force a method (default: uv if found, else pipx, else pip)
#   --python PY      the interpreter for pipx / pip (default: python3; >= 3.11)
#
# Env: STIGMER_VERSION, STIGMER_WHEEL, STIGMER_INSTALL_METHOD, STIGMER_PYTHON
# (same as the flags); STIGMER_PACKAGE (the distribution on PyPI, default
# stigmer); STIGMER_VENV (pip method: the virtualenv, default
# ~/.local/share/stigmer/venv); STIGMER_BIN_DIR (pip method: where the
# `stigmer` link goes, default ~/.local/bin).
#
# The agent-runner image is not installed here: `stigmer server start` pulls
# the one matching the CLI's version (ghcr.io/stigmer/agent-runner:vX.Y.Z).
set -eu

VERSION="${STIGMER_VERSION:-}"
WHEEL="${STIGMER_WHEEL:-}"
METHOD="${STIGMER_INSTALL_METHOD:-}"
PYTHON="${STIGMER_PYTHON:-python3}"
PACKAGE="${STIGMER_PACKAGE:-stigmer}"
VENV="${STIGMER_VENV:-${HOME}/.local/share/stigmer/venv}"
BIN_DIR="${STIGMER_BIN_DIR:-${HOME}/.local/bin}"

say() { printf 'stigmer-install: %s\n' "$*"; }
die() { printf 'stigmer-install: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || die "--version needs a value"; VERSION="$2"; shift ;;
        --version=*) VERSION="${1#--version=}" ;;
        --wheel) [ $# -ge 2 ] || die "--wheel needs a value"; WHEEL="$2"; shift ;;
        --wheel=*) WHEEL="${1#--wheel=}" ;;
        --method) [ $# -ge 2 ] || die "--method needs a value"; METHOD="$2"; shift ;;
        --method=*) METHOD="${1#--method=}" ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON="$2"; shift ;;
        --python=*) PYTHON="${1#--python=}" ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

VERSION="${VERSION#v}"
if [ -n "$WHEEL" ] && [ -n "$VERSION" ]; then
    die "give --version or --wheel, not both"
fi
case "$VERSION" in
    ''|[0-9]*.[0-9]*.[0-9]*) ;;
    *) die "--version wants X.Y.Z, got '$VERSION'" ;;
esac
if [ -n "$WHEEL" ]; then
    case "$WHEEL" in
        http://*|https://*) ;;
        *)
            [ -f "$WHEEL" ] || die "no wheel at $WHEEL"
            WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
            ;;
    esac
    TARGET="$WHEEL"
elif [ -n "$VERSION" ]; then
    TARGET="$PACKAGE==$VERSION"
else
    TARGET="$PACKAGE"
fi

if [ -z "$METHOD" ]; then
    if have uv; then METHOD=uv
    elif have pipx; then METHOD=pipx
    else METHOD=pip
    fi
fi

check_python() {
    have "$PYTHON" || die "no $PYTHON found: install Python >= 3.11 (or uv: https://docs.astral.sh/uv/)"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$PYTHON is $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); stigmer needs >= 3.11"
}

say "installing $TARGET with $METHOD"
case "$METHOD" in
    uv)
        have uv || die "--method uv: no uv on PATH"
        # --python: a Python >= 3.11 that uv finds or fetches.
        uv tool install --force --python '>=3.11' "$TARGET"
        STIGMER="$(uv tool dir --bin)/stigmer"
        ;;
    pipx)
        have pipx || die "--method pipx: no pipx on PATH"
        check_python
        pipx install --force --python "$PYTHON" "$TARGET"
        PIPX_BIN="$(pipx environment --value PIPX_BIN_DIR 2>/dev/null)" || PIPX_BIN=""
        STIGMER="${PIPX_BIN:-${PIPX_BIN_DIR:-${HOME}/.local/bin}}/stigmer"
        ;;
    pip)
        check_python
        "$PYTHON" -m venv "$VENV" \
            || die "could not create a virtualenv at $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$TARGET"
        mkdir -p "$BIN_DIR"
        ln -sf "$VENV/bin/stigmer" "$BIN_DIR/stigmer"
        STIGMER="$BIN_DIR/stigmer"
        ;;
    *) die "unknown method '$METHOD' (uv, pipx or pip)" ;;
esac

[ -x "$STIGMER" ] || die "installed, but $STIGMER is missing"
INSTALLED="$("$STIGMER" --version)" || die "$STIGMER --version failed"
if [ -n "$VERSION" ] && [ "$INSTALLED" != "$VERSION" ]; then
    die "asked for $VERSION, but $STIGMER --version prints $INSTALLED"
fi
say "installed stigmer $INSTALLED at $STIGMER"
case ":${PATH}:" in
    *":$(dirname "$STIGMER"):"*) ;;
    *) say "add $(dirname "$STIGMER") to your PATH, e.g.: export PATH=\"$(dirname "$STIGMER"):\$PATH\"" ;;
esac
say "next: stigmer server start   (needs Docker for the agent-runner, or --runner local)"

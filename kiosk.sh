#!/usr/bin/env bash
# Set up everything kiosk-edge needs on Debian 12 / Raspberry Pi OS, then run the demo or the
# tests. Safe to run again: it only installs what is missing or changed.
#   ./kiosk.sh demo [ARGS...]   the whole appliance, end to end, on this machine
#   ./kiosk.sh test [ARGS...]   the whole test suite (ARGS go to pytest)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

usage() { echo "usage: $0 demo|test [ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift

missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if [ ${#missing[@]} -gt 0 ]; then
  echo "kiosk.sh: installing Debian packages: ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "kiosk.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

python3 - <<'PY' || { echo "kiosk.sh: Python 3.11 or newer is required" >&2; exit 1; }
import sys; sys.exit(sys.version_info < (3, 11))
PY

venv=.venv
stamp=$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  [ -x $venv/bin/python ] || python3 -m venv $venv
  $venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  $venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f $venv/.installed-*
  touch "$stamp"
fi

case $cmd in
  demo) exec $venv/bin/kiosk-edge demo "$@" ;;
  test) exec $venv/bin/python -m pytest "$@" ;;
  *) usage ;;
esac

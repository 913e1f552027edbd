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
# wsq (NBIS WSQ) ships no arm64 wheel: pip builds it there from source.
if [ "$(uname -m)" != x86_64 ]; then
  command -v gcc >/dev/null || missing+=(gcc)
  [ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
    || missing+=(python3-dev)
fi
extras=dev
if [ "$cmd" = test ] && command -v dpkg-query >/dev/null; then
  # The USB sensor tests run unmodified libusb against umockdev's simulated bus; PyGObject is
  # built into the venv from the GObject headers.
  for pkg in umockdev gir1.2-umockdev-1.0 libumockdev-dev libusb-1.0-0 \
             libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  extras=dev,usb-sim
fi
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
stamp=$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras/,/-}
if [ ! -e "$stamp" ]; then
  [ -x $venv/bin/python ] || python3 -m venv $venv
  $venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  $venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
  rm -f $venv/.installed-*
  touch "$stamp"
fi

case $cmd in
  demo) exec $venv/bin/kiosk-edge demo "$@" ;;
  test) exec $venv/bin/python -m pytest "$@" ;;
  *) usage ;;
esac

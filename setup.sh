#!/usr/bin/env bash
# Installs what camera-recorder needs on a fresh Debian 12 / Ubuntu 22.04+ machine, idempotently:
# system packages (as root) and a virtualenv in .venv with the project and its test tools.
#   ./setup.sh           install
#   ./setup.sh --check   only report what is missing
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  ffmpeg                  # recording and ffprobe checks
  v4l-utils               # v4l2-ctl for --detect and --validate
  prometheus              # promtool and the end-to-end tests' Prometheus
  prometheus-alertmanager # amtool and the end-to-end tests' Alertmanager
  systemd                 # systemd-analyze verify of the unit
  strace                  # the unit's system call filter checked against a traced recording
  faketime                # libfaketime: the clock-step test steps a real FFmpeg's clock
  udev libudev1           # hot-plug events through pyudev
  openssl                 # certificates for the TLS tests
  fonts-dejavu-core       # the font the demo burns each camera's name and clock in with
  chromium                # the status page's browser test (Playwright drives Debian's build)
  python3 python3-venv python3-pip
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [[ "${1:-}" == "--check" ]]; then
  if ((${#missing[@]})); then echo "missing: ${missing[*]}"; exit 1; fi
  echo "all system packages present"; exit 0
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run as root (or with sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The Debian packages would start their own services; the tests start theirs on private ports.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup.sh: ready (.venv/bin/camera-recorder)"

#!/usr/bin/env bash
# Debian packages that `make test` and `make run` need: installed when
# missing and we are root; otherwise named, with the command to install them.
#   mosquitto   the MQTT broker of the demo hub and of the sync tests
#   postgresql  the hub's PostgreSQL tests start a throwaway server
#   openssl     the demo's CA and the API's certificate (make run), and the TLS tests' throwaway CAs
#   umockdev    the USB HID scanner tests mock /dev/input for the agent
#   fonts-wqy-microhei  the shelf-label font (Latin and Chinese in one face)
#   libusb-1.0-0  what pyusb drives USB receipt printers through
#   libgl1 libglib2.0-0  OpenCV as mediapipe installs it (the mirror) loads them
#   strace      the mirror's test that nothing of a face is written to disk
#   chromium    the console's browser tests and bench (Playwright drives Debian's build; no download)
#   sqlite3     the online backup docs/install.md describes (its test runs the same command)
set -euo pipefail

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v openssl >/dev/null || need+=(openssl)
compgen -G "/usr/lib/*/libusb-1.0.so.0" >/dev/null || compgen -G "/lib/*/libusb-1.0.so.0" >/dev/null || need+=(libusb-1.0-0)
compgen -G "/usr/lib/*/libGL.so.1" >/dev/null || need+=(libgl1)
compgen -G "/usr/lib/*/libglib-2.0.so.0" >/dev/null || compgen -G "/lib/*/libglib-2.0.so.0" >/dev/null || need+=(libglib2.0-0)
if [ "${1:-}" = test ]; then
  command -v umockdev-run >/dev/null || need+=(umockdev)
  command -v strace >/dev/null || need+=(strace)
  command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  # The demo store runs without them: without Mosquitto the agent runs
  # alone (no hub; its outbox keeps the events), and shelf labels without
  # their font show as device errors.
  [ "${1:-}" = run ] && exit 0
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Debian packages that `make test` and `make run` need: installed when
# missing and we are root; otherwise named, with the command to install them.
#   mosquitto   the MQTT broker of the demo hub and of the sync tests
#   postgresql  the hub's PostgreSQL tests start a throwaway server
#   openssl     the TLS tests make a throwaway CA
#   umockdev    the USB HID scanner tests mock /dev/input for the agent
#   fonts-wqy-microhei  the shelf-label font (Latin and Chinese in one face)
set -euo pipefail

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
if [ "${1:-}" = test ]; then
  command -v openssl >/dev/null || need+=(openssl)
  command -v umockdev-run >/dev/null || need+=(umockdev)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  # The demo store runs without them: an embedded broker stands in for
  # Mosquitto, and shelf labels without their font show as device errors.
  [ "${1:-}" = run ] && exit 0
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Install the Debian packages listed in native/apt-packages.txt (idempotent), then record what
# is installed.  Usage: tools/system-packages.sh [STATUS_FILE]
#   - as root with apt-get: installs the missing ones (apt-get update only when some are missing);
#   - otherwise: prints the one command that installs them and exits 0 (the backends that need
#     them then show as unavailable with that hint).
# STATUS_FILE receives "package version" lines, rewritten only when they change, so a Makefile
# target depending on it rebuilds the native code exactly when a package appears or changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
list="${NORMCONF_APT_LIST:-$root/native/apt-packages.txt}"
status_file="${1:-}"
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')

installed() { command -v dpkg >/dev/null && dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  elif command -v apt-get >/dev/null; then
    echo "normconf: system packages missing (tiny-dnn backend, browser tests); run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
  else
    echo "normconf: no apt-get here; install the equivalents of: ${missing[*]} (tiny-dnn backend, browser tests)"
  fi
fi

if [ -n "$status_file" ]; then
  mkdir -p "$(dirname "$status_file")"
  new="$(for p in "${pkgs[@]}"; do
    if installed "$p"; then echo "$p $(dpkg-query -W -f '${Version}' "$p")"; else echo "$p missing"; fi
  done)"
  if [ ! -f "$status_file" ] || [ "$(cat "$status_file")" != "$new" ]; then
    printf '%s\n' "$new" > "$status_file"
  fi
fi

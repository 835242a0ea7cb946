#!/usr/bin/env bash
# Debian packages gis_planner uses beyond PyPI, installed only when missing:
#   always       a CJK font, so the Chinese labels of the report PNGs render (fonts-wqy-microhei)
#   --browser    Chromium, for the offline map tests in headless Chromium
# Needs root (or sudo) and apt-get; elsewhere it says what to install and carries on.
set -euo pipefail

need=()
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
    need+=(fonts-wqy-microhei fontconfig)
fi
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
    need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || command -v sudo >/dev/null 2>&1; }; then
    echo "system-deps.sh: installing ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "system-deps.sh: please install ${need[*]} (Debian/Ubuntu package names)" >&2
fi

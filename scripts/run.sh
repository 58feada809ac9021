#!/usr/bin/env bash
# Install and run the broker + admin panel. Without REDIS_URL, an embedded redis-server is started.
# Any flag of `python -m app run` may follow, e.g.: scripts/run.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements.txt
exec .venv/bin/python -m app run "$@"

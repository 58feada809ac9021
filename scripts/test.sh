#!/usr/bin/env bash
# Install everything the tests need, then lint and run the whole test suite.
# Extra arguments go to pytest, e.g.: scripts/test.sh -k websocket -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
scripts/install-browser.sh
scripts/install-redis.sh
# The Satori SDKs' end-to-end tests install them again if this failed, then fail under CI=true (skip elsewhere)
scripts/install-sdks.sh || echo "note: the Satori RTM SDKs could not be installed (see above)" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"

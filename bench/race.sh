#!/usr/bin/env bash
# Our broker and the reference cobras server, one after the other, under identical load; prints the ratios.
# Same as `python -m bench race`; arguments are passed on (e.g. --rounds 3 --ours-rev HEAD --duration 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x .venv/bin/python ]] || { echo "no .venv: run scripts/test.sh or scripts/run.sh once first" >&2; exit 1; }
exec .venv/bin/python -m bench race "$@"

#!/usr/bin/env bash
# Install the public Satori RTM SDKs, unchanged, for the end-to-end tests (tests/integration/test_satori_sdks.py):
#   js      satori-rtm-sdk 1.2.2 from npm, with `npm ci` from tests/sdk/js/package-lock.json into
#           tests/sdk/js/node_modules (git-ignored); runs under the machine's Node.js
#   python  satori-rtm-sdk 1.5.0 from PyPI in its own venv, .state/satori-sdk-venv (git-ignored), from the pins
#           of tests/sdk/python/requirements.txt (--no-deps: see that file)
#
# Idempotent and quiet: a stamp records what was installed (the lockfile's or the pins' checksum); a rerun with
# the same pins and a working SDK is a no-op. Installer output goes to a log shown only on failure. Exits non-zero
# when an SDK cannot be installed; the tests then fail under CI=true and skip elsewhere (tests/support/satori_sdk.py).
#
#   scripts/install-sdks.sh            # both
#   scripts/install-sdks.sh js         # one of them
#   PYTHON=/path/to/python3.11 scripts/install-sdks.sh python
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
js_dir="$root/tests/sdk/js"
py_requirements="$root/tests/sdk/python/requirements.txt"
py_venv="$root/.state/satori-sdk-venv"
python="${PYTHON:-python3.11}"

fail() {
    echo "install-sdks: $1" >&2
    if [[ -n "${2:-}" && -f "$2" ]]; then
        echo "--- last lines of $2 ---" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}

install_js() {
    local stamp="$js_dir/node_modules/.cobra-sdk-stamp" want
    command -v node >/dev/null 2>&1 || fail "no 'node' on PATH: the JavaScript SDK runs under Node.js"
    command -v npm >/dev/null 2>&1 || fail "no 'npm' on PATH: it installs the JavaScript SDK"
    want="$(cksum <"$js_dir/package-lock.json") | $(node --version)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
        (cd "$js_dir" && node -e 'require("satori-rtm-sdk")') >/dev/null 2>&1; then
        return 0
    fi
    echo "==> installing satori-rtm-sdk (npm) into tests/sdk/js/node_modules" >&2
    rm -f "$stamp"  # a half-done install must not pass for the old one
    local log
    log="$(mktemp)"
    # --ignore-scripts: nothing in this tree needs an install script, so none runs
    (cd "$js_dir" && npm ci --no-audit --no-fund --ignore-scripts) >"$log" 2>&1 ||
        fail "npm ci in tests/sdk/js failed" "$log"
    (cd "$js_dir" && node -e 'require("satori-rtm-sdk")') >>"$log" 2>&1 ||
        fail "the installed satori-rtm-sdk does not load under $(node --version)" "$log"
    rm -f "$log"
    echo "$want" >"$stamp"
}

install_python() {
    local stamp="$py_venv/.cobra-sdk-stamp" want log="$py_venv/setup.log"
    want="$(cksum <"$py_requirements") | $python"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
        "$py_venv/bin/python" -c 'import satori.rtm.client' >/dev/null 2>&1; then
        return 0
    fi
    command -v "$python" >/dev/null 2>&1 || fail "no '$python' on PATH (set PYTHON=/path/to/python3.11)"
    echo "==> installing satori-rtm-sdk (PyPI) into .state/satori-sdk-venv" >&2
    rm -f "$stamp"
    mkdir -p "$(dirname "$py_venv")"
    if [[ ! -x "$py_venv/bin/python" ]]; then
        "$python" -m venv "$py_venv" || fail "cannot create a venv in $py_venv"
    fi
    : >"$log"
    "$py_venv/bin/python" -m pip install --disable-pip-version-check --no-deps -r "$py_requirements" >>"$log" 2>&1 ||
        fail "pip install -r tests/sdk/python/requirements.txt failed" "$log"
    "$py_venv/bin/python" -c 'import satori.rtm.client, satori.rtm.connection' >>"$log" 2>&1 ||
        fail "the installed satori-rtm-sdk does not import" "$log"
    echo "$want" >"$stamp"
}

case "${1:-all}" in
    js) install_js ;;
    python) install_python ;;
    all)
        # each in a subshell (fail exits it): one SDK that cannot be installed does not stop the other
        status=0
        (install_js) || status=1
        (install_python) || status=1
        exit "$status"
        ;;
    *)
        echo "usage: $0 [js|python|all]" >&2
        exit 2
        ;;
esac

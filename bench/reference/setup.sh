#!/usr/bin/env bash
# Create the reference Cobra server's own venv (default: .state/reference-venv) and print its path.
#
# The reference is `cobras` 2.9.137 from PyPI (issue #7): it predates websockets 11, so it gets websockets 10.4,
# and its client calls `websockets.exceptions.format_close`, which websockets 10 removed; a one-function shim
# (bench/reference/format_close_shim.py, loaded by a .pth file) puts it back. Nothing here touches the
# project's own .venv.
#
# Idempotent: a stamp file records what was installed; a rerun with the same pins and a working `cobra` is a
# no-op. Quiet: pip output goes to <venv>/setup.log, shown only on failure.
#
#   bench/reference/setup.sh                # -> prints .state/reference-venv
#   REFERENCE_VENV=/tmp/ref PYTHON=python3.11 bench/reference/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${REFERENCE_VENV:-$root/.state/reference-venv}"
python="${PYTHON:-python3.11}"

# The exact set from issue #7. --no-deps for cobras/rcc because their declared pins (old websockets,
# aioredis...) do not install on 3.11; the runtime dependencies they really import are listed explicitly.
pinned=(cobras==2.9.137 rcc==0.9.154)
deps=(websockets==10.4 click coloredlogs humanfriendly hiredis psutil PyYAML sentry-sdk tabulate uhashring)
stamp_text="${pinned[*]} | ${deps[*]} | $(cksum <"$here/format_close_shim.py")"

fail() {
    echo "reference setup: $*" >&2
    if [[ -f "$venv/setup.log" ]]; then
        echo "--- last lines of $venv/setup.log ---" >&2
        tail -n 30 "$venv/setup.log" >&2
    fi
    exit 1
}

if [[ -f "$venv/.cobra-reference-stamp" ]] && [[ "$(cat "$venv/.cobra-reference-stamp")" == "$stamp_text" ]] &&
    "$venv/bin/cobra" --version >/dev/null 2>&1; then
    echo "$venv"
    exit 0
fi

command -v "$python" >/dev/null 2>&1 || fail "no '$python' on PATH (set PYTHON=/path/to/python3.11)"
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$version" == "3.11" ]] || echo "reference setup: warning: $python is Python $version, the pins were chosen for 3.11" >&2

mkdir -p "$(dirname "$venv")"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv" || fail "cannot create a venv in $venv"
fi
log="$venv/setup.log"
: >"$log"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --no-deps "${pinned[@]}" >>"$log" 2>&1 || fail "pip install ${pinned[*]} failed"
"${pip[@]}" install "${deps[@]}" >>"$log" 2>&1 || fail "pip install of the runtime dependencies failed"

# The shim: a module plus a .pth line that imports it at interpreter start-up (site.py runs `import` lines
# of .pth files), so `cobra ...` finds websockets.exceptions.format_close without patching the wheel.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$here/format_close_shim.py" "$site/cobra_reference_format_close_shim.py"
echo "import cobra_reference_format_close_shim" >"$site/cobra_reference_format_close_shim.pth"

"$venv/bin/python" -c 'import websockets.exceptions as e; e.format_close(1000, "")' >>"$log" 2>&1 ||
    fail "the format_close shim did not load"
"$venv/bin/cobra" --version >>"$log" 2>&1 || fail "'cobra --version' does not run"
echo "$stamp_text" >"$venv/.cobra-reference-stamp"
echo "$venv"

#!/usr/bin/env bash
# Create (or repair) a Python virtual environment holding the reference grading tool,
# grader-service==0.12.5 (which ships `grader-convert`), plus ipykernel so that notebooks
# can be executed with a `python3` kernel.
#
# Usage: scripts/setup-venv.sh
#
# Environment:
#   GRADER_VENV  where the venv lives (default: $HOME/.cache/grader/venv-grader-service-0.12.5)
#   PYTHON       interpreter used to create the venv (default: python3; needs the venv module,
#                on Debian: `apt-get install python3-venv`)
#
# Progress goes to stderr; the last line on stdout is the absolute path of `grader-convert`.
# A second run is a fast no-op: a marker file inside the venv records the installed version
# once everything has been verified.
set -euo pipefail

GRADER_SERVICE_VERSION="0.12.5"
VENV="${GRADER_VENV:-$HOME/.cache/grader/venv-grader-service-$GRADER_SERVICE_VERSION}"
PYTHON="${PYTHON:-python3}"
MARKER_NAME=".grader-setup-version"
MARKER_CONTENT="grader-service==$GRADER_SERVICE_VERSION ipykernel"

log() { printf 'setup-venv: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Make the path absolute without requiring it to exist yet.
case "$VENV" in
    /*) ;;
    *) VENV="$PWD/$VENV" ;;
esac
VENV="${VENV%/}"
CONVERT="$VENV/bin/grader-convert"
MARKER="$VENV/$MARKER_NAME"

# True when the venv's interpreter starts at all (it breaks when the base Python goes away).
python_runs() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'pass' >/dev/null 2>&1
}

# Fast path: verified earlier and still intact.
fast_ok() {
    [ -f "$MARKER" ] &&
        [ "$(cat "$MARKER" 2>/dev/null)" = "$MARKER_CONTENT" ] &&
        [ -x "$CONVERT" ] &&
        python_runs
}

if fast_ok; then
    log "grader-service $GRADER_SERVICE_VERSION already set up in $VENV"
    printf '%s\n' "$CONVERT"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"

# Serialise concurrent runs (e.g. parallel CI jobs sharing a cache) when flock is available.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV.lock"
    log "taking lock $VENV.lock (another setup run may hold it)"
    flock 9
    if fast_ok; then
        log "grader-service $GRADER_SERVICE_VERSION was set up by a concurrent run"
        printf '%s\n' "$CONVERT"
        exit 0
    fi
fi

rm -f "$MARKER"

if ! python_runs; then
    if [ -e "$VENV" ] && [ -n "$(ls -A "$VENV" 2>/dev/null)" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
        die "$VENV exists, is not empty and is not a virtual environment; refusing to touch it"
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3)"
    log "creating virtual environment $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv --clear "$VENV" >&2 ||
        die "'$PYTHON -m venv' failed; on Debian/Ubuntu install the python3-venv package"
fi

log "installing grader-service==$GRADER_SERVICE_VERSION and ipykernel (this can take a few minutes)"
"$VENV/bin/python" -m pip install --quiet "grader-service==$GRADER_SERVICE_VERSION" ipykernel >&2 ||
    die "pip install failed"

log "checking that grader-convert runs"
[ -x "$CONVERT" ] || die "$CONVERT was not installed"
"$CONVERT" --help >/dev/null 2>&1 || die "'$CONVERT --help' failed"

# grader-convert executes notebooks through jupyter_client with the kernel named in the
# notebook (`python3`). Start that kernel exactly as grader-convert would and run one statement,
# so that a broken or shadowing kernelspec is caught here rather than during grading.
log "checking that a python3 kernel starts"
"$VENV/bin/python" - >&2 <<'PY' || die "no working python3 kernel is available to grader-convert"
import sys
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

spec = KernelSpecManager().get_kernel_spec("python3")
print(f"kernelspec python3: {spec.resource_dir} argv={spec.argv}", file=sys.stderr)
km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
try:
    results = []

    def keep_result(msg):
        if msg["msg_type"] == "execute_result":
            results.append(msg["content"]["data"].get("text/plain", ""))

    reply = kc.execute_interactive("import sys; sys.executable", timeout=60, output_hook=keep_result)
    status = reply["content"]["status"]
    if status != "ok":
        raise SystemExit(f"kernel replied {status!r}")
    print(f"python3 kernel runs {''.join(results)}", file=sys.stderr)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
PY

printf '%s\n' "$MARKER_CONTENT" >"$MARKER"
log "ready: $CONVERT"
printf '%s\n' "$CONVERT"

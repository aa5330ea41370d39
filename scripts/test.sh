#!/usr/bin/env bash
# The project's test command: sets up the components the tests need, then runs every test.
#
#   bash scripts/test.sh                   # everything
#   bash scripts/test.sh -p grader-local   # extra arguments go to `cargo test` (the Grader
#                                          # Service suite then does not run)
#
# Components (each installed or built once, then cached under ${GRADER_CACHE:-~/.cache/grader};
# Debian packages are installed with apt-get, as root):
#   - the grading tool: a venv with grader-service==0.12.5 (grader-convert) and ipykernel;
#   - the test control plane: kube-apiserver and etcd built from the Go module proxy (needs Go),
#     and, as root, a real node: kubelet, kube-scheduler, kube-controller-manager from the same
#     build, Debian's containerd and runc, and the grading image (deploy/image/build.sh);
#   - headless Chromium (Debian's package) for the status page of `grader serve`;
#   - PostgreSQL 15 and RabbitMQ (Debian's packages) for the Grader Service suite, which runs
#     after `cargo test` (scripts/grader-service-e2e.sh; its servers are started on loopback
#     for the run and stopped after).
# Without a component its tests skip with a loud message; under CI=true they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test.sh: $*" >&2; }

if convert=$(bash scripts/setup-venv.sh | tail -n 1) && [ -x "$convert" ]; then
    export GRADER_CONVERT="$convert"
    say "grading tool: $GRADER_CONVERT"
else
    say "WARNING: could not set up grader-convert; its tests will skip (fail under CI)"
fi

# Lines NAME=VALUE printed by a build script become environment variables.
export_lines() {
    while IFS= read -r line; do
        case "$line" in
            GRADER_*=*) export "${line?}" ;;
        esac
    done
}

node=()
if [ "$(id -u)" = 0 ]; then
    if bash e2e/control-plane/install-node-packages.sh; then
        node=(--node)
    else
        say "WARNING: the real node's packages could not be installed; its tests will skip (fail under CI)"
    fi
else
    say "WARNING: not root: no real test node; its tests will skip (fail under CI)"
fi
if command -v go >/dev/null 2>&1; then
    if paths=$(bash e2e/control-plane/build.sh "${node[@]}"); then
        export_lines <<<"$paths"
        say "control plane: ${GRADER_KUBE_APISERVER:-?} ${GRADER_ETCD:-?}${GRADER_KUBELET:+ node: $GRADER_KUBELET}"
    else
        say "WARNING: building the test control plane failed; Kubernetes e2e tests will skip (fail under CI)"
    fi
else
    say "WARNING: Go is missing, the Kubernetes e2e tests will be SKIPPED"
fi
if [ ${#node[@]} -gt 0 ]; then
    if paths=$(bash deploy/image/build.sh); then
        export_lines <<<"$paths"
        say "grading image: ${GRADER_GRADING_IMAGE:-?}"
    else
        say "WARNING: building the grading image failed; the real-node tests will skip (fail under CI)"
    fi
fi

if browser=$(bash scripts/install-chromium.sh | tail -n 1) && [ -x "$browser" ]; then
    export CHROMIUM="$browser"
else
    say "WARNING: no chromium; the status page test will skip (fail under CI)"
fi

status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
if [ $# -eq 0 ]; then
    # The wheel is built from the debug build cargo test just made (no second release build).
    GS_E2E_PROFILE="${GS_E2E_PROFILE:-dev}" bash scripts/grader-service-e2e.sh || status=$?
fi
exit "$status"

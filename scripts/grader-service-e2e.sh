#!/usr/bin/env bash
# End-to-end suite of the Grader Service integration (integrations/grader-service): the real
# grader-worker of grader-service 0.12.5 with grader_executor, on PostgreSQL 15 and RabbitMQ
# started on loopback for the run and stopped after, side by side with the worker's default
# executor.
#
#   bash scripts/grader-service-e2e.sh            # build the wheel, install it, run the suite
#   bash scripts/grader-service-e2e.sh --bench    # also the 20-submission benchmark (table)
#   bash scripts/grader-service-e2e.sh -- -k serve   # extra arguments go to pytest
#
# What it sets up (cached under ${GRADER_CACHE:-~/.cache/grader}):
#   - Debian's postgresql-15 and rabbitmq-server when missing (apt-get update once; as root);
#     the servers' own services are never started or touched: the suite starts its own
#     PostgreSQL cluster and RabbitMQ node (own data dirs, free ports, own cluster/node name,
#     own Erlang port mapper port), checks it talks to them, and stops them at the end;
#   - a worker venv with grader-service==0.12.5, ipykernel, pytest, maturin, psycopg;
#   - the wheel (integrations/grader-service, maturin: the grader binary + grader_executor),
#     installed into that venv exactly as an operator would (`pip install <wheel>`).
#   - the test control plane (e2e/control-plane/build.sh) and kube-testkit's
#     grader-test-cluster, for the kube backend through the same path (real kube-apiserver +
#     etcd on loopback, the test node agent as kubelet), started and stopped by the suite.
# Env: GS_E2E_WHEEL=path (use this wheel, no build), GS_E2E_PROFILE=release|dev (dev: build
# the wheel from a debug build, faster on two cores; default release), GS_E2E_KEEP=1 (keep the
# temporary directories), GS_E2E_TEST_CLUSTER=path (a built grader-test-cluster; then
# GRADER_KUBE_APISERVER/GRADER_ETCD or build.sh's cache name the binaries). A missing
# component skips loudly; under CI=true it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
cache="${GRADER_CACHE:-$HOME/.cache/grader}"
venv="$cache/venv-gs-worker-0.12.5"
bench=0
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bench) bench=1; shift ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1"); shift ;;
    esac
done
say() { echo "grader-service-e2e: $*" >&2; }
missing() {
    say "WARNING: $* -- the Grader Service e2e suite is SKIPPED"
    if [ "${CI:-}" = true ]; then say "CI=true: failing"; exit 1; fi
    exit 0
}

# 1. Packages (installed, never started: the suite runs its own servers).
need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need[*]}"
        apt-get update -qq
        # A policy-rc.d that denies starts keeps the packages' own services from starting
        # (only when none is there already, and removed right after).
        own_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            own_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null || true
        [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        [ -x /usr/lib/postgresql/15/bin/postgres ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] \
            || missing "apt-get install ${need[*]} failed"
    else
        missing "${need[*]} not installed (needs root and apt-get)"
    fi
fi

# 2. The worker's venv.
if [ ! -x "$venv/bin/grader-worker" ] || ! "$venv/bin/python" -c 'import psycopg, pytest' 2>/dev/null \
    || [ ! -x "$venv/bin/maturin" ]; then
    say "creating $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q grader-service==0.12.5 ipykernel pytest maturin "psycopg[binary]" \
        || missing "pip install grader-service==0.12.5 failed"
fi

# 3. The wheel, installed as an operator would.
wheel="${GS_E2E_WHEEL:-}"
if [ -z "$wheel" ]; then
    out="$(mktemp -d)"
    profile=(--release)
    [ "${GS_E2E_PROFILE:-release}" = dev ] && profile=(--profile dev)
    say "building the wheel (maturin build ${profile[*]})"
    (cd integrations/grader-service && "$venv/bin/maturin" build "${profile[@]}" -o "$out" >&2)
    wheel="$(ls "$out"/grader_executor-*.whl)"
fi
say "installing $wheel"
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
[ -x "$venv/bin/grader" ] || { say "the wheel did not install bin/grader"; exit 1; }

# 4. The test control plane for the kube backend's tests: kube-apiserver + etcd from
#    e2e/control-plane/build.sh (cached; it prints GRADER_KUBE_APISERVER=/GRADER_ETCD= lines)
#    and kube-testkit's grader-test-cluster, which runs them with the test node agent. When
#    either cannot be had, those tests skip loudly (under CI=true they fail).
if [ -z "${GS_E2E_TEST_CLUSTER:-}" ]; then
    if cp_env="$(bash e2e/control-plane/build.sh)"; then
        while IFS='=' read -r key value; do
            case "$key" in
                GRADER_KUBE_APISERVER | GRADER_ETCD) export "$key=$value" ;;
            esac
        done <<<"$cp_env"
    else
        say "WARNING: e2e/control-plane/build.sh failed: the kube backend's tests will skip"
    fi
    say "building grader-test-cluster (cargo build -p kube-testkit --bin grader-test-cluster)"
    if cargo build -q -p kube-testkit --bin grader-test-cluster >&2; then
        export GS_E2E_TEST_CLUSTER="${CARGO_TARGET_DIR:-$root/target}/debug/grader-test-cluster"
    else
        say "WARNING: building grader-test-cluster failed: the kube backend's tests will skip"
    fi
fi

# 5. The suite (the servers are started and stopped by its fixtures).
export GS_E2E_GRADER="$venv/bin/grader"
if [ "$bench" = 1 ]; then
    export GS_E2E_BENCH=1
    export GS_E2E_BENCH_OUT="${GS_E2E_BENCH_OUT:-$root/bench/results/grader-service.json}"
fi
cd integrations/grader-service
exec "$venv/bin/python" -m pytest -p no:cacheprovider -rs tests "${pytest_args[@]}"

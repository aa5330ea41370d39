#!/usr/bin/env bash
# Every benchmark of grader, in one command (project issue 7; method: bench/README.md):
#
#   bash bench/run.sh
#
# 1. builds `grader` and `grader-bench` in release,
# 2. sets up the grading tool (scripts/setup-venv.sh) and the test control plane
#    (e2e/control-plane/build.sh; both are no-ops when done before),
# 3. runs `grader-bench local-overhead`, `kube-latency`, `batch` and `warm` (warm workers
#    against a plain process per submission and the reference's in-process time, with
#    bench/reference_inprocess.py), `serve` (submissions one at a time through `grader submit
#    --wait` to `grader serve`, beside the reference and cold `grader autograde`), `prestart`
#    (one warm worker with and without kernels started ahead of need, beside the reference, on
#    the example course and a course of three notebooks), `kube-node` (pod start to `Succeeded`
#    and the per-submission time on a real node — kubelet, containerd, runc, the grading image —
#    beside the node agent; skipped loudly where the real node cannot run), and the criterion
#    bench of the pure utilities
#    (`cargo bench -p grader-model --bench model`),
# 4. writes bench/results/RESULTS.md: the machine, the command and every table (each
#    measurement also leaves <name>.json and <name>.md in bench/results/).
#
# About 25 minutes on 2 cores once everything is built (kube-node about 8 of them). Run it on an otherwise idle machine:
# the load average is recorded next to every table.
#
# Environment (optional): BENCH_RUNS (local-overhead rounds, default 7), BENCH_NOOP_RUNS (15),
# BENCH_SUBMISSIONS (batch size, 200), BENCH_CONCURRENCY (1,4,16), BENCH_INFLIGHT (200),
# BENCH_WARM_SUBMISSIONS (warm batch size, 50), BENCH_WARM_CONCURRENCY (1,2),
# BENCH_SERVE_SUBMISSIONS (serve, 20), BENCH_PRESTART_SUBMISSIONS (prestart, 20),
# BENCH_PRESTART_MULTI_SUBMISSIONS (prestart, three notebooks each, 12),
# BENCH_KUBE_NODE_SUBMISSIONS (kube-node, 10 one at a time + 10 in a batch, per node),
# BENCH_KUBE_NODE_CONCURRENCY (kube-node batch, 5), BENCH_SKIP_KUBE_NODE=1,
# BENCH_SKIP_CRITERION=1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/bench/results"
mkdir -p "$out"
log() { printf 'bench/run.sh: %s\n' "$*" >&2; }
started=$SECONDS

log "building grader and grader-bench (release)"
cargo build --release --quiet -p grader-bin -p grader-bench
grader="$root/target/release/grader"
bench="$root/target/release/grader-bench"

log "setting up the grading tool"
convert="$(bash scripts/setup-venv.sh | tail -n 1)"
log "setting up the test control plane"
paths="$(bash e2e/control-plane/build.sh)"
while IFS= read -r line; do
    case "$line" in
        GRADER_KUBE_APISERVER=* | GRADER_ETCD=*) export "${line?}" ;;
    esac
done <<<"$paths"

machine() {
    local cpu mem
    cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    mem="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "| | |"
    echo "| --- | --- |"
    echo "| CPUs (\`nproc\`) | $(nproc) |"
    echo "| CPU model | ${cpu:-unknown} |"
    echo "| memory | $mem |"
    echo "| kernel | $(uname -sr) |"
    echo "| rustc | $(rustc --version) |"
    echo "| grading tool | grader-service 0.12.5 (\`$convert\`) |"
    echo "| control plane | $(basename "${GRADER_KUBE_APISERVER:-kube-apiserver}"), $(basename "${GRADER_ETCD:-etcd}") |"
    echo "| commit | $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)') |"
    echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
    echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
}
machine >"$out/machine.md"

log "local overhead ($(uptime))"
"$bench" --out "$out" local-overhead --grader "$grader" --convert "$convert" \
    --runs "${BENCH_RUNS:-7}" --noop-runs "${BENCH_NOOP_RUNS:-15}" >/dev/null

log "kubernetes completion latency and API requests ($(uptime))"
"$bench" --out "$out" kube-latency >/dev/null

log "batch throughput and memory ($(uptime))"
"$bench" --out "$out" batch --grader "$grader" \
    --submissions "${BENCH_SUBMISSIONS:-200}" --concurrency "${BENCH_CONCURRENCY:-1,4,16}" \
    --kube-inflight "${BENCH_INFLIGHT:-200}" >/dev/null

log "warm workers against cold runs and the reference ($(uptime))"
"$bench" --out "$out" warm --grader "$grader" --convert "$convert" \
    --submissions "${BENCH_WARM_SUBMISSIONS:-50}" \
    --concurrency "${BENCH_WARM_CONCURRENCY:-1,2}" >/dev/null

log "grader serve against the reference and cold runs ($(uptime))"
"$bench" --out "$out" serve --grader "$grader" --convert "$convert" \
    --submissions "${BENCH_SERVE_SUBMISSIONS:-20}" >/dev/null

log "kernels started ahead of need, before/after, beside the reference ($(uptime))"
"$bench" --out "$out" prestart --grader "$grader" --convert "$convert" \
    --submissions "${BENCH_PRESTART_SUBMISSIONS:-20}" \
    --multi-submissions "${BENCH_PRESTART_MULTI_SUBMISSIONS:-12}" >/dev/null

# The real node (project issue 16): kubelet + containerd + runc and the grading image, beside
# the node agent. Needs root, the node's packages, kubelet & co. (Go) and the image (network
# for Debian and PyPI the first time); skipped loudly when this machine cannot run it.
kube_node_skip() {
    log "=================================================================="
    log "SKIPPED kube-node (real node beside the node agent): $*"
    log "=================================================================="
    kube_node_skipped="$*"
}
kube_node_skipped=
if [[ "${BENCH_SKIP_KUBE_NODE:-}" == 1 ]]; then
    kube_node_skip "BENCH_SKIP_KUBE_NODE=1"
elif [[ $EUID -ne 0 ]]; then
    kube_node_skip "a real node needs root"
elif ! bash e2e/control-plane/install-node-packages.sh >&2; then
    kube_node_skip "the node's packages (containerd, runc, CNI plugins) could not be installed"
elif ! node_paths="$(bash e2e/control-plane/build.sh --node)"; then
    kube_node_skip "kubelet, kube-scheduler, kube-controller-manager could not be built"
elif ! image_paths="$(bash deploy/image/build.sh)"; then
    kube_node_skip "the grading image could not be built (deploy/image/build.sh)"
else
    log "real node beside the node agent ($(uptime))"
    image="$(sed -n 's/^GRADER_GRADING_IMAGE=//p' <<<"$image_paths")"
    archive="$(sed -n 's/^GRADER_GRADING_IMAGE_ARCHIVE=//p' <<<"$image_paths")"
    while IFS= read -r line; do
        case "$line" in
            GRADER_KUBELET=* | GRADER_KUBE_SCHEDULER=* | GRADER_KUBE_CONTROLLER_MANAGER=* | \
                GRADER_PAUSE_IMAGE=* | GRADER_PAUSE_IMAGE_ARCHIVE=*) export "${line?}" ;;
        esac
    done <<<"$node_paths"
    if ! "$bench" --out "$out" kube-node --grader "$grader" --convert "$convert" \
        --image "$image" --image-archive "$archive" \
        --submissions "${BENCH_KUBE_NODE_SUBMISSIONS:-10}" \
        --concurrency "${BENCH_KUBE_NODE_CONCURRENCY:-5}" >/dev/null; then
        kube_node_skip "grader-bench kube-node failed here (its error is above)"
    fi
fi

if [[ "${BENCH_SKIP_CRITERION:-}" != 1 ]]; then
    log "criterion: pure utilities ($(uptime))"
    cargo bench --quiet -p grader-model --bench model -- --warm-up-time 1 --measurement-time 3 \
        >"$out/criterion.log" 2>&1
    "$bench" --out "$out" criterion-summary --dir "$root/target/criterion" >/dev/null
fi

{
    echo "## Benchmarks"
    echo
    echo "Reproduce with \`bash bench/run.sh\` (method: [bench/README.md](bench/README.md)); it took"
    echo "$(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s here. Machine:"
    echo
    cat "$out/machine.md"
    for name in local-overhead kube-latency kube-node batch warm serve prestart criterion; do
        if [[ $name == kube-node && -n $kube_node_skipped ]]; then
            echo
            echo "#### Kubernetes: real node beside the node agent"
            echo
            echo "SKIPPED on this machine: $kube_node_skipped."
        elif [[ -f "$out/$name.md" ]]; then
            echo
            # One level below the section heading.
            sed 's/^### /#### /' "$out/$name.md"
        fi
    done
} >"$out/RESULTS.md"
log "done in $((SECONDS - started)) s: $out/RESULTS.md"

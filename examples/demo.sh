#!/usr/bin/env bash
# The main job on a fresh machine: grade the bundled example course with the local backend.
#
#   bash examples/demo.sh [SERVICE_DIR]
#
# Sets up the grading tool (a venv with grader-service==0.12.5) when missing, builds
# `grader`, materialises the example course's repositories in SERVICE_DIR (default: a new
# temporary directory), grades every submission with `grader batch` and shows the outcomes
# next to the scores the grading tool is known to give.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

convert="$(bash scripts/setup-venv.sh | tail -n 1)"
echo "demo: grading tool $convert" >&2
cargo build --release --quiet -p grader-bin
grader="$root/target/release/grader"

service="${1:-$(mktemp -d /tmp/grader-demo.XXXXXX)}"
mkdir -p "$service"
service="$(cd "$service" && pwd)"
bash examples/make-service-dir.sh "$service"
cat >"$service/grader.toml" <<TOML
# Written by examples/demo.sh
backend = "local"
service_dir = "$service"
convert_executable = "$convert"
max_grading_time = 300
TOML

echo "demo: grading $(wc -l <"$service/jobs.jsonl") submissions in $service" >&2
status=0
"$grader" --config "$service/grader.toml" batch "$service/jobs.jsonl" \
    --concurrency 2 --results "$service/results" || status=$?

python3 - "$service" <<'PY'
import json, pathlib, sys
service = pathlib.Path(sys.argv[1])
expected = {}
for line in (service / "expected.jsonl").read_text().splitlines():
    e = json.loads(line)
    expected[e["submission_id"]] = e
print(f"\n{'submission':>10}  {'user':<8} {'status':<22} {'score':>6} {'expected':>8}  {'time':>6}")
for sid, e in sorted(expected.items()):
    f = service / "results" / f"submission_{sid}.json"
    o = json.loads(f.read_text()) if f.exists() else {}
    score = o.get("score")
    print(f"{sid:>10}  {e['username']:<8} {o.get('status', 'missing'):<22} "
          f"{'-' if score is None else score:>6} {e['score']:>8}  {o.get('duration_ms', 0) / 1000:>5.1f}s")
print(f"\noutcomes: {service}/results/   autograded branches: git -C {service}/git/cs101/1/autograde/user/alice branch")
PY
exit "$status"

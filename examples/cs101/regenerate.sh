#!/usr/bin/env bash
# Rebuild every generated file of the cs101 example course with the reference tool:
#
#   release/hw1/          grader-convert generate_assignment on source/hw1
#                         (hw1.ipynb without solutions and hidden tests, data.csv, gradebook.json)
#   students/*/, special/ make-students.py: the release notebook with each student's answers
#   expected.json         score and max_score per student, from a real grader-convert autograde
#   special/loop/expected.json  the same for the endless-loop notebook (run with a 5 s timeout)
#   special/crash/expected.json no score: the notebook kills the grading tool
#
# Usage: examples/cs101/regenerate.sh
# Environment: GRADER_CONVERT=/path/to/grader-convert to skip scripts/setup-venv.sh.
#
# generate_assignment is run the way the Grader Labextension runs it when an instructor pushes
# the release: every file of the source directory is copied (allowed_files ["*"]), so the
# release gradebook's extra_files lists hw1.ipynb and data.csv (in directory-walk order, which
# depends on the file system). autograde is run the way Grader Service's executors run it: the
# output directory holds the release gradebook as gradebook.json, the input directory the
# submitted files, and ASSIGNMENT_SETTINGS carries the assignment settings.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
log() { printf 'regenerate: %s\n' "$*" >&2; }

convert="${GRADER_CONVERT:-}"
if [ -z "$convert" ]; then
    convert="$("$repo_root/scripts/setup-venv.sh" | tail -n 1)"
fi
# The venv's own interpreter can import grader_service, whose GradeBookModel computes scores.
venv_python="$(dirname "$convert")/python"
[ -x "$convert" ] || { log "not executable: $convert"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "generate_assignment source/hw1 -> release/hw1"
rm -rf "$here/release/hw1"
mkdir -p "$here/release/hw1"
ASSIGNMENT_SETTINGS='{"allowed_files": ["*"]}' \
    "$convert" generate_assignment -i "$here/source/hw1" -o "$here/release/hw1" -p "*.ipynb" \
    2>"$work/generate.log" || { cat "$work/generate.log" >&2; exit 1; }

log "writing student notebooks"
rm -rf "$here/students" "$here/special"
python3 "$here/make-students.py" "$here"

# autograde DIR TIMEOUT -> prints {"score": .., "max_score": ..}
autograde() {
    local submission="$1" timeout="$2" name
    name="$(basename "$submission")"
    mkdir -p "$work/$name/in" "$work/$name/out"
    cp -R "$submission/." "$work/$name/in/"
    cp "$here/release/hw1/gradebook.json" "$work/$name/out/gradebook.json"
    local start end
    start="$(date +%s.%N)"
    ASSIGNMENT_SETTINGS="{\"allowed_files\": [\"*.csv\"], \"cell_timeout\": $timeout, \"autograde_type\": \"auto\"}" \
        "$convert" autograde -i "$work/$name/in" -o "$work/$name/out" -p "*.ipynb" \
        "--ExecutePreprocessor.timeout=$timeout" 2>"$work/$name.log" ||
        { cat "$work/$name.log" >&2; exit 1; }
    end="$(date +%s.%N)"
    log "autograded $name in $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }') s"
    "$venv_python" - "$work/$name/out/gradebook.json" <<'PY'
import json, sys
from grader_service.convert.gradebook.models import GradeBookModel

with open(sys.argv[1]) as f:
    book = GradeBookModel.from_dict(json.load(f))
print(json.dumps({"score": float(book.score), "max_score": float(book.max_score)}))
PY
}

{
    printf '{\n'
    first=1
    for student in alice bob carol dave; do
        result="$(autograde "$here/students/$student" 30)"
        [ "$first" = 1 ] || printf ',\n'
        first=0
        printf '  "%s": %s' "$student" "$result"
    done
    printf '\n}\n'
} >"$work/expected.json"
mv "$work/expected.json" "$here/expected.json"

loop_result="$(autograde "$here/special/loop" 5)"
printf '{\n  "loop": %s,\n  "cell_timeout": 5\n}\n' "$loop_result" >"$here/special/loop/expected.json"
# special/crash kills the tool, so it has no score (the tests check the failure itself).
printf '{\n  "crash": {"score": null, "max_score": null, "error": "signal: 9 (SIGKILL)"}\n}\n' \
    >"$here/special/crash/expected.json"

log "expected scores:"
cat "$here/expected.json" >&2

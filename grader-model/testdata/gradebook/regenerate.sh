#!/usr/bin/env bash
# Rebuild the gradebook fixtures of this directory from the example course with the reference
# tool (see README.md here). Usage: grader-model/testdata/gradebook/regenerate.sh
# Environment: GRADER_CONVERT=/path/to/grader-convert to skip scripts/setup-venv.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"
course="$repo_root/examples/cs101"

convert="${GRADER_CONVERT:-}"
if [ -z "$convert" ]; then
    convert="$("$repo_root/scripts/setup-venv.sh" | tail -n 1)"
fi
venv_python="$(dirname "$convert")/python"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# release.json: the gradebook generate_assignment wrote, byte for byte.
cp "$course/release/hw1/gradebook.json" "$here/release.json"

# autograded-bob.json: bob's submission autograded as Grader Service's executors do it.
mkdir -p "$work/in" "$work/out"
cp -R "$course/students/bob/." "$work/in/"
cp "$course/release/hw1/gradebook.json" "$work/out/gradebook.json"
ASSIGNMENT_SETTINGS='{"allowed_files": ["*.csv"], "cell_timeout": 30, "autograde_type": "auto"}' \
    "$convert" autograde -i "$work/in" -o "$work/out" -p "*.ipynb" \
    --ExecutePreprocessor.timeout=30 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
cp "$work/out/gradebook.json" "$here/autograded-bob.json"

# manual-bob.json: what a grader's manual pass leaves behind: a manual score overriding the
# autograder on test_total_value, extra credit on test_most_expensive and a manual comment.
# Written with Python's json.dumps defaults, as Grader Service stores submission properties.
"$venv_python" - "$here/autograded-bob.json" "$here/manual-bob.json" <<'PY'
import json, sys
from grader_service.convert.gradebook.models import GradeBookModel

with open(sys.argv[1]) as f:
    book = json.load(f)
nb = book["notebooks"]["hw1"]
nb["grades_dict"]["test_total_value"]["manual_score"] = 1.5
nb["grades_dict"]["test_most_expensive"]["extra_credit"] = 0.5
nb["comments_dict"]["total_value"]["manual_comment"] = "Multiply by the quantity; half credit."
with open(sys.argv[2], "w") as f:
    f.write(json.dumps(book))

for path in sys.argv[1:]:
    with open(path) as f:
        model = GradeBookModel.from_dict(json.load(f))
    print(f"{path}: score={model.score!r} max_score={model.max_score!r}", file=sys.stderr)
PY

# synthetic.json: a hand-built gradebook (two notebooks, task cells, manual scores, extra
# credit, a grade with neither score, sums that are inexact in binary floating point) in the
# shape GradeBookModel.to_dict writes; the scores GradeBookModel computes for it are printed so
# that they can be compared with the numbers in grader-model/tests/gradebook.rs.
"$venv_python" - "$here/synthetic.json" <<'PY'
import json, sys
from grader_service.convert.gradebook.models import GradeBookModel


def cell(kind, nb, name, max_score, cell_type="code"):
    d = {"max_score": max_score, "cell_type": cell_type, "notebook_id": nb, "name": name,
         "id": name, "grade_id": name, "comment_id": None, "_type": kind}
    return d


def grade(nb, name, auto, manual=None, extra=None, gc=None, tc=None):
    return {"cell_id": name, "notebook_id": nb, "id": name, "auto_score": auto,
            "manual_score": manual, "extra_credit": extra, "needs_manual_grade": auto is None,
            "max_score_gradecell": gc, "max_score_taskcell": tc, "failed_tests": None,
            "_type": "Grade", "max_score": tc or gc}


def notebook(name, grade_cells, task_cells, grades):
    return {"id": name, "name": name, "flagged": False,
            "kernelspec": json.dumps({"display_name": "Python 3 (ipykernel)",
                                      "language": "python", "name": "python3"}),
            "grade_cells_dict": {c["name"]: c for c in grade_cells},
            "solution_cells_dict": {},
            "task_cells_dict": {c["name"]: c for c in task_cells},
            "source_cells_dict": {},
            "grades_dict": {g["id"]: g for g in grades},
            "comments_dict": {},
            "_type": "Notebook"}


part1 = notebook(
    "part1",
    [cell("GradeCell", "part1", "q1", 1.0), cell("GradeCell", "part1", "q2", 0.5),
     cell("GradeCell", "part1", "q3", 2, "markdown"), cell("GradeCell", "part1", "q4", 1.0),
     cell("GradeCell", "part1", "q5", 3.0)],
    [cell("TaskCell", "part1", "t1", 2.5)],
    [grade("part1", "q1", 0.1, gc=1.0),
     grade("part1", "q2", 0.2, gc=0.5),
     grade("part1", "q3", None, manual=1.5, extra=0.1, gc=2),
     grade("part1", "t1", None, extra=0.25, tc=2.5),
     grade("part1", "q4", 1.0, manual=0.7, gc=1.0),
     grade("part1", "q5", None, gc=3.0)],
)
part2 = notebook(
    "part2",
    [cell("GradeCell", "part2", "r1", 0.1), cell("GradeCell", "part2", "r2", 0.2)],
    [],
    [grade("part2", "r1", 0.1, gc=0.1), grade("part2", "r2", 0.2, gc=0.2)],
)
book = {"notebooks": {"part1": part1, "part2": part2}, "extra_files": ["data.csv"],
        "_type": "GradeBookModel", "schema_version": "1"}
with open(sys.argv[1], "w") as f:
    f.write(json.dumps(book, indent=1) + "\n")

model = GradeBookModel.from_dict(book)
print(f"synthetic.json: score={model.score!r} max_score={model.max_score!r}", file=sys.stderr)
for name, nb in model.notebooks.items():
    print(f"  {name}: score={nb.score!r} max_score={nb.max_score!r}", file=sys.stderr)
PY

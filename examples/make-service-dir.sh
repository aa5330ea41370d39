#!/usr/bin/env bash
# Materialise a Grader Service style service directory from the example course cs101/hw1:
# one bare git repository per student submission plus the job files that describe them.
#
# Usage: examples/make-service-dir.sh SERVICE_DIR [--copies N] [--students a,b,...]
#                                                 [--cell-timeout SECONDS]
#
#   --students      which students to include (default alice,bob,carol,dave); a name is a
#                   directory under cs101/students/ or cs101/special/ (e.g. loop)
#   --copies N      repeat the student list N times; copy k > 1 of alice is user alice-k
#                   (4 students x --copies 50 = 200 submissions)
#   --cell-timeout  cell_timeout written into the jobs' assignment settings (default 30)
#
# Creates, under SERVICE_DIR (made absolute):
#   git/cs101/1/user/<username>/    bare repository, branch main, three commits:
#                                     1. "Release hw1"     the release notebook and data.csv
#                                     2. "Submit hw1"      the student's answer  <- commit_hash
#                                     3. "Edit after the deadline"  a different notebook (the
#                                        release for alice's copies, alice's answer otherwise),
#                                        so grading the branch tip gives a different score
#   gradebooks/cs101/1/gradebook.json  copy of the release gradebook
#   jobs/<username>.json, jobs.jsonl   one job per submission; submission ids 1, 2, 3, ...
#   expected.jsonl                     per submission id the score grader-convert gives
#
# Commits are deterministic (fixed authors, dates, messages; no user or system git config is
# read), so the same arguments always yield the same commit hashes. Needs bash, git,
# coreutils and python3 (only for writing JSON); no network.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'make-service-dir: error: %s\n' "$*" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
course="$here/cs101"

service_dir=""
copies=1
students="alice,bob,carol,dave"
cell_timeout=30
while [ $# -gt 0 ]; do
    case "$1" in
        --copies) [ $# -ge 2 ] || usage; copies="$2"; shift 2 ;;
        --copies=*) copies="${1#*=}"; shift ;;
        --students) [ $# -ge 2 ] || usage; students="$2"; shift 2 ;;
        --students=*) students="${1#*=}"; shift ;;
        --cell-timeout) [ $# -ge 2 ] || usage; cell_timeout="$2"; shift 2 ;;
        --cell-timeout=*) cell_timeout="${1#*=}"; shift ;;
        -h | --help) usage ;;
        -*) die "unknown option $1" ;;
        *) [ -z "$service_dir" ] || die "more than one SERVICE_DIR given"; service_dir="$1"; shift ;;
    esac
done
[ -n "$service_dir" ] || usage
[[ "$copies" =~ ^[1-9][0-9]*$ ]] || die "--copies must be a positive integer, got '$copies'"
[[ "$cell_timeout" =~ ^[1-9][0-9]*$ ]] || die "--cell-timeout must be a positive integer"

IFS=',' read -r -a student_list <<<"$students"
[ "${#student_list[@]}" -gt 0 ] || die "--students is empty"
declare -A student_dir=()
for s in "${student_list[@]}"; do
    [[ "$s" =~ ^[a-z][a-z0-9_]*$ ]] || die "invalid student name '$s'"
    [ -z "${student_dir[$s]:-}" ] || die "student '$s' is listed twice"
    if [ -f "$course/students/$s/hw1.ipynb" ]; then
        student_dir[$s]="$course/students/$s"
    elif [ -f "$course/special/$s/hw1.ipynb" ]; then
        student_dir[$s]="$course/special/$s"
    else
        die "no notebook for student '$s' in $course/students or $course/special"
    fi
done

mkdir -p "$service_dir"
service_dir="$(cd "$service_dir" && pwd)"
repos="$service_dir/git/cs101/1/user"
gradebook="$service_dir/gradebooks/cs101/1/gradebook.json"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Never read the caller's git configuration: no signing, hooks, templates or default branch
# from there.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$tmp"
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
mkdir -p "$tmp/no-template"
git_init_bare() {
    git -c init.defaultBranch=main init --quiet --bare --template="$tmp/no-template" "$1"
}

# File contents, trees and the release commit are written once into a template object store
# per student (the shared objects plus that student's answer), which is copied into each of the
# student's repositories; only the student's own commits are made per repository. Every object
# of a repository is reachable from main.
base="$tmp/base.git"
git_init_bare "$base"
export GIT_DIR="$base"
blob() { git hash-object -w -- "$1"; }
tree_with() { # notebook blob -> tree of {data.csv, hw1.ipynb}
    printf '100644 blob %s\tdata.csv\n100644 blob %s\thw1.ipynb\n' "$data_blob" "$1" | git mktree
}
data_blob="$(blob "$course/release/hw1/data.csv")"
release_tree="$(tree_with "$(blob "$course/release/hw1/hw1.ipynb")")"
alice_tree="$(tree_with "$(blob "$course/students/alice/hw1.ipynb")")"

# commit AUTHOR DATE TREE MESSAGE [PARENT]
commit() {
    local who="$1" when="$2" tree="$3" message="$4" parent="${5:-}"
    GIT_AUTHOR_NAME="$who" GIT_AUTHOR_EMAIL="$who@cs101.example.invalid" GIT_AUTHOR_DATE="$when" \
        GIT_COMMITTER_NAME="$who" GIT_COMMITTER_EMAIL="$who@cs101.example.invalid" \
        GIT_COMMITTER_DATE="$when" \
        git commit-tree "$tree" ${parent:+-p "$parent"} -m "$message"
}
release_commit="$(commit instructor "1740992400 +0000" "$release_tree" "Release hw1")" # 2025-03-03
unset GIT_DIR

declare -A answer_tree=()
for s in "${student_list[@]}"; do
    [ -z "${answer_tree[$s]:-}" ] || continue
    git_init_bare "$tmp/$s.git"
    cp -R "$base/objects/." "$tmp/$s.git/objects/"
    answer_tree[$s]="$(GIT_DIR="$tmp/$s.git" tree_with "$(GIT_DIR="$tmp/$s.git" blob "${student_dir[$s]}/hw1.ipynb")")"
done

# Replace what an earlier run of this script made (other files in SERVICE_DIR are left alone).
rm -rf "$repos" "$service_dir/jobs" "$service_dir/jobs.jsonl" "$service_dir/expected.jsonl"
mkdir -p "$repos" "$service_dir/jobs" "$(dirname "$gradebook")"
cp "$course/release/hw1/gradebook.json" "$gradebook"

: >"$tmp/submissions.tsv"
id=0
for ((copy = 1; copy <= copies; copy++)); do
    for s in "${student_list[@]}"; do
        id=$((id + 1))
        user="$s"
        [ "$copy" -eq 1 ] || user="$s-$copy"
        repo="$repos/$user"
        git_init_bare "$repo"
        cp -R "$tmp/$s.git/objects/." "$repo/objects/"
        if [ "$s" = alice ]; then after_tree="$release_tree"; else after_tree="$alice_tree"; fi
        submitted="$(GIT_DIR="$repo" commit "$user" "1741629600 +0000" "${answer_tree[$s]}" \
            "Submit hw1" "$release_commit")" # 2025-03-10 18:00
        tip="$(GIT_DIR="$repo" commit "$user" "1742036400 +0000" "$after_tree" \
            "Edit after the deadline" "$submitted")" # 2025-03-15 11:00
        GIT_DIR="$repo" git update-ref refs/heads/main "$tip"
        printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$user" "$s" "$submitted" "$tip" >>"$tmp/submissions.tsv"
    done
done

python3 - "$service_dir" "$gradebook" "$course" "$cell_timeout" "$tmp/submissions.tsv" <<'PY'
import json
import os
import sys

service_dir, gradebook, course, cell_timeout, tsv = sys.argv[1:]


def expected_scores():
    with open(os.path.join(course, "expected.json")) as f:
        scores = json.load(f)
    special = os.path.join(course, "special")
    for name in sorted(os.listdir(special)):
        path = os.path.join(special, name, "expected.json")
        if os.path.exists(path):
            with open(path) as f:
                scores[name] = json.load(f)[name]
    return scores


scores = expected_scores()
jobs, expected = [], []
with open(tsv) as f:
    for line in f:
        sub_id, user, student, commit, tip = line.rstrip("\n").split("\t")
        job = {
            "lecture": {"code": "cs101"},
            "assignment": {
                "id": 1,
                "name": "hw1",
                "gradebook_path": gradebook,
                "settings": {
                    "cell_timeout": int(cell_timeout),
                    "allowed_files": ["*.csv"],
                    "autograde_type": "auto",
                },
            },
            "submission": {
                "id": int(sub_id),
                "commit_hash": commit,
                "username": user,
                "edited": False,
                "manual_status": "not_graded",
                "score_scaling": 1.0,
            },
        }
        with open(os.path.join(service_dir, "jobs", f"{user}.json"), "w") as out:
            out.write(json.dumps(job) + "\n")
        jobs.append(json.dumps(job))
        expected.append(
            json.dumps(
                {
                    "submission_id": int(sub_id),
                    "username": user,
                    "student": student,
                    "commit_hash": commit,
                    "tip_commit_hash": tip,
                    # None for a submission that cannot be graded (special/crash).
                    "score": scores[student]["score"],
                    "max_score": scores[student]["max_score"],
                }
            )
        )

with open(os.path.join(service_dir, "jobs.jsonl"), "w") as out:
    out.write("".join(j + "\n" for j in jobs))
with open(os.path.join(service_dir, "expected.jsonl"), "w") as out:
    out.write("".join(e + "\n" for e in expected))
PY

printf 'make-service-dir: %d submission(s) in %s\n' "$id" "$service_dir" >&2

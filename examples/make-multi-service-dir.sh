#!/usr/bin/env bash
# A course with several notebooks per submission, built from the example course cs101/hw1:
# examples/make-service-dir.sh SERVICE_DIR, then every submission gets K - 1 more notebooks,
# hw2.ipynb ... hwK.ipynb, copies of its hw1.ipynb (each graded on its own, with its own kernel).
#
# Usage: examples/make-multi-service-dir.sh SERVICE_DIR [--notebooks K] [make-service-dir options]
#
#   --notebooks K   notebooks per submission (default 3)
#   other options   passed to make-service-dir.sh (--copies, --students, --cell-timeout)
#
# Per submission a deterministic commit "Submit hw1-hwK" (fixed author and date) is made on top
# of make-service-dir.sh's submitted commit: its tree is that commit's with the copies added.
# The jobs' commit_hash names it; the gradebook lists hw2 ... hwK like hw1; expected.jsonl has
# K times the scores of the one-notebook course. Needs bash, git and python3; no network.
set -euo pipefail
die() { printf 'make-multi-service-dir: error: %s\n' "$*" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

service_dir=""
notebooks=3
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --notebooks) [ $# -ge 2 ] || die "--notebooks needs a value"; notebooks="$2"; shift 2 ;;
        --notebooks=*) notebooks="${1#*=}"; shift ;;
        --copies | --students | --cell-timeout)
            [ $# -ge 2 ] || die "$1 needs a value"; pass+=("$1" "$2"); shift 2 ;;
        -*) pass+=("$1"); shift ;;
        *) [ -z "$service_dir" ] || die "more than one SERVICE_DIR given"; service_dir="$1"; shift ;;
    esac
done
[ -n "$service_dir" ] || die "usage: make-multi-service-dir.sh SERVICE_DIR [--notebooks K] [...]"
[[ "$notebooks" =~ ^[1-9][0-9]*$ ]] || die "--notebooks must be a positive integer"

bash "$here/make-service-dir.sh" "$service_dir" "${pass[@]}"
service_dir="$(cd "$service_dir" && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$tmp"
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES

python3 - "$service_dir" "$notebooks" <<'PY'
import json
import os
import subprocess
import sys

service_dir, k = sys.argv[1], int(sys.argv[2])
names = [f"hw{i}" for i in range(2, k + 1)]


def git(repo, *args, stdin=None, env=None):
    run_env = dict(os.environ, GIT_DIR=repo, **(env or {}))
    return subprocess.run(["git", *args], input=stdin, env=run_env, check=True,
                          capture_output=True, text=True).stdout.strip()


def add_notebooks(repo, user, commit):
    entries = git(repo, "ls-tree", commit).splitlines()
    blob = next(e.split()[2] for e in entries if e.endswith("\thw1.ipynb"))
    lines = entries + [f"100644 blob {blob}\t{n}.ipynb" for n in names]
    tree = git(repo, "mktree", stdin="\n".join(sorted(lines, key=lambda l: l.split("\t")[1])) + "\n")
    who = {"GIT_AUTHOR_NAME": user, "GIT_AUTHOR_EMAIL": f"{user}@cs101.example.invalid",
           "GIT_AUTHOR_DATE": "1741633200 +0000", "GIT_COMMITTER_NAME": user,
           "GIT_COMMITTER_EMAIL": f"{user}@cs101.example.invalid",
           "GIT_COMMITTER_DATE": "1741633200 +0000"}
    new = git(repo, "commit-tree", tree, "-p", commit, "-m", f"Submit hw1-hw{k}", env=who)
    git(repo, "update-ref", f"refs/heads/submitted-all", new)
    return new


jobs_path = os.path.join(service_dir, "jobs.jsonl")
jobs = [json.loads(l) for l in open(jobs_path) if l.strip()]
new_commit = {}
for job in jobs:
    sub = job["submission"]
    repo = os.path.join(service_dir, "git", "cs101", "1", "user", sub["username"])
    new_commit[sub["id"]] = add_notebooks(repo, sub["username"], sub["commit_hash"])
    sub["commit_hash"] = new_commit[sub["id"]]
    with open(os.path.join(service_dir, "jobs", f"{sub['username']}.json"), "w") as out:
        out.write(json.dumps(job) + "\n")
with open(jobs_path, "w") as out:
    out.write("".join(json.dumps(j) + "\n" for j in jobs))

gradebook = jobs[0]["assignment"]["gradebook_path"]
book = json.load(open(gradebook))
for n in names:
    entry = json.loads(json.dumps(book["notebooks"]["hw1"]))
    entry["id"] = entry["name"] = n
    book["notebooks"][n] = entry
book["extra_files"] = sorted(set(book.get("extra_files", [])) | {f"{n}.ipynb" for n in names})
with open(gradebook, "w") as out:
    json.dump(book, out)

expected_path = os.path.join(service_dir, "expected.jsonl")
rows = [json.loads(l) for l in open(expected_path) if l.strip()]
for row in rows:
    row["commit_hash"] = new_commit[row["submission_id"]]
    for key in ("score", "max_score"):
        if row[key] is not None:
            row[key] = row[key] * k
with open(expected_path, "w") as out:
    out.write("".join(json.dumps(r) + "\n" for r in rows))
PY
printf 'make-multi-service-dir: %d notebooks per submission in %s\n' "$notebooks" "$service_dir" >&2

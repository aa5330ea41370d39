#!/usr/bin/env python3
"""Write the students' submitted notebooks of cs101/hw1 from the released notebook.

Each student's notebook is the release notebook with the bodies of the solution cells
(nbgrader `solution: true`) replaced by that student's answer; everything else (locked
cells, metadata, checksums) stays as released, exactly as when a student edits the notebook
in JupyterLab. Cells a student did not answer keep the released stub.

Usage: make-students.py COURSE_DIR      (COURSE_DIR = examples/cs101)

Writes COURSE_DIR/students/<name>/{hw1.ipynb,data.csv} and COURSE_DIR/special/{loop,crash}/...
Only the standard library is used.
"""

import json
import shutil
import sys
from pathlib import Path

ALICE = {
    # Correct, written differently from the instructor's solution.
    "load_rows": '''\
import csv


def load_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {"item": r["item"], "quantity": int(r["quantity"]), "price": float(r["price"])}
            for r in csv.DictReader(f)
        ]''',
    "total_value": '''\
def total_value(rows):
    total = 0
    for r in rows:
        total += r["quantity"] * r["price"]
    return total''',
    "most_expensive": '''\
def most_expensive(rows):
    if not rows:
        return None
    top = max(r["price"] for r in rows)
    return next(r["item"] for r in rows if r["price"] == top)''',
}

BOB = {
    # load_rows is right; total_value ignores the quantity (its test cell fails);
    # most_expensive crashes on an empty list and picks the last of equally priced items
    # (2 of the 4 partial-credit checks pass).
    "load_rows": ALICE["load_rows"],
    "total_value": '''\
def total_value(rows):
    return sum(r["price"] for r in rows)''',
    "most_expensive": '''\
def most_expensive(rows):
    return sorted(rows, key=lambda r: r["price"])[-1]["item"]''',
}

CAROL = {
    # load_rows raises ValueError (int("0.5")); a leftover debugging line makes the
    # total_value solution cell itself raise, but the function is defined before that line,
    # so its tests pass; most_expensive returns the last of equally priced items
    # (3 of the 4 partial-credit checks pass).
    "load_rows": '''\
def load_rows(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            item, quantity, price = line.strip().split(",")
            rows.append({"item": item, "quantity": int(quantity), "price": int(price)})
    return rows''',
    "total_value": '''\
def total_value(rows):
    return sum(r["quantity"] * r["price"] for r in rows)


print(total_value(load_rows(DATA_FILE)))''',
    "most_expensive": '''\
def most_expensive(rows):
    best = None
    for r in rows:
        if best is None or r["price"] >= best["price"]:
            best = r
    return best["item"] if best else None''',
}

DAVE = {}  # submitted the released notebook unchanged

STUDENTS = {"alice": ALICE, "bob": BOB, "carol": CAROL, "dave": DAVE}

# Test-only: total_value never returns, so its test cell runs into the cell timeout; the other
# answers are alice's (expected: 1 + 0 + 3 = 4 points whatever the timeout).
LOOP = dict(
    ALICE,
    total_value='''\
def total_value(rows):
    while True:
        pass''',
)

# Test-only: the most_expensive answer kills the grading tool (the kernel's parent process),
# as a crashing tool would; the job fails with "signal: 9 (SIGKILL)" and has no score.
CRASH = dict(
    ALICE,
    most_expensive='''\
import os
import signal

os.kill(os.getppid(), signal.SIGKILL)''',
)

SPECIAL = {"loop": LOOP, "crash": CRASH}


def as_lines(text):
    """Notebook JSON stores a cell's source as a list of lines, each but the last ending in \\n."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def answer(release_nb, answers):
    nb = json.loads(json.dumps(release_nb))
    seen = set()
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id")
        if meta.get("solution") and grade_id in answers:
            cell["source"] = as_lines(answers[grade_id])
            seen.add(grade_id)
    unknown = set(answers) - seen
    if unknown:
        raise SystemExit(f"no solution cell for answers {sorted(unknown)}")
    return nb


def write(nb, release_dir, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "hw1.ipynb", "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    shutil.copyfile(release_dir / "data.csv", out_dir / "data.csv")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    course = Path(sys.argv[1])
    release_dir = course / "release" / "hw1"
    with open(release_dir / "hw1.ipynb", encoding="utf-8") as f:
        release_nb = json.load(f)
    for name, answers in STUDENTS.items():
        write(answer(release_nb, answers), release_dir, course / "students" / name)
    for name, answers in SPECIAL.items():
        write(answer(release_nb, answers), release_dir, course / "special" / name)


if __name__ == "__main__":
    main()

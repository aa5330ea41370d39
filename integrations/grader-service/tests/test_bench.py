"""Measure: 20 submissions through the real `grader-worker`, one deployment at a time, with
the worker's default `LocalAutogradeExecutor` (in-process), the reference's
`LocalAutogradeProcessExecutor`, `grader_executor` running the binary, and `grader_executor`
sending to `grader serve` (warm workers). Prints a table; every score must equal the example
course's. Run with `scripts/grader-service-e2e.sh --bench` (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest

from conftest import SCRIPTS, grader_executor_lines
from test_worker_e2e import grader_serve  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    os.environ.get("GS_E2E_BENCH") != "1", reason="benchmark: set GS_E2E_BENCH=1")]

N = 20
STUDENTS = ("alice", "bob", "carol", "dave")


def _run(d, label):
    subs = [(d.add_submission(STUDENTS[i % 4]), STUDENTS[i % 4]) for i in range(N)]
    start = time.monotonic()
    d.enqueue(*({"kind": "autograde", "sub_id": s} for s, _ in subs))
    done = {}
    for s, name in subs:
        row = d.wait(s, timeout=600)
        done[s] = time.monotonic() - start
        assert row["auto_status"] == "AUTOMATICALLY_GRADED", (label, row["logs"][-1500:])
        assert row["score"] == d.expected[name]["score"], (label, name, row["score"])
    wall = max(done.values())
    finish = sorted(done.values())
    gaps = [b - a for a, b in zip(finish, finish[1:])]
    return {"run": label, "submissions": N, "wall_s": round(wall, 2),
            "per_submission_s": round(wall / N, 3),
            "median_gap_s": round(statistics.median(gaps), 3)}


def test_twenty_submissions_side_by_side(deployments, grader_serve):  # noqa: F811
    ref, ours = deployments
    results = []
    try:
        ref.restart_worker("")
        results.append(_run(ref, "reference LocalAutogradeExecutor (in-process, default)"))
        ref.restart_worker(f"""
c.RequestHandlerConfig.autograde_executor_class = \\
    "grader_service.autograding.local_grader.LocalAutogradeProcessExecutor"
c.LocalAutogradeProcessExecutor.convert_executable = {str(SCRIPTS / 'grader-convert')!r}
""")
        results.append(_run(ref, "reference LocalAutogradeProcessExecutor"))
        ours.restart_worker(grader_executor_lines(ours.binary))
        results.append(_run(ours, "grader_executor, grader binary per job"))
        ours.restart_worker(grader_executor_lines(ours.binary, f"""
c.GraderExecutor.endpoint = {grader_serve!r}
c.GraderExecutor.fallback_to_binary = False
"""))
        results.append(_run(ours, "grader_executor -> grader serve (warm worker)"))
    finally:
        ref.restart_worker("")
        ours.restart_worker(grader_executor_lines(ours.binary))
    lines = ["| executor | submissions | wall s | per submission s | median gap s |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['run']} | {r['submissions']} | {r['wall_s']} | **{r['per_submission_s']}** "
              f"| {r['median_gap_s']} |" for r in results]
    table = "\n".join(lines)
    print("\n" + table)
    out = os.environ.get("GS_E2E_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
        with open(out.rsplit(".", 1)[0] + ".md", "w") as f:
            f.write(table + "\n")

"""Yardstick for issue 8: the Python reference's in-process grading time and its kernels' work.

Run with the reference tool's own interpreter (grader-service 0.12.5's venv):

    python bench/reference_inprocess.py --service-dir DIR [--submissions N]
                                        [--work-dir W] [--json OUT.json] [--keep]

DIR is a service dir from examples/make-service-dir.sh. For the first N jobs of DIR/jobs.jsonl,
sequentially and in this one process (as the reference's LocalAutogradeExecutor runs job after
job inside the already running service), it measures:

inprocess_s  what LocalAutogradeExecutor._run costs (grader_service/autograding/local_grader.py):
             build the Autograde converter (grader_service/convert/converters/autograde.py) with
             input dir, output dir, file pattern "*.ipynb", the assignment's AssignmentSettings
             and a Config whose ExecutePreprocessor.timeout is the cell timeout as
             LocalAutogradeExecutor._determine_cell_timeout clamps it (default 300, the
             assignment's cell_timeout limited to [10, 86400]), then start() it under
             collect_logs(autograder.log). Autograde forces overwriting itself (force = True).
             Untimed around it, like the reference's own preparation: a fresh input dir holding
             the submitted commit (git archive | tar -x; the reference does git init/pull/checkout,
             so its input dir also has a .git) and the release gradebook as OUT/gradebook.json.
             The tool is imported once beforehand; that import is reported as import_s.
kernel_s     wall time inside grader_service's Execute preprocessor (Execute.preprocess, a
             subclass of nbconvert's ExecutePreprocessor, i.e. nbclient: kernel start, every
             cell, kernel shutdown), summed over the submission's notebooks; measured with a
             timing wrapper patched onto the class at runtime.

After each run the score is computed from OUT/gradebook.json the way LocalAutogradeExecutor.
_set_properties does (GradeBookModel.from_dict, sum of notebook scores) and compared with
DIR/expected.jsonl. Issue 8's target: a warm worker pool grades one submission in at most the
median inprocess_s and within 10% of the median kernel_s.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--service-dir", required=True)
    ap.add_argument("--submissions", type=int, default=0, help="first N jobs (default: all)")
    ap.add_argument("--work-dir", help="where convert_in/ and convert_out/ go (default: a temp dir)")
    ap.add_argument("--json", help="write the full result here")
    ap.add_argument("--keep", action="store_true", help="keep each submission's in/out dirs")
    args = ap.parse_args()
    sdir = os.path.abspath(args.service_dir)

    with open(os.path.join(sdir, "jobs.jsonl")) as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    if args.submissions > 0:
        jobs = jobs[: args.submissions]
    expected = {}
    with open(os.path.join(sdir, "expected.jsonl")) as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                expected[e["submission_id"]] = e

    # The tool's import, once, as in the running service (not part of any grading run).
    t0 = time.perf_counter()
    from traitlets.config import Config
    from grader_service.api.models.assignment_settings import AssignmentSettings
    from grader_service.autograding.utils import collect_logs
    from grader_service.convert.converters.autograde import Autograde
    from grader_service.convert.gradebook.models import GradeBookModel
    from grader_service.convert.preprocessors.execute import Execute
    import_s = time.perf_counter() - t0

    # Time spent in Execute.preprocess (outermost call only: it recurses on retries).
    kern = {"s": 0.0, "n": 0, "depth": 0}
    original = Execute.preprocess

    def timed_preprocess(self, *a, **kw):
        kern["depth"] += 1
        start = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            kern["depth"] -= 1
            if kern["depth"] == 0:
                kern["s"] += time.perf_counter() - start
                kern["n"] += 1

    Execute.preprocess = timed_preprocess

    own_work = args.work_dir is None
    work = tempfile.mkdtemp(prefix="refbench-") if own_work else os.path.abspath(args.work_dir)
    runs, mismatches = [], 0
    try:
        for job in jobs:
            sub, asg, lec = job["submission"], job["assignment"], job["lecture"]
            sid, user = sub["id"], sub["username"]
            repo = os.path.join(sdir, "git", lec["code"], str(asg["id"]), "user", user)
            gradebook = asg.get("gradebook_path") or os.path.join(
                sdir, "gradebooks", lec["code"], str(asg["id"]), "gradebook.json")
            inp = os.path.join(work, "convert_in", f"submission_{sid}")
            out = os.path.join(work, "convert_out", f"submission_{sid}")
            for d in (inp, out):
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
            archive = subprocess.run(["git", "--git-dir", repo, "archive", sub["commit_hash"]],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", inp], input=archive, check=True)
            shutil.copyfile(gradebook, os.path.join(out, "gradebook.json"))

            settings = AssignmentSettings.from_dict(asg.get("settings") or {})
            timeout = 300  # LocalAutogradeExecutor.default_cell_timeout
            if settings.cell_timeout is not None:
                timeout = min(86400, max(settings.cell_timeout, 10))
            config = Config()
            config.ExecutePreprocessor.timeout = timeout

            kern["s"], kern["n"] = 0.0, 0
            error = None
            t0 = time.perf_counter()
            try:
                autograder = Autograde(inp, out, "*.ipynb", assignment_settings=settings,
                                       config=config)
                with collect_logs(autograder.log) as log_stream:
                    autograder.start()
                    log_stream.getvalue()
            except Exception as e:  # the reference marks the submission failed
                error = f"{type(e).__name__}: {e}"
            inprocess_s = time.perf_counter() - t0

            score = None
            try:
                with open(os.path.join(out, "gradebook.json")) as f:
                    book = GradeBookModel.from_dict(json.load(f))
                score = sum(nb.score for nb in book.notebooks.values())
            except Exception as e:
                error = error or f"reading gradebook: {type(e).__name__}: {e}"
            exp = expected.get(sid, {}).get("score")
            run = {"username": user, "submission_id": sid, "inprocess_s": round(inprocess_s, 4),
                   "kernel_s": round(kern["s"], 4), "notebooks": kern["n"], "score": score,
                   "expected": exp}
            if error:
                run["error"] = error
            if exp is None or score is None or abs(score - exp) > 1e-9:
                run["mismatch"] = True
                mismatches += 1
            runs.append(run)
            print(f"{sid:>4} {user:<12} in-process {inprocess_s:7.3f} s  kernel {kern['s']:7.3f} s"
                  f"  notebooks {kern['n']}  score {score} (expected {exp})"
                  + ("  MISMATCH" if run.get("mismatch") else "") + (f"  {error}" if error else ""),
                  flush=True)
            if not args.keep:
                shutil.rmtree(inp, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        Execute.preprocess = original
        if own_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "tool_version": metadata.version("grader-service"),
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "import_s": round(import_s, 4),
        "runs": runs,
        "median_inprocess_s": round(statistics.median(r["inprocess_s"] for r in runs), 4) if runs else None,
        "median_kernel_s": round(statistics.median(r["kernel_s"] for r in runs), 4) if runs else None,
        "mismatches": mismatches,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    print(f"grader-service {result['tool_version']}, {result['python']}")
    print(f"import {result['import_s']:.3f} s; {len(runs)} submissions: median in-process "
          f"{result['median_inprocess_s']} s, median kernel {result['median_kernel_s']} s; "
          f"{mismatches} score mismatch(es)" + (f"; work dir {work}" if args.keep else ""))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

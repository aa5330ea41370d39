"""The real `grader-worker` of Grader Service 0.12.5, on a real PostgreSQL and RabbitMQ, with
`grader_executor` configured, against the same worker with its default
`LocalAutogradeExecutor`, side by side: every case is seeded identically in both deployments,
enqueued as the REST handlers enqueue it, and the database rows are compared.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time

import pytest

from conftest import (
    ABSENT_COMMIT,
    assert_listening_on_loopback_only,
    grader_executor_lines,
    runs_of,
    stop_group,
)
from conftest import same_rows as _same_rows

pytestmark = pytest.mark.e2e


def test_a_graded_submission_gets_the_same_rows_as_the_reference(cases, deployments):
    ids, rows = cases
    ref_row, our_row = rows["graded"]
    assert our_row["auto_status"] == "AUTOMATICALLY_GRADED"
    assert our_row["score"] == 6.0 and our_row["grading_score"] == 6.0
    _same_rows(ref_row, our_row)
    assert runs_of(deployments[1].runs_log, ids["graded"]) == 1


def test_score_is_scaling_times_the_total_like_the_reference(cases):
    _, rows = cases
    ref_row, our_row = rows["scaled"]
    assert our_row["grading_score"] == 2.5 and our_row["score"] == 1.25
    _same_rows(ref_row, our_row)


def test_an_edited_submission_is_graded_from_the_edit_repository(cases):
    _, rows = cases
    ref_row, our_row = rows["edited"]
    # carol's own answer scores 4.25; the edited copy (the later commit) 6.0.
    assert our_row["auto_status"] == "AUTOMATICALLY_GRADED" and our_row["score"] == 6.0
    _same_rows(ref_row, our_row)


def test_a_manually_graded_submission_keeps_its_manual_grades(cases):
    _, rows = cases
    ref_row, our_row = rows["manual"]
    assert our_row["auto_status"] == "AUTOMATICALLY_GRADED"
    assert our_row["manual_status"] == "MANUALLY_GRADED"
    grades = json.loads(our_row["properties"])["notebooks"]["hw1"]["grades_dict"]
    assert grades["test_load_rows"]["manual_score"] == 1.0
    assert grades["test_most_expensive"]["extra_credit"] == 0.25
    _same_rows(ref_row, our_row)


def test_a_failing_submission_is_grading_failed_with_logs(cases):
    _, rows = cases
    ref_row, our_row = rows["failing"]
    assert ref_row["auto_status"] == our_row["auto_status"] == "GRADING_FAILED"
    assert our_row["score"] == ref_row["score"]
    assert our_row["properties"] == ref_row["properties"], "properties untouched on failure"
    assert ABSENT_COMMIT in our_row["logs"], our_row["logs"]


def _feedback_files(d, username, commit):
    repo = d.service_dir / "git/cs101/1/feedback/user" / username
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", f"feedback_{commit}"],
                         cwd=repo, capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())


def test_feedback_after_autograde_runs_through_grader_and_matches(cases, deployments):
    ids, rows = cases
    ref_row, our_row = rows["graded"]
    assert ref_row["feedback_status"] == our_row["feedback_status"] == "GENERATED"
    ref, ours = deployments
    commit = ours.expected["alice"]["commit_hash"]
    assert _feedback_files(ours, "alice", commit) == _feedback_files(ref, "alice", commit) == [
        "hw1.html"]
    assert runs_of(ours.runs_log, ids["graded"], "feedback") >= 1
    assert "GraderFeedbackExecutor" in ours.worker_log() or "feedback" in ours.runs_log.read_text()


def test_the_full_auto_chain_continues_to_feedback(cases, deployments):
    ids, rows = cases
    ref_row, our_row = rows["full_auto"]
    assert our_row["auto_status"] == "AUTOMATICALLY_GRADED" and our_row["score"] == 4.25
    assert ref_row["feedback_status"] == our_row["feedback_status"] == "GENERATED"
    _same_rows(ref_row, our_row)
    runs = [line.split() for line in deployments[1].runs_log.read_text().splitlines()]
    seq = ["feedback" if ("feedback" in w or "--feedback" in w) else "autograde"
           for w in runs if w and w[0] == str(ids["full_auto"])]
    assert seq == ["autograde", "feedback"], seq


def test_a_broker_restart_mid_run_loses_no_job_and_grades_none_twice(cases, deployments,
                                                                     servers):
    _, rabbit = servers
    ref, ours = deployments
    subs = [ours.add_submission(name) for name in ("alice", "bob", "carol")]
    ours.enqueue(*({"kind": "autograde", "sub_id": s} for s in subs))
    # Wait until the first job is being graded, then restart the broker under the worker.
    deadline = time.monotonic() + 60
    while runs_of(ours.runs_log, subs[0]) == 0:
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.1)
    rabbit.restart()
    scores = {}
    for s, name in zip(subs, ("alice", "bob", "carol")):
        row = ours.wait(s, timeout=300)
        assert row["auto_status"] == "AUTOMATICALLY_GRADED", (name, row["logs"][-2000:])
        scores[name] = row["score"]
    assert scores == {"alice": 6.0, "bob": 2.5, "carol": 4.25}
    time.sleep(3)  # a redelivered duplicate would start by now
    for s in subs:
        assert runs_of(ours.runs_log, s) == 1, ours.runs_log.read_text()


def test_grader_serve_down_fails_clearly_or_falls_back_to_the_binary(cases, deployments):
    ref, ours = deployments
    socket = str(ours.dir / "no-serve-here.sock")
    try:
        ours.restart_worker(grader_executor_lines(ours.binary, f"""
c.GraderExecutor.endpoint = {socket!r}
c.GraderExecutor.fallback_to_binary = False
"""))
        failed = ours.add_submission("alice")
        ours.enqueue({"kind": "autograde", "sub_id": failed})
        row = ours.wait(failed)
        assert row["auto_status"] == "GRADING_FAILED"
        assert f"grader serve is not running: {socket} is not a socket" in row["logs"]
        assert runs_of(ours.runs_log, failed) == 0

        ours.restart_worker(grader_executor_lines(ours.binary, f"""
c.GraderExecutor.endpoint = {socket!r}
"""))
        fell_back = ours.add_submission("bob")
        ours.enqueue({"kind": "autograde", "sub_id": fell_back})
        row = ours.wait(fell_back)
        assert row["auto_status"] == "AUTOMATICALLY_GRADED" and row["score"] == 2.5
        assert row["logs"].startswith(f"grader serve is not running: {socket}")
        assert "graded with the grader binary instead" in row["logs"]
    finally:
        ours.restart_worker(grader_executor_lines(ours.binary))


def _serve_ready(sock: str, deadline: float) -> None:
    import http.client
    import socket as socketlib

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
            self.sock.connect(sock)

    while time.monotonic() < deadline:
        try:
            conn = UnixConnection("localhost", timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("grader serve did not become ready")


@contextlib.contextmanager
def serve_process(argv: list, env: dict, sock: str, log_path):
    """`grader serve` (argv, its own session, output appended to `log_path`) until ready on
    `sock`; yields the socket; stopped with SIGTERM (SIGKILL after 60 s) on the way out."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _serve_ready(sock, time.monotonic() + 120)
        yield sock
    finally:
        stop_group(proc, 60)


@pytest.fixture
def grader_serve(deployments):
    """`grader serve` beside the grader deployment's worker (as the systemd unit in
    deploy/grader-service runs it), on a Unix socket in the deployment's directory."""
    from conftest import SCRIPTS, grader_binary
    from grader_executor.runner import grader_env

    ours = deployments[1]
    sock = str(ours.dir / "serve.sock")
    binary = grader_binary()
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    if " serve " not in help_text and "\n  serve" not in help_text:
        pytest.fail(f"{binary} has no `serve` command")
    argv = [binary, "--set", f"serve.socket={sock}", "--set", "serve.concurrency=1",
            "--set", f"convert_executable={SCRIPTS / 'grader-convert'}",
            "serve", "--service-dir", str(ours.service_dir)]
    with serve_process(argv, grader_env(ours.env, {}), sock, ours.dir / "serve.log"):
        yield sock


def test_grading_through_grader_serve_writes_the_reference_rows(cases, deployments,
                                                               grader_serve):
    ids, rows = cases
    ref, ours = deployments
    try:
        ours.restart_worker(grader_executor_lines(ours.binary, f"""
c.GraderExecutor.endpoint = {grader_serve!r}
c.GraderExecutor.fallback_to_binary = False
"""))
        subs = {
            "graded": ours.add_submission("alice"),
            "scaled": ours.add_submission("bob", score_scaling=0.5),
            "full_auto": ours.add_submission("carol"),
        }
        ours.enqueue({"kind": "autograde", "sub_id": subs["graded"]},
                     {"kind": "autograde", "sub_id": subs["scaled"]},
                     {"kind": "full_auto", "sub_id": subs["full_auto"]})
        for case, sub_id in subs.items():
            row = ours.wait(sub_id, feedback=case == "full_auto")
            ref_row = rows[case][0]
            assert row["auto_status"] == "AUTOMATICALLY_GRADED", row["logs"][-2000:]
            # The reference's alice also had feedback generated after autograde.
            _same_rows(ref_row, row, ignore=("feedback_status",) if case == "graded" else ())
            runs = [line.split() for line in ours.runs_log.read_text().splitlines()
                    if line.split()[0] == str(sub_id)]
            assert runs and all("submit" in r and "--wait" in r for r in runs), runs
        assert rows["full_auto"][0]["feedback_status"] == "GENERATED"
    finally:
        ours.restart_worker(grader_executor_lines(ours.binary))


def test_every_server_the_suite_started_listens_on_loopback_only(deployments, servers):
    pg, rabbit = servers
    seen = assert_listening_on_loopback_only(
        servers, (pg.port, rabbit.port, rabbit.dist_port, rabbit.epmd_port),
        # rabbitmqctl starts an Erlang node of its own (distribution port 35672-35682).
        during=lambda: rabbit.ctl("status"))
    print("listeners:", sorted(seen))

"""The executor's parts that need no database or broker: the job built from ORM-like objects,
the environment and arguments grader gets, outcomes and failures read back."""

from __future__ import annotations

import datetime
import enum
import json
import os
import stat
from types import SimpleNamespace

from grader_executor.job import build_job
from grader_executor.runner import Invocation, command, grader_env, run_job


class Status(enum.Enum):
    NOT_GRADED = "not_graded"
    MANUALLY_GRADED = "manually_graded"
    PENDING = "pending"
    NOT_GENERATED = "not_generated"


class Settings:
    def to_dict(self):
        return {"deadline": datetime.datetime(2025, 3, 11), "max_submissions": None,
                "allowed_files": ["*.csv"], "cell_timeout": None, "autograde_type": "auto"}


def submission(manual=Status.NOT_GRADED):
    lecture = SimpleNamespace(code="cs101")
    assignment = SimpleNamespace(id=1, name="hw1", lecture=lecture, settings=Settings(),
                                 properties='{"notebooks": {}}')
    return SimpleNamespace(
        id=7, commit_hash="ab" * 20, user=SimpleNamespace(name="alice"), edited=True,
        auto_status=Status.PENDING, manual_status=manual, feedback_status=Status.NOT_GENERATED,
        score_scaling=0.5, assignment=assignment,
        properties=SimpleNamespace(properties='{"notebooks": {"hw1": {"grades_dict": {}}}}'))


def test_the_job_carries_what_the_reference_executor_reads():
    job = build_job(submission())
    assert job["lecture"] == {"code": "cs101"}
    assert job["assignment"] == {
        "id": 1, "name": "hw1", "gradebook": {"notebooks": {}},
        "settings": {"deadline": "2025-03-11T00:00:00", "allowed_files": ["*.csv"],
                     "autograde_type": "auto"}}
    assert job["submission"] == {
        "id": 7, "commit_hash": "ab" * 20, "username": "alice", "edited": True,
        "auto_status": "pending", "manual_status": "not_graded",
        "feedback_status": "not_generated", "score_scaling": 0.5}


def test_manual_grades_go_into_the_job_only_when_graded_by_hand_or_for_feedback():
    assert "gradebook" not in build_job(submission())["submission"]
    manual = build_job(submission(Status.MANUALLY_GRADED))["submission"]
    assert manual["gradebook"] == {"notebooks": {"hw1": {"grades_dict": {}}}}
    assert "gradebook" in build_job(submission(), "feedback")["submission"]


def test_grader_service_variables_never_reach_grader():
    env = grader_env({"GRADER_DB_URL": "postgresql://secret", "GRADER_COOKIE_SECRET": "x",
                      "PATH": "/bin"}, {"GRADER_LOG": "debug"})
    assert env == {"PATH": "/bin", "GRADER_LOG": "debug"}


def test_commands_for_the_binary_the_socket_and_a_url():
    inv = Invocation(binary="grader", service_dir="/srv", backend="kube",
                     settings={"convert_executable": "/v/bin/grader-convert"})
    assert command(inv, "autograde", "/t/job.json", False) == [
        "grader", "--set", "convert_executable=/v/bin/grader-convert", "autograde", "--job",
        "/t/job.json", "--service-dir", "/srv", "--backend", "kube"]
    inv.endpoint = "unix:/run/grader/grader.sock"
    assert command(inv, "feedback", "/t/j", True)[3:] == [
        "submit", "--job", "/t/j", "--wait", "--socket", "/run/grader/grader.sock", "--feedback"]
    inv.endpoint, inv.token_file = "http://127.0.0.1:8600", "/etc/grader/token"
    assert command(inv, "autograde", "/t/j", True)[3:] == [
        "submit", "--job", "/t/j", "--wait", "--url", "http://127.0.0.1:8600",
        "--token-file", "/etc/grader/token"]


def fake_grader(tmp_path, body):
    path = tmp_path / "grader"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_an_outcome_on_stdout_is_read_back(tmp_path):
    outcome = {"status": "automatically_graded", "grading_score": 2.5, "logs": "ok"}
    binary = fake_grader(tmp_path, f"echo '{json.dumps(outcome)}'\necho log >&2\n")
    result = run_job(Invocation(binary=binary, service_dir="/srv"), "autograde",
                     build_job(submission()), os.environ)
    assert result.outcome == outcome and result.via == "binary" and result.failure_text() == ""


def test_bad_input_without_an_outcome_is_a_failure_naming_grader_s_error(tmp_path):
    binary = fake_grader(tmp_path, "echo 'grader: error: field `submission.id`' >&2\nexit 2\n")
    result = run_job(Invocation(binary=binary, service_dir="/srv"), "autograde",
                     build_job(submission()), os.environ)
    assert result.outcome is None
    assert "exited with 2" in result.failure_text()
    assert "field `submission.id`" in result.failure_text()


def test_a_missing_serve_socket_falls_back_to_the_binary_and_says_so(tmp_path):
    binary = fake_grader(tmp_path, 'echo \'{"status": "automatically_graded"}\'; echo "$@" >&2\n')
    inv = Invocation(binary=binary, service_dir="/srv", endpoint=str(tmp_path / "none.sock"))
    result = run_job(inv, "autograde", build_job(submission()), os.environ)
    assert result.via == "binary (serve unreachable)"
    assert "autograde --job" in result.stderr
    assert "is not a socket" in result.failure_text()
    inv.fallback_to_binary = False
    result = run_job(inv, "autograde", build_job(submission()), os.environ)
    assert result.outcome is None and "is not a socket" in result.failure_text()


def test_a_grader_past_the_timeout_is_stopped(tmp_path):
    binary = fake_grader(tmp_path, "sleep 30\n")
    inv = Invocation(binary=binary, service_dir="/srv", timeout=0.5, kill_grace=2)
    result = run_job(inv, "autograde", build_job(submission()), os.environ)
    assert result.outcome is None and "no outcome within timeout=0.5s" in result.failure_text()

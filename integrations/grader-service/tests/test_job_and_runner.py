"""The executor's parts that need no database or broker: the job built from ORM-like objects,
the environment and arguments grader gets, outcomes and failures read back."""

from __future__ import annotations

import datetime
import enum
import json
import os
import stat
import sys
from types import SimpleNamespace

from grader_executor.job import build_job
from grader_executor.runner import Invocation, command, configured_backend, grader_env, run_job


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


CONFIG_OUTPUT = """# Effective grader configuration; each key is followed by the layer it came from.
service_dir = "/var/lib/grader"          # default
convert_executable = "grader-convert"    # default
backend = "kube"                         # file /etc/grader/grader.toml

[kube]
namespace = "grading"                    # file /etc/grader/grader.toml
"""


def test_the_backend_grader_s_configuration_selects_is_read_from_grader_config(tmp_path):
    printed = tmp_path / "config.txt"
    printed.write_text(CONFIG_OUTPUT)
    args = tmp_path / "args.txt"
    binary = fake_grader(tmp_path, f'echo "$@" > {args}\ncat {printed}\n')
    assert configured_backend(binary, ["/etc/g.toml"], {"kube.namespace": "x"}, {}) == "kube"
    assert args.read_text().split() == [
        "--config", "/etc/g.toml", "--set", "kube.namespace=x", "config"]
    printed.write_text(CONFIG_OUTPUT.replace('"kube"', '"local"'))
    assert configured_backend(binary, [], {}, {}) == "local"
    # A `backend` key below a table is not the top-level one.
    printed.write_text('[x]\nbackend = "kube"\n')
    assert configured_backend(binary, [], {}, {}) is None
    refusing = fake_grader(tmp_path, "echo 'grader: error: unknown key' >&2\nexit 2\n")
    assert configured_backend(refusing, [], {}, {}) is None
    assert configured_backend(str(tmp_path / "absent"), [], {}, {}) is None


def _executor(**traits):
    """The executor's settings alone (no submission, no database session)."""
    from traitlets.config import LoggingConfigurable

    from grader_executor.executor import GraderAutogradeExecutor

    ex = GraderAutogradeExecutor.__new__(GraderAutogradeExecutor)
    LoggingConfigurable.__init__(ex, **traits)
    ex.grader_service_dir = "/srv"
    return ex


def test_the_worker_s_grading_tool_is_passed_only_when_grading_runs_here(tmp_path):
    """With the kube backend the tool runs in the grading image: the worker environment's
    `grader-convert` must not be forced on the pods (set by `backend` or by grader's own
    configuration); with the local backend it is the default. An explicit
    `convert_executable` is always passed."""
    from conftest import grader_binary, missing

    binary = grader_binary()
    if binary is None:
        missing("the grader binary (install the wheel or cargo build -p grader-bin)")
    kube_file = tmp_path / "kube.toml"
    kube_file.write_text('backend = "kube"\n')
    convert = "/opt/tool/grader-convert"

    def setting(**traits):
        inv = _executor(binary=binary, **traits).invocation()
        return inv.settings.get("convert_executable")

    assert setting(backend="kube") is None
    assert setting(config_files=[str(kube_file)]) is None
    assert setting(grader_settings={"backend": "kube"}) is None
    assert setting(backend="kube", convert_executable=convert) == convert
    # Local: this environment's grader-convert when it has one (the worker venv does).
    here = os.path.join(os.path.dirname(sys.executable), "grader-convert")
    local = here if os.access(here, os.X_OK) else None
    assert setting(backend="local") == local
    assert setting(config_files=[str(kube_file)], backend="local") == local
    assert setting() == local

"""Fixtures of the end-to-end suite: two Grader Service deployments side by side on one
PostgreSQL 15 and one RabbitMQ started here — `reference` (the worker's default
`LocalAutogradeExecutor`) and `grader` (`grader_executor.GraderAutogradeExecutor`) — each with
its own database, virtual host, service directory and real `grader-worker`.

A missing component skips the e2e tests with a loud message; under CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))

from services import (  # noqa: E402
    Postgres,
    Rabbit,
    is_loopback,
    listeners_of,
    missing_components,
    owner_of_port,
    postmaster_pid,
    process_tree,
)

SCRIPTS = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "grader-service",
    "GIT_AUTHOR_EMAIL": "grader-service@example.invalid",
    "GIT_COMMITTER_NAME": "grader-service",
    "GIT_COMMITTER_EMAIL": "grader-service@example.invalid",
}


def missing(what: str) -> None:
    """Skip loudly, or fail under CI=true."""
    msg = f"SKIPPED: {what}"
    print(f"\n!!! {msg} !!!", file=sys.stderr)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: a missing component fails)")
    pytest.skip(msg)


def grader_binary() -> Optional[str]:
    for cand in (os.environ.get("GS_E2E_GRADER"), str(SCRIPTS / "grader"),
                 str(REPO / "target/release/grader"), str(REPO / "target/debug/grader")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="session")
def base_dir():
    d = Path(tempfile.mkdtemp(prefix="grader-gs-e2e-"))
    yield d
    if os.environ.get("GS_E2E_KEEP") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(base_dir):
    gaps = missing_components()
    try:
        import grader_service  # noqa: F401
    except ImportError:
        gaps.append("grader-service==0.12.5 in this Python (run scripts/grader-service-e2e.sh)")
    if not shutil.which("grader-worker", path=str(SCRIPTS)):
        gaps.append(f"grader-worker in {SCRIPTS}")
    if grader_binary() is None:
        gaps.append("the grader binary (install the wheel or cargo build -p grader-bin)")
    if gaps:
        missing("; ".join(gaps))
    pg, rabbit = Postgres(base_dir), Rabbit(base_dir)
    try:
        pg.start()
        rabbit.start()
        yield pg, rabbit
    finally:
        rabbit.shutdown()
        pg.stop()


class Deployment:
    """One Grader Service deployment: config file, migrated database, service directory with
    the example course, seeded rows, and its `grader-worker`."""

    def __init__(self, name: str, base: Path, pg: Postgres, rabbit: Rabbit, executor_lines: str):
        self.name = name
        self.dir = base / name
        self.dir.mkdir()
        self.service_dir = self.dir / "service"
        self.db = f"gs_{name}"
        self.db_url = pg.url(self.db)
        self.broker_url = rabbit.url(name)
        self.pg = pg
        self.worker: Optional[subprocess.Popen] = None
        self.config = self.dir / "grader_service_config.py"
        self.executor_lines = executor_lines
        self.write_config(executor_lines)
        subprocess.run(["bash", str(REPO / "examples/make-service-dir.sh"), str(self.service_dir)],
                       check=True, capture_output=True)
        self.expected = {}
        for line in (self.service_dir / "expected.jsonl").read_text().splitlines():
            e = json.loads(line)
            self.expected[e["username"]] = e
        self.env = dict(os.environ, **GIT_IDENTITY, HOME=str(self.dir))
        self.env.pop("GRADER_DB_URL", None)
        subprocess.run([str(SCRIPTS / "grader-service-migrate"), "-f", str(self.config)],
                       check=True, capture_output=True, env=self.env, cwd=self.dir)
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker

        self.engine = create_engine(self.db_url)
        self.Session = sessionmaker(bind=self.engine)

    def write_config(self, executor_lines: str) -> None:
        self.config.write_text(f"""
c.GraderService.grader_service_dir = {str(self.service_dir)!r}
c.GraderService.db_url = {self.db_url!r}
c.CeleryApp.conf = dict(
    broker_url={self.broker_url!r}, result_backend="rpc://", task_serializer="json",
    result_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
c.CeleryApp.worker_kwargs = dict(concurrency=1, hostname="{self.name}@e2e", loglevel="INFO")
{executor_lines}
""")

    # -- worker --------------------------------------------------------------------------------
    def start_worker(self) -> None:
        log = open(self.dir / "worker.log", "ab")
        self.worker = subprocess.Popen(
            [str(SCRIPTS / "grader-worker"), "-f", str(self.config)], cwd=self.dir, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"grader-worker exited: {self.worker_log()[-3000:]}")
            if " ready." in self.worker_log():
                return
            time.sleep(0.5)
        raise RuntimeError(f"grader-worker not ready: {self.worker_log()[-3000:]}")

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            stop_group(self.worker, 60)
        self.worker = None

    def restart_worker(self, executor_lines: Optional[str] = None) -> None:
        self.stop_worker()
        if executor_lines is not None:
            self.write_config(executor_lines)
        self.start_worker()

    def worker_log(self) -> str:
        p = self.dir / "worker.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # -- seeding through the service's ORM -----------------------------------------------------
    def seed(self) -> None:
        from grader_service.handlers.submissions import SubmissionHandler
        from grader_service.orm.assignment import Assignment
        from grader_service.orm.base import DeleteState
        from grader_service.orm.lecture import Lecture, LectureState
        from grader_service.orm.takepart import Role, Scope
        from grader_service.orm.user import User

        gradebook = (self.service_dir / "gradebooks/cs101/1/gradebook.json").read_text()
        with self.Session() as s:
            lecture = Lecture(name="Introduction", code="cs101", state=LectureState.active,
                              deleted=DeleteState.active)
            s.add(lecture)
            s.flush()
            assignment = Assignment(id=1, name="hw1", lectid=lecture.id, status="released",
                                    deleted=DeleteState.active, properties=gradebook, points=6)
            assignment.settings = {"deadline": "2025-03-11T00:00:00+00:00",
                                   "allowed_files": ["*.csv"], "cell_timeout": 30,
                                   "autograde_type": "auto"}
            s.add(assignment)
            for name in ("alice", "bob", "carol", "dave", "instructor"):
                user = User(name=name, display_name=name.title())
                s.add(user)
                s.flush()
                s.add(Role(user_id=user.id, lectid=lecture.id,
                           role=Scope.instructor if name == "instructor" else Scope.student))
            s.commit()
        self.make_properties = SubmissionHandler.create_properties

    def add_submission(self, username: str, commit_hash: Optional[str] = None, *,
                       edited: bool = False, score_scaling: float = 1.0,
                       manual_grades: Optional[dict] = None) -> int:
        """A submission as SubmissionHandler.post creates it (with its properties); optionally
        graded by hand first (grades set in its properties, manual_status MANUALLY_GRADED)."""
        import datetime

        from grader_service.orm.assignment import Assignment
        from grader_service.orm.submission import (
            AutoStatus, FeedbackStatus, ManualStatus, Submission)
        from grader_service.orm.user import User

        with self.Session() as s:
            user = s.query(User).filter(User.name == username).one()
            assignment = s.get(Assignment, 1)
            sub = Submission(
                assignid=1, user_id=user.id, date=datetime.datetime(2025, 3, 10, 18),
                commit_hash=commit_hash or self.expected[username]["commit_hash"],
                auto_status=AutoStatus.NOT_GRADED, manual_status=ManualStatus.NOT_GRADED,
                feedback_status=FeedbackStatus.NOT_GENERATED, edited=edited,
                grading_score=0, score_scaling=score_scaling)
            s.add(sub)
            s.commit()
            props = self.make_properties(json.loads(assignment.properties), sub.id)
            if manual_grades:
                book = json.loads(props.properties)
                for cell, fields in manual_grades.items():
                    book["notebooks"]["hw1"]["grades_dict"][cell].update(fields)
                props.properties = json.dumps(book)
                sub.manual_status = ManualStatus.MANUALLY_GRADED
            s.add(props)
            s.commit()
            return sub.id

    def make_edit_repo(self, sub_id: int, username: str) -> None:
        """The instructor's edited copy (`edit/{id}`): the student's repository whose main is
        the later commit (another answer), so grading it gives another score."""
        src = self.service_dir / "git/cs101/1/user" / username
        dst = self.service_dir / "git/cs101/1/edit" / str(sub_id)
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "--quiet", "--bare", str(src), str(dst)], check=True,
                       env=self.env)

    # -- sending and waiting -------------------------------------------------------------------
    def enqueue(self, *specs: dict) -> None:
        subprocess.run([sys.executable, str(HERE / "enqueue.py"), str(self.config),
                        json.dumps(list(specs))], check=True, env=self.env, cwd=self.dir,
                       capture_output=True)

    def row(self, sub_id: int) -> dict:
        """The submission's columns as stored (enums by their stored NAME), its properties
        text and its logs."""
        from sqlalchemy import text

        with self.engine.connect() as c:
            r = c.execute(text(
                "SELECT s.auto_status::text, s.manual_status::text, s.feedback_status::text, "
                "s.score, s.grading_score, p.properties, l.logs FROM submission s "
                "LEFT JOIN submission_properties p ON p.sub_id = s.id "
                "LEFT JOIN submission_logs l ON l.sub_id = s.id WHERE s.id = :id"),
                {"id": sub_id}).one()
        keys = ("auto_status", "manual_status", "feedback_status", "score", "grading_score",
                "properties", "logs")
        return dict(zip(keys, r))

    def wait(self, sub_id: int, *, feedback: bool = False, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.row(sub_id)
            # Both executors commit the status first and the logs right after (the
            # reference's order): done once both are there.
            done = row["auto_status"] != "PENDING" and row["logs"] is not None
            if feedback:
                done = done and row["feedback_status"] != "GENERATING"
            if done:
                return row
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"{self.name} worker died: {self.worker_log()[-3000:]}")
            time.sleep(0.25)
        raise TimeoutError(f"{self.name}: submission {sub_id} not done: {self.row(sub_id)}\n"
                           f"{self.worker_log()[-3000:]}")

    def close(self) -> None:
        self.stop_worker()
        self.engine.dispose()


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group `proc` leads (started with `start_new_session`), SIGKILL
    to it when `proc` has not ended `grace` seconds later."""
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def grader_executor_lines(binary: str, extra: str = "") -> str:
    return f"""
c.RequestHandlerConfig.autograde_executor_class = "grader_executor.GraderAutogradeExecutor"
c.GraderExecutor.binary = {binary!r}
import grader_executor
grader_executor.use_grader_for_feedback()
{extra}
"""


def counting_wrapper(directory: Path, real: str, log: Path) -> str:
    """A `grader` that notes each run (submission id and arguments) in `log`, so a test can
    tell that a job was graded exactly once."""
    wrapper = directory / "grader"
    wrapper.write_text(f"""#!/bin/sh
prev=""; id=""
for a in "$@"; do
  if [ "$prev" = "--job" ]; then
    id=$(grep -o '"submission": {{"id": [0-9]*' "$a" | grep -o '[0-9]*$')
  fi
  prev="$a"
done
echo "$id $*" >> {str(log)!r}
exec {real!r} "$@"
""")
    wrapper.chmod(0o755)
    return str(wrapper)


def runs_of(log: Path, sub_id: int, kind: str = "autograde") -> int:
    if not log.exists():
        return 0
    n = 0
    for line in log.read_text().splitlines():
        words = line.split()
        if words and words[0] == str(sub_id) and (kind in words or "submit" in words):
            n += 1
    return n


@pytest.fixture(scope="session")
def deployments(servers, base_dir):
    """(reference, grader), seeded identically, their workers running."""
    pg, rabbit = servers
    ref = Deployment("reference", base_dir, pg, rabbit, "")
    ours = Deployment("grader", base_dir, pg, rabbit, "")
    ours.runs_log = ours.dir / "grader-runs.log"
    ours.binary = counting_wrapper(ours.dir, grader_binary(), ours.runs_log)
    ours.write_config(grader_executor_lines(ours.binary))
    try:
        for d in (ref, ours):
            d.seed()
            d.start_worker()
        yield ref, ours
    finally:
        for d in (ref, ours):
            d.close()


# -- the cases every path is compared on ---------------------------------------------------------
#: A commit the student's repository does not have: grading fails (GRADING_FAILED, logs).
ABSENT_COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: The grades an instructor gave by hand before autograding (carried over by both executors).
MANUAL_GRADES = {
    "test_load_rows": {"manual_score": 1.0},
    "test_most_expensive": {"manual_score": 0.5, "extra_credit": 0.25},
}


def _both(deployments, username, **kw):
    ids = [d.add_submission(username, **kw) for d in deployments]
    assert ids[0] == ids[1], "both deployments must get the same submission ids"
    return ids[0]


@pytest.fixture(scope="session")
def cases(deployments):
    """Every case, enqueued once in both deployments (the reference's default executor and
    grader's, with the local backend) and waited for: `(ids, rows)`, rows as
    `(reference row, grader row)`. Session-wide, so that later modules (other paths through
    grader) compare their rows with the same reference rows."""
    ref, ours = deployments
    ids = {
        "graded": _both(deployments, "alice"),
        "scaled": _both(deployments, "bob", score_scaling=0.5),
        "edited": _both(deployments, "carol", edited=True),
        "manual": _both(deployments, "dave", manual_grades=MANUAL_GRADES),
        "failing": _both(deployments, "bob", commit_hash=ABSENT_COMMIT),
        "full_auto": _both(deployments, "carol"),
    }
    for d in deployments:
        d.make_edit_repo(ids["edited"], "carol")
        d.enqueue(
            {"kind": "autograde", "sub_id": ids["graded"]},
            {"kind": "autograde", "sub_id": ids["scaled"]},
            {"kind": "autograde", "sub_id": ids["edited"]},
            {"kind": "autograde", "sub_id": ids["manual"]},
            {"kind": "autograde", "sub_id": ids["failing"]},
            {"kind": "full_auto", "sub_id": ids["full_auto"]},
            # Feedback after autograde (GenerateFeedbackHandler's chain), queued behind it.
            {"kind": "feedback", "sub_id": ids["graded"]},
        )
    rows = {}
    for name, sub_id in ids.items():
        feedback = name in ("full_auto", "graded")
        rows[name] = (ref.wait(sub_id, feedback=feedback), ours.wait(sub_id, feedback=feedback))
    return ids, rows


def same_rows(ref_row, our_row, ignore=()):
    """The columns grader's executor writes equal the reference's; both wrote logs."""
    for key in ("auto_status", "manual_status", "feedback_status", "score", "grading_score",
                "properties"):
        if key in ignore:
            continue
        assert our_row[key] == ref_row[key], (
            f"{key}: grader {our_row[key]!r} != reference {ref_row[key]!r}")
    for row in (ref_row, our_row):
        assert row["logs"], "logs are written"
        assert "\x00" not in row["logs"]


# -- listening sockets ----------------------------------------------------------------------------
def assert_listening_on_loopback_only(servers, expected_ports=(), during=None) -> set:
    """Samples the TCP listeners of every process this suite started — this process's tree
    (workers, brokers, `grader serve`, the test cluster, rabbitmqctl's own node), the
    PostgreSQL postmaster's tree and the Erlang port mapper — while `during()` runs in a
    thread (once when None), and asserts that each listens on a loopback address only and
    that `expected_ports` were among them. Returns what was seen: (address, port, command)."""
    pg, rabbit = servers
    roots = [os.getpid(), postmaster_pid(pg), owner_of_port(rabbit.epmd_port)]
    seen: set = set()
    done = threading.Event()
    errors: list = []

    def work():
        try:
            during()
        except Exception as e:  # reported below, after sampling stops
            errors.append(e)
        finally:
            done.set()

    if during is None:
        done.set()
    else:
        threading.Thread(target=work, daemon=True).start()
    while True:
        finished = done.is_set()
        for address, port, _pid, comm in listeners_of(process_tree(roots)):
            seen.add((address, port, comm))
        if finished:
            break
        time.sleep(0.02)
    assert not errors, errors
    outside = sorted(s for s in seen if not is_loopback(s[0]))
    assert not outside, f"listening beyond loopback: {outside}"
    missing_ports = set(expected_ports) - {port for _, port, _ in seen}
    assert not missing_ports, f"no listener found on {missing_ports}; seen {sorted(seen)}"
    return seen

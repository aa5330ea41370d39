"""The kube backend through the same path: the real `grader-worker` with `grader_executor`
configured grades through `grader` on Kubernetes — the test control plane (a real
kube-apiserver + etcd on loopback, kube-testkit's test node agent as kubelet, started by
`grader-test-cluster`) — and writes the rows the reference `LocalAutogradeExecutor` writes for
the same submissions (the session's `cases`). Three ways an operator configures it: the
executor's `backend = "kube"`, grader's own configuration saying `backend = "kube"`, and
`grader serve` configured with the kube backend. Every grading pod runs in the restricted
namespace, is seen Running and Succeeded, and is gone afterwards.

`scripts/grader-service-e2e.sh` builds `grader-test-cluster` and passes it in
GS_E2E_TEST_CLUSTER (with the control-plane binaries of `e2e/control-plane/build.sh`). Missing:
skipped loudly; under CI=true a failure.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import (
    ABSENT_COMMIT,
    MANUAL_GRADES,
    SCRIPTS,
    assert_listening_on_loopback_only,
    grader_binary,
    grader_executor_lines,
    missing,
    same_rows,
    stop_group,
)
from services import proc_stats
from test_worker_e2e import _feedback_files, serve_process

pytestmark = pytest.mark.e2e

NAMESPACE = "grading"
GRADER_SELECTOR = "app.kubernetes.io/managed-by=grader"
#: How long a deleted grading pod may take to disappear (graceful deletion by the agent).
GONE_TIMEOUT = 30


# -- the test cluster ---------------------------------------------------------------------------
def _session_members(sid: int) -> list:
    """Processes (pid, command) whose session is `sid` (field 6 of stat)."""
    return [(pid, comm) for pid, comm, fields in proc_stats() if int(fields[3]) == sid]


class Cluster:
    """A running `grader-test-cluster`: what it printed when ready, and ways to look at it."""

    def __init__(self, info: dict, proc: subprocess.Popen, log: Path):
        self.info, self.proc, self.log = info, proc, log
        self.kubeconfig = info["kubeconfig"]
        self.grader_config = info["grader_config"]
        self.server = info["server"]
        self.api_port = urllib.parse.urlsplit(self.server).port

    def _get(self, path: str) -> dict:
        ctx = ssl.create_default_context(cafile=self.info["ca"])
        ctx.load_cert_chain(self.info["client_cert"], self.info["client_key"])
        with urllib.request.urlopen(self.server + path, context=ctx, timeout=30) as r:
            return json.load(r)

    def grading_pods(self) -> list:
        """Names of the grading pods the API server has in the namespace now."""
        query = urllib.parse.urlencode({"labelSelector": GRADER_SELECTOR})
        pods = self._get(f"/api/v1/namespaces/{NAMESPACE}/pods?{query}")
        return [p["metadata"]["name"] for p in pods["items"]]

    def wait_no_grading_pods(self) -> None:
        deadline = time.monotonic() + GONE_TIMEOUT
        while (left := self.grading_pods()):
            assert time.monotonic() < deadline, f"grading pods left behind: {left}"
            time.sleep(0.25)

    def journal(self) -> list:
        """Every pod state the API server showed in the namespace, in order."""
        text = Path(self.info["pod_journal"]).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def pod_history(self, name: str) -> dict:
        """uid -> (phases in order, deleted) of each pod named `name`."""
        out: dict = {}
        for e in self.journal():
            if e["name"] != name:
                continue
            phases, deleted = out.get(e["uid"], ([], False))
            if e["phase"] and (not phases or phases[-1] != e["phase"]):
                phases.append(e["phase"])
            out[e["uid"]] = (phases, deleted or e["event"] == "delete")
        return out

    def assert_pod_ran_and_is_gone(self, kind: str, username: str, sub_id: int) -> dict:
        """The grading pod of `sub_id` was created once, bound to the test node, run to
        Succeeded, labelled with its job, and deleted."""
        name = f"{kind}-job-{username}-{sub_id}"
        history = self.pod_history(name)
        assert len(history) == 1, f"exactly one pod {name}: {history}\n{self.journal()[-20:]}"
        phases, deleted = next(iter(history.values()))
        assert "Running" in phases and phases[-1] == "Succeeded", (name, phases)
        assert deleted, f"{name}: no Delete event"
        states = [e for e in self.journal() if e["name"] == name]
        assert {e["component"] for e in states} == {kind}, states[-1]
        assert {e["submission_id"] for e in states} == {str(sub_id)}, states[-1]
        assert any(e["node"] == self.info["node"] for e in states), states[-1]
        return history


def _read_ready_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.close()


def _stop(proc: subprocess.Popen) -> None:
    """Close its stdin (its way to stop), SIGTERM and SIGKILL to its group after that."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(60)
        return
    except subprocess.TimeoutExpired:
        pass
    stop_group(proc, 30)


@pytest.fixture(scope="module")
def cluster(deployments, base_dir):
    """`grader-test-cluster` serving the grader deployment's service directory as the claim
    `grader-data` and running pods' `grader-convert` with the worker environment's (the tool
    the reference executor runs in-process). Stopped after the module; then no process of
    its session may be left."""
    binary = os.environ.get("GS_E2E_TEST_CLUSTER", "")
    if not (binary and os.path.isfile(binary) and os.access(binary, os.X_OK)):
        missing("grader-test-cluster (GS_E2E_TEST_CLUSTER; scripts/grader-service-e2e.sh "
                "builds it with `cargo build -p kube-testkit --bin grader-test-cluster`)")
    ours = deployments[1]
    log = base_dir / "test-cluster.log"
    proc = subprocess.Popen(
        [binary, "--dir", str(base_dir / "cluster"), "--namespace", NAMESPACE,
         "--claim", f"grader-data={ours.service_dir}",
         "--exec", f"grader-convert={SCRIPTS / 'grader-convert'}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True,
        start_new_session=True)
    try:
        line = _read_ready_line(proc, 240)
        info = json.loads(line) if line.strip() else {}
    except (json.JSONDecodeError, OSError):
        info = {}
    if not info.get("ready"):
        _stop(proc)
        if "missing" in info:
            missing(f"the test control plane: {info['missing']}")
        raise RuntimeError(f"grader-test-cluster did not get ready ({line!r}):\n"
                           f"{log.read_text(errors='replace')[-4000:]}")
    c = Cluster(info, proc, log)
    try:
        yield c
    finally:
        _stop(proc)
        left = _session_members(proc.pid)
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert proc.returncode == 0, f"grader-test-cluster exited with {proc.returncode}"
        assert not left, f"processes of grader-test-cluster left behind: {left}"


def _kube_lines(ours, cluster, extra: str) -> str:
    return grader_executor_lines(ours.binary, f"""
c.GraderExecutor.env = {{"KUBECONFIG": {cluster.kubeconfig!r}}}
{extra}
""")


def _runs(ours, sub_id: int) -> list:
    return [line.split() for line in ours.runs_log.read_text().splitlines()
            if line.split() and line.split()[0] == str(sub_id)]


@pytest.fixture
def kube_backend_file(base_dir):
    """A grader configuration file that only selects the kube backend (what an operator's
    /etc/grader/grader.toml says, besides the cluster's `[kube]` table)."""
    path = base_dir / "kube-backend.toml"
    path.write_text('backend = "kube"\n')
    return str(path)


# -- the tests --------------------------------------------------------------------------------
def test_the_executors_backend_kube_grades_in_pods_and_writes_the_reference_rows(
        cases, deployments, cluster):
    ids, rows = cases
    ref, ours = deployments
    try:
        ours.restart_worker(_kube_lines(ours, cluster, f"""
c.GraderExecutor.backend = "kube"
c.GraderExecutor.config_files = [{cluster.grader_config!r}]
"""))
        subs = {
            "graded": ("alice", ours.add_submission("alice")),
            "manual": ("dave", ours.add_submission("dave", manual_grades=MANUAL_GRADES)),
            "failing": ("bob", ours.add_submission("bob", commit_hash=ABSENT_COMMIT)),
        }
        ours.enqueue(*({"kind": "autograde", "sub_id": s} for _, s in subs.values()))
        for case, (username, sub_id) in subs.items():
            row = ours.wait(sub_id)
            ref_row = rows[case][0]
            # The reference's alice also had feedback generated after autograde.
            same_rows(ref_row, row, ignore=("feedback_status",) if case == "graded" else ())
            runs = _runs(ours, sub_id)
            assert len(runs) == 1, runs
            assert "--backend" in runs[0] and runs[0][runs[0].index("--backend") + 1] == "kube"
            assert not any(a.startswith("convert_executable=") for a in runs[0]), (
                "with the kube backend the tool is the image's, not the worker's", runs[0])
            if case == "failing":
                assert row["auto_status"] == "GRADING_FAILED"
                assert ABSENT_COMMIT in row["logs"], row["logs"][-2000:]
            else:
                assert row["auto_status"] == "AUTOMATICALLY_GRADED", row["logs"][-2000:]
                assert "[AutogradeApp]" in row["logs"], "the pod's log is the submission's log"
                cluster.assert_pod_ran_and_is_gone("autograde", username, sub_id)
            if case == "manual":
                grades = json.loads(row["properties"])["notebooks"]["hw1"]["grades_dict"]
                assert grades["test_most_expensive"]["extra_credit"] == 0.25, "carried over"
        cluster.wait_no_grading_pods()
    finally:
        ours.restart_worker(grader_executor_lines(ours.binary))


def test_grader_s_own_configuration_selecting_kube_grades_and_feeds_back_in_pods(
        cases, deployments, cluster, kube_backend_file):
    ids, rows = cases
    ref, ours = deployments
    try:
        # No `backend` on the executor: grader's configuration files decide.
        ours.restart_worker(_kube_lines(ours, cluster, f"""
c.GraderExecutor.config_files = [{cluster.grader_config!r}, {kube_backend_file!r}]
"""))
        scaled = ours.add_submission("bob", score_scaling=0.5)
        full_auto = ours.add_submission("carol")
        ours.enqueue({"kind": "autograde", "sub_id": scaled},
                     {"kind": "full_auto", "sub_id": full_auto})
        row = ours.wait(scaled)
        assert row["auto_status"] == "AUTOMATICALLY_GRADED", row["logs"][-2000:]
        assert row["score"] == 1.25
        same_rows(rows["scaled"][0], row)
        cluster.assert_pod_ran_and_is_gone("autograde", "bob", scaled)

        row = ours.wait(full_auto, feedback=True)
        assert row["auto_status"] == "AUTOMATICALLY_GRADED", row["logs"][-2000:]
        assert row["feedback_status"] == "GENERATED"
        same_rows(rows["full_auto"][0], row)
        cluster.assert_pod_ran_and_is_gone("autograde", "carol", full_auto)
        cluster.assert_pod_ran_and_is_gone("feedback", "carol", full_auto)
        commit = ours.expected["carol"]["commit_hash"]
        assert _feedback_files(ours, "carol", commit) == _feedback_files(ref, "carol", commit)
        names = [e["name"] for e in cluster.journal()]
        assert names.index(f"autograde-job-carol-{full_auto}") < names.index(
            f"feedback-job-carol-{full_auto}"), "the chain: autograde, then feedback"
        for sub_id in (scaled, full_auto):
            for run in _runs(ours, sub_id):
                assert "--backend" not in run, run
                assert not any(a.startswith("convert_executable=") for a in run), run
        assert [("feedback" if "feedback" in r else "autograde")
                for r in _runs(ours, full_auto)] == ["autograde", "feedback"]
        cluster.wait_no_grading_pods()
    finally:
        ours.restart_worker(grader_executor_lines(ours.binary))


@pytest.fixture
def kube_serve(deployments, cluster, kube_backend_file):
    """`grader serve` configured with the kube backend (its one pod watch), beside the grader
    deployment's worker, on a Unix socket."""
    from grader_executor.runner import grader_env

    ours = deployments[1]
    sock = str(ours.dir / "serve-kube.sock")
    argv = [grader_binary(), "--config", cluster.grader_config, "--config", kube_backend_file,
            "--set", f"serve.socket={sock}", "--set", "serve.concurrency=1",
            "serve", "--service-dir", str(ours.service_dir)]
    env = grader_env(ours.env, {"KUBECONFIG": cluster.kubeconfig})
    with serve_process(argv, env, sock, ours.dir / "serve-kube.log"):
        yield sock


def test_grader_serve_with_the_kube_backend_writes_the_reference_rows(
        cases, deployments, servers, cluster, kube_serve):
    ids, rows = cases
    ref, ours = deployments
    try:
        ours.restart_worker(grader_executor_lines(ours.binary, f"""
c.GraderExecutor.endpoint = {kube_serve!r}
c.GraderExecutor.fallback_to_binary = False
"""))
        graded = ours.add_submission("alice")
        edited = ours.add_submission("carol", edited=True)
        ours.make_edit_repo(edited, "carol")
        ours.enqueue({"kind": "autograde", "sub_id": graded},
                     {"kind": "autograde", "sub_id": edited})
        for case, username, sub_id in (("graded", "alice", graded), ("edited", "carol", edited)):
            row = ours.wait(sub_id)
            assert row["auto_status"] == "AUTOMATICALLY_GRADED", row["logs"][-2000:]
            same_rows(rows[case][0], row,
                      ignore=("feedback_status",) if case == "graded" else ())
            runs = _runs(ours, sub_id)
            assert runs and all("submit" in r and "--wait" in r for r in runs), runs
            cluster.assert_pod_ran_and_is_gone("autograde", username, sub_id)
        cluster.wait_no_grading_pods()
        # While the cluster and `grader serve` run: every listener of the suite on loopback,
        # the API server's among them.
        pg, rabbit = servers
        assert_listening_on_loopback_only(servers, (pg.port, rabbit.port, cluster.api_port))
    finally:
        ours.restart_worker(grader_executor_lines(ours.binary))

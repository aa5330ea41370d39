//! The warm backend with the real grading tool: a warm run gives the gradebook, outcome and
//! committed files of a cold run (the example course, an endless loop, a crashing tool), the
//! time limit and cancellation kill the job and not its worker, the assignment settings
//! reach the tool, failures read like the local backend's, and the tool's import leaves
//! nothing a fork would share.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader_local::job_file::load_job;
use grader_local::warm::{PoolSettings, WarmBackend, python_of};
use grader_local::{
    Executor, ExecutorConfig, GradingBackend, Job, LocalBackend, Outcome, ProcessGit, Status,
};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// A warm backend for the real tool with `workers` workers, logs in a dir of its own.
async fn warm(convert: &Path, workers: usize) -> (tempfile::TempDir, Arc<WarmBackend>) {
    let work = tempfile::tempdir().unwrap();
    let settings = PoolSettings {
        workers,
        ..PoolSettings::default()
    };
    let backend = support::started_warm_backend(convert, settings, work.path(), 1 << 20).await;
    (work, Arc::new(backend))
}

fn executor(service: &Path, backend: Arc<dyn GradingBackend>, max: Duration) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = max;
    Executor::new(config, Arc::new(ProcessGit::new("git")), backend)
}

/// username -> (score, max_score) from the service dir's `expected.jsonl` (`None` for a
/// submission that cannot be graded).
fn expected_scores(service: &Path) -> BTreeMap<String, Option<(f64, f64)>> {
    std::fs::read_to_string(service.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let score = v["score"]
                .as_f64()
                .map(|s| (s, v["max_score"].as_f64().unwrap()));
            (v["username"].as_str().unwrap().to_string(), score)
        })
        .collect()
}

fn assert_graded(out: &Outcome, user: &str, expected: (f64, f64)) {
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{user}: {:?}\n{}",
        out.error,
        out.logs
    );
    assert_eq!(out.grading_score, Some(expected.0), "{user}");
    assert_eq!(out.max_score, Some(expected.1), "{user}");
}

/// What must be the same whatever backend graded a job.
#[derive(Debug, PartialEq)]
struct Graded {
    status: Status,
    error: Option<String>,
    grading_score: Option<f64>,
    score: Option<f64>,
    max_score: Option<f64>,
    branch: Option<String>,
    gradebook: Option<serde_json::Value>,
    files: BTreeMap<String, String>,
}

/// Grades every job of `service` through `backend`, `concurrency` at a time.
async fn grade_all(
    service: &Path,
    backend: Arc<dyn GradingBackend>,
    concurrency: usize,
) -> BTreeMap<String, (Graded, Outcome)> {
    let exec = Arc::new(executor(service, backend, Duration::from_secs(300)));
    let jobs: Vec<Job> = std::fs::read_to_string(service.join("jobs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| grader_local::job_file::parse_job(l, service, "jobs.jsonl").unwrap())
        .collect();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut runs = tokio::task::JoinSet::new();
    for job in jobs {
        let (exec, gate) = (exec.clone(), gate.clone());
        runs.spawn(async move {
            let _slot = gate.acquire().await.unwrap();
            let out = exec.autograde(&job, CancellationToken::new()).await;
            (job.submission.username.clone(), out)
        });
    }
    let mut graded = BTreeMap::new();
    while let Some(done) = runs.join_next().await {
        let (user, out) = done.unwrap();
        let g = Graded {
            status: out.status,
            error: out.error.clone(),
            grading_score: out.grading_score,
            score: out.score,
            max_score: out.max_score,
            branch: out.branch.clone(),
            gradebook: out.gradebook.clone(),
            files: support::committed_files(service, &user),
        };
        graded.insert(user, (g, out));
    }
    exec.shutdown().await;
    graded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_runs_give_the_gradebooks_and_commits_of_cold_runs() {
    let Some(convert) = support::grader_convert("warm: warm_runs_give_the_gradebooks") else {
        return;
    };
    // Two identical service dirs (make-service-dir.sh is deterministic): the example course,
    // a notebook that loops until the 5 s cell timeout, and one that kills the tool.
    let (cold_dir, warm_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let students = [
        "--students",
        "alice,bob,carol,dave,loop,crash",
        "--cell-timeout",
        "5",
    ];
    support::make_service_dir(cold_dir.path(), &students);
    support::make_service_dir(warm_dir.path(), &students);
    let expected = expected_scores(cold_dir.path());
    assert_eq!(expected, expected_scores(warm_dir.path()));

    let cold = grade_all(
        cold_dir.path(),
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
        2,
    )
    .await;
    let (_work, backend) = warm(&convert, 2).await;
    let pool = backend.pool().unwrap().clone();
    let warm = grade_all(warm_dir.path(), backend.clone(), 2).await;

    assert_eq!(cold.len(), 6);
    for (user, (want, cold_out)) in &cold {
        let (got, warm_out) = &warm[user];
        assert_eq!(cold_out.backend, "local");
        assert_eq!(warm_out.backend, "local-warm", "{user}: {}", warm_out.logs);
        match expected[user] {
            Some(score) => {
                assert_graded(cold_out, user, score);
                assert!(!want.files.is_empty(), "{user}: results are committed");
            }
            None => assert_eq!(
                want.error.as_deref(),
                Some(
                    format!(
                        "grading tool {:?} failed: signal: 9 (SIGKILL)",
                        convert.to_string_lossy()
                    )
                    .as_str()
                ),
                "{user}"
            ),
        }
        assert_eq!(got, want, "{user}: the warm run differs from the cold run");
    }
    // Every job ran on a worker (none fell back), and the crash did not take a worker down.
    let stats = pool.stats();
    assert_eq!(
        (stats.jobs, stats.replaced, stats.failed_starts),
        (6, 0, 0),
        "{stats:?}"
    );
    // Nothing of any job is left: not below the workers, not in the service dir.
    for pid in pool.idle_pids() {
        assert!(
            grader_local::warm::leftovers(pid).is_empty(),
            "below worker {pid}"
        );
    }
    let left = support::strays_under(warm_dir.path());
    assert!(left.is_empty(), "stray processes: {left:?}");
}

/// A loopy submission (never-ending `total_value`) as submission `id` of user `loopy{id}`,
/// with a cell timeout long enough that only `max_grading_time` stops it.
fn loopy_job(service: &Path, id: u64) -> Job {
    let commit = support::commit_student(
        service,
        &format!("loopy{id}"),
        &support::repo_root().join("examples/cs101/special/loop"),
    );
    let mut job = load_job(&service.join("jobs/bob.json")).unwrap();
    job.submission.username = format!("loopy{id}");
    job.submission.id = id;
    job.submission.commit_hash = commit;
    job.assignment.settings.cell_timeout = Some(3600);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_and_cancellation_kill_the_job_and_not_its_worker() {
    let Some(convert) = support::grader_convert("warm: the_time_limit_and_cancellation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &["--students", "bob"]);
    let (_work, backend) = warm(&convert, 1).await;
    let pool = backend.pool().unwrap().clone();
    let worker = pool.idle_pids()[0];
    let exec = executor(service, backend.clone(), Duration::from_secs(8));

    // The time limit.
    let start = Instant::now();
    let out = exec
        .autograde(&loopy_job(service, 900), CancellationToken::new())
        .await;
    assert!(start.elapsed() >= Duration::from_secs(8) && start.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert_eq!(
        out.error.as_deref(),
        Some("grading exceeded max_grading_time of 8s and was killed"),
        "{}",
        out.logs
    );
    assert!(
        out.logs.contains("Autograding"),
        "the tool's log: {}",
        out.logs
    );
    let left = support::strays_under(service);
    assert!(left.is_empty(), "stray processes: {left:?}");
    assert!(grader_local::warm::leftovers(worker).is_empty());

    // Cancellation.
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            cancel.cancel();
        })
    };
    let start = Instant::now();
    let out = exec.autograde(&loopy_job(service, 901), cancel).await;
    canceller.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(out.error.as_deref().unwrap().contains("cancel"), "{out:?}");
    let left = support::strays_under(service);
    assert!(left.is_empty(), "stray processes: {left:?}");

    // The same worker grades the next submission.
    assert_eq!(pool.idle_pids(), vec![worker]);
    let bob = load_job(&service.join("jobs/bob.json")).unwrap();
    let out = executor(service, backend.clone(), Duration::from_secs(300))
        .autograde(&bob, CancellationToken::new())
        .await;
    assert_graded(&out, "bob", expected_scores(service)["bob"].unwrap());
    assert_eq!(pool.idle_pids(), vec![worker]);
    assert_eq!(pool.stats().replaced, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_settings_reach_the_tool() {
    let Some(convert) = support::grader_convert("warm: the_assignment_settings_reach_the_tool")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &["--students", "bob"]);
    // bob's answer plus a file only `allowed_files` (not the gradebook's extra_files) lets
    // through: without ASSIGNMENT_SETTINGS the tool would not copy it to its output.
    let src = tempfile::tempdir().unwrap();
    let bob = support::repo_root().join("examples/cs101/students/bob");
    for f in ["hw1.ipynb", "data.csv"] {
        std::fs::copy(bob.join(f), src.path().join(f)).unwrap();
    }
    std::fs::write(src.path().join("notes.txt"), "my notes\n").unwrap();
    let commit = support::commit_student(service, "noted", src.path());
    let mut job = load_job(&service.join("jobs/bob.json")).unwrap();
    job.submission.username = "noted".into();
    job.submission.id = 77;
    job.submission.commit_hash = commit.clone();
    job.assignment.settings.allowed_files = vec!["*.csv".into(), "*.txt".into()];

    let (_work, backend) = warm(&convert, 1).await;
    let out = executor(service, backend, Duration::from_secs(300))
        .autograde(&job, CancellationToken::new())
        .await;
    assert_eq!(out.backend, "local-warm");
    assert_graded(&out, "noted", expected_scores(service)["bob"].unwrap());
    assert!(
        out.logs
            .contains("Found additional file patterns: ['*.csv', '*.txt']"),
        "{}",
        out.logs
    );
    let files = support::committed_files(service, "noted");
    let branch = format!("submission_{commit}");
    assert!(
        files.contains_key(&format!("{branch}:data.csv")),
        "{:?}",
        files.keys()
    );
    assert!(
        files.contains_key(&format!("{branch}:notes.txt")),
        "{:?}",
        files.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_fails_exactly_like_the_local_backend() {
    let Some(convert) = support::grader_convert("warm: a_failing_tool_fails_like_local") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = support::task(dir.path(), Duration::from_secs(120));
    let (_work, backend) = warm(&convert, 1).await;
    let warm = backend.run(&t, CancellationToken::new()).await.unwrap_err();
    let local = LocalBackend::new(convert.to_string_lossy(), 1 << 20)
        .run(&t, CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        warm.reason,
        format!(
            "grading tool {:?} failed: exit status: 1",
            convert.to_string_lossy()
        )
    );
    assert_eq!(warm, local, "same reason and same logs");
    assert!(warm.logs.contains("is not a directory"), "{}", warm.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_names_the_tool_and_its_version() {
    let Some(convert) = support::grader_convert("warm: the_hello_names_the_tool") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let spec = grader_local::warm::WorkerSpec::for_tool(&convert).unwrap();
    assert_eq!(spec.entry_point, "grader-convert");
    let worker = grader_local::warm::Worker::start(&spec).await.unwrap();
    let hello = worker.hello();
    assert_eq!(hello.tool.as_deref(), Some("grader-service"));
    assert_eq!(hello.tool_version.as_deref(), Some("0.12.5"));
    assert!(hello.subreaper);
    assert!(hello.prestart_kernels, "kernels started ahead by default");
    worker.shutdown().await;
    drop(work);
}

/// `local.warm_prestart_kernels = false` reaches the pool's settings (grader-config's test);
/// from there every worker the pool starts, replacements included, runs without a zygote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_told_not_to_start_kernels_ahead_starts_workers_without() {
    let Some(convert) = support::grader_convert("warm: a_pool_told_not_to_start_kernels_ahead")
    else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let spec = grader_local::warm::WorkerSpec::for_tool(&convert).unwrap();
    let settings = PoolSettings {
        workers: 1,
        prestart_kernels: false,
        ..PoolSettings::default()
    };
    let pool = grader_local::WarmPool::start(spec, settings, work.path())
        .await
        .unwrap();
    for broken in [true, false] {
        let mut lease = pool.checkout().await.unwrap();
        assert!(!lease.worker().hello().prestart_kernels);
        // The first one is given back broken: its replacement must say the same.
        pool.give_back(lease, broken);
    }
    pool.shutdown().await;
}
#[test]
fn importing_the_tool_leaves_no_state_a_fork_would_share() {
    let Some(convert) = support::grader_convert("warm: importing_the_tool_leaves_no_state") else {
        return;
    };
    let python = python_of(&convert).unwrap();
    let check = r#"
import asyncio, threading
from importlib.metadata import entry_points
(ep,) = entry_points(group="console_scripts", name="grader-convert")
ep.load()
from traitlets.config.configurable import SingletonConfigurable
def subclasses(c):
    for s in c.__subclasses__():
        yield s
        yield from subclasses(s)
live = [c.__name__ for c in subclasses(SingletonConfigurable) if c._instance is not None]
assert not live, f"singletons: {live}"
assert threading.active_count() == 1, threading.enumerate()
import zmq
assert getattr(zmq.Context, "_instance", None) is None, "a global zmq context"
assert asyncio.get_event_loop_policy()._local._loop is None, "an asyncio loop"
print("clean")
"#;
    let out = Command::new(python).arg("-c").arg(check).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "clean",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_of_reads_the_interpreter_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            "#!/venv/bin/python\n# -*- coding: utf-8 -*-\nimport re\n",
            Some("/venv/bin/python"),
        ),
        (
            "#! /opt/py/bin/python3.11 -E\nimport sys\n",
            Some("/opt/py/bin/python3.11"),
        ),
        ("#!/usr/bin/env python3\n", Some("python3")),
        ("#!/usr/bin/env -S python3 -u\n", Some("python3")),
        (
            // pip's launcher for interpreter paths too long for a `#!` line
            "#!/bin/sh\n'''exec' \"/very/long/venv/bin/python\" \"$0\" \"$@\"\n' '''\nimport re\n",
            Some("/very/long/venv/bin/python"),
        ),
        ("#!/bin/sh\necho hi\n", None),
        ("import sys\n", None),
        ("", None),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(&format!("s{i}"), text);
        assert_eq!(python_of(&p), want.map(PathBuf::from), "{text:?}");
    }
    assert_eq!(python_of(Path::new("/nonexistent/grader-convert")), None);

    if let Some(convert) = support::grader_convert("warm: python_of the real tool") {
        let python = python_of(&convert).expect("the real tool has a shebang");
        assert!(python.is_file(), "{}", python.display());
        assert!(
            python.to_string_lossy().contains("python"),
            "{}",
            python.display()
        );
    }
}

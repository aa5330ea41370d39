//! The warm backend with the real grading tool: same scores as the tool gives, concurrent runs
//! through one server, the time limit, cancellation, the assignment settings, a dead server,
//! and readable errors. Plus an ignored measurement against the local backend.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader_local::job_file::load_job;
use grader_local::warm::{WarmBackend, WarmError, WarmServer, python_of};
use grader_local::{
    Executor, ExecutorConfig, GradingBackend, LocalBackend, Outcome, ProcessGit, Status,
    process_tree,
};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// A server for the real tool, in its own work dir (not under the service dir, so that the
/// stray-process checks do not see it).
async fn start_server(convert: &Path) -> (tempfile::TempDir, Arc<WarmServer>) {
    let work = tempfile::tempdir().unwrap();
    let (convert, dir) = (convert.to_path_buf(), work.path().to_path_buf());
    let server = tokio::task::spawn_blocking(move || WarmServer::start_for_tool(&convert, &dir))
        .await
        .unwrap()
        .expect("warm server starts");
    (work, Arc::new(server))
}

fn executor(service: &Path, backend: Arc<dyn GradingBackend>, max: Duration) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = max;
    Executor::new(config, Arc::new(ProcessGit::new("git")), backend)
}

/// username -> (score, max_score) from the service dir's `expected.jsonl`.
fn expected_scores(service: &Path) -> HashMap<String, (f64, f64)> {
    std::fs::read_to_string(service.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["username"].as_str().unwrap().to_string(),
                (
                    v["score"].as_f64().unwrap(),
                    v["max_score"].as_f64().unwrap(),
                ),
            )
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
    assert_eq!(out.backend, "local-warm");
    assert_eq!(out.grading_score, Some(expected.0), "{user}");
    assert_eq!(out.max_score, Some(expected.1), "{user}");
}

/// Files committed on `branch` of the autograde repository of `user`.
fn committed(service: &Path, user: &str, branch: &str) -> Vec<String> {
    let repo = service.join(format!("git/cs101/1/autograde/user/{user}"));
    support::git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "ls-tree",
        "-r",
        "--name-only",
        branch,
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Processes whose working directory or command line is under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cwd.starts_with(&needle) || cmd.contains(&needle) {
            found.push(format!("{name}: cwd={cwd} cmd={cmd}"));
        }
    }
    found
}

/// [`processes_under`], waiting a little for killed ones to disappear.
fn strays_under(dir: &Path) -> Vec<String> {
    let mut left = processes_under(dir);
    for _ in 0..30 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = processes_under(dir);
    }
    left
}

/// A loopy submission (never-ending `total_value`) as submission `id` of user `loopy`.
fn loopy_job(service: &Path, id: u64) -> grader_local::Job {
    let commit = support::commit_student(
        service,
        &format!("loopy{id}"),
        &support::repo_root().join("examples/cs101/special/loop"),
    );
    let mut job = load_job(&service.join("jobs/alice.json")).unwrap();
    job.submission.username = format!("loopy{id}");
    job.submission.id = id;
    job.submission.commit_hash = commit;
    job.assignment.settings.cell_timeout = Some(3600);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grades_the_example_course_exactly_four_at_once_through_one_server() {
    let Some(convert) = support::grader_convert("warm: grades_the_example_course_exactly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let (_work, server) = start_server(&convert).await;
    let exec = Arc::new(executor(
        service,
        Arc::new(WarmBackend::new(server.clone(), 1 << 20)),
        Duration::from_secs(300),
    ));
    let expected = expected_scores(service);
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("examples/cs101/expected.json"))
            .unwrap(),
    )
    .unwrap();

    let mut runs = tokio::task::JoinSet::new();
    for user in ["alice", "bob", "carol", "dave"] {
        let job = load_job(&service.join(format!("jobs/{user}.json"))).unwrap();
        let exec = exec.clone();
        runs.spawn(async move {
            (
                user,
                job.clone(),
                exec.autograde(&job, CancellationToken::new()).await,
            )
        });
    }
    let mut seen = 0;
    while let Some(done) = runs.join_next().await {
        let (user, job, out) = done.unwrap();
        let want = expected[user];
        assert_eq!(
            want,
            (
                reference[user]["score"].as_f64().unwrap(),
                reference[user]["max_score"].as_f64().unwrap()
            )
        );
        assert_graded(&out, user, want);
        assert_eq!(out.score, Some(want.0 * job.submission.score_scaling));
        let branch = format!("submission_{}", job.submission.commit_hash);
        assert_eq!(out.branch.as_deref(), Some(branch.as_str()));
        let files = committed(service, user, &branch);
        assert!(files.contains(&"hw1.ipynb".to_string()), "{files:?}");
        assert!(files.contains(&"data.csv".to_string()), "{files:?}");
        seen += 1;
    }
    assert_eq!(seen, 4);
    assert!(server.is_running());
    assert!(
        process_tree::descendants(server.pid()).is_empty(),
        "every run was reaped"
    );
    let logs: Vec<_> = std::fs::read_dir(server.socket().parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .collect();
    assert!(logs.is_empty(), "run logs are removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_notebook_is_killed_at_max_grading_time_and_on_cancel() {
    let Some(convert) = support::grader_convert("warm: a_looping_notebook_is_killed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let (_work, server) = start_server(&convert).await;
    let backend = Arc::new(WarmBackend::new(server.clone(), 1 << 20));
    let exec = executor(service, backend.clone(), Duration::from_secs(8));

    // The time limit.
    let start = Instant::now();
    let out = exec
        .autograde(&loopy_job(service, 900), CancellationToken::new())
        .await;
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(start.elapsed() >= Duration::from_secs(8));
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
    let left = strays_under(service);
    assert!(left.is_empty(), "stray processes: {left:?}");
    assert!(process_tree::descendants(server.pid()).is_empty());

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
    let left = strays_under(service);
    assert!(left.is_empty(), "stray processes: {left:?}");

    // The server is still healthy.
    assert!(server.is_running());
    let bob = load_job(&service.join("jobs/bob.json")).unwrap();
    let out = executor(service, backend, Duration::from_secs(300))
        .autograde(&bob, CancellationToken::new())
        .await;
    assert_graded(&out, "bob", expected_scores(service)["bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_settings_reach_the_tool() {
    let Some(convert) = support::grader_convert("warm: the_assignment_settings_reach_the_tool")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
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

    let (_work, server) = start_server(&convert).await;
    let out = executor(
        service,
        Arc::new(WarmBackend::new(server, 1 << 20)),
        Duration::from_secs(300),
    )
    .autograde(&job, CancellationToken::new())
    .await;
    assert_graded(&out, "noted", expected_scores(service)["bob"]);
    assert!(
        out.logs
            .contains("Found additional file patterns: ['*.csv', '*.txt']"),
        "{}",
        out.logs
    );
    let files = committed(service, "noted", &format!("submission_{commit}"));
    assert!(files.contains(&"data.csv".to_string()), "{files:?}");
    assert!(files.contains(&"notes.txt".to_string()), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_fails_exactly_like_the_local_backend() {
    let Some(convert) = support::grader_convert("warm: a_failing_tool_fails_like_local") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = support::task(dir.path(), Duration::from_secs(120));
    let (_work, server) = start_server(&convert).await;
    let warm = WarmBackend::new(server, 1 << 20)
        .run(&t, CancellationToken::new())
        .await
        .unwrap_err();
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
async fn a_dead_server_fails_runs_readably_and_leaves_nothing_behind() {
    let Some(convert) = support::grader_convert("warm: a_dead_server_fails_runs_readably") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let (_work, server) = start_server(&convert).await;
    let backend = Arc::new(WarmBackend::new(server.clone(), 1 << 20));
    let exec = Arc::new(executor(service, backend.clone(), Duration::from_secs(120)));

    // The server dies in the middle of a run: the run fails and its orphaned tree is killed.
    let job = loopy_job(service, 950);
    let running = {
        let exec = exec.clone();
        tokio::spawn(async move { exec.autograde(&job, CancellationToken::new()).await })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = processes_under(service);
    eprintln!("during the run: {during:#?}");
    assert!(
        during.len() >= 2,
        "the check sees the run and its kernel: {during:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the run ends when the server dies")
        .unwrap();
    let error = out.error.unwrap();
    eprintln!("server died: {error}");
    assert!(
        error.contains("warm grading server ended during the run"),
        "{error}"
    );
    let left = strays_under(service);
    assert!(left.is_empty(), "stray processes: {left:?}");
    // The socket closes while the process exits, a moment before it can be reaped.
    let reaped_by = Instant::now() + Duration::from_secs(5);
    while server.is_running() && Instant::now() < reaped_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!server.is_running());

    // Later runs fail at once, saying so.
    let bob = load_job(&service.join("jobs/bob.json")).unwrap();
    let out = exec.autograde(&bob, CancellationToken::new()).await;
    let error = out.error.unwrap();
    eprintln!("server dead: {error}");
    assert!(
        error.contains("warm grading server is not running") && error.contains("restarted"),
        "{error}"
    );
}

#[test]
fn a_server_that_cannot_start_gives_a_readable_error() {
    let work = tempfile::tempdir().unwrap();
    let err = WarmServer::start(Path::new("/nonexistent/python"), work.path()).unwrap_err();
    assert!(matches!(err, WarmError::Spawn { .. }), "{err:?}");
    let msg = err.to_string();
    eprintln!("missing python: {msg}");
    assert!(
        msg.contains("could not start the warm grading server with python /nonexistent/python")
            && msg.contains("No such file or directory"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the private dir is removed"
    );

    // A work dir too deep for a Unix socket address.
    let deep = work.path().join("d".repeat(120));
    let err = WarmServer::start(Path::new("/nonexistent/python"), &deep).unwrap_err();
    assert!(matches!(err, WarmError::SocketPath(_)), "{err:?}");
    std::fs::remove_dir(&deep).unwrap(); // only the (empty) work dir itself is left

    // A python without the tool: the import error is reported.
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
    {
        let err = WarmServer::start(Path::new("python3"), work.path()).unwrap_err();
        let msg = err.to_string();
        eprintln!("python without the tool: {msg}");
        if !msg.contains("no console script") {
            panic!("{msg}");
        }
        assert!(
            msg.contains("did not become ready: it exited (exit status: 1)"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    }

    // A tool script with no interpreter line.
    let script = support::fake_tool(work.path(), "tool", "true");
    std::fs::write(&script, "no shebang\n").unwrap();
    let err = WarmServer::start_for_tool(&script, work.path()).unwrap_err();
    assert!(
        err.to_string().contains("is not a `#!` interpreter line"),
        "{err}"
    );
}

/// The fork server relies on importing the tool creating nothing a forked child would share
/// with the server or its siblings: no threads, no traitlets singletons (the Jupyter apps are
/// singletons), no zmq context, no asyncio loop. Guards that assumption across tool upgrades.
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn grade_all(
    exec: Arc<Executor>,
    jobs: Vec<grader_local::Job>,
    concurrency: usize,
    expected: &HashMap<String, (f64, f64)>,
) -> f64 {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let start = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for job in jobs {
        let (exec, gate) = (exec.clone(), gate.clone());
        runs.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let out = exec.autograde(&job, CancellationToken::new()).await;
            (job.submission.username, out)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (user, out) = done.unwrap();
        assert!(out.status.is_success(), "{user}: {:?}", out.error);
        assert_eq!(out.grading_score, Some(expected[&user].0), "{user}");
    }
    start.elapsed().as_secs_f64()
}

/// `cargo test -p grader-local --test warm_backend -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run by hand"]
async fn measure_local_vs_warm() {
    let Some(convert) = support::grader_convert("warm: measure") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &["--copies", "4"]);
    let expected = expected_scores(service);
    let started = Instant::now();
    let (_work, server) = start_server(&convert).await;
    let server_start = started.elapsed().as_secs_f64();
    let local: Arc<dyn GradingBackend> =
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20));
    let warm: Arc<dyn GradingBackend> = Arc::new(WarmBackend::new(server, 1 << 20));
    let local_exec = Arc::new(executor(service, local, Duration::from_secs(300)));
    let warm_exec = Arc::new(executor(service, warm, Duration::from_secs(300)));

    let bob = load_job(&service.join("jobs/bob.json")).unwrap();
    let (mut local_one, mut warm_one) = (vec![], vec![]);
    let (mut local_tool, mut warm_tool) = (vec![], vec![]);
    for _ in 0..5 {
        for (exec, total, tool) in [
            (&local_exec, &mut local_one, &mut local_tool),
            (&warm_exec, &mut warm_one, &mut warm_tool),
        ] {
            let t = Instant::now();
            let out = exec.autograde(&bob, CancellationToken::new()).await;
            total.push(t.elapsed().as_secs_f64());
            tool.push(out.timings.grading_ms / 1000.0);
            assert_eq!(out.grading_score, Some(expected["bob"].0));
        }
    }
    let jobs: Vec<_> = std::fs::read_to_string(service.join("jobs.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            grader_local::job_file::parse_job(l, service, &format!("jobs.jsonl:{}", i + 1)).unwrap()
        })
        .collect();
    assert_eq!(jobs.len(), 16);
    let local_all = grade_all(local_exec, jobs.clone(), 4, &expected).await;
    let warm_all = grade_all(warm_exec, jobs, 4, &expected).await;
    println!("warm server start (import + ready): {server_start:.2}s");
    println!(
        "one autograde of bob, median of 5: local {:.2}s (tool {:.2}s), warm {:.2}s (tool {:.2}s)",
        median(local_one),
        median(local_tool),
        median(warm_one),
        median(warm_tool)
    );
    println!(
        "16 submissions at concurrency 4: local {local_all:.2}s, warm {warm_all:.2}s (cores: {})",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

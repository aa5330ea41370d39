//! The warm worker pool with a stand-in tool (`tests/standin/standin.py`, run by the system
//! `python3`): protocol, isolation between jobs, time limits that kill the job and not the
//! worker, crashes of a job and of a worker, recycling, health checks, start failures and the
//! fallback to a plain process.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use grader_local::GradingBackend;
use grader_local::warm::{
    JobRequest, PoolSettings, RunEnd, WarmBackend, WarmPool, Worker, WorkerSpec,
};
use tokio_util::sync::CancellationToken;

/// The system python, or a loud skip (a failure under CI).
fn python(test: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !p.is_empty() {
        return Some(PathBuf::from(p));
    }
    assert!(
        !support::under_ci(),
        "{test}: python3 not found; CI=true, so this is a failure"
    );
    eprintln!("\n===== SKIPPED {test}: python3 not found =====\n");
    None
}

fn standin_dir() -> PathBuf {
    support::repo_root().join("grader-local/tests/standin")
}

fn spec(python: &Path, entry_point: &str) -> WorkerSpec {
    let mut env: Vec<(String, OsString)> = grader_local::passed_env()
        .filter(|(k, _)| *k != "PYTHONPATH")
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("PYTHONPATH".into(), standin_dir().into_os_string()));
    WorkerSpec {
        python: python.to_path_buf(),
        entry_point: entry_point.into(),
        tool_label: "standin".into(),
        env,
        start_timeout: Duration::from_secs(30),
        prestart_kernels: true,
    }
}

fn settings(workers: usize) -> PoolSettings {
    PoolSettings {
        workers,
        ..PoolSettings::default()
    }
}

/// A job with `argv` in `dir` (created), its log at `dir/log` (created empty).
fn job(dir: &Path, argv: &[&str]) -> JobRequest {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("log");
    std::fs::write(&log, "").unwrap();
    let env = BTreeMap::from([
        ("ASSIGNMENT_SETTINGS", "{\"cell_timeout\": 7}".to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ]);
    JobRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env,
        cwd: dir.to_str().unwrap().into(),
        log_path: log.to_str().unwrap().into(),
        log_cap: 1 << 20,
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 2..].chars().next();
            state != Some('Z')
        })
        .unwrap_or(false)
}

fn gone_soon(pid: u32) -> bool {
    for _ in 0..50 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs `argv` in `dir` with a 30 s limit; the exit status as it prints.
async fn exit_of(w: &mut Worker, dir: &Path, argv: &[&str]) -> String {
    match run(w, &job(dir, argv), Duration::from_secs(30)).await {
        RunEnd::Exited { status, .. } => status.to_string(),
        other => panic!("{other:?}"),
    }
}

async fn run(w: &mut Worker, job: &JobRequest, max: Duration) -> RunEnd {
    w.run(job, max, &CancellationToken::new())
        .await
        .expect("the worker stays usable")
}

#[tokio::test]
async fn a_worker_says_hello_and_runs_jobs_as_fresh_isolated_children() {
    let Some(py) = python("a_worker_says_hello") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&spec(&py, "standin:main")).await.unwrap();
    let hello = w.hello().clone();
    assert!(hello.ok && hello.v == 2, "{hello:?}");
    assert_eq!(hello.pid, Some(w.pid()));
    assert_eq!(hello.tool.as_deref(), Some("standin"));
    assert!(hello.python.is_some() && hello.subreaper, "{hello:?}");

    // A job that changes module state, a library function and the environment ...
    let tamper = job(&tmp.path().join("t"), &["tamper"]);
    let end = run(&mut w, &tamper, Duration::from_secs(30)).await;
    assert!(
        matches!(end, RunEnd::Exited { status, strays: 0 } if status.success()),
        "{end:?}"
    );
    // ... does not change what the next job runs or sees.
    let dir = tmp.path().join("r");
    let report = dir.join("report.json");
    let r = job(&dir, &["report", report.to_str().unwrap()]);
    let end = run(&mut w, &r, Duration::from_secs(30)).await;
    assert!(
        matches!(end, RunEnd::Exited { status, .. } if status.success()),
        "{end:?}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(info["tampered"], serde_json::json!([]), "{info}");
    // Signal handling of a freshly started python; not traceable by other jobs' code.
    let fresh = std::process::Command::new(&py)
        .arg("-c")
        .arg(
            "import signal; print({n: str(signal.getsignal(getattr(signal, n))) \
             for n in ('SIGINT', 'SIGTERM', 'SIGCHLD', 'SIGPIPE')})",
        )
        .output()
        .unwrap();
    let fresh = String::from_utf8_lossy(&fresh.stdout).replace('\'', "\"");
    let fresh: serde_json::Value = serde_json::from_str(fresh.trim()).unwrap();
    assert_eq!(info["signals"], fresh);
    assert_eq!(info["dumpable"], 0);
    assert_eq!(info["json_dumps_patched"], false);
    let env: BTreeMap<String, String> = serde_json::from_value(info["env"].clone()).unwrap();
    let expected: BTreeMap<String, String> = r
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(env, expected, "exactly the job's environment");
    assert_eq!(
        info["argv"],
        serde_json::json!(["standin", "report", report.to_str().unwrap()])
    );
    assert_eq!(info["cwd"], dir.to_str().unwrap());
    // Own session and process group, a child of the worker.
    let pid = info["pid"].as_u64().unwrap();
    assert_eq!(info["ppid"].as_u64(), Some(u64::from(w.pid())));
    assert_eq!(info["pgid"].as_u64(), Some(pid));
    assert_eq!(info["sid"].as_u64(), Some(pid));
    // Nothing of the worker's: stdin is /dev/null, stdout and stderr one pipe to the job's
    // log, and the only other descriptor is the report being written.
    let fds: BTreeMap<String, String> = serde_json::from_value(info["fds"].clone()).unwrap();
    assert_eq!(fds["0"], "/dev/null", "{fds:?}");
    assert!(fds["1"].starts_with("pipe:"), "{fds:?}");
    assert_eq!(fds["2"], fds["1"]);
    let others: Vec<_> = fds
        .iter()
        .filter(|(fd, target)| {
            !["0", "1", "2"].contains(&fd.as_str()) && **target != report.to_str().unwrap()
        })
        .collect();
    assert!(
        others.is_empty(),
        "descriptors the job should not have: {others:?}"
    );
    let log = std::fs::read_to_string(&r.log_path).unwrap();
    assert!(
        log.contains("standin report on stdout") && log.contains("standin report on stderr"),
        "{log}"
    );
    assert!(!alive(pid as u32), "the job's child is reaped");
    assert_eq!(w.jobs(), 2);
    w.shutdown().await;
}

#[tokio::test]
async fn exit_codes_and_crashes_of_a_job_are_reported_and_the_worker_survives() {
    let Some(py) = python("exit_codes_and_crashes") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&spec(&py, "standin:main")).await.unwrap();
    assert_eq!(
        exit_of(&mut w, &tmp.path().join("a"), &["exit", "3"]).await,
        "exit status: 3"
    );
    assert_eq!(
        exit_of(&mut w, &tmp.path().join("b"), &["crash"]).await,
        "signal: 11 (SIGSEGV)"
    );
    assert!(
        w.exited().is_none(),
        "a crashing job does not take the worker with it"
    );
    assert_eq!(
        exit_of(&mut w, &tmp.path().join("c"), &["exit", "0"]).await,
        "exit status: 0"
    );
    w.shutdown().await;
}

#[tokio::test]
async fn the_time_limit_and_cancellation_kill_the_job_tree_and_not_the_worker() {
    let Some(py) = python("the_time_limit_and_cancellation") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&spec(&py, "standin:main")).await.unwrap();
    let worker_pid = w.pid();
    // A job that sleeps with a grandchild in a session of its own, like a Jupyter kernel.
    let end = run(
        &mut w,
        &job(&tmp.path().join("a"), &["sleep-tree"]),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(end, RunEnd::TimedOut);
    assert!(no_leftovers(worker_pid), "the job's tree is gone");

    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let end = w
        .run(
            &job(&tmp.path().join("b"), &["sleep-tree"]),
            Duration::from_secs(60),
            &cancel,
        )
        .await
        .unwrap();
    assert_eq!(end, RunEnd::Cancelled);
    assert!(no_leftovers(worker_pid), "the cancelled job's tree is gone");
    assert!(
        w.exited().is_none() && w.pid() == worker_pid,
        "the same worker lives on"
    );
    assert_eq!(
        exit_of(&mut w, &tmp.path().join("c"), &["exit", "0"]).await,
        "exit status: 0"
    );
    w.shutdown().await;
    assert!(gone_soon(worker_pid), "shutdown ends the worker");
}

#[tokio::test]
async fn what_a_job_leaves_behind_is_killed_before_it_is_reported() {
    let Some(py) = python("what_a_job_leaves_behind") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&spec(&py, "standin:main")).await.unwrap();
    let pids = tmp.path().join("pids.json");
    let end = run(
        &mut w,
        &job(&tmp.path().join("a"), &["stray", pids.to_str().unwrap()]),
        Duration::from_secs(30),
    )
    .await;
    let RunEnd::Exited { status, strays } = end else {
        panic!("{end:?}")
    };
    assert!(status.success());
    assert_eq!(
        strays, 2,
        "one stray in the job's group, one in its own session"
    );
    let pids: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(&pids).unwrap()).unwrap();
    for pid in pids {
        assert!(!alive(pid), "stray {pid} is dead when the job is reported");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_jobs_on_separate_workers_and_replaces_a_killed_one() {
    let Some(py) = python("the_pool_runs_jobs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pool = WarmPool::start(spec(&py, "standin:main"), settings(2), tmp.path())
        .await
        .unwrap();
    let mut idle = pool.idle_pids();
    idle.sort();
    assert_eq!(idle.len(), 2, "both workers started up front");

    // Two jobs at once take both workers; a third waits for one of them.
    assert_eq!(pool.busy(), 0);
    let mut a = pool.checkout().await.unwrap();
    assert_eq!((pool.busy(), pool.idle_pids().len()), (1, 1));
    let mut b = pool.checkout().await.unwrap();
    assert_eq!((pool.busy(), pool.idle_pids().len()), (2, 0));
    let mut busy = vec![a.worker().pid(), b.worker().pid()];
    busy.sort();
    assert_eq!(busy, idle);
    let waiting = tokio::time::timeout(Duration::from_millis(200), pool.checkout()).await;
    assert!(waiting.is_err(), "no third worker");
    pool.give_back(b, false);
    assert_eq!((pool.busy(), pool.idle_pids().len()), (1, 1));
    let c = pool.checkout().await.unwrap();
    pool.give_back(c, false);

    // A job that kills its worker fails that job, and the pool replaces the worker.
    let killed = a.worker().pid();
    let fault = a
        .worker()
        .run(
            &job(&tmp.path().join("k"), &["kill-worker"]),
            Duration::from_secs(30),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(fault.started, "{fault}");
    assert!(
        fault.detail.contains(&format!("pid {killed}")) && fault.detail.contains("exited"),
        "{fault}"
    );
    pool.give_back(a, true);
    for _ in 0..100 {
        if pool.idle_pids().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = pool.idle_pids();
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&killed));
    let leftovers = support::strays_under(&tmp.path().join("k"));
    assert!(
        leftovers.is_empty(),
        "the job of the killed worker was killed too: {leftovers:?}"
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.started, stats.replaced, stats.jobs),
        (3, 1, 3),
        "{stats:?}"
    );
    pool.shutdown().await;
    for pid in now {
        assert!(gone_soon(pid), "worker {pid} exited on shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_recycled_after_k_jobs_and_when_their_memory_grows() {
    let Some(py) = python("workers_are_recycled") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let by_jobs = PoolSettings {
        recycle_after_jobs: 2,
        ..settings(1)
    };
    let pool = WarmPool::start(spec(&py, "standin:main"), by_jobs, tmp.path())
        .await
        .unwrap();
    let mut pids = vec![];
    for k in 0..5 {
        let mut lease = pool.checkout().await.unwrap();
        pids.push(lease.worker().pid());
        run(
            lease.worker(),
            &job(&tmp.path().join(format!("j{k}")), &["exit", "0"]),
            Duration::from_secs(30),
        )
        .await;
        pool.give_back(lease, false);
    }
    assert!(pids[0] == pids[1] && pids[2] == pids[3], "{pids:?}");
    assert!(pids[1] != pids[2] && pids[3] != pids[4], "{pids:?}");
    assert_eq!(pool.stats().recycled, 2);
    pool.shutdown().await;

    // `growing` makes its worker 64 MiB bigger right after the import.
    let by_memory = PoolSettings {
        max_rss_growth: 32 * 1024 * 1024,
        ..settings(1)
    };
    let pool = WarmPool::start(spec(&py, "growing:main"), by_memory, tmp.path())
        .await
        .unwrap();
    let mut lease = pool.checkout().await.unwrap();
    let first = lease.worker().pid();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let growth = lease.worker().rss_growth().unwrap();
    assert!(growth > 32 * 1024 * 1024, "grew by {growth}");
    run(
        lease.worker(),
        &job(&tmp.path().join("m"), &["x"]),
        Duration::from_secs(30),
    )
    .await;
    pool.give_back(lease, false);
    let mut lease = pool.checkout().await.unwrap();
    assert_ne!(lease.worker().pid(), first, "recycled on memory growth");
    assert_eq!(pool.stats().recycled, 1);
    pool.give_back(lease, false);
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hanging_idle_worker_is_replaced_before_it_gets_a_job() {
    let Some(py) = python("a_dead_or_hanging_idle_worker") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = PoolSettings {
        ping_after_idle: Duration::ZERO,
        ping_timeout: Duration::from_millis(300),
        ..settings(1)
    };
    let pool = WarmPool::start(spec(&py, "standin:main"), s, tmp.path())
        .await
        .unwrap();
    let first = pool.idle_pids()[0];
    // Stopped: alive, but does not answer.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let mut lease = pool.checkout().await.unwrap();
    let second = lease.worker().pid();
    assert_ne!(second, first);
    assert!(gone_soon(first), "the hanging worker was killed");
    pool.give_back(lease, false);
    // Killed while idle.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut lease = pool.checkout().await.unwrap();
    assert!(![first, second].contains(&lease.worker().pid()));
    assert_eq!(
        exit_of(lease.worker(), &tmp.path().join("a"), &["exit", "0"]).await,
        "exit status: 0"
    );
    pool.give_back(lease, false);
    assert_eq!(pool.stats().replaced, 2);
    pool.shutdown().await;
}

#[tokio::test]
async fn workers_that_cannot_start_say_why() {
    let Some(py) = python("workers_that_cannot_start") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let e = Worker::start(&spec(&py, "no_such_module:main"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no_such_module") && e.contains("did not become ready"),
        "{e}"
    );
    let e = Worker::start(&spec(&py, "not-a-console-script"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no console script 'not-a-console-script'"),
        "{e}"
    );
    let e = Worker::start(&spec(Path::new("/nonexistent/python"), "standin:main"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/python"), "{e}");

    // A "python" that speaks another protocol version.
    let fake = support::fake_tool(
        tmp.path(),
        "python-v2",
        r#"read line; echo '{"event":"hello","v":3,"ok":true,"pid":1}'; sleep 5"#,
    );
    let e = Worker::start(&spec(&fake, "standin:main"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("protocol version 3") && e.contains("speaks 2"),
        "{e}"
    );
    // One that never says hello.
    let mute = support::fake_tool(tmp.path(), "python-mute", "sleep 30");
    let mut s = spec(&mute, "standin:main");
    s.start_timeout = Duration::from_millis(300);
    let e = Worker::start(&s).await.unwrap_err().to_string();
    assert!(e.contains("no hello within"), "{e}");
    assert!(
        support::processes_with(mute.to_str().unwrap()).is_empty(),
        "the mute worker was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_workers_the_backend_runs_the_tool_as_a_plain_process() {
    let tmp = tempfile::tempdir().unwrap();
    // A shell script: no python on its `#!` line, so no worker can run it.
    let tool = support::fake_tool(tmp.path(), "tool", r#"echo "plain run $1"; exit 0"#);
    let backend = WarmBackend::start(
        &tool,
        settings(2),
        Duration::from_secs(30),
        tmp.path(),
        4096,
    )
    .await;
    assert!(backend.pool().is_none());
    let why = backend.unavailable().unwrap().to_string();
    assert!(
        why.contains(tool.to_str().unwrap()) && why.contains("#!"),
        "{why}"
    );
    let task = support::task(&tmp.path().join("job"), Duration::from_secs(30));
    let out = backend.run(&task, CancellationToken::new()).await.unwrap();
    assert!(
        out.logs.starts_with("grader: no warm grading worker ("),
        "{}",
        out.logs
    );
    assert!(out.logs.contains("plain run autograde"), "{}", out.logs);
    assert_eq!(backend.name(), "local-warm");
}

/// A stand-in tool written for the tests below (module `probe`, entry point `probe:main`):
/// `probe REPORT PID...` writes what the job's child can see of its privileges and of the
/// environments of processes PID...; `autograde ...` (how a backend runs the tool) writes
/// [`flood`] to stdout and stderr.
const PROBE: &str = r#"import json, os, subprocess, sys

def flood():
    os.write(1, b"HEAD OF THE LOG\n")
    for i in range(800):
        os.write(1 + i % 2, b"%06d" % i + b"y" * 65529 + b"\n")
    os.write(2, b"TAIL OF THE LOG\n")

def probe(report, pids):
    with open("/proc/self/status") as f:
        status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    environ = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ[pid] = f"readable, {len(f.read())} bytes"
        except OSError as e:
            environ[pid] = f"unreadable ({e.strerror})"
    child_env = subprocess.run(["env", "-0"], capture_output=True).stdout.decode()
    info = {
        "euid": os.geteuid(),
        "status": {k: v.strip() for k, v in status.items() if k.startswith(("Cap", "NoNewPrivs"))},
        "environ": environ,
        "child_env": sorted(e for e in child_env.split("\0") if e),
    }
    with open(report, "w") as f:
        json.dump(info, f)

def main():
    if sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3:])
    else:
        flood()
"#;

/// What [`PROBE`]'s `flood` writes.
fn flood() -> Vec<u8> {
    let mut out = b"HEAD OF THE LOG\n".to_vec();
    for i in 0..800 {
        out.extend_from_slice(format!("{i:06}").as_bytes());
        out.extend(std::iter::repeat_n(b'y', 65529));
        out.push(b'\n');
    }
    out.extend_from_slice(b"TAIL OF THE LOG\n");
    out
}

/// A worker spec for [`PROBE`], written to `dir`. The worker runs the interpreter itself,
/// not a launcher in front of it (such as pyenv's, which adds variables of its own), like the
/// python of a virtualenv.
fn probe_spec(py: &Path, dir: &Path) -> WorkerSpec {
    std::fs::write(dir.join("probe.py"), PROBE).unwrap();
    let real = std::process::Command::new(py)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let real = PathBuf::from(String::from_utf8_lossy(&real.stdout).trim());
    let mut s = spec(&real, "probe:main");
    for (k, v) in &mut s.env {
        if k == "PYTHONPATH" {
            *v = dir.as_os_str().to_owned();
        }
    }
    s
}

#[tokio::test]
async fn a_jobs_child_has_no_privileges_and_cannot_read_its_worker_or_grader() {
    let Some(py) = python("a_jobs_child_has_no_privileges") else {
        return;
    };
    // This process stands for grader, which makes itself non-dumpable.
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
    assert_eq!(
        unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) },
        0
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&probe_spec(&py, tmp.path())).await.unwrap();
    let (worker, grader) = (w.pid().to_string(), std::process::id().to_string());
    let report = tmp.path().join("report.json");
    let j = job(
        &tmp.path().join("j"),
        &["probe", report.to_str().unwrap(), &worker, &grader],
    );
    let end = run(&mut w, &j, Duration::from_secs(30)).await;
    assert!(
        matches!(end, RunEnd::Exited { status, .. } if status.success()),
        "{end:?}: {}",
        std::fs::read_to_string(&j.log_path).unwrap()
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let status = &info["status"];
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    let mut sets = vec!["CapInh", "CapPrm", "CapEff", "CapAmb"];
    if info["euid"] == 0 {
        sets.push("CapBnd"); // root's bounding set is what exec would give it back
    }
    for set in sets {
        assert_eq!(status[set], "0000000000000000", "{set}: {status}");
    }
    for (who, pid) in [("the worker", &worker), ("grader", &grader)] {
        let seen = info["environ"][pid].as_str().unwrap();
        assert!(
            seen.starts_with("unreadable"),
            "{who}'s environ from a job: {seen}"
        );
    }
    // What the job's programs (kernels) get: exactly the job's environment.
    let expected: Vec<String> = j.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(info["child_env"], serde_json::json!(expected));
    // The worker itself holds only variables the local backend passes on.
    let environ = std::fs::read(format!("/proc/{worker}/environ")).unwrap();
    for var in environ.split(|b| *b == 0).filter(|v| !v.is_empty()) {
        let name = String::from_utf8_lossy(var.split(|b| *b == b'=').next().unwrap());
        assert!(
            grader_local::PASSED_ENV.contains(&name.as_ref()),
            "the worker's environment holds {name}"
        );
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_writing_50_mb_keeps_its_log_within_the_cap_on_disk() {
    let Some(py) = python("a_job_writing_50_mb") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let cap = 64 * 1024;
    let pool = WarmPool::start(probe_spec(&py, tmp.path()), settings(1), &work)
        .await
        .unwrap();
    let backend = WarmBackend::with_pool(
        pool,
        grader_local::LocalBackend::new("probe", cap),
        "probe",
        cap,
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, work) = (stop.clone(), work.clone());
        std::thread::spawn(move || {
            let mut biggest = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in walkdir::WalkDir::new(&work).into_iter().flatten() {
                    if let Ok(m) = entry.metadata()
                        && m.is_file()
                    {
                        biggest = biggest.max(m.len());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            biggest
        })
    };
    let task = support::task(&tmp.path().join("job"), Duration::from_secs(60));
    let out = backend.run(&task, CancellationToken::new()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let biggest = watcher.join().unwrap();
    let out = out.unwrap();
    assert!(
        biggest <= cap as u64,
        "the job's log reached {biggest} bytes on disk (cap {cap})"
    );
    // Head, marker and tail exactly as the plain backend's LogBuffer keeps them.
    let mut expected = grader_local::logs::LogBuffer::new(cap);
    expected.push(&flood());
    assert_eq!(out.logs, expected.into_string());
    backend.shutdown().await;
}

/// True once the worker has no descendant but its waiting next-job child, waiting up to 5 s
/// for killed processes to be reaped (the kernel takes a moment on a loaded machine).
fn no_leftovers(worker: u32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if grader_local::warm::leftovers(worker).is_empty() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

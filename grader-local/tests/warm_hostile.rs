//! Hostile notebooks on warm workers, with the real grading tool (issue 12): a notebook cannot
//! read grader's environment through `/proc`, a daemon it forks dies with its job and cannot
//! touch the next one, it can neither trace nor stall the next job's waiting child and kernel
//! zygote, output it holds open does not extend its job, what it writes is bounded on disk,
//! and a grader killed with SIGKILL leaves none of its workers or their jobs behind.
//!
//! Where a test needs a grader process of its own (one whose environment holds a secret, or
//! one to kill), it runs this test binary again with [`CHILD`] set: that run's
//! [`grader_child_process_helper`] is the grader.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grader_local::job_file::load_job;
use grader_local::{
    Executor, ExecutorConfig, Job, Outcome, PoolSettings, ProcessGit, Status, WarmBackend,
    process_tree,
};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// Set (to the JSON of a [`ChildConfig`]) in the environment of a re-executed test binary
/// whose [`grader_child_process_helper`] plays grader.
const CHILD: &str = "GRADER_WARM_HOSTILE_CHILD";

/// Makes this process stand for `grader`, which makes itself non-dumpable at start.
fn stand_for_grader() {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and touches no memory of ours.
    let r = unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_DUMPABLE");
}

/// A warm backend for the real tool with one worker, its logs under `work`.
async fn warm(convert: &Path, work: &Path, log_cap: usize) -> Arc<WarmBackend> {
    let settings = PoolSettings {
        workers: 1,
        ..PoolSettings::default()
    };
    Arc::new(support::started_warm_backend(convert, settings, work, log_cap).await)
}

fn executor(service: &Path, backend: Arc<WarmBackend>, max: Duration) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = max;
    Executor::new(config, Arc::new(ProcessGit::new("git")), backend)
}

/// alice's expected (score, max_score) in a service dir made by `make-service-dir.sh`.
fn alice_score(service: &Path) -> (f64, f64) {
    let expected = std::fs::read_to_string(service.join("expected.jsonl")).unwrap();
    let line = expected
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["username"] == "alice")
        .unwrap();
    (
        line["score"].as_f64().unwrap(),
        line["max_score"].as_f64().unwrap(),
    )
}

fn assert_alice_graded(out: &Outcome, service: &Path) {
    let (score, max) = alice_score(service);
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{:?}\n{}",
        out.error,
        out.logs
    );
    assert_eq!(out.backend, "local-warm");
    assert_eq!((out.grading_score, out.max_score), (Some(score), Some(max)));
}

/// Whether `pid` is a live process (a zombie is dead for our purposes).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != "Z")
}

/// The state and start time of `pid`, from `/proc/{pid}/stat`.
fn stat(pid: u32) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some((fields.first()?.to_string(), fields.get(19)?.parse().ok()?))
}

/// Waits up to `within` for `path` to exist; its content, trimmed.
fn wait_for_file(path: &Path, within: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text.trim().to_string());
        }
        if start.elapsed() >= within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Python that double-forks a daemon in a session of its own; the daemon writes its pid to
/// `{marks}/{name}.pid` (atomically) and runs `body` (indented by 8).
fn daemon_code(marks: &Path, name: &str, body: &str) -> String {
    let marks = marks.display();
    format!(
        r#"import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open("{marks}/{name}.tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename("{marks}/{name}.tmp", "{marks}/{name}.pid")
{body}
        os._exit(0)
    os._exit(0)
"#
    )
}

/// What a re-executed test binary grades (see [`grader_child_process_helper`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ChildConfig {
    convert: PathBuf,
    service: PathBuf,
    work: PathBuf,
    user: String,
    id: u64,
    commit: String,
    max_secs: u64,
    /// Where the outcome is written as JSON.
    outcome: PathBuf,
}

/// Not a test of its own: in a test binary re-executed with [`CHILD`] set, this is a grader
/// (non-dumpable, like `grader`) that grades one job on a warm worker and writes its outcome.
/// Without [`CHILD`] it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grader_child_process_helper() {
    let Ok(config) = std::env::var(CHILD) else {
        return;
    };
    let c: ChildConfig = serde_json::from_str(&config).unwrap();
    stand_for_grader();
    let mut job = load_job(&c.service.join("jobs/alice.json")).unwrap();
    job.submission.username = c.user.clone();
    job.submission.id = c.id;
    job.submission.commit_hash = c.commit.clone();
    let backend = warm(&c.convert, &c.work, 1 << 20).await;
    let exec = executor(&c.service, backend, Duration::from_secs(c.max_secs));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    exec.shutdown().await;
    std::fs::write(&c.outcome, serde_json::to_vec(&out).unwrap()).unwrap();
}

/// Starts this test binary again as a grader for `job` (see [`grader_child_process_helper`]),
/// with `env` added to its environment; its output goes to `{dir}/child.log`.
fn spawn_grader(
    convert: &Path,
    service: &Path,
    dir: &Path,
    job: &Job,
    max_secs: u64,
    env: &[(&str, &str)],
) -> std::process::Child {
    let config = ChildConfig {
        convert: convert.to_path_buf(),
        service: service.to_path_buf(),
        work: dir.join("work"),
        user: job.submission.username.clone(),
        id: job.submission.id,
        commit: job.submission.commit_hash.clone(),
        max_secs,
        outcome: dir.join("outcome.json"),
    };
    let log = std::fs::File::create(dir.join("child.log")).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "grader_child_process_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, serde_json::to_string(&config).unwrap())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Walks the kernel's ancestors up to pid 1 and prints what it can read of each one's
/// environment: `GRADER_*` and `KUBECONFIG` in full, other variables by name only (the test
/// harness's own ancestors are readable to root and are none of the test's business).
const READ_ANCESTORS: &str = r#"import os
def parent(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    return 0
pid = os.getpid()
while True:
    pid = parent(pid)
    if pid <= 1:
        break
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = [e.decode(errors="replace") for e in f.read().split(b"\0") if e]
        shown = [e if e.startswith(("GRADER_", "KUBECONFIG=")) else e.split("=")[0] + "=..." for e in env]
        print(f"ancestor {pid}: read {len(env)} variables: {shown}")
    except OSError as e:
        print(f"ancestor {pid}: unreadable ({e.strerror})")
"#;

#[test]
fn a_notebook_on_a_warm_worker_cannot_read_graders_environment() {
    let Some(convert) = support::grader_convert("warm_hostile: cannot_read_graders_environment")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    support::make_service_dir(&service, &["--students", "alice"]);
    let job = support::hostile_job(&service, "snoop", 601, READ_ANCESTORS);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = format!("warm-leak-probe-{}-{nanos:x}", std::process::id());
    let kubeconfig = format!("/secret/{secret}/kubeconfig");
    let mut child = spawn_grader(
        &convert,
        &service,
        dir.path(),
        &job,
        300,
        &[("GRADER_LEAK_TOKEN", &secret), ("KUBECONFIG", &kubeconfig)],
    );
    let grader_pid = child.id();
    let status = child.wait().unwrap();
    let child_log = std::fs::read_to_string(dir.path().join("child.log")).unwrap_or_default();
    assert!(status.success(), "the grader child failed:\n{child_log}");
    let out: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("outcome.json")).unwrap()).unwrap();
    assert_eq!(
        (&out["status"], &out["backend"]),
        (
            &serde_json::json!("automatically_graded"),
            &serde_json::json!("local-warm")
        ),
        "{:?}",
        out["error"]
    );
    assert_eq!(out["grading_score"].as_f64(), Some(alice_score(&service).0));

    let files = support::committed_files(&service, "snoop");
    let notebook = files
        .iter()
        .find(|(k, _)| k.ends_with(":hw1.ipynb"))
        .map(|(_, v)| v.clone())
        .expect("the graded notebook is committed");
    // The cell ran and walked up through grader.
    assert!(
        notebook.contains(&format!("ancestor {grader_pid}: ")),
        "the cell did not reach grader (pid {grader_pid}): {:?}",
        notebook
            .lines()
            .filter(|l| l.contains("ancestor"))
            .collect::<Vec<_>>()
    );
    for (name, text) in files
        .iter()
        .chain([(&"outcome logs".to_string(), &out["logs"].to_string())])
    {
        let leaked: Vec<&str> = text.lines().filter(|l| l.contains(&secret)).collect();
        assert!(
            leaked.is_empty(),
            "grader's environment leaked into {name}: {leaked:?}"
        );
    }
    // The job's child, the worker and grader, nearest first: none of them readable.
    let ancestors: Vec<&str> = notebook
        .split("ancestor ")
        .filter_map(|a| {
            let (pid, rest) = a.split_once(": ")?;
            pid.parse::<u32>().ok().map(|_| rest)
        })
        .take(3)
        .collect();
    assert!(
        ancestors.len() == 3 && ancestors.iter().all(|a| a.starts_with("unreadable")),
        "readable ancestors: {:?}",
        ancestors
            .iter()
            .map(|a| &a[..a.len().min(40)])
            .collect::<Vec<_>>()
    );
    assert!(
        notebook.contains(&format!("ancestor {grader_pid}: unreadable")),
        "grader's environ was readable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_a_notebook_double_forks_dies_with_its_job_and_cannot_touch_the_next_one() {
    let Some(convert) = support::grader_convert("warm_hostile: a_daemon_dies_with_its_job") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    support::make_service_dir(&service, &["--students", "alice"]);
    // The daemon waits for the next job's input dir and overwrites its notebook, over and over.
    let target = service.join("convert_in/submission_802/hw1.ipynb");
    let body = format!(
        r#"        end = time.time() + 300
        while time.time() < end:
            try:
                with open("{target}", "w") as f:
                    f.write("tampered")
                open("{marks}/tampered", "w").close()
            except OSError:
                pass
            time.sleep(0.01)"#,
        target = target.display(),
        marks = marks.display()
    );
    let evil = support::hostile_job(&service, "evil", 801, &daemon_code(&marks, "daemon", &body));
    let victim = support::hostile_job(&service, "victim", 802, "x = 1");

    let work = tempfile::tempdir().unwrap();
    let backend = warm(&convert, work.path(), 1 << 20).await;
    let exec = executor(&service, backend, Duration::from_secs(300));
    let out = exec.autograde(&evil, CancellationToken::new()).await;
    assert_alice_graded(&out, &service);
    let daemon: u32 = wait_for_file(&marks.join("daemon.pid"), Duration::ZERO)
        .expect("the daemon started")
        .parse()
        .unwrap();
    assert!(
        !alive(daemon),
        "the daemon {daemon} outlived its job: {:?}",
        stat(daemon)
    );

    let out = exec.autograde(&victim, CancellationToken::new()).await;
    assert_alice_graded(&out, &service);
    assert!(
        !marks.join("tampered").exists(),
        "the daemon reached the next job"
    );
    exec.shutdown().await;
    let left = support::strays_under(&service);
    assert!(left.is_empty(), "stray processes: {left:?}");
}

/// A notebook that looks for the next job's waiting child and its kernel zygote (both exist
/// while it runs, so that the next job's kernels are ready), tries to trace them and to read
/// their memory, then stops them; writes what it found and got to `marks/next.json`.
const STALK_NEXT: &str = r#"import ctypes, json, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
found, got = {}, {}
end = time.time() + 60
while len(found) < 2 and time.time() < end:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm in ("grader-next-job", "grader-zygote"):
            found[comm] = int(pid)
    time.sleep(0.02)
for name, pid in found.items():
    attached = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    got[name + " attach"] = [attached, ctypes.get_errno()]
    if attached == 0:
        libc.ptrace(17, pid, None, None)
    try:
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.read(1)
        got[name + " mem"] = "read"
    except OSError as e:
        got[name + " mem"] = e.errno
    os.kill(pid, signal.SIGSTOP)
with open("MARKS/next.json", "w") as f:
    json.dump({"found": found, "got": got}, f)
"#;

/// The next job's kernel records its command line, to show it came from the zygote.
const KERNEL_CMDLINE: &str = r#"with open("MARKS/victim.txt", "w") as f:
    f.write(open("/proc/self/cmdline").read().replace("\0", " ")[-200:])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_can_neither_trace_nor_stall_the_next_jobs_kernel_zygote() {
    let Some(convert) = support::grader_convert("warm_hostile: the next job's zygote") else {
        return;
    };
    assert!(
        PoolSettings::default().prestart_kernels,
        "kernels started ahead are on by default"
    );
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    support::make_service_dir(&service, &["--students", "alice"]);
    let m = marks.to_str().unwrap();
    let evil = support::hostile_job(&service, "stalker", 831, &STALK_NEXT.replace("MARKS", m));
    let victim = support::hostile_job(&service, "victim", 832, &KERNEL_CMDLINE.replace("MARKS", m));

    let work = tempfile::tempdir().unwrap();
    let backend = warm(&convert, work.path(), 1 << 20).await;
    let exec = executor(&service, backend, Duration::from_secs(300));
    let out = exec.autograde(&evil, CancellationToken::new()).await;
    assert_alice_graded(&out, &service);
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(marks.join("next.json")).unwrap()).unwrap();
    // Both exist while the job runs; neither can be traced or read (EPERM/EACCES).
    assert_eq!(
        seen["found"].as_object().map(|f| f.len()),
        Some(2),
        "{seen}"
    );
    for name in ["grader-next-job", "grader-zygote"] {
        assert_eq!(seen["got"][format!("{name} attach")][0], -1, "{seen}");
        assert_ne!(seen["got"][format!("{name} mem")], "read", "{seen}");
    }
    // Stopped by that job, they are continued after its sweep: the next job grades in time,
    // with a kernel forked by the zygote.
    let started = Instant::now();
    let out = exec.autograde(&victim, CancellationToken::new()).await;
    assert_alice_graded(&out, &service);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let cmdline = std::fs::read_to_string(marks.join("victim.txt")).unwrap();
    assert!(
        cmdline.contains("ipykernel_launcher") && cmdline.contains("traced"),
        "the next job's kernel came from its zygote: {cmdline}"
    );
    exec.shutdown().await;
    let left = support::strays_under(&service);
    assert!(left.is_empty(), "stray processes: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_holding_the_tools_output_does_not_extend_the_job() {
    let Some(convert) = support::grader_convert("warm_hostile: a_daemon_holding_output") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    support::make_service_dir(&service, &["--students", "alice"]);
    // A daemon that keeps the kernel's stdout and stderr (the tool's, inherited) open.
    let holder = |name: &str| {
        daemon_code(
            &marks,
            name,
            "        os.write(1, b\"a daemon holds the tool's stdout\\n\")\n        time.sleep(600)",
        )
    };
    let quick = support::hostile_job(&service, "holder", 811, &holder("quick"));
    let mut endless = support::hostile_job(
        &service,
        "holdloop",
        812,
        &format!("{}\nwhile True:\n    pass\n", holder("endless")),
    );
    endless.assignment.settings.cell_timeout = Some(3600);

    let work = tempfile::tempdir().unwrap();
    let backend = warm(&convert, work.path(), 1 << 20).await;
    let exec = executor(&service, backend.clone(), Duration::from_secs(120));
    let start = Instant::now();
    let out = exec.autograde(&quick, CancellationToken::new()).await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_alice_graded(&out, &service);
    assert!(
        out.logs.contains("a daemon holds the tool's stdout"),
        "the daemon wrote to the job's log: {}",
        out.logs
    );
    let pid: u32 = wait_for_file(&marks.join("quick.pid"), Duration::ZERO)
        .unwrap()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the holder outlived its job");

    // An endless cell with such a daemon: the time limit bounds the whole job.
    let exec = executor(&service, backend, Duration::from_secs(6));
    let start = Instant::now();
    let out = exec.autograde(&endless, CancellationToken::new()).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(16),
        "{took:?}"
    );
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert_eq!(
        out.error.as_deref(),
        Some("grading exceeded max_grading_time of 6s and was killed")
    );
    let pid: u32 = wait_for_file(&marks.join("endless.pid"), Duration::ZERO)
        .unwrap()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the holder outlived its job");
    exec.shutdown().await;
    let left = support::strays_under(&service);
    assert!(left.is_empty(), "stray processes: {left:?}");
}

#[test]
fn killing_grader_with_sigkill_leaves_no_worker_job_kernel_or_daemon() {
    let Some(convert) = support::grader_convert("warm_hostile: killing_grader_with_sigkill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    support::make_service_dir(&service, &["--students", "alice", "--cell-timeout", "600"]);
    let code = format!(
        "{}\nwith open(\"{m}/kernel.tmp\", \"w\") as f:\n    f.write(str(os.getpid()))\nos.rename(\"{m}/kernel.tmp\", \"{m}/kernel.pid\")\ntime.sleep(600)\n",
        daemon_code(&marks, "daemon", "        time.sleep(600)"),
        m = marks.display()
    );
    let job = support::hostile_job(&service, "sleeper", 701, &code);
    let mut child = spawn_grader(&convert, &service, dir.path(), &job, 600, &[]);
    let grader = child.id();
    let (kernel, daemon) = (
        wait_for_file(&marks.join("kernel.pid"), Duration::from_secs(120)),
        wait_for_file(&marks.join("daemon.pid"), Duration::from_secs(10)),
    );
    let (Some(kernel), Some(daemon)) = (kernel, daemon) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the job did not start:\n{}",
            std::fs::read_to_string(dir.path().join("child.log")).unwrap_or_default()
        );
    };
    let (kernel, daemon): (u32, u32) = (kernel.parse().unwrap(), daemon.parse().unwrap());
    // Everything below grader now: its worker, the job's child, the kernel, the daemon.
    let tree: Vec<(u32, u64)> = process_tree::descendants(grader)
        .into_iter()
        .filter_map(|pid| stat(pid).map(|(_, started)| (pid, started)))
        .collect();
    let pids: Vec<u32> = tree.iter().map(|(pid, _)| *pid).collect();
    assert!(
        pids.contains(&kernel) && pids.contains(&daemon) && pids.len() >= 4,
        "grader {grader}'s tree {pids:?} holds the kernel {kernel} and the daemon {daemon}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = support::settled(|| {
        tree.iter()
            .filter(|(pid, started)| {
                stat(*pid).is_some_and(|(state, s)| state != "Z" && s == *started)
            })
            .map(|(pid, _)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                )
            })
            .collect()
    });
    assert!(
        left.is_empty(),
        "still running after grader's SIGKILL: {left:?}"
    );
    let left = support::strays_under(&service);
    assert!(left.is_empty(), "stray processes: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_notebook_writes_to_the_tools_output_is_bounded_on_disk() {
    let Some(convert) = support::grader_convert("warm_hostile: bounded_on_disk") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    support::make_service_dir(&service, &["--students", "alice"]);
    // 50 MB straight to the kernel's stdout (the tool's, inherited), then a last line.
    let code = "import os\nchunk = b'x' * 65535 + b'\\n'\nfor _ in range(800):\n    os.write(1, chunk)\nos.write(1, b'END-OF-FLOOD\\n')\n";
    let job = support::hostile_job(&service, "flood", 821, code);
    let work = tempfile::tempdir().unwrap();
    let cap = 256 * 1024;
    let backend = warm(&convert, work.path(), cap).await;
    let (stop, biggest) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let watcher = {
        let (stop, biggest, root) = (stop.clone(), biggest.clone(), work.path().to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                biggest.fetch_max(largest_file(&root), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let exec = executor(&service, backend, Duration::from_secs(300));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    exec.shutdown().await;
    assert_alice_graded(&out, &service);
    let biggest = biggest.load(Ordering::Relaxed);
    assert!(
        biggest <= cap as u64,
        "a job's log grew to {biggest} bytes on disk (log_cap_bytes {cap})"
    );
    assert!(out.logs.len() < 2 * cap, "{}", out.logs.len());
    assert!(
        out.logs.contains("[AutogradeApp"),
        "the head: {}",
        &out.logs[..200]
    );
    assert!(out.logs.contains("bytes of log omitted"));
    assert!(out.logs.contains("END-OF-FLOOD"), "the tail is kept");
}

/// The size of the largest file under `root`.
fn largest_file(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

//! The plain local backend against hostile tools and notebooks (issue 12, points 3 and 6):
//! whatever a job starts ends with the job, time limits bound the whole job, the tool dies with
//! the process that runs the backend, and student code cannot read that process's environment.
//!
//! Some tests run the backend in a child process: this very test binary, re-executed with
//! `--exact` on one of the `child_*` helpers below, which do nothing unless their environment
//! variable is set.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader_local::job_file::load_job;
use grader_local::{
    Executor, ExecutorConfig, GradingBackend, GradingTask, LocalBackend, ProcessGit, Status,
};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// A loop that `sh` cannot replace by an `exec` of its last command, so that `marker` (its
/// `$0`) stays in its command line for as long as it runs.
fn looping(marker: &str) -> String {
    format!("sh -c 'while :; do sleep 1; done' {marker}")
}

fn task(dir: &Path, max: Duration) -> GradingTask {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    support::task(dir, max)
}

fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("grader-{what}-{}-{nanos:x}", std::process::id())
}

/// Kills, when dropped, whatever still runs with its marker, so that a failing test leaves no
/// daemon behind to disturb the next ones.
struct Sweep(String);

impl Drop for Sweep {
    fn drop(&mut self) {
        for line in support::processes_with(&self.0) {
            if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok())
                && pid != std::process::id() as i32
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The processes with `marker` in their command line, apart from this test process and the
/// helper child processes it started (whose arguments name the marker).
fn marked(marker: &str) -> Vec<String> {
    support::processes_with(marker)
        .into_iter()
        .filter(|p| !p.contains("--exact"))
        .collect()
}

#[tokio::test]
async fn a_double_forked_setsid_daemon_dies_when_the_tool_exits() {
    let dir = tempfile::tempdir().unwrap();
    let marker = unique_marker("daemon");
    let _sweep = Sweep(marker.clone());
    // The daemon does not hold the tool's output, so only the process tree keeps it.
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        &format!(
            "(setsid {} </dev/null >/dev/null 2>&1 &)\necho tool done",
            looping(&marker)
        ),
    );
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(out.logs.contains("tool done"), "{}", out.logs);
    let left = support::settled(|| marked(&marker));
    assert!(left.is_empty(), "the daemon outlived its job: {left:?}");
}

#[tokio::test]
async fn a_daemon_that_holds_the_tools_stdout_does_not_hold_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let marker = unique_marker("stdout");
    let _sweep = Sweep(marker.clone());
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        &format!(
            "(setsid sh -c 'sleep 20; echo late' {marker} &)\n(setsid {} >/dev/null 2>&1 &)\necho tool done",
            looping(&marker)
        ),
    );
    let start = Instant::now();
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(60)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the job waited {took:?} for its daemons' pipes"
    );
    assert!(out.logs.contains("tool done"), "{}", out.logs);
    assert!(!out.logs.contains("late"), "{}", out.logs);
    let left = support::settled(|| marked(&marker));
    assert!(left.is_empty(), "daemons outlived their job: {left:?}");
}

#[tokio::test]
async fn max_grading_time_bounds_a_job_whose_daemon_holds_the_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = unique_marker("limit");
    let _sweep = Sweep(marker.clone());
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        &format!("(setsid sh -c 'sleep 20' {marker} &)\necho started\nwhile :; do sleep 1; done"),
    );
    let start = Instant::now();
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(2)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.reason.contains("max_grading_time"), "{}", err.reason);
    assert!(err.logs.contains("started"), "{}", err.logs);
    assert!(
        took < Duration::from_secs(5),
        "max_grading_time of 2 s took {took:?}"
    );
    let left = support::settled(|| marked(&marker));
    assert!(left.is_empty(), "the daemon outlived its job: {left:?}");
}

#[tokio::test]
async fn cancellation_is_prompt_even_when_a_daemon_holds_the_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = unique_marker("cancel");
    let _sweep = Sweep(marker.clone());
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        &format!("(setsid sh -c 'sleep 20' {marker} &)\nwhile :; do sleep 1; done"),
    );
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.cancel();
    });
    let start = Instant::now();
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(&task(dir.path(), Duration::from_secs(60)), cancel)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.reason.contains("cancelled"), "{}", err.reason);
    assert!(took < Duration::from_secs(4), "cancelling took {took:?}");
    let left = support::settled(|| marked(&marker));
    assert!(left.is_empty(), "the daemon outlived its job: {left:?}");
}

#[tokio::test]
async fn a_tool_killed_by_a_signal_is_a_failure_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(dir.path(), "tool", "echo dying; kill -9 $$");
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.reason.contains("failed: signal: 9"), "{}", err.reason);
    assert!(err.logs.contains("dying"), "{}", err.logs);
}

#[tokio::test]
async fn a_tool_name_missing_from_path_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalBackend::new("grader-convert-that-does-not-exist", 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.reason.contains(
            "grading tool \"grader-convert-that-does-not-exist\" was not found (convert_executable)"
        ),
        "{}",
        err.reason
    );
}

#[tokio::test]
async fn a_tool_that_cannot_be_executed_is_a_readable_failure() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("not-executable");
    std::fs::write(&tool, "#!/bin/sh\necho hi\n").unwrap();
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.reason.contains("could not start grading tool") && err.reason.contains("denied"),
        "{}",
        err.reason
    );
}

#[tokio::test]
async fn a_tool_still_open_for_writing_is_retried_until_it_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(dir.path(), "tool", "echo ran");
    // An open write handle makes execve fail with ETXTBSY ("text file busy").
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&tool)
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(writer);
    });
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    release.join().unwrap();
    assert!(out.logs.contains("ran"), "{}", out.logs);
}

#[tokio::test]
async fn the_tool_runs_without_capabilities_and_without_new_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status; touch \"$PWD/written\"",
    );
    let t = task(dir.path(), Duration::from_secs(30));
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(&t, CancellationToken::new())
        .await
        .unwrap();
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            !root || out.logs.contains(&format!("{set}:\t0000000000000000")),
            "{set} must be empty: {}",
            out.logs
        );
    }
    assert!(out.logs.contains("NoNewPrivs:\t1"), "{}", out.logs);
    assert!(
        t.input_dir.join("written").exists(),
        "the tool still writes its own dirs"
    );
}

#[tokio::test]
async fn the_tool_cannot_read_the_environment_of_the_reaper_or_the_backends_process() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        r#"grader=$(awk '/^PPid:/ {print $2}' /proc/$PPID/status)
for pid in $PPID $grader; do
    if cat /proc/$pid/environ >/dev/null 2>&1; then echo "read $pid"; else echo "unreadable $pid"; fi
done
echo "grader=$grader""#,
    );
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!out.logs.contains("read "), "{}", out.logs);
    assert!(
        out.logs.contains(&format!("grader={}", std::process::id())),
        "the tool's grandparent is the process running the backend: {}",
        out.logs
    );
    assert_eq!(out.logs.matches("unreadable ").count(), 2, "{}", out.logs);
    // SAFETY: PR_GET_DUMPABLE takes no pointer.
    let dumpable = unsafe { nix::libc::prctl(nix::libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    assert_eq!(
        dumpable, 0,
        "LocalBackend::new makes its process non-dumpable"
    );
}

#[tokio::test]
async fn the_tool_starts_with_only_its_three_streams_and_default_signals() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        "ls /proc/self/fd | tr '\\n' ' '; echo; grep -E '^Sig(Blk|Ign):' /proc/self/status",
    );
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    // `ls` sees 0 to 2 and the directory it lists.
    assert!(out.logs.starts_with("0 1 2 3 \n"), "{}", out.logs);
    assert!(
        out.logs.contains("SigBlk:\t0000000000000000"),
        "{}",
        out.logs
    );
    assert!(
        out.logs.contains("SigIgn:\t0000000000000000"),
        "{}",
        out.logs
    );
}

/// Env var naming the work dir of [`child_runs_a_long_tool`].
const LONG_TOOL_DIR: &str = "PLAIN_HOSTILE_LONG_TOOL_DIR";

/// Helper run in a child process: drives the backend with the long-running tool in
/// `$PLAIN_HOSTILE_LONG_TOOL_DIR/tool` until it is killed.
#[tokio::test]
async fn child_runs_a_long_tool() {
    let Some(dir) = std::env::var_os(LONG_TOOL_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let _ = LocalBackend::new(dir.join("tool").to_string_lossy(), 1 << 20)
        .run(
            &task(&dir, Duration::from_secs(600)),
            CancellationToken::new(),
        )
        .await;
}

#[test]
fn killing_the_process_that_runs_the_backend_kills_the_tool_and_its_daemons() {
    let marker = unique_marker("kill9");
    let _sweep = Sweep(marker.clone());
    let dir = tempfile::Builder::new().prefix(&marker).tempdir().unwrap();
    support::fake_tool(
        dir.path(),
        "tool",
        &format!(
            "{} &\n(setsid {} </dev/null >/dev/null 2>&1 &)\nwhile :; do sleep 1; done",
            looping(&format!("{marker}-child")),
            looping(&format!("{marker}-daemon"))
        ),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_runs_a_long_tool",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LONG_TOOL_DIR, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let all_up = |found: &[String]| {
        ["-child ", "-daemon", "/tool "]
            .iter()
            .all(|w| found.iter().any(|p| p.contains(w)))
    };
    while !all_up(&marked(&marker)) {
        assert!(
            Instant::now() < deadline,
            "the tool did not start: {:?}",
            marked(&marker)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = support::settled(|| marked(&marker));
    assert!(
        left.is_empty(),
        "the tool and its daemons outlived the process running the backend: {left:?}"
    );
}

// With the real grading tool.

fn executor(service: &Path, convert: &Path) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = Duration::from_secs(300);
    Executor::new(
        config,
        Arc::new(ProcessGit::new("git")),
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
    )
}

/// A notebook cell that double-forks a daemon (in a new session) which, for 90 s, overwrites
/// the gradebook of every other submission's work dirs under `service` and drops a file there.
fn daemon_cell(service: &Path, own_id: u64, marker: &str) -> String {
    format!(
        r#"import os, sys
DAEMON = r'''
import glob, os, sys, time
service, own = sys.argv[1], "submission_" + sys.argv[2]
end = time.time() + 90
while time.time() < end:
    for d in glob.glob(os.path.join(service, "convert_*", "submission_*")):
        if os.path.basename(d) != own:
            try:
                with open(os.path.join(d, "gradebook.json"), "w") as f:
                    f.write("{{}}")
                open(os.path.join(d, "pwned"), "w").close()
            except OSError:
                pass
    time.sleep(0.05)
'''
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.executable, [sys.executable, "-c", DAEMON, {service:?}, "{own_id}", "{marker}"])
    os._exit(0)
os.waitpid(pid, 0)
print("daemon started")
"#,
        service = service.to_str().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_forked_by_a_notebook_dies_with_its_job_and_spares_the_next_student() {
    let Some(convert) = support::grader_convert("a_daemon_forked_by_a_notebook_dies_with_its_job")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &["--students", "alice,bob"]);
    let marker = unique_marker("nbdaemon");
    let _sweep = Sweep(marker.clone());
    let exec = executor(service, &convert);

    let hostile =
        support::hostile_job(service, "mallory", 900, &daemon_cell(service, 900, &marker));
    let out = exec.autograde(&hostile, CancellationToken::new()).await;
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{out:?}"
    );
    let graded = support::git(&[
        "--git-dir",
        service
            .join("git/cs101/1/autograde/user/mallory")
            .to_str()
            .unwrap(),
        "show",
        &format!("submission_{}:hw1.ipynb", hostile.submission.commit_hash),
    ]);
    assert!(graded.contains("daemon started"), "the cell ran");
    let left = support::settled(|| marked(&marker));
    assert!(
        left.is_empty(),
        "the notebook's daemon outlived its job: {left:?}"
    );

    let bob = load_job(&service.join("jobs/bob.json")).unwrap();
    let out = exec.autograde(&bob, CancellationToken::new()).await;
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{out:?}"
    );
    assert_eq!((out.grading_score, out.max_score), (Some(2.5), Some(6.0)));
}

/// A cell that reads `/proc/PID/environ` of every ancestor of its kernel (following `PPid`
/// up to pid 1), and of every other process, and prints what it could read.
const ENVIRON_CELL: &str = r#"import os
def parent(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    return 0
chain, pid = [], os.getpid()
while pid > 1:
    pid = parent(pid)
    chain.append(pid)
report = []
def loot(data):
    # What an attacker would copy; only grader's kind of variables, to keep the report short.
    return [v.decode(errors="replace") for v in data.split(b"\0")
            if v.startswith((b"GRADER_", b"KUBECONFIG"))]
for pid in chain:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
        report.append(f"ancestor {pid} environ read, {data.count(b'=')} variables: {loot(data)}")
    except OSError as e:
        report.append(f"ancestor {pid} environ unreadable: {e}")
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"GRADER_SECRET_TOKEN" in data:
            report.append(f"process {name} environ: {loot(data)}")
report.append(f"ENVIRON WALK DONE over {len(chain)} ancestors")
print("\n".join(report))
with open("leak.csv", "w") as f:
    f.write("\n".join(report))
"#;

/// Env var naming the service dir of [`child_grades_the_environ_reader`].
const ENVIRON_SERVICE: &str = "PLAIN_HOSTILE_ENVIRON_SERVICE";

/// Helper run in a child process (with a secret in its environment): grades a submission whose
/// notebook reads every ancestor's environment, and prints the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_grades_the_environ_reader() {
    let Some(service) = std::env::var_os(ENVIRON_SERVICE) else {
        return;
    };
    let service = PathBuf::from(service);
    let convert = PathBuf::from(std::env::var_os("GRADER_CONVERT").unwrap());
    let job = support::hostile_job(&service, "eve", 901, ENVIRON_CELL);
    let out = executor(&service, &convert)
        .autograde(&job, CancellationToken::new())
        .await;
    println!("OUTCOME {out:?}");
    println!("COMMIT {}", job.submission.commit_hash);
}

#[test]
fn a_notebook_cannot_read_the_graders_environment_through_proc() {
    let Some(convert) = support::grader_convert("a_notebook_cannot_read_the_graders_environment")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &["--students", "alice"]);
    let secret = unique_marker("secret-token-value");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_grades_the_environ_reader",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENVIRON_SERVICE, service)
        .env("GRADER_CONVERT", &convert)
        .env("GRADER_SECRET_TOKEN", &secret)
        .env("KUBECONFIG", format!("/secret/kubeconfig-{secret}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("AutomaticallyGraded"),
        "the job was graded: {stdout}"
    );
    let commit = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COMMIT "))
        .expect("the helper names its commit");
    let repo = service.join("git/cs101/1/autograde/user/eve");
    let show = |file: &str| {
        support::git(&[
            "--git-dir",
            repo.to_str().unwrap(),
            "show",
            &format!("submission_{commit}:{file}"),
        ])
    };
    let notebook = show("hw1.ipynb");
    assert!(notebook.contains("ENVIRON WALK DONE"), "the cell ran");
    let leak = show("leak.csv");
    assert!(leak.contains("ENVIRON WALK DONE"), "{leak}");
    for (what, text) in [
        ("graded notebook", notebook.as_str()),
        ("leak.csv", leak.as_str()),
        ("outcome", &stdout),
    ] {
        let leaked: Vec<&str> = text.lines().filter(|l| l.contains(&secret)).collect();
        assert!(
            leaked.is_empty(),
            "grader's environment reached the {what}: {leaked:?}"
        );
    }
}

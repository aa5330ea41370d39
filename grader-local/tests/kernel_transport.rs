//! How a job's kernels are reached, cold and warm, with the real grading tool.
//!
//! Over TCP the tool picks a kernel's five ports (binds port 0, closes them) and the kernel
//! binds them a moment later: any process on the machine can take one in between — another
//! job's kernel handed the same free port, an outgoing connection — and the kernel dies or
//! never answers, so an honest submission fails at random, more often the more jobs run at
//! once (a batch of 20 at concurrency 5 lost one submission to a kernel that did not answer
//! within 60 s). So every kernel listens on Unix sockets (`ipc`) in a directory of its job's
//! own, which is removed with the job however the job ends.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grader_local::{
    Executor, ExecutorConfig, FailureKind, GradingBackend, Job, LocalBackend, ProcessGit,
};
use tokio_util::sync::CancellationToken;

/// A cell that appends what its kernel's connection file says to `kernels.txt` in the service
/// dir (found from the kernel's working directory).
const RECORD: &str = r#"import json, os
from ipykernel.connect import get_connection_file
_cf = get_connection_file()
_info = json.load(open(_cf))
_d = os.getcwd()
while _d != "/" and not os.path.exists(os.path.join(_d, "jobs.jsonl")):
    _d = os.path.dirname(_d)
with open(os.path.join(_d, "kernels.txt"), "a") as _f:
    _f.write(json.dumps({"transport": _info["transport"], "ip": _info["ip"], "conn": _cf}) + "\n")
"#;

/// What one kernel recorded.
#[derive(Debug, serde::Deserialize)]
struct Recorded {
    transport: String,
    ip: String,
    conn: PathBuf,
}

fn recorded(service: &Path) -> Vec<Recorded> {
    std::fs::read_to_string(service.join("kernels.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Grades a recording job and a recording job that sleeps past `max_grading_time`; returns
/// what each of their kernels recorded.
async fn grade_and_record(
    service: &Path,
    backend: Arc<dyn GradingBackend>,
    jobs: &[Job; 2],
) -> Vec<Recorded> {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = Duration::from_secs(25);
    let exec = Executor::new(config, Arc::new(ProcessGit::new("git")), backend);
    let honest = exec.autograde(&jobs[0], CancellationToken::new()).await;
    assert!(
        honest.status.is_success(),
        "{:?} {:?}: {}",
        honest.status,
        honest.error,
        honest.logs
    );
    assert_eq!(honest.grading_score, Some(6.0), "{}", honest.logs);
    let killed = exec.autograde(&jobs[1], CancellationToken::new()).await;
    assert_eq!(
        killed.failure,
        Some(FailureKind::TimedOut),
        "{}",
        killed.logs
    );
    exec.shutdown().await;
    recorded(service)
}

fn jobs(service: &Path) -> [Job; 2] {
    [
        support::hostile_job(service, "recorder", 201, RECORD),
        support::hostile_job(
            service,
            "sleeper",
            202,
            &format!("{RECORD}\nimport time\ntime.sleep(600)\n"),
        ),
    ]
}

fn check(mode: &str, kernels: &[Recorded]) {
    assert_eq!(kernels.len(), 2, "{mode}: one kernel per job: {kernels:?}");
    for k in kernels {
        assert_eq!(k.transport, "ipc", "{mode}: {k:?}");
        let dir = k.conn.parent().unwrap();
        assert!(
            dir.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("grader-kernels-"),
            "{mode}: the kernel's files are in a dir of the job's own: {k:?}"
        );
        assert!(
            k.ip.starts_with(dir.to_str().unwrap()),
            "{mode}: the sockets are next to the connection file: {k:?}"
        );
        assert!(
            !dir.exists(),
            "{mode}: the job's kernel dir is removed with the job: {k:?}"
        );
    }
    assert_ne!(
        kernels[0].conn.parent(),
        kernels[1].conn.parent(),
        "{mode}: each job has its own kernel dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_listen_on_unix_sockets_in_a_dir_of_their_job_cold_and_warm() {
    let Some(convert) = support::grader_convert("kernel_transport: kernels_listen") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();

    let cold_dir = root.path().join("cold");
    support::make_service_dir(&cold_dir, &["--students", "alice"]);
    let cold_jobs = jobs(&cold_dir);
    let cold = grade_and_record(
        &cold_dir,
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
        &cold_jobs,
    )
    .await;
    check("cold", &cold);

    let warm_dir = root.path().join("warm");
    support::make_service_dir(&warm_dir, &["--students", "alice"]);
    let warm_jobs = jobs(&warm_dir);
    let work = tempfile::tempdir().unwrap();
    let backend =
        support::started_warm_backend(&convert, support::one_worker(), work.path(), 1 << 20).await;
    let backend = Arc::new(backend);
    let warm = grade_and_record(&warm_dir, backend.clone(), &warm_jobs).await;
    check("warm", &warm);
    backend.shutdown().await;
}

/// A notebook that moves its job's kernel dir away and leaves a symlink to another directory
/// in its place: removing the job's dir afterwards removes the link, never what it points to.
const SWAP_FOR_LINK: &str = r#"import os
from ipykernel.connect import get_connection_file
_d = os.path.dirname(get_connection_file())
os.rename(_d, "MOVED")
os.symlink("VICTIM", _d)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_dir_swapped_for_a_symlink_removes_only_the_link_cold_and_warm() {
    let Some(convert) = support::grader_convert("kernel_transport: a_kernel_dir_swapped") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let service = root.path().join("service");
    support::make_service_dir(&service, &["--students", "alice"]);
    let work = tempfile::tempdir().unwrap();
    let warm =
        support::started_warm_backend(&convert, support::one_worker(), work.path(), 1 << 20).await;
    let backends: [(&str, Arc<dyn GradingBackend>); 2] = [
        (
            "cold",
            Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
        ),
        ("warm", Arc::new(warm)),
    ];
    for (i, (mode, backend)) in backends.into_iter().enumerate() {
        let victim = root.path().join(format!("victim-{mode}"));
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep.txt"), "kept").unwrap();
        let moved = root.path().join(format!("moved-{mode}"));
        let code = SWAP_FOR_LINK
            .replace("MOVED", moved.to_str().unwrap())
            .replace("VICTIM", victim.to_str().unwrap());
        let job = support::hostile_job(&service, &format!("swapper{i}"), 300 + i as u64, &code);
        let exec = Executor::new(
            ExecutorConfig::new(&service),
            Arc::new(ProcessGit::new("git")),
            backend,
        );
        let out = exec.autograde(&job, CancellationToken::new()).await;
        exec.shutdown().await;
        assert_eq!(out.grading_score, Some(6.0), "{mode}: {}", out.logs);
        assert!(moved.is_dir(), "{mode}: the cell ran: {}", out.logs);
        assert_eq!(
            std::fs::read_to_string(victim.join("keep.txt")).unwrap(),
            "kept",
            "{mode}: what the link pointed to is untouched"
        );
    }
}

//! Kernels started ahead of need (issue 17): on a warm worker each notebook's kernel is forked
//! by a kernel zygote the worker started for that job before it was needed. These tests grade
//! the same jobs cold (a plain `grader-convert` process that launches its own kernels) and warm,
//! one after another on one worker, and require the same gradebooks, scores and committed
//! files, for the example course and the special cases: an endless loop (cell timeout), a
//! crashing tool, a cell that sleeps past the timeout, a kernel that dies, and a notebook that
//! changes its kernel's module state before the next job runs. A probe notebook records what
//! its kernel sees (working directory, `sys.path`, `sys.argv`, environment, limits,
//! capabilities, session) into the committed notebook, so any difference fails the comparison;
//! it also writes its parent's and its own command line next to the service dir's `jobs.jsonl`,
//! which shows that each kernel is the tool process's child and the warm ones came from the
//! zygote.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grader_local::{
    Executor, ExecutorConfig, GradingBackend, Job, LocalBackend, PoolSettings, ProcessGit, Status,
    process_tree,
};
use tokio_util::sync::CancellationToken;

/// A cell that records, into its own output, what the kernel sees; and writes the kernel's
/// parent's and its own command line to `probe.txt` in the service dir (found from the kernel's cwd).
const PROBE: &str = r#"import os, sys, resource, json
def _facts():
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
    fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
    return {
        "cwd": os.getcwd().split("/submission_")[-1],
        "path": [p.split("/submission_")[-1] for p in sys.path],
        "argv0": sys.argv[0].rsplit("/", 1)[-1],
        "argv": [a if not a.endswith(".json") else "CONN" for a in sys.argv[1:]],
        "orig_argv": [a if not a.endswith(".json") else "CONN" for a in sys.orig_argv[1:]],
        "env": sorted(env),
        "parent_pid_set": "JPY_PARENT_PID" in os.environ,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")],
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "session_leader": os.getsid(0) == os.getpid(),
        "stdin_is_pipe": os.path.realpath("/proc/self/fd/0").startswith("pipe:") or os.readlink("/proc/self/fd/0").startswith("pipe:"),
        "main": sys.modules["__main__"].__name__,
        "executable": sys.executable.rsplit("/", 1)[-1],
        "flags": str(sys.flags),
        "n_fds_small": len([f for f in fds if f < 3]),
        "modules": sorted(sys.modules),
        "dumpable": __import__("ctypes").CDLL(None).prctl(3, 0, 0, 0, 0),
    }
print(json.dumps(_facts(), sort_keys=True))
_d = os.getcwd()
while _d != "/" and not os.path.exists(os.path.join(_d, "jobs.jsonl")):
    _d = os.path.dirname(_d)
with open(os.path.join(_d, "probe.txt"), "a") as _f:
    _cmd = lambda p: open(f"/proc/{p}/cmdline").read().replace("\0", " ").replace("\n", " ")[-300:]
    _f.write(_cmd(os.getppid()) + " | " + _cmd(os.getpid()) + "\n")
"#;

/// Special submissions built on alice's answer: (user, code of the extra cell).
fn special_cases() -> Vec<(&'static str, String)> {
    vec![
        ("probe", PROBE.to_string()),
        // Changes the module state of its kernel: if a later kernel shared it, alice's
        // `load_rows` (csv) and every `json` use would break.
        (
            "state",
            "import csv, sys\ncsv.DictReader = None\nsys.modules['statistics'] = None\nimport builtins\nbuiltins.sorted = None\n"
                .to_string(),
        ),
        // Sleeps past the 5 s cell timeout: CellTimeoutError in the notebook.
        ("sleepy", "import time\ntime.sleep(60)\n".to_string()),
        // The kernel dies.
        ("dying", "import os\nos._exit(3)\n".to_string()),
        // The probe again: the state above must not reach it.
        ("probe2", PROBE.to_string()),
    ]
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

/// Grades `jobs` one after another through `backend`.
async fn grade(
    service: &Path,
    backend: Arc<dyn GradingBackend>,
    jobs: &[Job],
) -> Vec<(String, Graded, String)> {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = Duration::from_secs(300);
    let exec = Executor::new(config, Arc::new(ProcessGit::new("git")), backend);
    let mut graded = Vec::new();
    for job in jobs {
        let out = exec.autograde(job, CancellationToken::new()).await;
        let user = job.submission.username.clone();
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
        assert!(
            out.backend == "local" || out.backend == "local-warm",
            "{}",
            out.backend
        );
        graded.push((user, g, format!("[{}] {}", out.backend, out.logs)));
    }
    exec.shutdown().await;
    graded
}

fn jobs_of(service: &Path, hostile: &[(&str, String)]) -> Vec<Job> {
    let mut jobs: Vec<Job> = std::fs::read_to_string(service.join("jobs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| grader_local::job_file::parse_job(l, service, "jobs.jsonl").unwrap())
        .collect();
    let mut id = 100;
    for (user, _) in hostile {
        id += 1;
        let mut job = grader_local::job_file::load_job(&service.join("jobs/alice.json")).unwrap();
        let commit = support::git(&[
            "--git-dir",
            service
                .join(format!("git/cs101/1/user/{user}"))
                .to_str()
                .unwrap(),
            "rev-parse",
            "main",
        ]);
        job.submission.username = (*user).into();
        job.submission.id = id;
        job.submission.commit_hash = commit.trim().into();
        jobs.push(job);
    }
    // The module-changing notebook right before the others, on the same worker.
    let state = jobs.iter().position(|j| j.submission.username == "state");
    if let Some(i) = state {
        let j = jobs.remove(i);
        jobs.insert(0, j);
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prestarted_kernels_give_the_gradebooks_and_commits_of_cold_runs() {
    let Some(convert) = support::grader_convert("warm_prestart: prestarted_kernels_give") else {
        return;
    };
    assert!(
        PoolSettings::default().prestart_kernels,
        "kernels started ahead are on by default"
    );
    let root = tempfile::tempdir().unwrap();
    let (cold_dir, warm_dir) = (root.path().join("cold"), root.path().join("warm"));
    support::make_service_dir(
        &cold_dir,
        &[
            "--students",
            "alice,bob,carol,dave,loop,crash",
            "--cell-timeout",
            "5",
        ],
    );
    let hostile = special_cases();
    for (i, (user, code)) in hostile.iter().enumerate() {
        support::hostile_job(&cold_dir, user, 100 + i as u64, code);
    }
    // The same repositories (the same commits) for the warm run.
    let cp = std::process::Command::new("cp")
        .args(["-a", cold_dir.to_str().unwrap(), warm_dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
    let cold_jobs = jobs_of(&cold_dir, &hostile);
    let warm_jobs = jobs_of(&warm_dir, &hostile);

    let cold = grade(
        &cold_dir,
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
        &cold_jobs,
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let backend =
        support::started_warm_backend(&convert, support::one_worker(), work.path(), 1 << 20).await;
    let pool = backend.pool().expect("a warm worker starts").clone();
    let backend = Arc::new(backend);
    let warm = grade(&warm_dir, backend.clone(), &warm_jobs).await;

    assert_eq!(cold.len(), warm.len());
    for ((user, want, cold_logs), (wuser, got, warm_logs)) in cold.iter().zip(&warm) {
        assert_eq!(user, wuser);
        assert!(warm_logs.starts_with("[local-warm]"), "{user}: {warm_logs}");
        assert_eq!(
            got, want,
            "{user}: the warm run differs from the cold run\ncold: {cold_logs}\nwarm: {warm_logs}"
        );
    }
    // Sanity of the special cases themselves (both runs are equal, so check one).
    let by_user: BTreeMap<&str, &Graded> = cold.iter().map(|(u, g, _)| (u.as_str(), g)).collect();
    let alice = by_user["alice"];
    assert_eq!(by_user["probe"].grading_score, alice.grading_score);
    assert_eq!(by_user["probe2"].grading_score, alice.grading_score);
    // csv.DictReader broken: its own load_rows check fails (and only in its own kernel).
    assert_eq!(
        by_user["state"].grading_score,
        alice.grading_score.map(|s| s - 1.0)
    );
    let sleepy = serde_json::to_string(&by_user["sleepy"].files).unwrap();
    assert!(sleepy.contains("CellTimeoutError"), "{sleepy}");
    let probe = serde_json::to_string(&by_user["probe"].files).unwrap();
    assert!(probe.contains("no_new_privs"), "the probe ran: {probe}");

    // The cold kernels' parent is the tool; the warm kernels' parent is a zygote.
    let cold_probe = std::fs::read_to_string(cold_dir.join("probe.txt")).unwrap();
    let warm_probe = std::fs::read_to_string(warm_dir.join("probe.txt")).unwrap();
    assert_eq!(cold_probe.lines().count(), 2, "{cold_probe}");
    // Each kernel's parent is the tool's process; the warm ones were forked by the zygote.
    assert!(
        cold_probe
            .lines()
            .all(|l| l.contains("autograde") && l.contains("-m ipykernel_launcher")),
        "{cold_probe}"
    );
    assert_eq!(warm_probe.lines().count(), 2, "{warm_probe}");
    assert!(
        warm_probe
            .lines()
            .all(|l| l.contains("--entry-point grader-convert")
                && l.contains("_run_module_as_main(\"ipykernel_launcher\")")),
        "the warm kernels are children of the job's child, forked by the zygote: {warm_probe}"
    );

    // Nothing is left below the worker but the next job's waiting child and its zygote.
    let stats = pool.stats();
    assert_eq!((stats.replaced, stats.failed_starts), (0, 0), "{stats:?}");
    for pid in pool.idle_pids() {
        let left = grader_local::warm::leftovers(pid);
        assert!(left.is_empty(), "below worker {pid}: {left:?}");
        let below = process_tree::descendants(pid);
        assert!(
            (1..=2).contains(&below.len()),
            "a waiting child and (once forked) its zygote: {below:?}"
        );
    }
    let left = support::strays_under(&warm_dir);
    assert!(left.is_empty(), "stray processes: {left:?}");
    backend.shutdown().await;
}

//! Grading pods on a real node beside the test node agent (project issue 16, point 5).
//!
//! One run, same machine, same submissions of the example course, the real grading tool:
//!
//! * `real`: kube-testkit's `RealNode` (upstream kubelet, kube-scheduler and
//!   kube-controller-manager, Debian's containerd and runc) running the grading image of
//!   `deploy/image/build.sh` in real containers; `grader` runs as uid 1000 (the pods'
//!   `kube.uid`), the `grader-data` claim of `deploy/pvc.yaml` bound to a hostPath volume;
//! * `agent`: the test node agent (`bench/src/cluster.rs`), which runs the host's grading tool
//!   as each pod's process.
//!
//! On each node: warm-up submissions (not in the statistics), then `--submissions` graded one
//! at a time with `grader autograde --job` (wall time of the process), then as many more
//! with `grader batch --concurrency N` (per submission: the outcome's `duration_ms`, ending
//! at the outcome file's mtime). Every score is checked against `expected.jsonl`.
//!
//! Each pod's life comes from an admin watch of the namespace, timestamped on arrival (ms):
//! created (first sighting), scheduled (`spec.nodeName` set), container started, `Succeeded`.
//! The API's own timestamps (`creationTimestamp`, conditions, `startedAt`/`finishedAt`) are
//! whole seconds and kept beside. On the real node containerd's log (ns) gives the
//! sandbox request, sandbox ready, container started and container exited times.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use grader_kube::job_pod_name;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use kube_testkit::{ControlPlane, RealNode, RealNodeConfig};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{CLAIM, Cluster, NAMESPACE};
use crate::proc;
use crate::report::{self, Table, ms};
use crate::stats::{Summary, summarize};
use crate::workdir::{self, Work, toml_str};

/// The uid (and gid) of the real node's grading pods and of `grader` driving them.
const UID: u32 = 1000;

/// Options of `kube-node`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// The host's grading tool, which the node agent runs as the pods' process.
    #[arg(long)]
    convert: PathBuf,
    /// Submissions graded one at a time, and again as many in the batch.
    #[arg(long, default_value_t = 10)]
    submissions: usize,
    /// `--concurrency` of the batch (0: no batch).
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Submissions graded first on each node and left out of the statistics (the first pod
    /// of a fresh node also pays for the first sandbox and the image's first use).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Nodes to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "real,agent")]
    nodes: Vec<String>,
    /// The grading image's reference (default: what `deploy/image/build.sh --print` says).
    #[arg(long, requires = "image_archive")]
    image: Option<String>,
    /// The grading image's OCI archive (with `--image`).
    #[arg(long, requires = "image")]
    image_archive: Option<PathBuf>,
    /// Base name of the result files (`<name>.json`, `<name>.md`).
    #[arg(long, default_value = "kube-node")]
    name: String,
    /// Free text recorded with the results (for example which image was measured).
    #[arg(long, default_value = "")]
    label: String,
}

// ---------------------------------------------------------------------------------------
// The admin watch.

/// What the admin watch saw of one pod (arrival times) and the API's own timestamps.
#[derive(Debug, Default, Clone)]
struct PodSeen {
    created: Option<SystemTime>,
    scheduled: Option<SystemTime>,
    /// A container state `running` or `terminated` first reported.
    started: Option<SystemTime>,
    succeeded: Option<SystemTime>,
    failed: Option<SystemTime>,
    api_created: Option<SystemTime>,
    api_scheduled: Option<SystemTime>,
    api_started: Option<SystemTime>,
    api_finished: Option<SystemTime>,
    container_id: Option<String>,
    node: Option<String>,
}

/// An admin watch of a namespace recording [`PodSeen`] by pod name.
struct PodWatch {
    seen: Arc<Mutex<HashMap<String, PodSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    async fn start(client: kube::Client, namespace: &str) -> anyhow::Result<PodWatch> {
        let seen = Arc::new(Mutex::new(HashMap::<String, PodSeen>::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let now = SystemTime::now();
                match event {
                    Ok(Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::InitApply(pod) | Event::Apply(pod)) => {
                        let mut map = record.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(name) = pod.metadata.name.clone() {
                            map.entry(name).or_default().apply(&pod, now);
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("the admin pod watch did not sync within 30 s")??;
        Ok(PodWatch { seen, task })
    }

    fn get(&self, name: &str) -> Option<PodSeen> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn time_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> SystemTime {
    SystemTime::from(t.0)
}

impl PodSeen {
    fn apply(&mut self, pod: &Pod, now: SystemTime) {
        self.created.get_or_insert(now);
        self.api_created = pod.metadata.creation_timestamp.as_ref().map(time_of);
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            self.scheduled.get_or_insert(now);
            self.node = Some(node);
        }
        let Some(status) = pod.status.as_ref() else {
            return;
        };
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled" && c.status == "True" {
                self.api_scheduled = c.last_transition_time.as_ref().map(time_of);
            }
        }
        for cs in status.container_statuses.iter().flatten() {
            let Some(state) = cs.state.as_ref() else {
                continue;
            };
            if let Some(r) = &state.running {
                self.started.get_or_insert(now);
                self.api_started = r.started_at.as_ref().map(time_of).or(self.api_started);
            }
            if let Some(t) = &state.terminated {
                self.started.get_or_insert(now);
                self.api_started = t.started_at.as_ref().map(time_of).or(self.api_started);
                self.api_finished = t.finished_at.as_ref().map(time_of);
            }
            if let Some(id) = &cs.container_id {
                let id = id.rsplit("://").next().unwrap_or(id);
                self.container_id = Some(id.to_string());
            }
        }
        match status.phase.as_deref() {
            Some("Succeeded") => {
                self.succeeded.get_or_insert(now);
            }
            Some("Failed") => {
                self.failed.get_or_insert(now);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// containerd's log (real node).

/// What containerd logged about one pod (ns timestamps).
#[derive(Debug, Default, Clone)]
struct CriTimes {
    sandbox_requested: Option<SystemTime>,
    sandbox_ready: Option<SystemTime>,
    container_started: Option<SystemTime>,
    container_exited: Option<SystemTime>,
}

fn log_time(line: &str) -> Option<SystemTime> {
    let rest = line.strip_prefix("time=\"")?;
    let end = rest.find('"')?;
    rest[..end].parse::<Timestamp>().ok().map(SystemTime::from)
}

/// The text between `start` and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// containerd 1.6's CRI log lines, for the pod `name` of `namespace` whose container is `cid`:
/// `RunPodSandbox for &PodSandboxMetadata{Name:..,Namespace:..,}` (and `returns sandbox id`),
/// `StartContainer for "cid" returns successfully`, and the container's exit: `shim
/// disconnected id=cid` (Debian's containerd 1.6 runs one shim per container) or a
/// `TaskExit` line where one is logged.
fn cri_times(log: &str, namespace: &str, name: &str, cid: Option<&str>) -> CriTimes {
    let mut t = CriTimes::default();
    let meta = format!("&PodSandboxMetadata{{Name:{name},");
    let ns = format!("Namespace:{namespace},");
    for line in log.lines() {
        let Some(at) = log_time(line) else { continue };
        if line.contains("RunPodSandbox for ") && line.contains(&meta) && line.contains(&ns) {
            if line.contains("returns sandbox id") {
                t.sandbox_ready.get_or_insert(at);
            } else {
                t.sandbox_requested.get_or_insert(at);
            }
            continue;
        }
        let Some(cid) = cid else { continue };
        if line.contains(&format!(
            "StartContainer for \\\"{cid}\\\" returns successfully"
        )) {
            t.container_started.get_or_insert(at);
        } else if line.contains("msg=\"shim disconnected\"") && line.contains(&format!("id={cid}"))
        {
            // One shim per container here: it goes when the container's process has exited.
            t.container_exited.get_or_insert(at);
        } else if line.contains("TaskExit event") && line.contains(&format!("ContainerID:{cid},")) {
            // `ExitedAt:2026-12-01 03:40:00.123456789 +0000 UTC` (the shim's own time), else
            // the line's time.
            let exited = between(line, "ExitedAt:", " +0000 UTC")
                .and_then(|s| {
                    format!("{}Z", s.replace(' ', "T"))
                        .parse::<Timestamp>()
                        .ok()
                })
                .map(SystemTime::from);
            t.container_exited.get_or_insert(exited.unwrap_or(at));
        }
    }
    t
}

// ---------------------------------------------------------------------------------------
// Results.

/// One graded submission.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    node: String,
    /// `warm-up`, `one at a time` or `batch`.
    mode: String,
    submission_id: u64,
    username: String,
    pod: String,
    score: f64,
    expected_score: f64,
    /// The submission's own time: `grader autograde` wall time (one at a time) or the
    /// outcome's `duration_ms` (batch).
    wall_ms: f64,
    /// The outcome's `timings.grading_ms` (the backend's run: pod created → outcome).
    grading_ms: f64,
    /// `grader` started (its job started, in a batch) → the watch saw the pod.
    start_to_created_ms: f64,
    created_to_scheduled_ms: f64,
    scheduled_to_started_ms: f64,
    started_to_succeeded_ms: f64,
    created_to_succeeded_ms: f64,
    /// The watch saw `Succeeded` → `grader` exited (its outcome written, in a batch).
    succeeded_to_end_ms: f64,
    /// Real node, from containerd's log: kubelet asked for the sandbox (after scheduling,
    /// the volume mounted) → it was ready (pause container, CNI) → the container started →
    /// it exited (the tool's own run in the container) → the watch saw `Succeeded`.
    scheduled_to_sandbox_requested_ms: f64,
    sandbox_ms: f64,
    sandbox_to_started_ms: f64,
    container_run_ms: f64,
    exited_to_succeeded_ms: f64,
    /// The API's whole-second timestamps: creationTimestamp → the container's `startedAt`,
    /// and `startedAt` → `finishedAt`.
    api_created_to_started_s: f64,
    api_container_run_s: f64,
}

#[derive(Debug, Serialize)]
struct Phase {
    node: String,
    mode: String,
    concurrency: usize,
    submissions: usize,
    wall_s: f64,
    /// CPU seconds of the grading: the real node's `kubepods` cgroup (every container), the
    /// node agent's processes (the tool), per submission.
    pod_cpu_s_per_submission: Option<f64>,
    /// CPU seconds of the `grader` processes (with git) per submission.
    grader_cpu_s_per_submission: f64,
    columns: BTreeMap<String, Summary>,
    load_after: String,
}

#[derive(Debug, Serialize)]
struct NodeInfo {
    node: String,
    /// Start of the node until Ready (real node: containerd, image import, kubelet).
    start_s: f64,
    details: BTreeMap<String, f64>,
    image: Option<String>,
}

#[derive(Debug, Serialize)]
struct Results {
    label: String,
    load_before: String,
    load_after: String,
    submissions: usize,
    concurrency: usize,
    warmup: usize,
    nodes: Vec<NodeInfo>,
    phases: Vec<Phase>,
    samples: Vec<Sample>,
}

/// The columns summarized per phase: key, heading.
const COLUMNS: &[(&str, &str)] = &[
    ("start_to_created_ms", "grader start → pod created"),
    ("created_to_scheduled_ms", "created → scheduled"),
    ("scheduled_to_started_ms", "scheduled → container started"),
    ("started_to_succeeded_ms", "container started → `Succeeded`"),
    ("created_to_succeeded_ms", "**created → `Succeeded`**"),
    ("succeeded_to_end_ms", "`Succeeded` → outcome"),
    ("wall_ms", "**per submission**"),
];

/// Real-node only columns (containerd's log).
const CRI_COLUMNS: &[(&str, &str)] = &[
    (
        "scheduled_to_sandbox_requested_ms",
        "scheduled → kubelet asks for the sandbox",
    ),
    ("sandbox_ms", "sandbox (pause + CNI)"),
    ("sandbox_to_started_ms", "sandbox ready → container started"),
    ("container_run_ms", "container ran (started → exited)"),
    ("exited_to_succeeded_ms", "exited → `Succeeded` seen"),
];

fn column(s: &Sample, key: &str) -> f64 {
    match key {
        "start_to_created_ms" => s.start_to_created_ms,
        "created_to_scheduled_ms" => s.created_to_scheduled_ms,
        "scheduled_to_started_ms" => s.scheduled_to_started_ms,
        "started_to_succeeded_ms" => s.started_to_succeeded_ms,
        "created_to_succeeded_ms" => s.created_to_succeeded_ms,
        "succeeded_to_end_ms" => s.succeeded_to_end_ms,
        "wall_ms" => s.wall_ms,
        "grading_ms" => s.grading_ms,
        "scheduled_to_sandbox_requested_ms" => s.scheduled_to_sandbox_requested_ms,
        "sandbox_ms" => s.sandbox_ms,
        "sandbox_to_started_ms" => s.sandbox_to_started_ms,
        "container_run_ms" => s.container_run_ms,
        "exited_to_succeeded_ms" => s.exited_to_succeeded_ms,
        "api_created_to_started_s" => s.api_created_to_started_s,
        "api_container_run_s" => s.api_container_run_s,
        _ => f64::NAN,
    }
}

/// `b − a` in ms (negative when `b` is earlier), NaN when either is missing.
fn ms_between(a: Option<SystemTime>, b: Option<SystemTime>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => match b.duration_since(a) {
            Ok(d) => d.as_secs_f64() * 1000.0,
            Err(e) => -e.duration().as_secs_f64() * 1000.0,
        },
        _ => f64::NAN,
    }
}

// ---------------------------------------------------------------------------------------
// The nodes.

/// What differs between the two nodes when driving `grader`.
struct Driver<'a> {
    node: &'static str,
    grader: &'a Path,
    config: PathBuf,
    kubeconfig: PathBuf,
    /// Run `grader` as this uid/gid with this HOME (the real node), else as ourselves.
    uid: Option<(u32, PathBuf)>,
    namespace: String,
    logs: PathBuf,
    watch: &'a PodWatch,
    /// containerd's log of the real node, read after each phase.
    containerd_log: Option<&'a dyn Fn() -> String>,
    /// The real node's `kubepods` cgroup CPU counter, or the node agent's children.
    pod_cpu: &'a dyn Fn() -> Option<Duration>,
}

/// A submission with what `expected.jsonl` says of it.
#[derive(Clone)]
struct Sub {
    path: PathBuf,
    id: u64,
    username: String,
    pod: String,
    expected: f64,
    /// The job's line in `jobs.jsonl`.
    line: String,
}

fn submissions(service: &Path) -> anyhow::Result<Vec<Sub>> {
    let expected: HashMap<u64, f64> = std::fs::read_to_string(service.join("expected.jsonl"))?
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            Ok((
                v["submission_id"].as_u64().context("submission_id")?,
                v["score"].as_f64().context("score")?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let lines: HashMap<u64, String> = std::fs::read_to_string(service.join("jobs.jsonl"))?
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            Ok((
                v["submission"]["id"].as_u64().context("submission.id")?,
                l.to_string(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    workdir::jobs(service)?
        .into_iter()
        .map(|(path, job)| {
            let id = job.submission.id;
            let task = workdir::task(service, &job)?;
            Ok(Sub {
                path,
                id,
                username: job.submission.username.clone(),
                pod: job_pod_name(&task),
                expected: *expected
                    .get(&id)
                    .with_context(|| format!("no expected score for #{id}"))?,
                line: lines
                    .get(&id)
                    .with_context(|| format!("#{id} not in jobs.jsonl"))?
                    .clone(),
            })
        })
        .collect()
}

/// The children's CPU time of this process (reaped ones).
fn children_cpu() -> Duration {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of every container of the real node: the `kubepods` cgroup (cgroup v1 cpuacct,
/// else v2), which keeps the time of containers already gone.
fn kubepods_cpu() -> Option<Duration> {
    if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage") {
        return s.trim().parse().ok().map(Duration::from_nanos);
    }
    let stat = std::fs::read_to_string("/sys/fs/cgroup/kubepods/cpu.stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

impl Driver<'_> {
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.grader);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(&self.config);
        if let Some((uid, home)) = &self.uid {
            cmd.uid(*uid).gid(*uid).env("HOME", home);
        }
        cmd
    }

    /// Grades `subs` one at a time with `grader autograde`.
    fn one_at_a_time(&self, subs: &[Sub], mode: &str) -> anyhow::Result<(Phase, Vec<Sample>)> {
        let started = Instant::now();
        let cpu0 = (self.pod_cpu)();
        let mut grader_cpu = Duration::ZERO;
        let mut runs = Vec::new();
        for sub in subs {
            let mut cmd = self.command();
            cmd.args(["autograde", "--job"]).arg(&sub.path);
            let name = format!("{}-{}-{}", self.node, mode.replace(' ', "-"), sub.id);
            let t0 = SystemTime::now();
            let m = proc::run(&mut cmd, &self.logs, &name, false)?;
            let t1 = SystemTime::now();
            grader_cpu += m.cpu;
            let stdout = std::fs::read(self.logs.join(format!("{name}.stdout")))?;
            let outcome: Value = serde_json::from_slice(&stdout).with_context(|| {
                format!(
                    "{name}: grader printed no outcome (exit {}); see {}",
                    m.code,
                    self.logs.join(format!("{name}.stderr")).display()
                )
            })?;
            if m.code != 0 {
                bail!(
                    "{name}: grader exited {}: {} {}",
                    m.code,
                    outcome["status"],
                    outcome["error"]
                );
            }
            eprintln!(
                "kube-node: {} {mode} #{} {:.1} s",
                self.node,
                sub.id,
                m.wall.as_secs_f64()
            );
            runs.push((sub.clone(), outcome, t0, t1));
        }
        let wall_s = started.elapsed().as_secs_f64();
        let pod_cpu = match (cpu0, (self.pod_cpu)()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        self.finish(runs, mode, 1, wall_s, pod_cpu, grader_cpu)
    }

    /// Grades `subs` with one `grader batch --concurrency`.
    fn batch(&self, subs: &[Sub], concurrency: usize) -> anyhow::Result<(Phase, Vec<Sample>)> {
        let jobs = self.logs.join(format!("{}-batch-jobs.jsonl", self.node));
        let text: String = subs.iter().map(|s| format!("{}\n", s.line)).collect();
        std::fs::write(&jobs, text)?;
        let results = self.logs.join(format!("{}-batch-results", self.node));
        std::fs::create_dir_all(&results)?;
        if let Some((uid, _)) = &self.uid {
            chown(&self.logs, *uid)?;
        }
        let mut cmd = self.command();
        cmd.arg("batch")
            .arg(&jobs)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--progress",
                "none",
                "--results",
            ])
            .arg(&results);
        let cpu0 = (self.pod_cpu)();
        let name = format!("{}-batch", self.node);
        let m = proc::run(&mut cmd, &self.logs, &name, false)?;
        let pod_cpu = match (cpu0, (self.pod_cpu)()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        if m.code != 0 {
            bail!(
                "{name}: grader batch exited {}; see {}",
                m.code,
                self.logs.display()
            );
        }
        let mut runs = Vec::new();
        for sub in subs {
            let path = results.join(format!("submission_{}.json", sub.id));
            let outcome: Value = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
            )?;
            let end = std::fs::metadata(&path)?.modified()?;
            let took = Duration::from_millis(outcome["duration_ms"].as_u64().unwrap_or(0));
            runs.push((sub.clone(), outcome, end - took, end));
        }
        eprintln!(
            "kube-node: {} batch of {} at concurrency {concurrency}: {:.1} s",
            self.node,
            subs.len(),
            m.wall.as_secs_f64()
        );
        self.finish(
            runs,
            "batch",
            concurrency,
            m.wall.as_secs_f64(),
            pod_cpu,
            m.cpu,
        )
    }

    /// Checks the scores and builds the samples of one phase.
    fn finish(
        &self,
        runs: Vec<(Sub, Value, SystemTime, SystemTime)>,
        mode: &str,
        concurrency: usize,
        wall_s: f64,
        pod_cpu: Option<Duration>,
        grader_cpu: Duration,
    ) -> anyhow::Result<(Phase, Vec<Sample>)> {
        // Let the watch deliver the last states.
        std::thread::sleep(Duration::from_millis(300));
        let log = self.containerd_log.map(|f| f());
        let mut samples = Vec::new();
        for (sub, outcome, t0, t1) in runs {
            if outcome["status"] != "automatically_graded" {
                bail!(
                    "{} {mode} #{}: {} {} (logs: {})",
                    self.node,
                    sub.id,
                    outcome["status"],
                    outcome["error"],
                    outcome["logs"]
                );
            }
            let score = outcome["score"].as_f64().unwrap_or(f64::NAN);
            if score != sub.expected {
                bail!(
                    "{} {mode} #{}: score {score}, expected {}",
                    self.node,
                    sub.id,
                    sub.expected
                );
            }
            let seen = self
                .watch
                .get(&sub.pod)
                .ok_or_else(|| anyhow!("the watch never saw pod {}", sub.pod))?;
            let cri = log.as_deref().map_or_else(CriTimes::default, |l| {
                cri_times(l, &self.namespace, &sub.pod, seen.container_id.as_deref())
            });
            let (started, run_end) = if log.is_some() {
                (cri.container_started, cri.container_exited)
            } else {
                (seen.started, seen.succeeded)
            };
            let secs = |a: Option<SystemTime>, b: Option<SystemTime>| ms_between(a, b) / 1000.0;
            samples.push(Sample {
                node: self.node.into(),
                mode: mode.into(),
                submission_id: sub.id,
                username: sub.username.clone(),
                pod: sub.pod.clone(),
                score,
                expected_score: sub.expected,
                wall_ms: ms_between(Some(t0), Some(t1)),
                grading_ms: outcome["timings"]["grading_ms"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                start_to_created_ms: ms_between(Some(t0), seen.created),
                created_to_scheduled_ms: ms_between(seen.created, seen.scheduled),
                scheduled_to_started_ms: ms_between(seen.scheduled, started),
                started_to_succeeded_ms: ms_between(started, seen.succeeded),
                created_to_succeeded_ms: ms_between(seen.created, seen.succeeded),
                succeeded_to_end_ms: ms_between(seen.succeeded, Some(t1)),
                scheduled_to_sandbox_requested_ms: ms_between(
                    seen.scheduled,
                    cri.sandbox_requested,
                ),
                sandbox_ms: ms_between(cri.sandbox_requested, cri.sandbox_ready),
                sandbox_to_started_ms: ms_between(cri.sandbox_ready, cri.container_started),
                container_run_ms: if log.is_some() {
                    ms_between(started, run_end)
                } else {
                    f64::NAN
                },
                exited_to_succeeded_ms: if log.is_some() {
                    ms_between(run_end, seen.succeeded)
                } else {
                    f64::NAN
                },
                api_created_to_started_s: secs(seen.api_created, seen.api_started),
                api_container_run_s: secs(seen.api_started, seen.api_finished),
            });
        }
        let mut columns = BTreeMap::new();
        let keys = COLUMNS.iter().chain(CRI_COLUMNS).map(|(k, _)| *k).chain([
            "grading_ms",
            "api_created_to_started_s",
            "api_container_run_s",
        ]);
        for key in keys {
            let values: Vec<f64> = samples.iter().map(|s| column(s, key)).collect();
            columns.insert(key.to_string(), summarize(&values));
        }
        let n = samples.len().max(1) as f64;
        Ok((
            Phase {
                node: self.node.into(),
                mode: mode.into(),
                concurrency,
                submissions: samples.len(),
                wall_s,
                pod_cpu_s_per_submission: pod_cpu.map(|c| c.as_secs_f64() / n),
                grader_cpu_s_per_submission: grader_cpu.as_secs_f64() / n,
                columns,
                load_after: report::load_average(),
            },
            samples,
        ))
    }
}

fn chown(path: &Path, uid: u32) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()?;
    if !status.success() {
        bail!("chown -R {uid} {} failed: {status}", path.display());
    }
    Ok(())
}

/// `grader`'s configuration for both nodes (the same but for where the tool comes from).
fn write_config(path: &Path, service: &Path, namespace: &str, image: &str) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "backend = \"kube\"\nservice_dir = {}\nmax_grading_time = 600\n\n[kube]\n\
             context = \"testkit\"\nnamespace = \"{namespace}\"\n\
             default_image_name = {}\nimage_pull_policy = \"IfNotPresent\"\n\
             unschedulable_grace = 60\n\
             resources = {{ requests = {{ cpu = \"100m\", memory = \"128Mi\" }}, \
             limits = {{ cpu = \"2\", memory = \"1Gi\" }} }}\n",
            toml_str(&service.to_string_lossy()),
            toml_str(image),
        ),
    )?;
    Ok(())
}

/// The grading image: the arguments, else `deploy/image/build.sh --print`.
fn grading_image(root: &Path, args: &Args) -> anyhow::Result<(String, PathBuf)> {
    if let (Some(image), Some(archive)) = (&args.image, &args.image_archive) {
        return Ok((image.clone(), archive.clone()));
    }
    match kube_testkit::grading_image(root).context("run deploy/image/build.sh --print")? {
        Some(image) => Ok((image.name, image.archive)),
        None => bail!("the grading image is not built: run `bash deploy/image/build.sh`"),
    }
}

/// A fresh service directory of `count` submissions under `dir`.
fn service_dir(root: &Path, dir: &Path, count: usize) -> anyhow::Result<(PathBuf, Vec<Sub>)> {
    let service = dir.join("service");
    workdir::make_service_dir(root, &service, count.div_ceil(4))?;
    let mut subs = submissions(&service)?;
    subs.truncate(count);
    Ok((service, subs))
}

struct Plan<'a> {
    root: &'a Path,
    grader: &'a Path,
    args: &'a Args,
}

impl Plan<'_> {
    fn total(&self) -> usize {
        self.args.warmup
            + self.args.submissions
            + if self.args.concurrency > 0 {
                self.args.submissions
            } else {
                0
            }
    }

    /// Warm-up, one at a time, batch.
    fn phases(
        &self,
        driver: &Driver<'_>,
        subs: &[Sub],
    ) -> anyhow::Result<(Vec<Phase>, Vec<Sample>)> {
        let (w, n) = (self.args.warmup, self.args.submissions);
        let mut phases = Vec::new();
        let mut samples = Vec::new();
        if w > 0 {
            let (_, s) = driver.one_at_a_time(&subs[..w], "warm-up")?;
            samples.extend(s);
        }
        let (p, s) = driver.one_at_a_time(&subs[w..w + n], "one at a time")?;
        phases.push(p);
        samples.extend(s);
        if self.args.concurrency > 0 {
            let (p, s) = driver.batch(&subs[w + n..w + 2 * n], self.args.concurrency)?;
            phases.push(p);
            samples.extend(s);
        }
        Ok((phases, samples))
    }

    async fn real(
        &self,
        work: &Path,
        image: &str,
        archive: &Path,
    ) -> anyhow::Result<(NodeInfo, Vec<Phase>, Vec<Sample>)> {
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))?;
        let (service, subs) = service_dir(self.root, work, self.total())?;
        let logs = work.join("logs");
        let home = work.join("home");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(&home)?;
        let cp = ControlPlane::start().await?.ok_or_else(|| {
            anyhow!(
                "the test control plane binaries are missing: run `bash e2e/control-plane/build.sh`"
            )
        })?;
        eprintln!("kube-node: starting the real node (containerd, kubelet, the grading image)");
        let started = Instant::now();
        let node = RealNode::start(
            &cp,
            RealNodeConfig {
                images: vec![archive.to_path_buf()],
                ..Default::default()
            },
        )
        .await?
        .ok_or_else(|| anyhow!("the real node cannot run here (see SKIPPED above)"))?;
        let start_s = started.elapsed().as_secs_f64();
        let info = NodeInfo {
            node: "real".into(),
            start_s,
            details: node
                .timings
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_secs_f64()))
                .collect(),
            image: Some(image.to_string()),
        };
        let result = async {
            cp.create_namespace(NAMESPACE, true).await?;
            let admin = cp.client().await?;
            let mut claim: PersistentVolumeClaim =
                serde_yaml::from_str(&std::fs::read_to_string(self.root.join("deploy/pvc.yaml"))?)?;
            claim.metadata.namespace = Some(NAMESPACE.into());
            let claim_name = claim.metadata.name.clone().unwrap_or_else(|| CLAIM.into());
            node.create_host_volume(
                &admin,
                "grader-data-bench",
                &service,
                "50Gi",
                NAMESPACE,
                &claim_name,
            )
            .await?;
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), NAMESPACE);
            claims.create(&PostParams::default(), &claim).await?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while claims
                .get(&claim_name)
                .await?
                .status
                .and_then(|s| s.phase)
                .as_deref()
                != Some("Bound")
            {
                if Instant::now() > deadline {
                    bail!("claim {claim_name} not bound within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let kubeconfig = work.join("admin.kubeconfig");
            std::fs::copy(cp.kubeconfig_path(), &kubeconfig)?;
            let config = work.join("grader.toml");
            write_config(&config, &service, NAMESPACE, image)?;
            chown(work, UID)?;
            let watch = PodWatch::start(admin.clone(), NAMESPACE).await?;
            let containerd_log = || node.log("containerd");
            let driver = Driver {
                node: "real",
                grader: self.grader,
                config,
                kubeconfig,
                uid: Some((UID, home.clone())),
                namespace: NAMESPACE.into(),
                logs: logs.clone(),
                watch: &watch,
                containerd_log: Some(&containerd_log),
                pod_cpu: &kubepods_cpu,
            };
            let out = tokio::task::block_in_place(|| self.phases(&driver, &subs));
            // The node's own logs, beside grader's (kept with GRADER_BENCH_KEEP=1).
            for name in ["kubelet", "containerd"] {
                let _ = std::fs::write(logs.join(format!("node-{name}.log")), node.log(name));
            }
            out
        }
        .await;
        node.stop();
        drop(cp);
        let (phases, samples) = result?;
        Ok((info, phases, samples))
    }

    async fn agent(
        &self,
        work: &Path,
        image: &str,
    ) -> anyhow::Result<(NodeInfo, Vec<Phase>, Vec<Sample>)> {
        let (service, subs) = service_dir(self.root, work, self.total())?;
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs)?;
        let started = Instant::now();
        let cluster = Cluster::start(
            &service,
            BTreeMap::from([("grader-convert".to_string(), self.args.convert.clone())]),
        )
        .await?;
        let info = NodeInfo {
            node: "agent".into(),
            start_s: started.elapsed().as_secs_f64(),
            details: BTreeMap::new(),
            image: None,
        };
        let result = async {
            let config = work.join("grader.toml");
            write_config(&config, &service, NAMESPACE, image)?;
            let watch = PodWatch::start(cluster.cp.client().await?, NAMESPACE).await?;
            let cpu = || Some(children_cpu());
            let driver = Driver {
                node: "agent",
                grader: self.grader,
                config,
                kubeconfig: cluster.cp.kubeconfig_path().to_path_buf(),
                uid: None,
                namespace: NAMESPACE.into(),
                logs,
                watch: &watch,
                containerd_log: None,
                pod_cpu: &cpu,
            };
            tokio::task::block_in_place(|| self.phases(&driver, &subs))
        }
        .await;
        cluster.stop().await;
        let (mut phases, samples) = result?;
        // The children's CPU counted `grader` too: leave only the node agent's processes.
        for p in &mut phases {
            if let Some(c) = p.pod_cpu_s_per_submission.as_mut() {
                *c -= p.grader_cpu_s_per_submission;
            }
        }
        Ok((info, phases, samples))
    }
}

pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    let grader = std::fs::canonicalize(&args.grader)
        .with_context(|| format!("grader binary {}", args.grader.display()))?;
    if args.submissions == 0 {
        bail!("--submissions must be positive");
    }
    let load_before = report::load_average();
    let plan = Plan {
        root,
        grader: &grader,
        args: &args,
    };
    let mut nodes = Vec::new();
    let mut phases = Vec::new();
    let mut samples = Vec::new();
    let image = grading_image(root, &args);
    for node in &args.nodes {
        let work = Work::new(&format!("grader-bench-kube-node-{node}-"))?;
        let (info, p, s) = match node.as_str() {
            "real" => {
                let (image, archive) = image.as_ref().map_err(|e| anyhow!("{e:#}"))?;
                plan.real(work.path(), image, archive).await?
            }
            "agent" => {
                let image = image
                    .as_ref()
                    .map_or("grader.invalid/grading:unused", |(i, _)| i.as_str());
                plan.agent(work.path(), image).await?
            }
            other => bail!("unknown node {other:?} (real, agent)"),
        };
        nodes.push(info);
        phases.extend(p);
        samples.extend(s);
    }
    let results = Results {
        label: args.label.clone(),
        load_before,
        load_after: report::load_average(),
        submissions: args.submissions,
        concurrency: args.concurrency,
        warmup: args.warmup,
        nodes,
        phases,
        samples,
    };
    let md = markdown(&results);
    report::write(out, &args.name, &results, &md)
}

/// `median / p90 / max` of a summary, in ms.
fn cell(s: Option<&Summary>) -> String {
    match s {
        Some(s) if s.n > 0 => format!("{} / {} / {}", ms(s.median), ms(s.p90), ms(s.max)),
        _ => "-".into(),
    }
}

fn node_name(node: &str) -> &'static str {
    match node {
        "real" => "real node",
        _ => "node agent",
    }
}

fn markdown(r: &Results) -> String {
    let heads: Vec<String> = r
        .phases
        .iter()
        .map(|p| {
            if p.mode == "batch" {
                format!("{}, batch ({} at once)", node_name(&p.node), p.concurrency)
            } else {
                format!("{}, {}", node_name(&p.node), p.mode)
            }
        })
        .collect();
    let mut header = vec!["ms: median / p90 / max".to_string()];
    header.extend(heads);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    let rows = COLUMNS
        .iter()
        .take(COLUMNS.len() - 1)
        .chain(CRI_COLUMNS)
        .chain(&[
            (
                "grading_ms",
                "`timings.grading_ms` (backend: pod created → outcome)",
            ),
            ("wall_ms", "**per submission**"),
        ]);
    for (key, head) in rows {
        let mut row = vec![head.to_string()];
        row.extend(r.phases.iter().map(|p| cell(p.columns.get(*key))));
        t.row(row);
    }
    let mut row = vec!["wall time of the phase / submissions, ms".to_string()];
    row.extend(
        r.phases
            .iter()
            .map(|p| ms(p.wall_s * 1000.0 / p.submissions.max(1) as f64)),
    );
    t.row(row);
    let mut row = vec!["CPU s per submission: grading (pods / agent's tool)".to_string()];
    row.extend(r.phases.iter().map(|p| {
        p.pod_cpu_s_per_submission
            .map_or("-".into(), |c| format!("{c:.2}"))
    }));
    t.row(row);
    let mut row = vec!["CPU s per submission: `grader` + git".to_string()];
    row.extend(
        r.phases
            .iter()
            .map(|p| format!("{:.2}", p.grader_cpu_s_per_submission)),
    );
    t.row(row);
    let mut row = vec!["API timestamps (1 s): created → container `startedAt`, s".to_string()];
    row.extend(r.phases.iter().map(|p| {
        p.columns
            .get("api_created_to_started_s")
            .filter(|s| s.n > 0)
            .map_or("-".into(), |s| {
                format!("{:.0} / {:.0} / {:.0}", s.median, s.p90, s.max)
            })
    }));
    t.row(row);
    let mut row = vec!["API timestamps (1 s): `startedAt` → `finishedAt`, s".to_string()];
    row.extend(r.phases.iter().map(|p| {
        p.columns
            .get("api_container_run_s")
            .filter(|s| s.n > 0)
            .map_or("-".into(), |s| {
                format!("{:.0} / {:.0} / {:.0}", s.median, s.p90, s.max)
            })
    }));
    t.row(row);

    let mut per = Table::new(&[
        "node",
        "run",
        "submission",
        "score (expected)",
        "created → scheduled",
        "scheduled → started",
        "started → `Succeeded`",
        "created → `Succeeded`",
        "`Succeeded` → outcome",
        "per submission",
    ]);
    for s in &r.samples {
        per.row(vec![
            node_name(&s.node).into(),
            s.mode.clone(),
            format!("#{} {}", s.submission_id, s.username),
            format!("{} ({})", s.score, s.expected_score),
            ms(s.created_to_scheduled_ms),
            ms(s.scheduled_to_started_ms),
            ms(s.started_to_succeeded_ms),
            ms(s.created_to_succeeded_ms),
            ms(s.succeeded_to_end_ms),
            ms(s.wall_ms),
        ]);
    }
    let starts: Vec<String> = r
        .nodes
        .iter()
        .map(|n| {
            let details: Vec<String> = n
                .details
                .iter()
                .map(|(k, v)| format!("{k} {v:.1} s"))
                .collect();
            if details.is_empty() {
                format!("{} {:.1} s", node_name(&n.node), n.start_s)
            } else {
                format!(
                    "{} {:.1} s ({})",
                    node_name(&n.node),
                    n.start_s,
                    details.join(", ")
                )
            }
        })
        .collect();
    let image = r
        .nodes
        .iter()
        .find_map(|n| n.image.clone())
        .map_or(String::new(), |i| format!(" Grading image `{i}`."));
    let compare = |mode: &str, key: &str| -> Option<String> {
        let of = |node: &str| {
            r.phases
                .iter()
                .find(|p| p.node == node && p.mode == mode)
                .and_then(|p| p.columns.get(key))
                .map(|s| s.median)
        };
        let (real, agent) = (of("real")?, of("agent")?);
        Some(format!(
            "{} ms on the real node against {} ms on the node agent ({:.2}×, +{} ms)",
            ms(real),
            ms(agent),
            real / agent,
            ms(real - agent)
        ))
    };
    let mut verdict = String::new();
    for (mode, what) in [
        ("one at a time", "one at a time"),
        ("batch", "in the batch"),
    ] {
        if let Some(c) = compare(mode, "wall_ms") {
            verdict.push_str(&format!("Per submission {what}, median: {c}. "));
        }
        if let Some(c) = compare(mode, "created_to_succeeded_ms") {
            verdict.push_str(&format!("Pod created → `Succeeded` {what}, median: {c}.\n"));
        }
    }
    let label = if r.label.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.label)
    };
    format!(
        "### Kubernetes: real node beside the node agent{label}\n\n\
         The example course's submissions graded by the `grader` binary with the real grading \
         tool, on the test control plane with either node, in one run: the **real node** \
         (kube-testkit's `RealNode`: upstream kubelet, kube-scheduler, kube-controller-manager, \
         Debian's containerd and runc, the grading image of `deploy/image/build.sh`, `grader` \
         and the pods as uid 1000) and the **node agent** (the host's `grader-convert` run as \
         each pod's process). Per node: {} warm-up submission(s) left out, {} graded one at a \
         time (`grader autograde`; per submission = its wall time), {} more in one `grader \
         batch --concurrency {}` (per submission = the outcome's `duration_ms`); every score \
         checked against `expected.jsonl`.{image} Node start: {}. Load average before / after: \
         {} / {}.\n\n\
         Times of a pod's life come from an admin watch of the namespace, stamped when each \
         state arrives (ms; the API's own timestamps are whole seconds, last two rows). \
         Container started / exited on the real node: containerd's log (ns), which also gives \
         the sandbox rows; on the node agent: the watch (started → `Succeeded` is then the \
         tool's run). CPU: the real node's `kubepods` cgroup (all containers, pause included); \
         the node agent's processes.\n\n{}\n{}\n\
         #### Per submission (ms)\n\n{}",
        r.warmup,
        r.submissions,
        if r.concurrency > 0 { r.submissions } else { 0 },
        r.concurrency,
        starts.join("; "),
        r.load_before,
        r.load_after,
        t.render(),
        verdict,
        per.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"time="2026-12-01T04:01:12.985512127Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:autograde-job-carol-3,Uid:29cd,Namespace:grading,Attempt:0,}"
time="2026-12-01T04:01:12.990000000Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:autograde-job-carol-3-11,Uid:aaaa,Namespace:grading,Attempt:0,}"
time="2026-12-01T04:01:13.180802915Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:autograde-job-carol-3,Uid:29cd,Namespace:grading,Attempt:0,} returns sandbox id \"8162\""
time="2026-12-01T04:01:13.250000000Z" level=info msg="StartContainer for \"8512\""
time="2026-12-01T04:01:13.303983788Z" level=info msg="StartContainer for \"8512\" returns successfully"
time="2026-12-01T04:01:19.283209032Z" level=info msg="shim disconnected" id=8512
time="2026-12-01T04:01:20.536094382Z" level=info msg="shim disconnected" id=8162
"#;

    fn at(s: &str) -> Option<SystemTime> {
        Some(SystemTime::from(s.parse::<Timestamp>().unwrap()))
    }

    #[test]
    fn containerd_lines_of_one_pod() {
        let t = cri_times(LOG, "grading", "autograde-job-carol-3", Some("8512"));
        assert_eq!(t.sandbox_requested, at("2026-12-01T04:01:12.985512127Z"));
        assert_eq!(t.sandbox_ready, at("2026-12-01T04:01:13.180802915Z"));
        assert_eq!(t.container_started, at("2026-12-01T04:01:13.303983788Z"));
        assert_eq!(t.container_exited, at("2026-12-01T04:01:19.283209032Z"));
        let ms = ms_between(t.container_started, t.container_exited);
        assert!((ms - 5979.225244).abs() < 1e-3, "{ms}");
        // Another pod whose name starts the same is not this one; no container id, no
        // container times.
        let other = cri_times(LOG, "grading", "autograde-job-carol-3-11", None);
        assert_eq!(other.sandbox_requested, at("2026-12-01T04:01:12.990Z"));
        assert_eq!(other.sandbox_ready, None);
        assert_eq!(other.container_started, None);
        assert!(ms_between(other.sandbox_ready, other.sandbox_requested).is_nan());
    }

    #[test]
    fn task_exit_lines_give_the_exit_time() {
        let log = "time=\"2026-12-01T04:01:19.5Z\" level=info msg=\"TaskExit event &TaskExit{ContainerID:8512,ID:8512,Pid:7,ExitStatus:0,ExitedAt:2026-12-01 04:01:19.25 +0000 UTC,}\"";
        let t = cri_times(log, "grading", "p", Some("8512"));
        assert_eq!(t.container_exited, at("2026-12-01T04:01:19.25Z"));
    }
}

//! One warm worker: a long-lived Python process that imported the grading tool once and runs
//! each job as a forked child (`shim/grader_warm_worker.py`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Event, Hello, PROTOCOL, Request};
use super::{RunChild, WarmError, find_program, python_of};
use crate::local::passed_env;
use crate::logs::LogBuffer;
use crate::process_tree;

/// The worker's source, sent to its stdin when it starts (never read from disk).
pub const SHIM: &str = include_str!("../../shim/grader_warm_worker.py");

/// What `python -c` runs: reads the shim source (a JSON string) from the first line of stdin
/// and executes it as `__main__`. `grader` sends nothing else before the hello, so the
/// buffered read takes exactly that line. The working directory (`/`) is dropped from
/// `sys.path` so that nothing a job writes can be imported by a worker.
const BOOTSTRAP: &str = "import sys,json;sys.path[:]=[p for p in sys.path if p not in ('','/')];\
src=json.loads(sys.stdin.readline());\
exec(compile(src,'grader_warm_worker.py','exec'),{'__name__':'__main__','__builtins__':__builtins__})";

/// Set to `1` in `grader`'s environment, makes every job's log end with the line
/// `grader-warm-phases: {json}` (the shim's `--phase-timings`: kernel start, readiness, cells,
/// shutdown and the tool's notebooks, in ms from the job child's start).
pub const PHASES_ENV: &str = "WARM_WORKER_PHASES";

/// Whether workers log the phases of every job (only when [`PHASES_ENV`] is `1`).
pub fn phase_timings() -> bool {
    std::env::var_os(PHASES_ENV).is_some_and(|v| v == "1")
}

/// How long a job waits for the worker to confirm that a killed job's processes are gone.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long [`Worker::shutdown`] waits for the worker to exit on its own.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to start workers for one grading tool.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The python of the tool's environment.
    pub python: PathBuf,
    /// A console script (`grader-convert`) or `module:function`.
    pub entry_point: String,
    /// How failure reasons name the tool (the configured `convert_executable`); also the
    /// jobs' `sys.argv[0]`.
    pub tool_label: String,
    /// The worker's environment (by default the variables the local backend passes on).
    pub env: Vec<(String, OsString)>,
    /// How long a worker may take to import the tool and say hello.
    pub start_timeout: Duration,
    /// The worker starts each job's kernels ahead of need (the shim's `--prestart-kernels`);
    /// a pool sets it from [`PoolSettings::prestart_kernels`](super::PoolSettings).
    pub prestart_kernels: bool,
}

impl WorkerSpec {
    /// Workers for the console script `convert_executable`, with the python named on its `#!`
    /// line (see [`python_of`]).
    pub fn for_tool(convert_executable: &Path) -> Result<WorkerSpec, WarmError> {
        let path = std::env::var_os("PATH");
        let script = find_program(convert_executable, path.as_deref())
            .ok_or_else(|| WarmError::ToolNotFound(convert_executable.to_path_buf()))?;
        let python = python_of(&script).ok_or(WarmError::NoPython(script))?;
        let entry_point = convert_executable
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("grader-convert")
            .to_string();
        Ok(WorkerSpec {
            python,
            entry_point,
            tool_label: convert_executable.to_string_lossy().into_owned(),
            env: passed_env().map(|(k, v)| (k.to_string(), v)).collect(),
            start_timeout: Duration::from_secs(60),
            prestart_kernels: super::DEFAULT_PRESTART_KERNELS,
        })
    }
}

/// What one job asks a worker to run.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub argv: Vec<String>,
    pub env: BTreeMap<&'static str, String>,
    pub cwd: String,
    /// An existing file for the child's stdout and stderr. The worker writes at most
    /// `log_cap` bytes to it, the head and the tail of the output as [`LogBuffer`] keeps them,
    /// so that a job cannot fill the disk.
    pub log_path: String,
    /// `log_cap_bytes`.
    pub log_cap: usize,
}

/// How a job on a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The child exited by itself; `strays` processes it left behind were killed.
    Exited { status: ExitStatus, strays: u32 },
    /// The time limit passed; the job's processes were killed and the worker is still usable.
    TimedOut,
    /// The job was cancelled; its processes were killed and the worker is still usable.
    Cancelled,
}

/// A job a worker could not run to its end; the worker must not be used again.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct WorkerFault {
    /// Whether the job's child had started (so student code may have run).
    pub started: bool,
    pub detail: String,
}

/// A started worker, used by one job at a time.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    pid: u32,
    /// `None` once closed (the worker's signal to exit).
    stdin: Option<ChildStdin>,
    events: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<LogBuffer>>,
    hello: Hello,
    baseline_rss: Option<u64>,
    jobs: u64,
    next_id: u64,
    idle_since: Instant,
    last_log_dropped: Option<u64>,
}

impl Worker {
    /// Starts a worker and waits (up to the spec's start timeout) for its hello.
    pub async fn start(spec: &WorkerSpec) -> Result<Worker, WarmError> {
        let mut cmd = Command::new(&spec.python);
        cmd.arg("-c")
            .arg(BOOTSTRAP)
            .arg("--entry-point")
            .arg(&spec.entry_point)
            .arg("--argv0")
            .arg(&spec.tool_label)
            .arg("--protocol")
            .arg(PROTOCOL.to_string())
            .args(spec.prestart_kernels.then_some("--prestart-kernels"))
            .args(phase_timings().then_some("--phase-timings"))
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not in grader's process group: a terminal's Ctrl-C is grader's to handle.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| WarmError::Spawn {
            python: spec.python.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let stderr = Arc::new(Mutex::new(LogBuffer::new(16 * 1024)));
        if let Some(pipe) = child.stderr.take() {
            let buf = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(target: "grader_local::warm", worker = pid, "{line}");
                    if let Ok(mut b) = buf.lock() {
                        b.push_line(&line);
                    }
                }
            });
        }
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            process_tree::kill_tree(pid);
            return Err(not_ready(
                spec,
                "its pipes could not be opened".into(),
                &stderr,
            ));
        };
        let mut events = BufReader::new(stdout).lines();
        let mut source = serde_json::to_string(SHIM).unwrap_or_default();
        source.push('\n');
        let hello = async {
            stdin
                .write_all(source.as_bytes())
                .await
                .map_err(|e| format!("it did not take its source ({e})"))?;
            stdin.flush().await.map_err(|e| e.to_string())?;
            match events.next_line().await {
                Ok(Some(line)) => match Event::parse(&line)? {
                    Event::Hello(h) => Ok(h),
                    other => Err(format!("it sent {other:?} before its hello")),
                },
                Ok(None) => Err("it exited before its hello".to_string()),
                Err(e) => Err(format!("its output could not be read ({e})")),
            }
        };
        let hello = match tokio::time::timeout(spec.start_timeout, hello).await {
            Ok(Ok(h)) if h.v != PROTOCOL => Err(format!(
                "it speaks protocol version {}, this grader speaks {PROTOCOL}",
                h.v
            )),
            Ok(Ok(h)) if !h.ok => Err(h.error.unwrap_or_else(|| "it could not start".into())),
            Ok(Ok(h)) => Ok(h),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no hello within {}s", spec.start_timeout.as_secs())),
        };
        let hello = match hello {
            Ok(h) => h,
            Err(reason) => {
                process_tree::kill_tree(pid);
                let _ = child.wait().await;
                // Let the stderr reader take the last lines of a failed import.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(not_ready(spec, reason, &stderr));
            }
        };
        tracing::info!(
            pid,
            tool = hello.tool.as_deref().unwrap_or("?"),
            tool_version = hello.tool_version.as_deref().unwrap_or("?"),
            python = hello.python.as_deref().unwrap_or("?"),
            prestart_kernels = hello.prestart_kernels,
            "warm grading worker ready"
        );
        Ok(Worker {
            child,
            pid,
            stdin: Some(stdin),
            events,
            stderr,
            baseline_rss: rss_bytes(pid),
            hello,
            jobs: 0,
            next_id: 1,
            idle_since: Instant::now(),
            last_log_dropped: None,
        })
    }

    /// The worker's process id (the parent of its jobs' children).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the worker reported when it started.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Jobs this worker has run.
    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    /// How far the worker's resident memory has grown since its hello, in bytes.
    pub fn rss_growth(&self) -> Option<u64> {
        Some(rss_bytes(self.pid)?.saturating_sub(self.baseline_rss?))
    }

    /// Bytes of the last job's output its log left out between head and tail; `None` when
    /// the worker did not report the job's end (its log then holds at most the head).
    pub fn last_log_dropped(&self) -> Option<u64> {
        self.last_log_dropped
    }

    /// How long the worker has been waiting for a job.
    pub fn idle_for(&self) -> Duration {
        self.idle_since.elapsed()
    }

    /// The exit status if the worker has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            Ok(None) => None,
            // Cannot be waited for: treat it as gone.
            Err(_) => Some(protocol::exit_status(None, None)),
        }
    }

    /// What the worker printed to stderr lately.
    pub fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr)
    }

    /// Checks that the worker answers within `within`.
    pub async fn ping(&mut self, within: Duration) -> Result<(), String> {
        let id = self.take_id();
        let ping = async {
            self.send(&Request::Ping { id }).await?;
            loop {
                match self.next_event().await? {
                    Event::Pong { id: Some(i), .. } if i == id => return Ok(()),
                    other => tracing::debug!(pid = self.pid, ?other, "ignored while pinging"),
                }
            }
        };
        match tokio::time::timeout(within, ping).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer to a ping within {}ms",
                within.as_millis()
            )),
        }
    }

    /// Runs one job: its child is killed when `max` passes or `cancel` fires (the worker
    /// survives that). A fault means the worker is broken; the caller must drop it.
    pub async fn run(
        &mut self,
        job: &JobRequest,
        max: Duration,
        cancel: &CancellationToken,
    ) -> Result<RunEnd, WorkerFault> {
        let id = self.take_id();
        self.jobs += 1;
        self.last_log_dropped = None;
        let (log_head, log_tail) = super::log_split(job.log_cap);
        let request = Request::Run {
            id,
            argv: &job.argv,
            env: &job.env,
            cwd: &job.cwd,
            log_path: &job.log_path,
            log_head: log_head as u64,
            log_tail: log_tail as u64,
        };
        let mut child = RunChild::default();
        if let Err(detail) = self.send(&request).await {
            return Err(self.fault(false, &detail));
        }
        let deadline = tokio::time::sleep(max);
        tokio::pin!(deadline);
        let stopped = loop {
            tokio::select! {
                event = self.next_event() => match event {
                    Ok(Event::Started { id: i, pid }) if i == id => child.set(pid),
                    Ok(Event::Exited { id: i, exit_code, signal, strays, log_dropped }) if i == id => {
                        self.idle_since = Instant::now();
                        self.last_log_dropped = Some(log_dropped);
                        return Ok(RunEnd::Exited {
                            status: protocol::exit_status(exit_code, signal),
                            strays,
                        });
                    }
                    Ok(Event::Error { message, .. }) => {
                        return Err(self.fault(child.started(), &format!("it refused the job: {message}")));
                    }
                    Ok(other) => {
                        let detail = format!("it sent {other:?} during job {id}");
                        return Err(self.fault(child.started(), &detail));
                    }
                    Err(detail) => {
                        // The worker is gone: nothing will reap or kill the job but us.
                        child.kill();
                        return Err(self.fault(child.started(), &detail));
                    }
                },
                _ = &mut deadline => break RunEnd::TimedOut,
                _ = cancel.cancelled() => break RunEnd::Cancelled,
            }
        };
        // Ask the worker to kill the tree and kill it from here as well; then wait until the
        // worker has reaped it, so that nothing of the job is left when this returns.
        let asked = self.send(&Request::Kill { id }).await;
        child.kill();
        let confirmed = tokio::time::timeout(KILL_GRACE, async {
            loop {
                match self.next_event().await? {
                    Event::Started { id: i, pid } if i == id => {
                        child.set(pid);
                        child.kill();
                    }
                    Event::Exited {
                        id: i, log_dropped, ..
                    } if i == id => {
                        self.last_log_dropped = Some(log_dropped);
                        return Ok(());
                    }
                    other => tracing::debug!(pid = self.pid, ?other, "ignored while killing"),
                }
            }
        })
        .await;
        match (asked, confirmed) {
            (Ok(()), Ok(Ok(()))) => {
                self.idle_since = Instant::now();
                Ok(stopped)
            }
            (Err(detail), _) | (_, Ok(Err(detail))) => Err(self.fault(true, &detail)),
            (_, Err(_)) => Err(self.fault(
                true,
                &format!(
                    "it did not confirm within {}s that the job's processes were killed",
                    KILL_GRACE.as_secs()
                ),
            )),
        }
    }

    /// Stops the worker: closes its stdin (it kills a running job and exits), and kills its
    /// tree if it has not exited within a few seconds.
    pub async fn shutdown(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(SHUTDOWN_GRACE, self.child.wait())
            .await
            .is_err()
        {
            process_tree::kill_tree(self.pid);
            let _ = self.child.wait().await;
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn send(&mut self, request: &Request<'_>) -> Result<(), String> {
        let line = request.line();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err("it is shutting down".into());
        };
        let written = match stdin.write_all(line.as_bytes()).await {
            Ok(()) => stdin.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| format!("it did not take the request ({e})"))
    }

    async fn next_event(&mut self) -> Result<Event, String> {
        match self.events.next_line().await {
            Ok(Some(line)) => Event::parse(&line),
            Ok(None) => Err("it exited".to_string()),
            Err(e) => Err(format!("its output could not be read ({e})")),
        }
    }

    fn fault(&mut self, started: bool, what: &str) -> WorkerFault {
        let status = match self.exited() {
            Some(s) => format!(" ({s})"),
            None => String::new(),
        };
        WorkerFault {
            started,
            detail: format!(
                "the warm grading worker (pid {}) failed: {what}{status}{}",
                self.pid,
                super::stderr_suffix(&self.stderr_tail())
            ),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Kills the worker with its job, if any (its child stays its child until reaped).
        if let Ok(None) = self.child.try_wait() {
            process_tree::kill_tree(self.pid);
        }
    }
}

fn stderr_tail(buf: &Arc<Mutex<LogBuffer>>) -> String {
    buf.lock()
        .map(|b| b.clone().into_string())
        .unwrap_or_default()
}

fn not_ready(spec: &WorkerSpec, reason: String, stderr: &Arc<Mutex<LogBuffer>>) -> WarmError {
    WarmError::NotReady {
        python: spec.python.clone(),
        reason,
        stderr: stderr_tail(stderr),
    }
}

/// Resident memory of `pid` (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

//! The local backend: the grading tool as a process below `grader` (and a reaper of its job).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendFailure, BackendOutput, FailureKind, GradingBackend, GradingTask};
use crate::kernel_dir::KernelDir;
use crate::logs::LogBuffer;
use crate::reaper::{self, Reaper, Spawned, ToolCommand, harden_process};

/// Environment variables passed through to the grading tool; everything else of `grader`'s
/// environment (credentials, kubeconfig, configuration) stays out of reach of student code.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "JUPYTER_PATH",
    "JUPYTER_DATA_DIR",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_RUNTIME_DIR",
];

/// The [`PASSED_ENV`] variables that are set in `grader`'s environment, with their values.
pub fn passed_env() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    PASSED_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (*k, v)))
}

/// Runs `{convert_executable} autograde -i IN -o OUT -p *.ipynb --ExecutePreprocessor.timeout=N`
/// (or `generate_feedback ...`) with `ASSIGNMENT_SETTINGS` set, as its own process group, below
/// a reaper of its own: whatever the job starts, daemons included, ends with the job, and the
/// tool dies with `grader`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    executable: String,
    log_cap: usize,
}

impl LocalBackend {
    /// A backend running `executable` (name in `PATH` or a path), keeping up to `log_cap` bytes
    /// of its output. Makes the calling process non-dumpable ([`harden_process`]), so that the
    /// tool's code cannot read its environment through `/proc`.
    pub fn new(executable: impl Into<String>, log_cap: usize) -> Self {
        if let Err(e) = harden_process() {
            tracing::warn!("could not make grader non-dumpable: {e}");
        }
        LocalBackend {
            executable: executable.into(),
            log_cap,
        }
    }

    fn start_failure(&self, e: std::io::Error) -> BackendFailure {
        BackendFailure::new(
            FailureKind::ToolNotStarted,
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "grading tool {:?} was not found (convert_executable)",
                    self.executable
                )
            } else {
                format!("could not start grading tool {:?}: {e}", self.executable)
            },
        )
    }
}

/// How long output still in the pipes is read once every process of the job is dead.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

async fn drain(mut pipe: impl tokio::io::AsyncRead + Unpin, logs: Arc<Mutex<LogBuffer>>) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut l) = logs.lock() {
                    l.push(&chunk[..n]);
                }
            }
        }
    }
}

#[async_trait]
impl GradingBackend for LocalBackend {
    fn name(&self) -> &str {
        "local"
    }

    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure> {
        let input = task.input_dir.to_string_lossy();
        let output = task.output_dir.to_string_lossy();
        // Removed once every process of the job is dead (after `reaper.end()` below).
        let kernels = KernelDir::create().map_err(kernel_dir_failure)?;
        let args = task.tool_args(
            &input,
            &output,
            false,
            &kernels.connection_file().to_string_lossy(),
        );
        let cmd = ToolCommand {
            program: PathBuf::from(&self.executable),
            args: args.clone(),
            env: passed_env()
                .map(|(k, v)| (OsString::from(k), v))
                .chain([(
                    OsString::from("ASSIGNMENT_SETTINGS"),
                    OsString::from(task.settings_json()),
                )])
                .collect(),
            cwd: task.input_dir.clone(),
        };
        let deadline = Instant::now() + task.max_grading_time;
        tracing::info!(executable = %self.executable, ?args, "starting grading tool");
        let logs = Arc::new(Mutex::new(LogBuffer::new(self.log_cap)));
        let (mut reaper, readers) = tokio::select! {
            started = start_retrying_busy(&cmd, &logs) => {
                started.map_err(|e| self.start_failure(e))?
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(BackendFailure::timed_out(task.max_grading_time));
            }
            _ = cancel.cancelled() => {
                return Err(BackendFailure::cancelled());
            }
        };

        // The job ends when the tool ends (or time is up), not when its pipes close: a daemon
        // may hold them open.
        let ended = tokio::select! {
            status = reaper.exited() => Ok(status),
            _ = tokio::time::sleep_until(deadline) => Err(BackendFailure::timed_out(task.max_grading_time)),
            _ = cancel.cancelled() => Err(BackendFailure::cancelled()),
        };
        reaper.end().await;
        drop(kernels);
        // Every writer of the pipes is dead now; what they wrote is still read, briefly.
        for r in readers {
            let abort = r.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, r).await.is_err() {
                abort.abort();
            }
        }
        let logs = take(&logs);
        match ended {
            Ok(Ok(s)) if s.success() => Ok(BackendOutput { logs }),
            Ok(Ok(s)) => Err(BackendFailure::tool_exited(&self.executable, s).with_logs(logs)),
            Ok(Err(e)) => Err(BackendFailure::new(
                FailureKind::Infrastructure,
                format!("could not wait for grading tool: {e}"),
            )
            .with_logs(logs)),
            Err(failure) => Err(failure.with_logs(logs)),
        }
    }
}

/// The failure of a job whose [`KernelDir`] could not be created.
pub(crate) fn kernel_dir_failure(e: std::io::Error) -> BackendFailure {
    BackendFailure::new(
        FailureKind::Infrastructure,
        format!("could not create the job's directory for its kernels' sockets: {e}"),
    )
}

/// Starts the tool below a reaper, reading its output into `logs`, and waits until it was
/// executed; retries a few times while the executable is "text file busy" (ETXTBSY): a tool
/// that was just written, or whose write handle another thread's fork briefly holds.
async fn start_retrying_busy(
    cmd: &ToolCommand,
    logs: &Arc<Mutex<LogBuffer>>,
) -> std::io::Result<(Reaper, [JoinHandle<()>; 2])> {
    let mut attempt = 0;
    loop {
        let Spawned {
            mut reaper,
            stdout,
            stderr,
        } = reaper::spawn(cmd)?;
        let readers = [
            tokio::spawn(drain(stdout, logs.clone())),
            tokio::spawn(drain(stderr, logs.clone())),
        ];
        match reaper.started().await {
            Ok(tool) => {
                tracing::debug!(tool, reaper = reaper.pid(), "grading tool started");
                return Ok((reaper, readers));
            }
            Err(e) => {
                reaper.end().await;
                for r in readers {
                    r.abort();
                }
                if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 5 {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                } else {
                    return Err(e);
                }
            }
        }
    }
}

fn take(logs: &Arc<Mutex<LogBuffer>>) -> String {
    logs.lock()
        .map(|mut l| std::mem::replace(&mut *l, LogBuffer::new(64)).into_string())
        .unwrap_or_default()
}

//! The local backend: the grading tool as a child process of `grader`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendFailure, BackendOutput, GradingBackend, GradingTask};
use crate::logs::LogBuffer;
use crate::process_tree;

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
/// (or `generate_feedback ...`) with `ASSIGNMENT_SETTINGS` set, as its own process group.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    executable: String,
    log_cap: usize,
}

impl LocalBackend {
    /// A backend running `executable` (name in `PATH` or a path), keeping up to `log_cap` bytes
    /// of its output.
    pub fn new(executable: impl Into<String>, log_cap: usize) -> Self {
        LocalBackend {
            executable: executable.into(),
            log_cap,
        }
    }
}

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
        let args = task.tool_args(&input, &output, false);
        let mut cmd = Command::new(&self.executable);
        cmd.args(&args)
            .env_clear()
            .envs(passed_env())
            .env("ASSIGNMENT_SETTINGS", task.settings_json())
            .current_dir(&task.input_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        tracing::info!(executable = %self.executable, ?args, "starting grading tool");
        let mut child = spawn_retrying_busy(&mut cmd).await.map_err(|e| {
            BackendFailure::new(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "grading tool {:?} was not found (convert_executable)",
                    self.executable
                )
            } else {
                format!("could not start grading tool {:?}: {e}", self.executable)
            })
        })?;
        let pid = child.id();
        let logs = Arc::new(Mutex::new(LogBuffer::new(self.log_cap)));
        let readers = [
            child
                .stdout
                .take()
                .map(|p| tokio::spawn(drain(p, logs.clone()))),
            child
                .stderr
                .take()
                .map(|p| tokio::spawn(drain(p, logs.clone()))),
        ];

        let ended = tokio::select! {
            status = child.wait() => Ok(status),
            _ = tokio::time::sleep(task.max_grading_time) => Err(format!(
                "grading exceeded max_grading_time of {}s and was killed",
                task.max_grading_time.as_secs()
            )),
            _ = cancel.cancelled() => Err("grading was cancelled".to_string()),
        };
        let status = match ended {
            Ok(status) => status,
            Err(reason) => {
                // The child is not reaped yet, so its pid still names it and its tree.
                if let Some(pid) = pid {
                    process_tree::kill_tree(pid);
                }
                let _ = child.wait().await;
                for r in readers.into_iter().flatten() {
                    let _ = r.await;
                }
                return Err(BackendFailure {
                    reason,
                    logs: take(&logs),
                });
            }
        };
        for r in readers.into_iter().flatten() {
            let _ = r.await;
        }
        let logs = take(&logs);
        match status {
            Ok(s) if s.success() => Ok(BackendOutput { logs }),
            Ok(s) => Err(BackendFailure {
                reason: format!("grading tool {:?} failed: {s}", self.executable),
                logs,
            }),
            Err(e) => Err(BackendFailure {
                reason: format!("could not wait for grading tool: {e}"),
                logs,
            }),
        }
    }
}

/// Spawns `cmd`, retrying a few times while the executable is "text file busy" (ETXTBSY): a
/// tool that was just written, or whose write handle another thread's fork briefly holds.
async fn spawn_retrying_busy(cmd: &mut Command) -> std::io::Result<tokio::process::Child> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            result => return result,
        }
    }
}

fn take(logs: &Arc<Mutex<LogBuffer>>) -> String {
    logs.lock()
        .map(|mut l| std::mem::replace(&mut *l, LogBuffer::new(64)).into_string())
        .unwrap_or_default()
}

//! The warm backend: jobs run on a [`WarmPool`], or as plain processes when it has no worker.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::pool::{PoolSettings, WarmPool};
use super::worker::{JobRequest, RunEnd, WorkerSpec};
use crate::backend::{BackendFailure, BackendOutput, FailureKind, GradingBackend, GradingTask};
use crate::kernel_dir::KernelDir;
use crate::local::{LocalBackend, kernel_dir_failure, passed_env};

/// Runs the grading tool on warm workers with the contract of [`LocalBackend`]: same
/// arguments, environment, working directory, time limit, cancellation and failure reasons.
/// Without a usable pool a job runs through `cold` (a [`LocalBackend`]), and its log starts
/// with the reason.
#[derive(Debug, Clone)]
pub struct WarmBackend {
    pool: Option<WarmPool>,
    /// Why there is no pool.
    unavailable: Option<String>,
    cold: LocalBackend,
    tool: String,
    log_cap: usize,
}

impl WarmBackend {
    /// Starts a pool for the console script `convert_executable` whose workers may take
    /// `start_timeout` to import it. Never fails: when no worker can start, the reason is
    /// logged and every job runs as a plain process.
    pub async fn start(
        convert_executable: &Path,
        settings: PoolSettings,
        start_timeout: Duration,
        work_dir: &Path,
        log_cap: usize,
    ) -> WarmBackend {
        let tool = convert_executable.to_string_lossy().into_owned();
        let cold = LocalBackend::new(tool.clone(), log_cap);
        let started = match WorkerSpec::for_tool(convert_executable) {
            Ok(spec) => {
                let spec = WorkerSpec {
                    start_timeout,
                    ..spec
                };
                WarmPool::start(spec, settings, work_dir).await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(pool) => WarmBackend::with_pool(pool, cold, tool, log_cap),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no warm grading workers (local.warm_workers); running the grading tool as a plain process"
                );
                WarmBackend {
                    pool: None,
                    unavailable: Some(e.to_string()),
                    cold,
                    tool,
                    log_cap,
                }
            }
        }
    }

    /// A backend over a started pool; `tool` names the tool in failure reasons.
    pub fn with_pool(
        pool: WarmPool,
        cold: LocalBackend,
        tool: impl Into<String>,
        log_cap: usize,
    ) -> WarmBackend {
        WarmBackend {
            pool: Some(pool),
            unavailable: None,
            cold,
            tool: tool.into(),
            log_cap,
        }
    }

    /// The pool, if its workers could start.
    pub fn pool(&self) -> Option<&WarmPool> {
        self.pool.as_ref()
    }

    /// Why jobs run as plain processes, if they all do.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    async fn cold_run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
        why: &str,
    ) -> Result<BackendOutput, BackendFailure> {
        tracing::warn!(reason = %why, "running the grading tool as a plain process instead of on a warm worker");
        let note =
            format!("grader: no warm grading worker ({why}); ran the tool as a plain process\n");
        match self.cold.run(task, cancel).await {
            Ok(out) => Ok(BackendOutput {
                logs: note + &out.logs,
            }),
            Err(f) => {
                let logs = note + &f.logs;
                Err(f.with_logs(logs))
            }
        }
    }
}

#[async_trait]
impl GradingBackend for WarmBackend {
    fn name(&self) -> &str {
        "local-warm"
    }

    /// Lets the idle workers exit.
    async fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.shutdown().await;
        }
    }

    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure> {
        let Some(pool) = &self.pool else {
            let why = self.unavailable.as_deref().unwrap_or("no pool");
            return self.cold_run(task, cancel, why).await;
        };
        let Some(cwd) = task.input_dir.to_str() else {
            return Err(BackendFailure::new(
                FailureKind::Workdir,
                format!(
                    "the input directory {} is not valid UTF-8",
                    task.input_dir.display()
                ),
            ));
        };
        let lease = tokio::select! {
            lease = pool.checkout() => lease,
            _ = cancel.cancelled() => return Err(BackendFailure::cancelled()),
        };
        let mut lease = match lease {
            Ok(lease) => lease,
            Err(why) => return self.cold_run(task, cancel, &why).await,
        };
        let log = match pool.new_log() {
            Ok(log) => log,
            Err(e) => {
                pool.give_back(lease, false);
                let why = format!("no log file for the job ({e})");
                return self.cold_run(task, cancel, &why).await;
            }
        };
        let input = task.input_dir.to_string_lossy();
        let output = task.output_dir.to_string_lossy();
        // The local backend's environment policy; JSON carries only UTF-8 values.
        let mut env: BTreeMap<&'static str, String> = passed_env()
            .filter_map(|(k, v)| v.into_string().ok().map(|v| (k, v)))
            .collect();
        env.insert("ASSIGNMENT_SETTINGS", task.settings_json());
        // Removed once the worker has reported the job, i.e. killed everything it left.
        let kernels = match KernelDir::create() {
            Ok(dir) => dir,
            Err(e) => {
                pool.give_back(lease, false);
                return Err(kernel_dir_failure(e));
            }
        };
        let job = JobRequest {
            argv: task.tool_args(
                &input,
                &output,
                false,
                &kernels.connection_file().to_string_lossy(),
            ),
            env,
            cwd: cwd.to_string(),
            log_path: log.path.to_string_lossy().into_owned(),
            log_cap: self.log_cap,
        };
        let worker = lease.worker();
        tracing::info!(tool = %self.tool, worker = worker.pid(), args = ?job.argv, "starting grading tool (warm)");
        let ran = worker.run(&job, task.max_grading_time, &cancel).await;
        let logs = log.read(self.log_cap, worker.last_log_dropped());
        drop(kernels);
        match ran {
            Ok(end) => {
                pool.give_back(lease, false);
                match end {
                    RunEnd::Exited { status, strays } => {
                        if strays > 0 {
                            tracing::info!(strays, "killed processes the grading tool left behind");
                        }
                        if status.success() {
                            Ok(BackendOutput { logs })
                        } else {
                            Err(BackendFailure::tool_exited(&self.tool, status).with_logs(logs))
                        }
                    }
                    RunEnd::TimedOut => {
                        Err(BackendFailure::timed_out(task.max_grading_time).with_logs(logs))
                    }
                    RunEnd::Cancelled => Err(BackendFailure::cancelled().with_logs(logs)),
                }
            }
            Err(fault) => {
                tracing::warn!(error = %fault, "a warm grading worker broke; replacing it");
                pool.give_back(lease, true);
                if fault.started {
                    // The job's code may have run: running it again is not ours to decide.
                    Err(
                        BackendFailure::new(FailureKind::Infrastructure, fault.detail)
                            .with_logs(logs),
                    )
                } else {
                    drop(log);
                    self.cold_run(task, cancel, &fault.detail).await
                }
            }
        }
    }
}

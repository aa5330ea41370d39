//! The one seam between the pipeline and where grading runs.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use grader_model::{Assignment, Lecture, Submission};
use tokio_util::sync::CancellationToken;

pub use crate::failure::FailureKind;

/// Which run of the grading tool a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `autograde`: execute the notebooks and score them.
    Autograde,
    /// `generate_feedback`: render graded notebooks to HTML.
    Feedback,
}

/// Everything a backend needs to run the grading tool once.
#[derive(Debug, Clone)]
pub struct GradingTask {
    pub kind: JobKind,
    pub lecture: Lecture,
    pub assignment: Assignment,
    pub submission: Submission,
    /// The fetched submission.
    pub input_dir: PathBuf,
    /// Where the tool writes; holds `gradebook.json` before and after.
    pub output_dir: PathBuf,
    /// `input_dir` relative to the service directory (a pod mounts it by this `subPath`).
    pub relative_input_dir: String,
    /// `output_dir` relative to the service directory.
    pub relative_output_dir: String,
    /// Per-cell timeout passed to the tool, already clamped.
    pub cell_timeout: u64,
    /// Wall-clock bound of the whole grading run.
    pub max_grading_time: Duration,
    /// The work dirs were left as an earlier run of this very task has them (see
    /// [`GradingBackend::resumable`]): the backend may adopt that run. When false they were
    /// prepared anew, and a leftover run must be replaced, not adopted.
    pub resume: bool,
}

impl GradingTask {
    /// Arguments of the grading tool after its executable, reading from `input` and writing to
    /// `output` (paths as the tool will see them); the same for every backend. An autograde
    /// run's kernels listen on Unix sockets next to `connection_file`, a path of the job's own
    /// where the tool writes each kernel's connection file in turn: see [`KernelDir`] for why
    /// not on loopback TCP ports.
    ///
    /// [`KernelDir`]: crate::KernelDir
    pub fn tool_args(
        &self,
        input: &str,
        output: &str,
        log_level: bool,
        connection_file: &str,
    ) -> Vec<String> {
        let mut args = vec![
            match self.kind {
                JobKind::Autograde => "autograde",
                JobKind::Feedback => "generate_feedback",
            }
            .to_string(),
            "-i".into(),
            input.into(),
            "-o".into(),
            output.into(),
            "-p".into(),
            "*.ipynb".into(),
        ];
        if log_level {
            args.push("--log-level=INFO".into());
        }
        if self.kind == JobKind::Autograde {
            args.push(format!(
                "--ExecutePreprocessor.timeout={}",
                self.cell_timeout
            ));
            args.push("--KernelManager.transport=ipc".into());
            args.push(format!("--KernelManager.connection_file={connection_file}"));
        }
        args
    }

    /// The assignment settings as the tool reads them from `ASSIGNMENT_SETTINGS`.
    pub fn settings_json(&self) -> String {
        serde_json::to_string(&self.assignment.settings).unwrap_or_else(|_| "{}".into())
    }
}

/// A grading run that finished (whatever the notebooks scored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendOutput {
    /// What the tool printed.
    pub logs: String,
}

/// A grading run that did not finish successfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BackendFailure {
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// Why, readable by a course operator (`grading exceeded max_grading_time of 60s`).
    pub reason: String,
    /// What the tool printed before it failed, if anything.
    pub logs: String,
}

impl BackendFailure {
    /// A failure of `kind` with a reason and no logs.
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        BackendFailure {
            kind,
            reason: reason.into(),
            logs: String::new(),
        }
    }

    /// The same failure with the tool's output.
    pub fn with_logs(mut self, logs: String) -> Self {
        self.logs = logs;
        self
    }

    /// Grading ran past `max_grading_time` (the one wording of every backend).
    pub fn timed_out(max_grading_time: Duration) -> Self {
        Self::new(
            FailureKind::TimedOut,
            format!(
                "grading exceeded max_grading_time of {}s and was killed",
                max_grading_time.as_secs()
            ),
        )
    }

    /// The job was cancelled.
    pub fn cancelled() -> Self {
        Self::new(FailureKind::Cancelled, "grading was cancelled")
    }

    /// The tool `tool` ended with `status` (not success).
    pub fn tool_exited(tool: &str, status: std::process::ExitStatus) -> Self {
        Self::new(
            FailureKind::ToolExited,
            format!("grading tool {tool:?} failed: {status}"),
        )
    }
}

/// Runs the grading tool somewhere: a local process, a pod, ...
///
/// Implementations must clean up what they started (processes, pods) before returning, also
/// when `cancel` fires or `max_grading_time` passes. `Any`, so that a caller holding the
/// pipeline (such as `grader serve`'s metrics) can read a concrete backend's own statistics.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait GradingBackend: std::any::Any + Send + Sync {
    /// A short name reported in outcomes (`local`, `kube`).
    fn name(&self) -> &str;

    /// Whether a run of this very task, started by an earlier `grader` that stopped, is still
    /// going and will be adopted by [`GradingBackend::run`]. The pipeline then leaves the work
    /// dirs as that run has them instead of preparing them anew.
    async fn resumable(&self, _task: &GradingTask) -> bool {
        false
    }

    /// Lets go of what the backend keeps between jobs (warm workers, watches) once no more
    /// jobs will come.
    async fn shutdown(&self) {}

    /// Runs the tool for `task` and waits for it to end.
    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure>;
}

//! The autograde and feedback pipelines of Grader Service, with the grading step behind
//! [`GradingBackend`].
//!
//! The steps and the on-disk contract are the reference's `LocalAutogradeExecutor` and
//! `LocalFeedbackExecutor`: clean the work dirs, fetch the submission, write `gradebook.json`,
//! run the grading tool, commit the whitelisted results to a branch of the autograde (feedback)
//! repository, read the scores back, clean up. Every failure ends as a failed outcome with the
//! reason in its logs; nothing is left in the work dirs unless asked to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use grader_model::gradebook::{Gradebook, whitelist_patterns};
use grader_model::{AutoStatus, FeedbackStatus, ManualStatus, Submission};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{BackendFailure, GradingBackend, JobKind};
use crate::clock::{Clock, SystemClock};
use crate::failure::FailureKind;
use crate::git::Git;
use crate::job::{Job, JobError};
use crate::lock::{LockError, WorkLock};
use crate::logs::LogBuffer;
use crate::outcome::{Outcome, Status, Timings};
use crate::paths::{JobPaths, RepoType};
use crate::settings::ExecutorConfig;
use crate::whitelist::whitelisted_files;

/// The file the grading tool reads grades from and writes scores to.
pub const GRADEBOOK_FILE: &str = "gradebook.json";

/// The pipeline, over the git, backend and clock seams.
pub struct Executor {
    config: ExecutorConfig,
    git: Arc<dyn Git>,
    backend: Arc<dyn GradingBackend>,
    clock: Arc<dyn Clock>,
}

/// Why the pipeline stopped: the kind of failure and what happened.
struct Failed {
    kind: FailureKind,
    message: String,
}

impl Failed {
    fn new(kind: FailureKind, message: impl std::fmt::Display) -> Self {
        Failed {
            kind,
            message: message.to_string(),
        }
    }
}

/// `result.or_fail(kind)`: an error of any readable type as a failure of `kind`.
trait OrFail<T> {
    fn or_fail(self, kind: FailureKind) -> Result<T, Failed>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, kind: FailureKind) -> Result<T, Failed> {
        self.map_err(|e| Failed::new(kind, e))
    }
}

struct Run<'a> {
    clock: &'a dyn Clock,
    mark: Instant,
    timings: Timings,
    logs: LogBuffer,
    branch: Option<String>,
    commit: Option<String>,
    gradebook: Option<Gradebook>,
}

impl Run<'_> {
    /// Milliseconds since the previous lap.
    fn lap(&mut self) -> f64 {
        let now = self.clock.now();
        let ms = now.saturating_duration_since(self.mark).as_secs_f64() * 1000.0;
        self.mark = now;
        ms
    }
}

impl Executor {
    /// A pipeline with the real clock.
    pub fn new(
        config: ExecutorConfig,
        git: Arc<dyn Git>,
        backend: Arc<dyn GradingBackend>,
    ) -> Self {
        Self::with_clock(config, git, backend, Arc::new(SystemClock))
    }

    /// A pipeline with the given clock.
    pub fn with_clock(
        config: ExecutorConfig,
        git: Arc<dyn Git>,
        backend: Arc<dyn GradingBackend>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Executor {
            config,
            git,
            backend,
            clock,
        }
    }

    /// The pipeline's settings.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }

    /// The backend, read-only (for its statistics: downcast through `Any`).
    pub fn backend(&self) -> &dyn GradingBackend {
        self.backend.as_ref()
    }

    /// Shuts the backend down once no more jobs will be run (see
    /// [`GradingBackend::shutdown`]).
    pub async fn shutdown(&self) {
        self.backend.shutdown().await;
    }

    /// Checks a job without touching the disk and returns its paths.
    pub fn check(&self, job: &Job, kind: JobKind) -> Result<JobPaths, JobError> {
        self.config.check(job, kind)
    }

    /// Autogrades one submission.
    pub async fn autograde(&self, job: &Job, cancel: CancellationToken) -> Outcome {
        self.run(job, JobKind::Autograde, cancel).await
    }

    /// Generates feedback for one graded submission.
    pub async fn generate_feedback(&self, job: &Job, cancel: CancellationToken) -> Outcome {
        self.run(job, JobKind::Feedback, cancel).await
    }

    /// Runs the pipeline of `kind` for `job`.
    pub async fn run(&self, job: &Job, kind: JobKind, cancel: CancellationToken) -> Outcome {
        let span = tracing::info_span!("job", submission = job.submission.id, ?kind);
        self.run_in_span(job, kind, cancel).instrument(span).await
    }

    async fn run_in_span(&self, job: &Job, kind: JobKind, cancel: CancellationToken) -> Outcome {
        let start = self.clock.now();
        let mut run = Run {
            clock: self.clock.as_ref(),
            mark: start,
            timings: Timings::default(),
            logs: LogBuffer::new(self.config.log_cap_bytes),
            branch: None,
            commit: None,
            gradebook: None,
        };
        tracing::info!(backend = self.backend.name(), "starting");

        let result = match self.check(job, kind) {
            Err(e) => Err(Failed::new(FailureKind::InvalidJob, e)),
            Ok(paths) => match self.lock(&paths, &mut run, &cancel).await {
                Err(e) => Err(e),
                Ok(_lock) => {
                    let result = self.steps(job, kind, &paths, &mut run, &cancel).await;
                    if !self.config.keep_workdirs {
                        remove_dir(&paths.input_dir, &mut run.logs);
                        remove_dir(&paths.output_dir, &mut run.logs);
                    }
                    run.timings.cleanup_ms = run.lap();
                    result
                }
            },
        };

        let duration_ms = self
            .clock
            .now()
            .saturating_duration_since(start)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        let status = match (result.is_ok(), kind) {
            (true, JobKind::Autograde) => Status::Auto(AutoStatus::AutomaticallyGraded),
            (true, JobKind::Feedback) => Status::Feedback(FeedbackStatus::Generated),
            (false, JobKind::Autograde) => Status::Auto(AutoStatus::GradingFailed),
            (false, JobKind::Feedback) => Status::Feedback(FeedbackStatus::GenerationFailed),
        };
        let (failure, error) = match result {
            Ok(()) => (None, None),
            Err(Failed { kind, message }) => (Some(kind), Some(message)),
        };
        if let Some(e) = &error {
            run.logs.push_line(&format!("grader: job failed: {e}"));
            tracing::warn!(error = %e, failure = ?failure, duration_ms, "failed");
        } else {
            tracing::info!(duration_ms, "done");
        }
        let scores = match (&run.gradebook, kind, error.is_none()) {
            (Some(gb), JobKind::Autograde, true) => {
                let grading = gb.score();
                Some((
                    grading,
                    grading * job.submission.score_scaling,
                    gb.max_score(),
                ))
            }
            _ => None,
        };
        Outcome {
            submission_id: job.submission.id,
            kind,
            status,
            grading_score: scores.map(|s| s.0),
            score: scores.map(|s| s.1),
            max_score: scores.map(|s| s.2),
            backend: self.backend.name().to_string(),
            duration_ms,
            timings: run.timings,
            branch: run.branch,
            commit: run.commit,
            failure,
            error,
            logs: run.logs.into_string(),
            gradebook: run.gradebook.map(|g| g.to_value()),
        }
    }

    /// Takes the submission's work-dir lock, waiting while another run of it holds it (two
    /// runs must never share work dirs; see [`crate::lock`]).
    async fn lock(
        &self,
        paths: &JobPaths,
        run: &mut Run<'_>,
        cancel: &CancellationToken,
    ) -> Result<WorkLock, Failed> {
        let waited = std::sync::atomic::AtomicBool::new(false);
        let lock = WorkLock::acquire(&paths.lock_file, cancel, || {
            tracing::info!(lock = %paths.lock_file.display(), "waiting for another run of this submission");
            waited.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .map_err(|e| match e {
            LockError::Cancelled => Failed::new(FailureKind::Cancelled, e),
            LockError::Io { .. } => Failed::new(FailureKind::Workdir, e),
        })?;
        if waited.load(std::sync::atomic::Ordering::Relaxed) {
            run.logs.push_line(
                "grader: waited for another run of this submission to finish before grading",
            );
        }
        Ok(lock)
    }

    /// Clean work dirs, the fetched submission and the gradebook the tool starts from.
    async fn prepare(
        &self,
        job: &Job,
        kind: JobKind,
        paths: &JobPaths,
        gradebook: &Gradebook,
        run: &mut Run<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), Failed> {
        for dir in [&paths.input_dir, &paths.output_dir] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("could not clean {}: {e}", dir.display()))
                    .or_fail(FailureKind::Workdir)?;
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("could not create {}: {e}", dir.display()))
                .or_fail(FailureKind::Workdir)?;
        }
        run.timings.prepare_ms = run.lap();
        stop_if_cancelled(cancel)?;

        let (repo, rev) = input_source(kind, &job.submission, paths);
        let stats = self
            .git
            .export(&repo, &rev, &paths.input_dir)
            .await
            .map_err(|e| format!("could not fetch the submission: {e}"))
            .or_fail(FailureKind::Workdir)?;
        for skipped in &stats.skipped {
            run.logs.push_line(&format!(
                "grader: skipped {skipped:?} in the submission (not a plain file)"
            ));
        }
        run.timings.fetch_ms = run.lap();
        stop_if_cancelled(cancel)?;

        let gradebook_path = paths.output_dir.join(GRADEBOOK_FILE);
        std::fs::write(&gradebook_path, gradebook.to_vec_pretty())
            .map_err(|e| format!("could not write {}: {e}", gradebook_path.display()))
            .or_fail(FailureKind::Workdir)?;
        run.timings.gradebook_ms = run.lap();
        Ok(())
    }

    async fn steps(
        &self,
        job: &Job,
        kind: JobKind,
        paths: &JobPaths,
        run: &mut Run<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), Failed> {
        let sub = &job.submission;
        let mut task = self.config.task_at(job, kind, paths);
        let gradebook = match kind {
            JobKind::Autograde => {
                let mut gb = Gradebook::clone(&job.gradebook);
                if sub.manual_status != ManualStatus::NotGraded
                    && let Some(graded) = &job.submission_gradebook
                {
                    gb.carry_over_manual_grades(graded);
                }
                gb
            }
            JobKind::Feedback => job.submission_gradebook.clone().ok_or_else(|| {
                Failed::new(
                    FailureKind::InvalidJob,
                    "feedback needs the submission's gradebook",
                )
            })?,
        };
        let gradebook_path = paths.output_dir.join(GRADEBOOK_FILE);

        // A run of this very job left by a `grader` that stopped is still going on the work
        // dirs it was given: adopt it as it is instead of pulling its files from under it.
        let resuming = paths.input_dir.is_dir()
            && gradebook_path.is_file()
            && self.backend.resumable(&task).await;
        task.resume = resuming;
        if resuming {
            run.logs.push_line(
                "grader: an earlier run of this job is still grading; adopting it and its work dirs",
            );
        } else {
            self.prepare(job, kind, paths, &gradebook, run, cancel)
                .await?;
        }
        stop_if_cancelled(cancel)?;
        if kind == JobKind::Autograde {
            note_missing_notebooks(&gradebook, &paths.input_dir, &mut run.logs);
        }

        let graded = self.backend.run(&task, cancel.clone()).await;
        run.timings.grading_ms = run.lap();
        match graded {
            Ok(out) => run.logs.push(out.logs.as_bytes()),
            Err(BackendFailure { kind, reason, logs }) => {
                run.logs.push(logs.as_bytes());
                return Err(Failed::new(kind, reason));
            }
        }
        stop_if_cancelled(cancel)?;

        let (patterns, out_repo, branch) = match kind {
            JobKind::Autograde => (
                whitelist_patterns(&job.gradebook, &job.assignment.settings.allowed_files),
                paths.repo(RepoType::Autograde),
                format!("submission_{}", sub.commit_hash),
            ),
            JobKind::Feedback => (
                vec!["*.html".to_string()],
                paths.repo(RepoType::Feedback),
                format!("feedback_{}", sub.commit_hash),
            ),
        };
        // The scores are read and checked before anything is committed: a result the grading
        // tool cannot have written is never published.
        if kind == JobKind::Autograde {
            let graded = read_graded(&gradebook_path, &gradebook)?;
            let total = graded.score() * sub.score_scaling;
            if !total.is_finite() {
                return Err(Failed::new(
                    FailureKind::InvalidJob,
                    format!(
                        "the score {} times submission.score_scaling {} is not a finite number",
                        graded.score(),
                        sub.score_scaling
                    ),
                ));
            }
            run.gradebook = Some(graded);
        } else {
            run.gradebook = Some(gradebook);
        }
        run.timings.score_ms = run.lap();

        let files =
            whitelisted_files(&paths.output_dir, &patterns).or_fail(FailureKind::Workdir)?;
        let commit = self
            .git
            .commit_files(
                &paths.output_dir,
                &files,
                &out_repo,
                &branch,
                &sub.commit_hash,
            )
            .await
            .map_err(|e| format!("could not commit the results: {e}"))
            .or_fail(FailureKind::Workdir)?;
        run.branch = Some(branch);
        run.commit = Some(commit);
        run.timings.commit_ms = run.lap();
        Ok(())
    }
}

/// The gradebook the grading tool left at `path`, checked against `given`, the one it started
/// from (see [`Gradebook::check_graded`]).
fn read_graded(path: &Path, given: &Gradebook) -> Result<Gradebook, Failed> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("could not read {} after grading: {e}", path.display()))
        .or_fail(FailureKind::InvalidGradebook)?;
    let graded = Gradebook::from_slice(&bytes)
        .map_err(|e| {
            format!(
                "{} after grading is not a valid gradebook: {e}",
                path.display()
            )
        })
        .or_fail(FailureKind::InvalidGradebook)?;
    graded.check_graded(given).or_fail(FailureKind::Tampered)?;
    Ok(graded)
}

/// Says in the logs which of the assignment's notebooks the submission lacks (a renamed or
/// deleted notebook): the grading tool scores them 0, as Grader Service does.
fn note_missing_notebooks(gradebook: &Gradebook, input_dir: &Path, logs: &mut LogBuffer) {
    for name in gradebook.notebook_names() {
        let file = format!("{name}.ipynb");
        if !input_dir.join(&file).is_file() {
            logs.push_line(&format!(
                "grader: the submission has no {file}; the assignment's notebook {name:?} scores 0"
            ));
        }
    }
}

/// Where the pipeline of `kind` reads the submission from: repository and revision.
fn input_source(kind: JobKind, sub: &Submission, paths: &JobPaths) -> (PathBuf, String) {
    match kind {
        JobKind::Autograde if sub.edited => (paths.repo(RepoType::Edit), "main".into()),
        JobKind::Autograde => (paths.repo(RepoType::User), sub.commit_hash.clone()),
        JobKind::Feedback => {
            let not_autograded = matches!(
                sub.auto_status,
                AutoStatus::NotGraded | AutoStatus::GradingFailed
            );
            if not_autograded && sub.manual_status == ManualStatus::ManuallyGraded {
                (paths.repo(RepoType::User), sub.commit_hash.clone())
            } else {
                (
                    paths.repo(RepoType::Autograde),
                    format!("submission_{}", sub.commit_hash),
                )
            }
        }
    }
}

fn stop_if_cancelled(cancel: &CancellationToken) -> Result<(), Failed> {
    if cancel.is_cancelled() {
        Err(Failed::new(FailureKind::Cancelled, "cancelled"))
    } else {
        Ok(())
    }
}

fn remove_dir(dir: &Path, logs: &mut LogBuffer) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => logs.push_line(&format!("grader: could not remove {}: {e}", dir.display())),
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;

//! The pipeline's settings, their defaults, and what they make of a job: its checked paths
//! and the task a backend runs.
//!
//! The defaults here are the only ones: the configuration shows them (`grader config`) and
//! converts into [`ExecutorConfig`] once (`grader_config::Settings`).

use std::path::PathBuf;
use std::time::Duration;

use grader_model::{CellTimeouts, ManualStatus};

use crate::backend::{GradingTask, JobKind};
use crate::git::is_commit_hash;
use crate::job::{Job, JobError};
use crate::paths::JobPaths;

/// Default root of repositories and work dirs.
pub const DEFAULT_SERVICE_DIR: &str = "/var/lib/grader";
/// Default parent of the input work dirs, relative to the service dir (the reference's).
pub const DEFAULT_RELATIVE_INPUT_PATH: &str = "convert_in";
/// Default parent of the output work dirs, relative to the service dir (the reference's).
pub const DEFAULT_RELATIVE_OUTPUT_PATH: &str = "convert_out";
/// Default bound on one grading run, in seconds (one hour).
pub const DEFAULT_MAX_GRADING_TIME: u64 = 3_600;
/// Default most bytes of log kept in an outcome (1 MiB).
pub const DEFAULT_LOG_CAP_BYTES: u64 = 1024 * 1024;
/// Default git program, looked up on `PATH`.
pub const DEFAULT_GIT_EXECUTABLE: &str = "git";

/// Settings of the pipeline (the backend has its own).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorConfig {
    /// Root of repositories and work dirs (Grader Service's `grader_service_dir`).
    pub service_dir: PathBuf,
    /// Work dirs for inputs, relative to `service_dir`.
    pub relative_input_path: String,
    /// Work dirs for outputs, relative to `service_dir`.
    pub relative_output_path: String,
    pub timeouts: CellTimeouts,
    /// Bound on one run of the grading tool.
    pub max_grading_time: Duration,
    /// Most bytes of logs kept in an outcome.
    pub log_cap_bytes: usize,
    /// Keep the work dirs after the job, for debugging.
    pub keep_workdirs: bool,
}

impl ExecutorConfig {
    /// The defaults (the `DEFAULT_*` constants of this module) under `service_dir`.
    pub fn new(service_dir: impl Into<PathBuf>) -> Self {
        ExecutorConfig {
            service_dir: service_dir.into(),
            relative_input_path: DEFAULT_RELATIVE_INPUT_PATH.into(),
            relative_output_path: DEFAULT_RELATIVE_OUTPUT_PATH.into(),
            timeouts: CellTimeouts::default(),
            max_grading_time: Duration::from_secs(DEFAULT_MAX_GRADING_TIME),
            log_cap_bytes: usize::try_from(DEFAULT_LOG_CAP_BYTES).unwrap_or(usize::MAX),
            keep_workdirs: false,
        }
    }

    /// Checks a job against these settings without touching the disk and returns its paths
    /// (before a backend is started, so that bad input fails fast).
    pub fn check(&self, job: &Job, kind: JobKind) -> Result<JobPaths, JobError> {
        let prefix = match kind {
            JobKind::Autograde => "submission",
            JobKind::Feedback => "feedback",
        };
        let paths = JobPaths::new(
            &self.service_dir,
            &self.relative_input_path,
            &self.relative_output_path,
            &job.lecture,
            job.assignment.id,
            &job.submission,
            prefix,
        )?;
        if !is_commit_hash(&job.submission.commit_hash) {
            return Err(JobError::CommitHash(job.submission.commit_hash.clone()));
        }
        let scaling = job.submission.score_scaling;
        if !(scaling.is_finite()
            && scaling >= 0.0
            && (scaling * job.gradebook.max_score()).is_finite())
        {
            return Err(JobError::ScoreScaling(job.submission.score_scaling));
        }
        if kind == JobKind::Feedback && job.submission_gradebook.is_none() {
            return Err(JobError::Missing(
                "feedback needs the submission's gradebook (submission.gradebook or \
                 submission.gradebook_path)"
                    .into(),
            ));
        }
        if kind == JobKind::Autograde
            && job.submission.manual_status != ManualStatus::NotGraded
            && job.submission_gradebook.is_none()
        {
            return Err(JobError::Missing(format!(
                "submission.manual_status is {:?}: the job must carry the submission's gradebook \
                 (submission.gradebook or submission.gradebook_path) so its manual grades are kept",
                job.submission.manual_status
            )));
        }
        Ok(paths)
    }
}

impl ExecutorConfig {
    /// The backend's task for a job, checked as [`ExecutorConfig::check`] does; touches
    /// nothing (the pipeline grades it; `grader pod` and the benches preview it).
    pub fn task(&self, job: &Job, kind: JobKind) -> Result<GradingTask, JobError> {
        let paths = self.check(job, kind)?;
        Ok(self.task_at(job, kind, &paths))
    }

    /// The task of a job whose paths were already checked.
    pub(crate) fn task_at(&self, job: &Job, kind: JobKind, paths: &JobPaths) -> GradingTask {
        GradingTask {
            kind,
            lecture: job.lecture.clone(),
            assignment: job.assignment.clone(),
            submission: job.submission.clone(),
            input_dir: paths.input_dir.clone(),
            output_dir: paths.output_dir.clone(),
            relative_input_dir: paths.relative_input_dir.clone(),
            relative_output_dir: paths.relative_output_dir.clone(),
            cell_timeout: self
                .timeouts
                .effective(job.assignment.settings.cell_timeout),
            max_grading_time: self.max_grading_time,
            resume: false,
        }
    }
}

//! What became of a job: the outcome `grader` prints, writes and serves.

use grader_model::{AutoStatus, FeedbackStatus};
use serde::Serialize;

use crate::backend::JobKind;
use crate::failure::FailureKind;

/// The outcome status: an auto status for autograding, a feedback status for feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Status {
    Auto(AutoStatus),
    Feedback(FeedbackStatus),
}

impl Status {
    /// True for `automatically_graded` and `generated`.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Status::Auto(AutoStatus::AutomaticallyGraded)
                | Status::Feedback(FeedbackStatus::Generated)
        )
    }
}

/// Milliseconds spent in each step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub prepare_ms: f64,
    pub fetch_ms: f64,
    pub gradebook_ms: f64,
    pub grading_ms: f64,
    pub commit_ms: f64,
    pub score_ms: f64,
    pub cleanup_ms: f64,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub submission_id: u64,
    pub kind: JobKind,
    pub status: Status,
    /// Total of the gradebook after grading.
    pub grading_score: Option<f64>,
    /// `grading_score * score_scaling`.
    pub score: Option<f64>,
    pub max_score: Option<f64>,
    /// The backend that ran the tool.
    pub backend: String,
    pub duration_ms: u64,
    pub timings: Timings,
    /// The branch results were committed to, and the commit.
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// What kind of failure ended the job, when it failed (machine-readable).
    pub failure: Option<FailureKind>,
    /// Why the job failed, when it did (readable).
    pub error: Option<String>,
    /// The tool's output and the pipeline's notes, NUL-free and capped.
    pub logs: String,
    /// The gradebook after grading (autograde) or the one feedback was made from.
    pub gradebook: Option<serde_json::Value>,
}

//! One job: a submission to grade with the gradebooks it needs, and why a job can be refused.

use std::sync::Arc;

use grader_model::gradebook::Gradebook;
use grader_model::{Assignment, Lecture, Submission, UnsafePath};

/// One submission to grade, with the gradebooks it needs.
#[derive(Debug, Clone)]
pub struct Job {
    pub lecture: Lecture,
    pub assignment: Assignment,
    pub submission: Submission,
    /// The assignment's gradebook (from `generate_assignment`), shared by the jobs of one
    /// assignment.
    pub gradebook: Arc<Gradebook>,
    /// The submission's gradebook from earlier grading: the source of manual grades to carry
    /// over, and the input of feedback generation.
    pub submission_gradebook: Option<Gradebook>,
}

/// A job that cannot be run as given; refused before anything touches the disk.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    UnsafePath(#[from] UnsafePath),
    #[error("refusing submission.commit_hash {0:?}: not a git commit id (4 to 64 hex digits)")]
    CommitHash(String),
    #[error(
        "submission.score_scaling {0} must be a finite number, at least 0, whose product with \
         the assignment's maximum score is finite"
    )]
    ScoreScaling(f64),
    #[error("{0}")]
    Missing(String),
}

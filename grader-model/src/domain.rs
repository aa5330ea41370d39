//! Domain types: lecture, assignment, submission and their statuses.
//!
//! Field and value names follow Grader Service so that a job description written for it (or by
//! it) reads unchanged. Unknown fields are kept in `extra` maps rather than rejected, so that a
//! newer job format still loads and round-trips.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The grading tool of Grader Service, run on every submission unless configured otherwise.
pub const DEFAULT_CONVERT_EXECUTABLE: &str = "grader-convert";

/// A lecture (course); its code names the repositories and the default grading image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lecture {
    pub code: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How far grading goes without a human (Grader Service's `autograde_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutogradeType {
    #[default]
    Auto,
    FullAuto,
    Unassisted,
}

/// The assignment settings, passed verbatim to the grading tool as `ASSIGNMENT_SETTINGS`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssignmentSettings {
    /// Per-cell execution timeout in seconds; clamped by the executor's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_timeout: Option<u64>,
    /// Glob patterns of extra files the student may submit and that are committed with results.
    #[serde(default)]
    pub allowed_files: Vec<String>,
    #[serde(default)]
    pub autograde_type: AutogradeType,
    /// Settings this crate does not interpret (deadline, max_submissions, group, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An assignment of a lecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub settings: AssignmentSettings,
}

/// Automatic grading status of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoStatus {
    #[default]
    NotGraded,
    Pending,
    AutomaticallyGraded,
    GradingFailed,
}

/// Manual grading status of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualStatus {
    #[default]
    NotGraded,
    ManuallyGraded,
    BeingEdited,
}

/// Feedback generation status of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    #[default]
    NotGenerated,
    Generating,
    Generated,
    GenerationFailed,
    FeedbackOutdated,
}

fn default_score_scaling() -> f64 {
    1.0
}

/// A student's submission: one commit of the student's repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub id: u64,
    pub commit_hash: String,
    pub username: String,
    /// The instructor edited the submission: grade the `edit` repository instead.
    #[serde(default)]
    pub edited: bool,
    #[serde(default)]
    pub auto_status: AutoStatus,
    #[serde(default)]
    pub manual_status: ManualStatus,
    #[serde(default)]
    pub feedback_status: FeedbackStatus,
    #[serde(default = "default_score_scaling")]
    pub score_scaling: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_unknown_fields_and_default_the_rest() {
        let s: AssignmentSettings = serde_json::from_str(
            r#"{"deadline":"2026-12-01T00:00:00Z","allowed_files":["*.csv"]}"#,
        )
        .unwrap();
        assert_eq!(s.allowed_files, vec!["*.csv"]);
        assert_eq!(s.autograde_type, AutogradeType::Auto);
        assert_eq!(s.cell_timeout, None);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["deadline"], "2026-12-01T00:00:00Z");
    }

    #[test]
    fn submission_defaults_and_status_names() {
        let s: Submission = serde_json::from_str(
            r#"{"id":4,"commit_hash":"abc","username":"bob","manual_status":"manually_graded"}"#,
        )
        .unwrap();
        assert_eq!(s.score_scaling, 1.0);
        assert_eq!(s.manual_status, ManualStatus::ManuallyGraded);
        assert!(!s.edited);
        assert!(
            serde_json::from_str::<Submission>(
                r#"{"id":4,"commit_hash":"a","username":"b","manual_status":"done"}"#
            )
            .is_err()
        );
    }
}

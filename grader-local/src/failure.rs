//! What kind of failure ended a job, for programs: in the outcome's `failure`, counted by
//! `grader batch` and `grader serve`. The readable `error` says the details; the kind says
//! what a caller may do about it (retry an infrastructure failure, not a student's crash).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of failure, each with one meaning (see [`FailureKind::meaning`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The job was refused before anything touched the disk.
    InvalidJob,
    /// Grading ran past `max_grading_time` and was stopped.
    TimedOut,
    /// The job was cancelled (Ctrl-C, SIGTERM, `DELETE /v1/jobs/{id}`).
    Cancelled,
    /// The grading tool ran and exited with a non-zero code or was killed by a signal.
    ToolExited,
    /// The grading tool could not be started (not found, not executable, image not pulled).
    ToolNotStarted,
    /// The grading container ran out of memory.
    OutOfMemory,
    /// The work dirs or git failed: cleaning, fetching, committing.
    Workdir,
    /// The grading tool left no readable gradebook.
    InvalidGradebook,
    /// The gradebook the tool left cannot have come from the one it was given.
    Tampered,
    /// Where grading runs failed: the API server, a pod evicted, deleted or never
    /// scheduled, a warm worker that broke.
    Infrastructure,
}

impl FailureKind {
    /// Every kind, in the order of the README's table.
    pub const ALL: &'static [FailureKind] = &[
        FailureKind::InvalidJob,
        FailureKind::TimedOut,
        FailureKind::Cancelled,
        FailureKind::ToolExited,
        FailureKind::ToolNotStarted,
        FailureKind::OutOfMemory,
        FailureKind::Workdir,
        FailureKind::InvalidGradebook,
        FailureKind::Tampered,
        FailureKind::Infrastructure,
    ];

    /// The name in outcomes (`timed_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidJob => "invalid_job",
            FailureKind::TimedOut => "timed_out",
            FailureKind::Cancelled => "cancelled",
            FailureKind::ToolExited => "tool_exited",
            FailureKind::ToolNotStarted => "tool_not_started",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::Workdir => "workdir",
            FailureKind::InvalidGradebook => "invalid_gradebook",
            FailureKind::Tampered => "tampered",
            FailureKind::Infrastructure => "infrastructure",
        }
    }

    /// What the kind means, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            FailureKind::InvalidJob => "the job was refused before anything touched the disk",
            FailureKind::TimedOut => "grading ran past max_grading_time and was stopped",
            FailureKind::Cancelled => "the job was cancelled",
            FailureKind::ToolExited => {
                "the grading tool exited with a non-zero code or was killed by a signal"
            }
            FailureKind::ToolNotStarted => "the grading tool (or its image) could not be started",
            FailureKind::OutOfMemory => "the grading container ran out of memory",
            FailureKind::Workdir => "the work dirs or git failed",
            FailureKind::InvalidGradebook => "the grading tool left no readable gradebook",
            FailureKind::Tampered => {
                "the graded gradebook cannot have come from the one grading started from"
            }
            FailureKind::Infrastructure => {
                "where grading runs failed (API server, pod evicted or deleted, warm worker)"
            }
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_names_and_all_lists_every_kind() {
        for kind in FailureKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
            assert!(!kind.meaning().is_empty());
        }
        let mut sorted = FailureKind::ALL.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
    }
}

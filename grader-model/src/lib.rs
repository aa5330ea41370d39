//! Pure model of `grader`: no I/O, no async runtime, no Kubernetes client.
//!
//! Everything that builds names, pods or scores lives here so that the executors above it
//! share one tested implementation that matches the Python reference (`grader-service`).

pub mod domain;
pub mod gradebook;
pub mod k8s;
pub mod pod;
pub mod pod_name;
pub mod slug;

pub use domain::{
    Assignment, AssignmentSettings, AutoStatus, AutogradeType, FeedbackStatus, Lecture,
    ManualStatus, Submission,
};

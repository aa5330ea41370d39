//! Pure model of `grader`: no I/O, no async runtime, no Kubernetes client.
//!
//! Everything that builds names, pods or scores, and every check that both a configuration and
//! a job need, lives here so that the crates above share one tested implementation that
//! matches the Python reference (`grader-service`).
//!
//! # How the parts fit
//!
//! * The job's facts: [`domain`] (lecture, assignment, submission, statuses) and
//!   [`gradebook`] (the reference's `gradebook.json`, its scores, carrying manual grades over),
//!   with [`gradebook_check`] (is a graded gradebook one the tool could have written?) and
//!   [`fnmatch`] (which result files are committed, as Python matches them).
//! * The checks used by configuration loading and by the job check alike: [`safe_path`]
//!   (names that become paths), [`timeouts`] (cell timeouts), [`image_name`] (the image
//!   template), [`pod_name::is_dns1123_label`].
//! * Kubernetes, pure: [`slug`] and [`mod@pod_name`] (names), [`k8s`] (typed models and the
//!   reference's `update_k8s_model` merge), [`pod`] (`make_pod`).

pub mod domain;
pub mod fnmatch;
pub mod gradebook;
pub mod gradebook_check;
pub mod image_name;
pub mod k8s;
pub mod pod;
pub mod pod_name;
pub mod safe_path;
pub mod slug;
pub mod timeouts;

pub use domain::{
    Assignment, AssignmentSettings, AutoStatus, AutogradeType, DEFAULT_CONVERT_EXECUTABLE,
    FeedbackStatus, Lecture, ManualStatus, Submission,
};
pub use gradebook::{Gradebook, GradebookError, whitelist_patterns};
pub use gradebook_check::Tampered;
pub use image_name::{ImageNameTemplate, TemplateError};
pub use k8s::{
    Changes, Field, FieldKind, K8sModel, ModelError, Override, get_k8s_model, update_k8s_model,
};
pub use pod::{Hardening, PodParams, make_pod};
pub use pod_name::{is_dns1123_label, pod_name};
pub use safe_path::UnsafePath;
pub use slug::{
    DEFAULT_HASH_LENGTH, DEFAULT_LIMIT, SlugError, hashed_slug, hashed_slug_default, sha256_hex,
};
pub use timeouts::{CellTimeouts, InvalidTimeouts};

//! The Kubernetes backend of `grader`: each grading job runs the grading tool in a pod.
//!
//! Modelled on Grader Service's `KubeAutogradeExecutor`: the pod (built by grader-model's
//! `make_pod`) mounts the job's input and output directories from a shared volume at the same
//! paths as in the grader, runs `grader-convert` with the assignment settings in its
//! environment, and is deleted once its logs are fetched. Unlike the reference it never
//! blocks the runtime, watches all pods through one shared watch instead of polling each,
//! fails pods that cannot start instead of waiting out `max_grading_time`, cleans up its pod
//! on every path (also when the job future is dropped), and adopts or replaces a pod of the
//! same name left by an earlier run.
//!
//! Entry points: [`connect`], [`KubeSettings`], [`ImageConfig`], [`build_pod`],
//! [`KubeBackend`] (a [`grader_local::GradingBackend`]), [`collect_garbage`].

#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod client;
pub mod error;
pub mod gc;
pub mod grader_pod;
pub mod image;
pub mod pod;
pub mod settings;
pub mod watcher;

pub use api::{Deletion, KubePodApi, PodApi, REQUIRED_RBAC};
pub use backend::{KubeBackend, KubeStats};
pub use client::{SERVICE_ACCOUNT_NAMESPACE_FILE, connect, read_namespace_file, resolve_namespace};
pub use error::{ApiError, KubeError};
pub use gc::collect_garbage;
pub use grader_pod::{GraderPod, PodOutcome, PodState, WaitError, WaitTiming, classify};
pub use image::{ImageConfig, LectureImage};
pub use pod::{GRADER_SELECTOR, build_pod, job_pod_name, label_value};
pub use settings::{KubeSettings, Resources};
pub use watcher::{PodWatcher, Seen, Subscription};

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
//! # How the parts fit
//!
//! A job goes through the modules in this order:
//!
//! 1. **settings** and **image**: [`KubeSettings`] (converted once from the configuration by
//!    grader-config) and [`ImageConfig`] (which image a lecture's pods run) are all the
//!    backend is configured with.
//! 2. **pod**: [`build_pod`] turns them and a [`grader_local::GradingTask`] into the pod
//!    manifest, named by [`job_pod_name`] and labelled so that [`GRADER_SELECTOR`] finds it.
//! 3. **backend**: [`KubeBackend`], the [`grader_local::GradingBackend`], builds that pod once
//!    per job and creates it through a [`PodApi`] (**api**; [`KubePodApi`] over a client
//!    from [`connect`], **client**), adopting or replacing a pod of the same name in the way;
//!    what can fail on the way is a [`CreateError`].
//! 4. **watcher** and **grader_pod**: one shared watch of all grading pods ([`PodWatcher`])
//!    feeds each job's [`GraderPod`], which [`classify`]s every state it sees until the pod
//!    ends ([`PodOutcome`]) or waiting ends ([`WaitError`]); each failure carries its
//!    [`grader_local::FailureKind`]. The backend then fetches the logs and deletes the pod.
//! 5. **gc**: [`collect_garbage`] removes the pods a killed `grader` left behind.
//!
//! **error** holds [`ApiError`] (one failed API call), [`CreateError`] and [`KubeError`] (what
//! the crate's other fallible functions return).
//!
//! Only `settings` is a public module (grader-config names its defaults by that path); the
//! rest is reached through the re-exports below.

#![warn(missing_docs)]

mod api;
mod backend;
mod client;
mod error;
mod gc;
mod grader_pod;
mod image;
mod pod;
pub mod settings;
mod watcher;

pub use api::{Deletion, KubePodApi, PodApi, REQUIRED_RBAC};
pub use backend::{KubeBackend, KubeStats, MAX_CONCURRENT_REQUESTS};
pub use client::{SERVICE_ACCOUNT_NAMESPACE_FILE, connect, read_namespace_file, resolve_namespace};
pub use error::{ApiError, CreateError, KubeError};
pub use gc::collect_garbage;
pub use grader_pod::{GraderPod, PodOutcome, PodState, WaitError, WaitTiming, classify};
pub use image::{ImageConfig, LectureImage};
pub use pod::{GRADER_SELECTOR, build_pod, is_label_value, job_pod_name, label_value};
pub use settings::{KubeSettings, Resources};
pub use watcher::{PodWatcher, Seen, Subscription};

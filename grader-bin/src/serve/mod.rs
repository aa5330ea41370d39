//! `grader serve`, a long-running grading service, and `grader submit`, its client.
//!
//! The service keeps one executor for its whole life, so warm workers stay imported and the
//! kube backend keeps its one pod watch between jobs. The parts:
//!
//! * [`server`]: start-up (configuration, Unix socket with mode 0660, optional TCP listener
//!   with a bearer token, the executor) and graceful shutdown on SIGTERM/SIGINT;
//! * [`api`]: the HTTP/1.1 + JSON routes under `/v1`, the probes and the error answers;
//! * [`metrics`]: `GET /metrics` in the Prometheus text format;
//! * [`page`]: `GET /`, the status page for people, and the JSON it polls;
//! * [`registry`]: jobs and their states, one run per submission, commit and kind at a time,
//!   the bounded queue, retention, and a read-only [`registry::Snapshot`] for status pages and
//!   metrics;
//! * [`runner`]: bounded concurrency over the shared executor, outcome files;
//! * [`client`]: `grader submit`.

pub mod api;
pub mod client;
pub mod metrics;
pub mod page;
pub mod registry;
pub mod runner;
pub mod server;

pub use server::run as serve;

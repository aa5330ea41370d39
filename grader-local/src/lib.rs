//! The autograde pipeline of `grader`, the one backend trait it grades through, and the local
//! backend that runs the grading tool as a process.

pub mod backend;
pub mod clock;
pub mod executor;
pub mod git;
pub mod job_file;
pub mod local;
pub mod lock;
pub mod logs;
pub mod paths;
pub mod process_tree;
mod reaper;
pub mod warm;
pub mod whitelist;

pub use backend::{BackendFailure, BackendOutput, GradingBackend, GradingTask, JobKind};
pub use executor::{CellTimeouts, Executor, ExecutorConfig, Job, JobError, Outcome, Status};
pub use git::{Git, ProcessGit};
pub use local::LocalBackend;
pub use reaper::harden_process;
pub use warm::{PoolSettings, WarmBackend, WarmError, WarmPool};

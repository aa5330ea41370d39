//! The autograde and feedback pipeline of `grader`, the one backend trait it grades through,
//! and the local backend that runs the grading tool on this machine.
//!
//! # How the parts fit
//!
//! A [`Job`] (read from a job file by [`job_file`], or many by [`read_job_list`]) is checked
//! against the pipeline's [`ExecutorConfig`], whose defaults live with it. The [`Executor`]
//! runs the pipeline of Grader Service's executors: it takes the submission's [`WorkLock`],
//! prepares the work dirs ([`JobPaths`]), exports the commit through the [`Git`] seam
//! ([`ProcessGit`], hardened against repository-controlled code), writes `gradebook.json`,
//! builds the [`GradingTask`] and hands it to a [`GradingBackend`]: the [`LocalBackend`] (the
//! tool below a per-job reaper), the [`WarmBackend`] (forked from a pool of warm workers,
//! [`warm`]) or the kube backend of `grader-kube`. It then checks the graded gradebook against
//! the one it wrote, commits the files the [`whitelisted_files`] rule picks, and returns an
//! [`Outcome`] whose `failure` is a [`FailureKind`]. [`process_tree`], [`logs`] and [`KernelDir`] (each
//! job's own dir for its kernels' sockets) are the helpers both local backends share.

mod backend;
mod clock;
mod executor;
mod failure;
mod git;
mod job;
pub mod job_file;
mod job_list;
mod kernel_dir;
mod local;
mod lock;
pub mod logs;
mod outcome;
mod paths;
pub mod process_tree;
mod reaper;
mod settings;
pub mod warm;
mod whitelist;

pub use backend::{BackendFailure, BackendOutput, GradingBackend, GradingTask, JobKind};
pub use clock::{Clock, SystemClock};
pub use executor::{Executor, GRADEBOOK_FILE};
pub use failure::FailureKind;
pub use git::{ExportStats, Git, GitError, ProcessGit, is_commit_hash};
pub use grader_model::{CellTimeouts, InvalidTimeouts, UnsafePath};
pub use job::{Job, JobError};
pub use job_list::{JobListError, read_job_list};
pub use kernel_dir::KernelDir;
pub use local::{LocalBackend, PASSED_ENV, passed_env};
pub use lock::{LockError, WorkLock};
pub use outcome::{Outcome, Status, Timings};
pub use paths::{JobPaths, RepoType};
pub use reaper::harden_process;
pub use settings::{
    DEFAULT_GIT_EXECUTABLE, DEFAULT_LOG_CAP_BYTES, DEFAULT_MAX_GRADING_TIME,
    DEFAULT_RELATIVE_INPUT_PATH, DEFAULT_RELATIVE_OUTPUT_PATH, DEFAULT_SERVICE_DIR, ExecutorConfig,
};
pub use warm::{PoolSettings, WarmBackend, WarmError, WarmPool};
pub use whitelist::{WhitelistError, whitelisted_files};

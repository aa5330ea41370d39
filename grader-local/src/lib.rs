//! The autograde pipeline of `grader`, the one backend trait it grades through, and the local
//! backend that runs the grading tool as a process.

pub mod backend;
pub mod clock;
pub mod executor;
mod failure;
pub mod git;
mod job;
pub mod job_file;
mod job_list;
pub mod local;
pub mod lock;
pub mod logs;
mod outcome;
pub mod paths;
pub mod process_tree;
mod reaper;
mod settings;
pub mod warm;
pub mod whitelist;

pub use backend::{BackendFailure, BackendOutput, GradingBackend, GradingTask, JobKind};
pub use executor::{Executor, GRADEBOOK_FILE};
pub use failure::FailureKind;
pub use git::{Git, ProcessGit};
pub use grader_model::{CellTimeouts, InvalidTimeouts, UnsafePath};
pub use job::{Job, JobError};
pub use job_list::{JobListError, read_job_list};
pub use local::LocalBackend;
pub use outcome::{Outcome, Status, Timings};
pub use reaper::harden_process;
pub use settings::{
    DEFAULT_GIT_EXECUTABLE, DEFAULT_LOG_CAP_BYTES, DEFAULT_MAX_GRADING_TIME,
    DEFAULT_RELATIVE_INPUT_PATH, DEFAULT_RELATIVE_OUTPUT_PATH, DEFAULT_SERVICE_DIR, ExecutorConfig,
};
pub use warm::{PoolSettings, WarmBackend, WarmError, WarmPool};

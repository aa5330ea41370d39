//! One run of a submission's pipeline at a time, across threads and processes.
//!
//! Two runs of the same submission share its work dirs: the second would wipe the first's
//! input while it grades, and the first could then report a score from a half-built result.
//! So a run holds an exclusive `flock(2)` on `{relative_input_path}/{work dir}.lock` for its
//! whole pipeline. The kernel drops the lock when its holder exits, however it exits, so a
//! killed `grader` never leaves a stale lock; a second run waits for the first (it is bounded
//! by `max_grading_time`) and then grades on its own, so both report the same scores.
//!
//! Lock files stay in place after a run: removing one while another run waits on it would let
//! a third run lock a new file of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often a waiting run tries the lock again.
const RETRY: Duration = Duration::from_millis(100);

/// The lock of one submission's work dirs, held until dropped.
#[derive(Debug)]
pub struct WorkLock {
    _file: File,
}

/// Why a run could not take its submission's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be created or locked.
    #[error("could not lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled while another run of the same submission held the lock.
    #[error("cancelled while waiting for another run of this submission to finish")]
    Cancelled,
}

impl WorkLock {
    /// Takes the lock at `path` (creating the file and its directory), waiting while another
    /// run holds it; `waiting` is called once if it has to wait.
    pub async fn acquire(
        path: &Path,
        cancel: &CancellationToken,
        waiting: impl FnOnce(),
    ) -> Result<WorkLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut waiting = Some(waiting);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WorkLock { _file: file }),
                Err(TryLockError::WouldBlock) => {
                    if let Some(say) = waiting.take() {
                        say();
                    }
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(LockError::Cancelled),
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in/submission_1.lock");
        let cancel = CancellationToken::new();
        let first = WorkLock::acquire(&path, &cancel, || panic!("nothing holds it"))
            .await
            .unwrap();
        let waited = Arc::new(AtomicBool::new(false));
        let w = waited.clone();
        let (p, c) = (path.clone(), cancel.clone());
        let second = tokio::spawn(async move {
            WorkLock::acquire(&p, &c, move || w.store(true, Ordering::SeqCst)).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the second run must wait");
        assert!(waited.load(Ordering::SeqCst));
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the lock is handed on")
            .unwrap();
        assert!(second.is_ok());
    }

    #[tokio::test]
    async fn waiting_ends_when_the_run_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submission_1.lock");
        let cancel = CancellationToken::new();
        let _first = WorkLock::acquire(&path, &cancel, || {}).await.unwrap();
        let other = CancellationToken::new();
        other.cancel();
        let err = WorkLock::acquire(&path, &other, || {}).await.unwrap_err();
        assert!(matches!(err, LockError::Cancelled), "{err}");
    }
}

//! A job's own directory for its kernels' connection files and sockets.
//!
//! Over TCP, the grading tool picks a kernel's five ports (binds port 0 and closes) and the
//! kernel binds them a moment later: any process on the machine can take one in between
//! (another job's kernel handed the same free port, an outgoing connection), and the kernel
//! then dies or never answers. An honest submission fails at random, more often the more jobs
//! run at once. So every backend has the tool start its kernels with the `ipc` transport
//! ([`GradingTask::tool_args`]): a kernel listens on Unix sockets named after its connection
//! file, in a directory no other job uses, so nothing can want the same address.
//!
//! The local backends put that file in a [`KernelDir`]: fresh per job (mode 0700), short
//! enough for socket paths (at most 107 bytes on Linux), removed with the job, so a killed
//! kernel's files do not pile up anywhere. A pod uses its own `/tmp`.
//!
//! [`GradingTask::tool_args`]: crate::GradingTask::tool_args

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Longest directory a kernel's socket paths fit below: `/kernel-ipc-{n}` follows it, and a
/// socket path holds at most 107 bytes.
const MAX_LEN: usize = 88;

/// A job's kernel files dir; removed, with whatever the job left in it, when dropped.
#[derive(Debug)]
pub struct KernelDir {
    dir: tempfile::TempDir,
}

impl KernelDir {
    /// Creates a fresh dir below the system's temp dir, or below `/tmp` when that path is too
    /// long for socket paths.
    pub fn create() -> std::io::Result<KernelDir> {
        let tmp = std::env::temp_dir();
        // `/grader-kernels-` and six random characters follow the parent.
        let parent = if tmp.as_os_str().len() + 22 <= MAX_LEN {
            tmp
        } else {
            PathBuf::from("/tmp")
        };
        let dir = tempfile::Builder::new()
            .prefix("grader-kernels-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        Ok(KernelDir { dir })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the tool writes each kernel's connection file in turn (the kernels of one job run
    /// one after another); the kernel's sockets are `kernel-ipc-{n}` next to it.
    pub fn connection_file(&self) -> PathBuf {
        self.dir.path().join("kernel.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_dir_is_private_short_and_gone_when_dropped() {
        let dir = KernelDir::create().unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.as_os_str().len() <= MAX_LEN, "{}", path.display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        std::fs::write(dir.connection_file(), "{}").unwrap();
        let longest = path.join("kernel-ipc-999");
        assert!(longest.as_os_str().len() <= 107);
        std::os::unix::net::UnixListener::bind(longest).unwrap();
        drop(dir);
        assert!(!path.exists(), "{} is left", path.display());
    }
}

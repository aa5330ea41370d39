//! The container as a local child process: starting it (own process group, private mount
//! namespace with its bind mounts), stopping it as containerd does, and its exit code.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use super::mounts::Mount;

/// Everything needed to start the container process.
#[derive(Debug)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub mounts: Vec<Mount>,
    pub private_mounts: bool,
}

/// Whether this process can give children a private mount namespace (root with
/// CAP_SYS_ADMIN): probed once by starting `true` inside one.
pub(crate) fn private_mounts_available() -> bool {
    use std::os::unix::process::CommandExt;
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let mut probe = std::process::Command::new("true");
        probe
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            probe.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        probe.status().map(|s| s.success()).unwrap_or(false)
    })
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Starts the container process: its own process group, stdin from /dev/null, stdout and
/// stderr appended to `log`; with `private_mounts`, inside a new mount namespace with the
/// bind mounts applied; then `chdir(working_dir)` and exec.
pub(crate) fn spawn(
    launch: &Launch,
    log: &std::fs::File,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0)
        .kill_on_drop(true);
    // Everything the child needs is allocated before fork.
    let mounts = launch
        .mounts
        .iter()
        .map(|m| Ok((cstring(&m.source)?, cstring(&m.target)?, m.read_only)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let working_dir = cstring(&launch.working_dir)?;
    let private = launch.private_mounts;
    // SAFETY: the closure only makes async-signal-safe syscalls on pre-allocated data.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            if private {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let null = std::ptr::null();
                check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (source, target, read_only) in &mounts {
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    if *read_only {
                        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                        check(libc::mount(
                            null,
                            target.as_ptr(),
                            null,
                            flags,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            check(libc::chdir(working_dir.as_ptr()))
        });
    }
    cmd.spawn()
}

/// Sends `signal` to process group `pgid` (errors such as "no such process" are ignored).
pub(crate) fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// The exit code a container runtime reports: the process's own, or 128 + the signal that
/// ended it.
pub(super) fn exit_code(status: &ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Stops a container as containerd does: SIGTERM to its main process only (a container's
/// PID 1), then — when the main process has exited or after `grace` (at once for a zero
/// grace) — SIGKILL to everything left in its process group.
pub(super) async fn terminate(
    child: &mut tokio::process::Child,
    pgid: i32,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if !grace.is_zero() {
        if let Some(pid) = child.id() {
            // SAFETY: plain syscall.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            kill_group(pgid, libc::SIGKILL);
            return status;
        }
    }
    kill_group(pgid, libc::SIGKILL);
    child.wait().await
}

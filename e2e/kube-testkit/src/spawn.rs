//! Spawning the control-plane processes so that they never outlive the test process.
//!
//! Each child gets `PR_SET_PDEATHSIG(SIGKILL)`. That signal fires when the *thread* that forked
//! the child exits, so the children are forked by one dedicated thread that lives as long as
//! the process: a control plane kept in a `static` (shared by the tests of one binary, whose
//! `Drop` never runs) still dies with the test binary, and so does one whose test panicked or
//! was killed.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

/// Makes `cmd` receive SIGKILL when the thread that spawns it exits.
pub(crate) fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` from the long-lived spawner thread, with a parent-death signal.
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    set_parent_death_signal(&mut cmd);
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("kube-testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the kube-testkit spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("kube-testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("kube-testkit spawner thread is gone"))?
}

/// Marks a temporary directory as owned by this process (see [`reap_stale_dirs`]).
pub(crate) fn mark_owned(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
}

const OWNER_FILE: &str = "kube-testkit-owner.pid";

/// Removes `kube-testkit-*` directories (in the temp dir and /dev/shm) left by processes that
/// are gone: a control plane kept in a `static` is never dropped, so its directories outlive
/// the test binary (its processes do not: see above).
pub(crate) fn reap_stale_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for base in [std::env::temp_dir(), Path::new("/dev/shm").to_path_buf()] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("kube-testkit-")
                {
                    continue;
                }
                let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE));
                let Ok(pid) = owner.unwrap_or_default().trim().parse::<i32>() else {
                    continue;
                };
                // SAFETY: signal 0 only checks that the process exists.
                let alive = unsafe { libc::kill(pid, 0) } == 0
                    || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

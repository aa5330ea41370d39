//! A per-job reaper between `grader` and the grading tool, and the hardening of `grader`'s own
//! process.
//!
//! Student code runs inside the tool and can do anything its process can: double-fork a daemon
//! into a new session, keep the tool's stdout open, outlive `grader`. So every plain job runs
//! under a reaper of its own, a forked child of `grader` that:
//!
//! * is a child subreaper (`PR_SET_CHILD_SUBREAPER`): whatever the job starts, however it forks
//!   and whatever session it makes, is reparented to the reaper when its parent dies, so it
//!   stays below the reaper and is found, and killed, with it;
//! * starts the tool (its own process group, stdin `/dev/null`, stdout and stderr to `grader`'s
//!   pipes, the job's cleared environment, no capabilities when `grader` is root, no new
//!   privileges, `PR_SET_PDEATHSIG(SIGKILL)` tied to the reaper), reports its start (or the
//!   `execve` error) and its exit status to `grader` over a pipe, and reaps every zombie;
//! * kills everything below itself and exits when `grader` goes away (its control pipe from
//!   `grader` reaches end of file, or its parent changes), so a `kill -9` of `grader` does
//!   not leave the tool running without a time limit;
//! * is not dumpable, like `grader` itself after [`harden_process`].
//!
//! `grader` waits for the tool's status (never for the pipes to close), then kills the whole
//! tree below the reaper, the reaper included, reaps the reaper, and only then drains the
//! output pipes, whose writers are all dead by then.
//!
//! Between `fork` and `execve` in a multi-threaded process only async-signal-safe calls are
//! allowed: everything the children need (C strings, pointer arrays, descriptors, signal sets,
//! the capability count) is prepared before forking, and the child code below only makes
//! system calls, without allocating, formatting or panicking.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use nix::libc::{self, c_char, c_int, pid_t};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::process_tree;

/// Makes the calling process non-dumpable (`PR_SET_DUMPABLE` 0): processes of the same user
/// without `CAP_SYS_PTRACE` (student code run by the grading tool) can then neither read its
/// `/proc/PID/environ`, memory, descriptors or working directory nor trace it. Idempotent;
/// inherited by forked children, reset by `execve`. `grader` calls it first thing, and so does
/// [`LocalBackend::new`](crate::LocalBackend::new) for library users.
pub fn harden_process() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes integer arguments only and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What the reaper runs: the tool, resolved, with its arguments, environment and directory.
#[derive(Debug, Clone)]
pub struct ToolCommand {
    /// The executable as configured: a path (with a `/`) or a name looked up in `PATH`.
    pub program: PathBuf,
    /// Arguments after the program name (`argv[0]` is `program` as given).
    pub args: Vec<String>,
    /// The whole environment of the tool.
    pub env: Vec<(OsString, OsString)>,
    /// The tool's working directory.
    pub cwd: PathBuf,
}

/// A started job: its reaper, and the read ends of the tool's stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    pub reaper: Reaper,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// The reaper of one job (a child process of `grader`). Dropping it without
/// [`Reaper::end`] still kills the job's whole tree and reaps the reaper (on a thread).
#[derive(Debug)]
pub struct Reaper {
    pid: pid_t,
    /// `grader`'s end of the control pipe: when it closes, the reaper ends the job.
    control: Option<OwnedFd>,
    status: pipe::Receiver,
    reaped: bool,
}

/// Messages from the reaper, 8 bytes each (kind, value), written atomically to a pipe.
const MSG_STARTED: i32 = 1;
const MSG_EXEC_FAILED: i32 = 2;
const MSG_EXITED: i32 = 3;
const MSG_SETUP_FAILED: i32 = 4;

/// `CAP_SETPCAP` (linux/capability.h), needed to shrink the capability bounding set.
const CAP_SETPCAP: u32 = 8;

/// How long the reaper sleeps in `poll` at most before it checks its parent again.
const REAPER_TICK_MS: c_int = 500;

impl Reaper {
    /// The reaper's pid: the root of the job's process tree.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    async fn message(&mut self) -> std::io::Result<(i32, i32)> {
        let mut buf = [0u8; 8];
        self.status.read_exact(&mut buf).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::other("the job's reaper ended unexpectedly")
            } else {
                e
            }
        })?;
        let kind = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let value = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        Ok((kind, value))
    }

    /// Waits until the tool has been executed: its pid, or the error of `execve` (or of the
    /// reaper's own set-up) as an OS error.
    pub async fn started(&mut self) -> std::io::Result<u32> {
        match self.message().await? {
            (MSG_STARTED, pid) => Ok(pid as u32),
            (MSG_EXEC_FAILED | MSG_SETUP_FAILED, errno) => {
                Err(std::io::Error::from_raw_os_error(errno))
            }
            (kind, _) => Err(std::io::Error::other(format!(
                "unexpected message {kind} from the job's reaper"
            ))),
        }
    }

    /// Waits until the tool has exited (after [`Reaper::started`]); its exit status.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        match self.message().await? {
            (MSG_EXITED, status) => Ok(ExitStatus::from_raw(status)),
            (kind, _) => Err(std::io::Error::other(format!(
                "unexpected message {kind} from the job's reaper"
            ))),
        }
    }

    /// Ends the job: kills the whole tree below the reaper and the reaper itself, and reaps
    /// the reaper. Everything that wrote to the job's pipes is dead afterwards.
    pub async fn end(mut self) {
        // The reaper is not reaped yet, so its pid still names it and its tree.
        process_tree::kill_tree(self.pid as u32);
        self.control.take();
        let pid = self.pid;
        self.reaped = true;
        let _ = tokio::task::spawn_blocking(move || wait_for(pid)).await;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        process_tree::kill_tree(self.pid as u32);
        self.control.take();
        let pid = self.pid;
        let _ = std::thread::Builder::new()
            .name("grader-reap".into())
            .spawn(move || wait_for(pid));
    }
}

/// Reaps child `pid`, waiting for it.
fn wait_for(pid: pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status int we pass.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Where `program` is: itself (made absolute) when it names a path, else the first executable
/// of that name in `PATH`, as `execvp` finds it.
fn resolve(program: &Path) -> std::io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return std::path::absolute(program);
    }
    let path = std::env::var_os("PATH");
    crate::warm::find_program(program, path.as_deref())
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

fn cstring(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in the tool's command, environment or directory",
        )
    })
}

/// A pipe whose both ends are close-on-exec, neither of them on descriptors 0 to 2.
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// `fd` itself, or a close-on-exec duplicate of it at 3 or above when it is one of 0 to 2 (as
/// when `grader` runs with a standard stream closed), so that the reaper can put `/dev/null`
/// on 0 to 2 without clobbering it.
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own; the new one is ours.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Whether the tool's capabilities are to be dropped (`grader` runs as root), and how many
/// there are: `/proc/sys/kernel/cap_last_cap`, read before forking.
fn capability_plan() -> Option<c_int> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<c_int>().ok())
        .unwrap_or(63);
    if !has_effective_capability(CAP_SETPCAP) {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "grader runs as root without CAP_SETPCAP: the grading tool keeps root's \
                 capability bounding set and can read the environment of other root processes"
            );
        });
    }
    Some(last)
}

fn has_effective_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| cap < 64 && eff & (1 << cap) != 0)
}

/// Everything the reaper and the tool's child need, prepared before forking.
struct Plan {
    program: CString,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    cwd: CString,
    devnull: RawFd,
    stdout_w: RawFd,
    stderr_w: RawFd,
    status_w: RawFd,
    control_r: RawFd,
    /// Kept sorted for [`close_all_but`].
    keep: [RawFd; 5],
    parent: pid_t,
    /// `Some(cap_last_cap)` when the tool's capabilities are to be dropped.
    drop_caps: Option<c_int>,
    /// SIGCHLD and the signals that end the reaper, read through a signalfd.
    watched: libc::sigset_t,
    empty: libc::sigset_t,
    name: &'static [u8],
}

/// Starts the reaper of a job and, below it, the tool. Returns once the reaper is forked; the
/// tool's start (or the reason it could not start) comes from [`Reaper::started`].
pub fn spawn(cmd: &ToolCommand) -> std::io::Result<Spawned> {
    let program = cstring(resolve(&cmd.program)?.as_os_str())?;
    let argv: Vec<CString> = std::iter::once(cstring(cmd.program.as_os_str()))
        .chain(cmd.args.iter().map(|a| cstring(OsStr::new(a))))
        .collect::<std::io::Result<_>>()?;
    let envp: Vec<CString> = cmd
        .env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<std::io::Result<_>>()?;
    let cwd = cstring(cmd.cwd.as_os_str())?;
    let devnull = above_stdio(OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    ))?;
    let (stdout_r, stdout_w) = pipe_pair()?;
    let (stderr_r, stderr_w) = pipe_pair()?;
    let (status_r, status_w) = pipe_pair()?;
    let (control_r, control_w) = pipe_pair()?;
    let drop_caps = capability_plan();

    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let mut keep = [
        devnull.as_raw_fd(),
        stdout_w.as_raw_fd(),
        stderr_w.as_raw_fd(),
        status_w.as_raw_fd(),
        control_r.as_raw_fd(),
    ];
    keep.sort_unstable();
    // SAFETY: sigemptyset and sigaddset only write the set we pass; the signals are valid.
    let (watched, empty) = unsafe {
        let mut watched: libc::sigset_t = std::mem::zeroed();
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigemptyset(&mut watched);
        for sig in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
        ] {
            libc::sigaddset(&mut watched, sig);
        }
        (watched, empty)
    };
    let plan = Plan {
        program,
        argv_ptrs,
        envp_ptrs,
        cwd,
        devnull: devnull.as_raw_fd(),
        stdout_w: stdout_w.as_raw_fd(),
        stderr_w: stderr_w.as_raw_fd(),
        status_w: status_w.as_raw_fd(),
        control_r: control_r.as_raw_fd(),
        keep,
        parent: std::process::id() as pid_t,
        drop_caps,
        watched,
        empty,
        name: b"grader-reaper\0",
    };

    // SAFETY: the child runs only `reaper_main`, which makes async-signal-safe system calls on
    // data prepared above (and kept alive by `argv`, `envp` and `plan` until after the fork in
    // this process; the child has its own copy) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; in the forked child.
        unsafe { reaper_main(&plan) }
    }
    drop((stdout_w, stderr_w, status_w, control_r, devnull));
    drop((argv, envp));
    let reaper = Reaper {
        pid,
        control: Some(control_w),
        status: pipe::Receiver::from_owned_fd(status_r)?,
        reaped: false,
    };
    Ok(Spawned {
        stdout: pipe::Receiver::from_owned_fd(stdout_r)?,
        stderr: pipe::Receiver::from_owned_fd(stderr_r)?,
        reaper,
    })
}

// Everything below runs in forked children: system calls only, no allocation, no panics.

fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Writes one message to `grader` (8 bytes: atomic on a pipe).
unsafe fn send(fd: RawFd, kind: i32, value: i32) {
    let k = kind.to_ne_bytes();
    let v = value.to_ne_bytes();
    let buf = [k[0], k[1], k[2], k[3], v[0], v[1], v[2], v[3]];
    loop {
        // SAFETY: writes from a live local buffer of its length.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r >= 0 || errno() != libc::EINTR {
            return;
        }
    }
}

/// Closes every descriptor from 3 up except those in `keep` (sorted).
unsafe fn close_all_but(keep: &[RawFd]) {
    let mut from: libc::c_uint = 3;
    for &fd in keep {
        if fd < 3 {
            continue;
        }
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: closes descriptors of this (forked) process only.
            unsafe { close_range(from, fd - 1) };
        }
        from = fd.saturating_add(1);
    }
    // SAFETY: as above.
    unsafe { close_range(from, libc::c_uint::MAX) };
}

/// `close_range(first, last)`, or a loop of `close` where the kernel lacks it.
unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) {
    // SAFETY: the close_range system call takes integers only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as libc::c_uint) };
    if r == 0 {
        return;
    }
    let mut fd = first;
    while fd <= last && fd < 65536 {
        // SAFETY: closing a descriptor number, open or not, of this process.
        unsafe { libc::close(fd as c_int) };
        fd += 1;
    }
}

/// Sets every signal, the real-time ones glibc reserves for itself included (they may be
/// ignored, inherited through `execve`), to its default action.
unsafe fn reset_signal_dispositions() {
    // The kernel's `struct sigaction`: handler, flags, then restorer and mask, or the mask
    // alone, depending on the architecture; all zero is SIG_DFL, no flags, empty mask in
    // either layout.
    let default = [0usize; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads the zeroed struct above; the old action is not asked
            // for; invalid signal numbers fail harmlessly.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default.as_ptr(),
                    std::ptr::null_mut::<usize>(),
                    8usize,
                )
            };
        }
    }
}

/// The reaper: never returns.
unsafe fn reaper_main(plan: &Plan) -> ! {
    // SAFETY (whole function): system calls on descriptors and data of `plan`, which this
    // forked process owns a copy of; no allocation.
    unsafe {
        // Out of grader's process group, so a Ctrl-C at the terminal reaches grader (which
        // cancels the job) but not the reaper.
        libc::setpgid(0, 0);
        reset_signal_dispositions();
        // A write to grader after grader died fails with EPIPE instead of killing the reaper.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::sigprocmask(libc::SIG_SETMASK, &plan.watched, std::ptr::null_mut());
        libc::prctl(
            libc::PR_SET_NAME,
            plan.name.as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0);
        let subreaper = libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        for fd in 0..3 {
            libc::dup2(plan.devnull, fd);
        }
        close_all_but(&plan.keep);
        if subreaper != 0 {
            send(plan.status_w, MSG_SETUP_FAILED, errno());
            libc::_exit(1);
        }
        if libc::getppid() != plan.parent {
            libc::_exit(1);
        }
        let signals = libc::signalfd(-1, &plan.watched, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        let mut exec_pipe = [-1 as c_int; 2];
        if signals < 0 || libc::pipe2(exec_pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            send(plan.status_w, MSG_SETUP_FAILED, errno());
            libc::_exit(1);
        }
        let me = libc::getpid();
        let tool = libc::fork();
        if tool == 0 {
            tool_main(plan, me, exec_pipe[1]);
        }
        let fork_errno = errno();
        libc::close(exec_pipe[1]);
        libc::close(plan.stdout_w);
        libc::close(plan.stderr_w);
        libc::close(plan.devnull);
        if tool < 0 {
            send(plan.status_w, MSG_SETUP_FAILED, fork_errno);
            libc::_exit(1);
        }
        // The tool's child closes its end of this pipe by executing, or writes errno to it.
        let mut buf = [0u8; 4];
        let n = loop {
            let n = libc::read(exec_pipe[0], buf.as_mut_ptr().cast(), buf.len());
            if n >= 0 || errno() != libc::EINTR {
                break n;
            }
        };
        libc::close(exec_pipe[0]);
        if n == 4 {
            let mut status = 0;
            libc::waitpid(tool, &mut status, 0);
            send(plan.status_w, MSG_EXEC_FAILED, i32::from_ne_bytes(buf));
            libc::_exit(0);
        }
        send(plan.status_w, MSG_STARTED, tool);
        watch(plan, signals, tool)
    }
}

/// The reaper's loop once the tool runs: reaps every child, reports the tool's exit, and ends
/// everything when grader goes away or a terminating signal arrives.
unsafe fn watch(plan: &Plan, signals: RawFd, tool: pid_t) -> ! {
    // SAFETY (whole function): system calls on this process's descriptors and local buffers.
    unsafe {
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: plan.control_r,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: signals,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ready = libc::poll(fds.as_mut_ptr(), 2, REAPER_TICK_MS);
            if ready < 0 && errno() != libc::EINTR {
                end_everything();
            }
            // Grader never writes: anything on the control pipe is its end of file (grader
            // exited or was killed) or a request to end.
            if fds[0].revents != 0 || libc::getppid() != plan.parent {
                end_everything();
            }
            if fds[1].revents != 0 {
                let mut info: libc::signalfd_siginfo = std::mem::zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                while libc::read(signals, (&raw mut info).cast(), size) == size as isize {
                    if info.ssi_signo != libc::SIGCHLD as u32 {
                        end_everything();
                    }
                }
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == tool {
                    send(plan.status_w, MSG_EXITED, status);
                }
            }
        }
    }
}

/// Kills every process below the reaper until none is left, then exits. Orphans of killed
/// processes are reparented to the reaper (a subreaper), so each round finds the next level.
unsafe fn end_everything() -> ! {
    // SAFETY (whole function): system calls on a local buffer and this process's children.
    unsafe {
        loop {
            let mut buf = [0u8; 4096];
            let mut n = 0usize;
            let fd = libc::open(
                c"/proc/thread-self/children".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                while n < buf.len() {
                    let r = libc::read(fd, buf.as_mut_ptr().add(n).cast(), buf.len() - n);
                    if r <= 0 {
                        break;
                    }
                    n += r as usize;
                }
                libc::close(fd);
            }
            let mut pid: pid_t = 0;
            let mut listed = false;
            for &b in buf.iter().take(n).chain(std::iter::once(&b' ')) {
                if b.is_ascii_digit() {
                    pid = pid.wrapping_mul(10).wrapping_add((b - b'0') as pid_t);
                } else {
                    if pid > 0 {
                        libc::kill(pid, libc::SIGKILL);
                        listed = true;
                    }
                    pid = 0;
                }
            }
            let mut status = 0;
            if !listed {
                // Nothing listed: done once no child (zombie included) is left.
                if libc::waitpid(-1, &mut status, libc::WNOHANG) < 0 && errno() == libc::ECHILD {
                    libc::_exit(0);
                }
            }
            // Wait for one killed child to die; its orphans then show up in the next round.
            if libc::waitpid(-1, &mut status, 0) < 0 && errno() == libc::ECHILD {
                libc::_exit(0);
            }
        }
    }
}

/// The tool's child: sets itself up and executes the tool, or reports why it could not.
unsafe fn tool_main(plan: &Plan, reaper: pid_t, exec_w: RawFd) -> ! {
    // SAFETY (whole function): system calls on data of `plan` in this forked process.
    unsafe {
        let fail = |e: c_int| exec_failed(exec_w, e);
        libc::setpgid(0, 0);
        // Dies with the reaper; the reaper may already be gone by the time this is set.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(errno());
        }
        if libc::getppid() != reaper {
            libc::_exit(127);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, &plan.empty, std::ptr::null_mut());
        if libc::dup2(plan.devnull, 0) < 0
            || libc::dup2(plan.stdout_w, 1) < 0
            || libc::dup2(plan.stderr_w, 2) < 0
        {
            fail(errno());
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(errno());
        }
        // No setuid or file-capability gains for anything the tool executes.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            fail(errno());
        }
        if let Some(last) = plan.drop_caps
            && let Err(e) = drop_capabilities(last)
        {
            fail(e);
        }
        // Everything but 0 to 2 closes on execve (the exec pipe included).
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(
            plan.program.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        fail(errno())
    }
}

/// Reports `errno` to the reaper through the exec pipe `fd` and exits.
unsafe fn exec_failed(fd: RawFd, errno: c_int) -> ! {
    let b = errno.to_ne_bytes();
    // SAFETY: writes from a live local buffer of its length, then exits without unwinding.
    unsafe {
        libc::write(fd, b.as_ptr().cast(), b.len());
        libc::_exit(127)
    }
}

/// Empties the bounding set (so that executing as root grants no capability), then the
/// inheritable and ambient sets. The errno of an unexpected failure.
unsafe fn drop_capabilities(last: c_int) -> Result<(), c_int> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    // SAFETY (whole function): prctl and capget/capset on local, correctly laid out buffers.
    unsafe {
        for cap in 0..=last {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && errno() != libc::EINVAL
            {
                return Err(errno());
            }
        }
        let r = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        if r != 0 && errno() != libc::EINVAL {
            return Err(errno());
        }
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) != 0 {
            return Err(errno());
        }
        data[0].inheritable = 0;
        data[1].inheritable = 0;
        if libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

//! The warm local backend: a pool of workers that imported the grading tool once.
//!
//! Importing `grader_service` takes seconds of every `grader-convert` run. A [`Worker`] is a
//! long-lived Python process of the tool's environment (`shim/grader_warm_worker.py`, embedded
//! here) that imports the tool once and forks a fresh child of that pristine state per job,
//! which runs the tool's own command-line main with the arguments, environment and working
//! directory the local backend would give the tool. [`WarmPool`] keeps `warm_workers` of them:
//! it starts them, checks them, recycles them after a number of jobs or when their memory grows,
//! replaces crashed ones and shuts them down. [`WarmBackend`] grades through the pool with the
//! contract of [`LocalBackend`](crate::LocalBackend), and falls back to it, with the reason
//! logged, when no worker can be started. Linux only.

mod backend;
mod pool;
pub mod protocol;
mod worker;

pub use backend::WarmBackend;
pub use pool::{
    DEFAULT_MAX_RSS_GROWTH_MIB, DEFAULT_PRESTART_KERNELS, DEFAULT_RECYCLE_AFTER_JOBS,
    DEFAULT_START_TIMEOUT, Lease, MAX_WORKERS, PoolSettings, PoolStats, WarmPool,
};
pub use worker::{
    JobRequest, PHASES_ENV, RunEnd, SHIM, Worker, WorkerFault, WorkerSpec, phase_timings, rss_bytes,
};

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::logs::LogBuffer;
use crate::process_tree;

/// Why a warm worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The private directory for the jobs' logs could not be made.
    #[error("could not create the warm workers' directory under {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The python could not be executed (missing, not executable, ...).
    #[error("could not start a warm grading worker with python {python}: {source}")]
    Spawn {
        python: PathBuf,
        source: std::io::Error,
    },
    /// The worker started but did not say a good hello (import failed, timed out, ...).
    #[error(
        "the warm grading worker (python {python}) did not become ready: {reason}{}",
        stderr_suffix(stderr)
    )]
    NotReady {
        python: PathBuf,
        reason: String,
        /// The tail of what the worker printed to stderr.
        stderr: String,
    },
    /// The grading tool is neither a path to a file nor a program on `PATH`.
    #[error("cannot find the grading tool {0} (convert_executable), as a path or on PATH")]
    ToolNotFound(PathBuf),
    /// The grading tool's script does not name its interpreter on a `#!` line.
    #[error("cannot tell which python runs {0}: its first line is not a `#!` interpreter line")]
    NoPython(PathBuf),
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!("; it printed:\n{s}")
    }
}

/// The python that runs a console script such as `grader-convert`, read from its `#!` line, so
/// that operators only configure `convert_executable`.
///
/// Understands `#!/venv/bin/python`, `#!/usr/bin/env python3` (returns the bare name, found in
/// `PATH` when spawned) and pip's `#!/bin/sh` + `'''exec' "/venv/bin/python" "$0" "$@"`
/// trampoline for long paths. `None` when the file cannot be read or names no interpreter.
pub fn python_of(convert_executable: &Path) -> Option<PathBuf> {
    let file = File::open(convert_executable).ok()?;
    // Two lines are enough for every form above; bound the read for binaries.
    let mut reader = BufReader::new(file.take(8192));
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let shebang = first.strip_prefix("#!")?.trim();
    let mut words = shebang.split_whitespace();
    let interpreter = words.next()?;
    match Path::new(interpreter).file_name()?.to_str()? {
        "env" => words.find(|w| !w.starts_with('-')).map(PathBuf::from),
        "sh" | "bash" | "dash" => {
            let mut second = String::new();
            reader.read_line(&mut second).ok()?;
            let rest = second.trim().strip_prefix("'''exec' ")?;
            let quoted = rest.strip_prefix('"')?;
            let end = quoted.find('"')?;
            Some(PathBuf::from(&quoted[..end]))
        }
        _ => Some(PathBuf::from(interpreter)),
    }
}

/// Where `program` is: itself when it names a path (has a `/`), else the first executable
/// file of that name in the directories of `path` (a `PATH` value), as `execvp` looks it up.
pub fn find_program(program: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|c| {
            c.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `/proc/PID/comm` of a warm worker's child forked ahead of the next job's request.
pub const WAITING_CHILD_NAME: &str = "grader-next-job";
/// `/proc/PID/comm` of the kernel zygote that child starts (kernels started ahead of need).
pub const ZYGOTE_NAME: &str = "grader-zygote";

/// The processes below an idle warm worker that are not what it keeps for the next job: every
/// descendant except its waiting child ([`WAITING_CHILD_NAME`], a child of the worker) and that
/// child's kernel zygote ([`ZYGOTE_NAME`], its only child before the job's request). Empty when
/// no job left anything behind.
pub fn leftovers(worker: u32) -> Vec<u32> {
    let comm = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default()
    };
    let parent = |pid: u32| process_tree::stat_field(pid, 1).and_then(|p| p.parse::<u32>().ok());
    let waiting: Vec<u32> = process_tree::descendants(worker)
        .into_iter()
        .filter(|&p| parent(p) == Some(worker) && comm(p) == WAITING_CHILD_NAME)
        .collect();
    process_tree::descendants(worker)
        .into_iter()
        .filter(|&p| {
            // Named so once its python runs ZYGOTE; until then it has the name it was executed with.
            let zygote = parent(p).is_some_and(|q| waiting.contains(&q));
            !waiting.contains(&p) && !zygote
        })
        .collect()
}

/// Distinguishes the private directories of pools started by one process.
static POOLS: AtomicU64 = AtomicU64::new(0);

/// Creates a new directory only the current user can enter under `work_dir`.
fn private_dir(work_dir: &Path) -> Result<PathBuf, WarmError> {
    let fail = |source| WarmError::Dir {
        dir: work_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(work_dir).map_err(fail)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let n = POOLS.fetch_add(1, Ordering::Relaxed);
        let dir = work_dir.join(format!(".grader-warm-{}-{n}-{nanos:x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail(e)),
        }
    }
}

/// A job's log file; removed on drop.
#[derive(Debug)]
pub(crate) struct RunLog {
    path: PathBuf,
}

impl RunLog {
    /// The log as [`LogBuffer`] keeps it with `cap`. `dropped`: the bytes the worker left out
    /// between the head and the tail it wrote (`None` when it did not say: the file is then
    /// read as a plain capped log).
    fn read(&self, cap: usize, dropped: Option<u64>) -> String {
        let read = match dropped {
            Some(dropped) if dropped > 0 => read_head_and_tail(&self.path, cap, dropped),
            _ => read_capped(&self.path, cap),
        };
        read.unwrap_or_else(|e| format!("grader: could not read the log: {e}\n"))
    }
}

/// How [`LogBuffer`] splits `cap` between the head and the tail it keeps; the worker keeps the
/// same head and tail of a job's output on disk.
pub(crate) fn log_split(cap: usize) -> (usize, usize) {
    let cap = cap.max(64);
    (cap / 2, cap - cap / 2)
}

/// A log the worker wrote as the first `head` bytes of the output then its last bytes, having
/// left out `dropped` bytes between them.
fn read_head_and_tail(path: &Path, cap: usize, dropped: u64) -> std::io::Result<String> {
    let (head_cap, tail_cap) = log_split(cap);
    let mut bytes = Vec::new();
    File::open(path)?
        .take((head_cap + tail_cap) as u64)
        .read_to_end(&mut bytes)?;
    let (head, tail) = bytes.split_at(head_cap.min(bytes.len()));
    let mut buf = LogBuffer::new(cap);
    buf.push(head);
    buf.skip(dropped);
    buf.push(tail);
    Ok(buf.into_string())
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_capped(path: &Path, cap: usize) -> std::io::Result<String> {
    let (head_cap, tail_cap) = log_split(cap);
    let cap = head_cap + tail_cap;
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut buf = LogBuffer::new(cap);
    if size <= cap as u64 {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        buf.push(&bytes);
        return Ok(buf.into_string());
    }
    // What LogBuffer keeps of a NUL-free stream of `size` bytes, without reading the middle.
    let mut head = vec![0u8; head_cap];
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::Start(size - tail_cap as u64))?;
    let mut tail = Vec::with_capacity(tail_cap);
    file.take(tail_cap as u64).read_to_end(&mut tail)?;
    buf.push(&head);
    buf.skip(size - cap as u64);
    buf.push(&tail);
    Ok(buf.into_string())
}

/// The start time of process `pid` (clock ticks since boot), to tell it from a later process
/// that reuses its id.
fn start_time(pid: u32) -> Option<u64> {
    // Fields after the command name start at field 3 (state); starttime is field 22.
    crate::process_tree::stat_field(pid, 19)?.parse().ok()
}

/// A job's child as its worker reported it, with its start time to guard against pid reuse.
#[derive(Debug, Default)]
struct RunChild(Option<(u32, Option<u64>)>);

impl RunChild {
    fn set(&mut self, pid: u32) {
        self.0 = Some((pid, start_time(pid)));
    }

    fn started(&self) -> bool {
        self.0.is_some()
    }

    /// Kills the child's tree if the pid still names the child the worker started.
    fn kill(&self) {
        if let Some((pid, Some(started))) = self.0
            && start_time(pid) == Some(started)
        {
            process_tree::kill_tree(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_logs_are_capped_like_log_buffer() {
        let dir = std::env::temp_dir().join(format!("grader-warm-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut text = b"START".to_vec();
        for _ in 0..1000 {
            text.extend_from_slice(b"xxxxxxxxxx");
        }
        text.extend_from_slice(b"END");
        std::fs::write(&path, &text).unwrap();
        let mut expected = LogBuffer::new(100);
        expected.push(&text);
        assert_eq!(read_capped(&path, 100).unwrap(), expected.into_string());
        std::fs::write(&path, b"short\0 log").unwrap();
        assert_eq!(read_capped(&path, 100).unwrap(), "short log");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_log_the_worker_cut_reads_like_log_buffer() {
        let dir = std::env::temp_dir().join(format!("grader-warm-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut text = b"START".to_vec();
        for i in 0..1000 {
            text.extend_from_slice(format!("{i:09}\n").as_bytes());
        }
        text.extend_from_slice(b"END");
        // What the worker writes with a cap of 100: the first 50 and the last 50 bytes.
        let (head, tail) = log_split(100);
        let mut cut = text[..head].to_vec();
        cut.extend_from_slice(&text[text.len() - tail..]);
        std::fs::write(&path, &cut).unwrap();
        let mut expected = LogBuffer::new(100);
        expected.push(&text);
        let dropped = (text.len() - head - tail) as u64;
        let log = RunLog { path: path.clone() };
        assert_eq!(log.read(100, Some(dropped)), expected.into_string());
        assert_eq!(log.read(100, Some(0)), String::from_utf8(cut).unwrap());
        drop(log);
        assert!(!path.exists(), "the log is removed with its guard");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn programs_are_found_like_execvp_finds_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("grader-find-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(b.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        // a/tool is not executable: skipped.
        assert_eq!(
            find_program(Path::new("tool"), Some(&path)),
            Some(b.join("tool"))
        );
        assert_eq!(find_program(Path::new("nope"), Some(&path)), None);
        assert_eq!(find_program(Path::new("tool"), None), None);
        // A path is taken as it is, if it is a file.
        assert_eq!(find_program(&a.join("tool"), None), Some(a.join("tool")));
        assert_eq!(find_program(&a.join("missing"), Some(&path)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_time_names_a_live_process() {
        assert!(start_time(std::process::id()).is_some());
    }
}

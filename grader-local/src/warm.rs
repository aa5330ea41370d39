//! The warm local backend: the grading tool run by a fork server that imported it once.
//!
//! Importing `grader_service.convert.main` takes most of the seconds one `grader-convert` run
//! costs. [`WarmServer`] starts a small Python server (`shim/grader_convert_warm.py`, embedded
//! here) in the tool's own virtualenv; it imports the tool once and forks a fresh child of its
//! pristine post-import state per run. [`WarmBackend`] drives it over a Unix socket with the
//! contract of [`LocalBackend`](crate::LocalBackend): same arguments, environment, working
//! directory, time limit, cancellation and failure reasons. Linux only.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendFailure, BackendOutput, GradingBackend, GradingTask};
use crate::local::passed_env;
use crate::logs::LogBuffer;
use crate::process_tree;

/// The fork server's source, written next to its socket when it starts.
pub const SHIM: &str = include_str!("../shim/grader_convert_warm.py");

/// How long [`WarmServer::start`] waits for the import and the readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a run waits for the server to confirm a killed child has ended.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Longest path a Unix socket address can hold (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The console script the server runs, and the tool name in failure reasons.
const ENTRY_POINT: &str = "grader-convert";

/// Why a [`WarmServer`] could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The private directory for the socket, shim and logs could not be made.
    #[error("could not create the warm grading server's directory under {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The socket path would not fit in a Unix socket address.
    #[error(
        "the warm grading server's socket path {0} is longer than {MAX_SOCKET_PATH} bytes; \
         use a shorter work directory"
    )]
    SocketPath(PathBuf),
    /// The python could not be executed (missing, not executable, ...).
    #[error("could not start the warm grading server with python {python}: {source}")]
    Spawn {
        python: PathBuf,
        source: std::io::Error,
    },
    /// The server started but did not report ready (import failed, timed out, ...).
    #[error(
        "the warm grading server (python {python}) did not become ready: {reason}{}",
        stderr_suffix(stderr)
    )]
    NotReady {
        python: PathBuf,
        reason: String,
        /// The tail of what the server printed to stderr.
        stderr: String,
    },
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

/// A running fork server for the grading tool; shared by the runs of a [`WarmBackend`].
///
/// Dropping it kills the server and everything it started, and removes its directory.
#[derive(Debug)]
pub struct WarmServer {
    dir: PathBuf,
    socket: PathBuf,
    tool: String,
    pid: u32,
    /// `None` once reaped: the pid must then not be signalled again.
    child: Mutex<Option<Child>>,
    stderr: Arc<Mutex<LogBuffer>>,
    runs: AtomicU64,
}

/// Distinguishes the private directories of servers started by one process.
static SERVERS: AtomicU64 = AtomicU64::new(0);

impl WarmServer {
    /// Starts the server with `python` (the grading tool's virtualenv python) in a new private
    /// directory (mode 0700) under `work_dir`, and waits up to [`READY_TIMEOUT`] for it to have
    /// imported the tool.
    ///
    /// The server gets the environment the local backend gives the tool ([`crate::local::PASSED_ENV`]), so
    /// what the tool reads at import time is what it would read in a normal run. Blocks; call it
    /// from `spawn_blocking` in async code.
    pub fn start(python: &Path, work_dir: &Path) -> Result<WarmServer, WarmError> {
        Self::start_labelled(python, work_dir, ENTRY_POINT.to_string())
    }

    /// [`start`](Self::start) with the python named by `convert_executable`'s `#!` line (see
    /// [`python_of`]); failure reasons then name `convert_executable` like the local backend's.
    pub fn start_for_tool(
        convert_executable: &Path,
        work_dir: &Path,
    ) -> Result<WarmServer, WarmError> {
        let python = python_of(convert_executable)
            .ok_or_else(|| WarmError::NoPython(convert_executable.to_path_buf()))?;
        Self::start_labelled(
            &python,
            work_dir,
            convert_executable.to_string_lossy().into_owned(),
        )
    }

    fn start_labelled(
        python: &Path,
        work_dir: &Path,
        tool: String,
    ) -> Result<WarmServer, WarmError> {
        let dir = private_dir(work_dir)?;
        let socket = dir.join("warm.sock");
        let shim = dir.join("grader_convert_warm.py");
        let prepared = if socket.as_os_str().len() > MAX_SOCKET_PATH {
            Err(WarmError::SocketPath(socket.clone()))
        } else {
            write_private(&shim, SHIM.as_bytes()).map_err(|source| WarmError::Dir {
                dir: dir.clone(),
                source,
            })
        };
        let spawned = prepared.and_then(|()| {
            Command::new(python)
                .arg(&shim)
                .arg("--socket")
                .arg(&socket)
                .arg("--entry-point")
                .arg(ENTRY_POINT)
                .arg("--argv0")
                .arg(&tool)
                .env_clear()
                .envs(passed_env())
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Not in grader's process group: a terminal's Ctrl-C is grader's to handle.
                .process_group(0)
                .spawn()
                .map_err(|source| WarmError::Spawn {
                    python: python.to_path_buf(),
                    source,
                })
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(LogBuffer::new(16 * 1024)));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let server = WarmServer {
            dir,
            socket,
            tool,
            pid,
            child: Mutex::new(Some(child)),
            stderr: stderr.clone(),
            runs: AtomicU64::new(0),
        };
        // From here on, dropping `server` cleans up.
        if let Some(out) = stdout_pipe {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(out).lines();
                let _ = ready_tx.send(lines.next().and_then(Result::ok));
                for line in lines.map_while(Result::ok) {
                    tracing::debug!(target: "grader_local::warm", "server: {line}");
                }
            });
        }
        let stderr_reader = stderr_pipe.map(|err| {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    tracing::warn!(target: "grader_local::warm", "server: {line}");
                    if let Ok(mut buf) = stderr.lock() {
                        buf.push_line(&line);
                    }
                }
            })
        });

        let not_ready = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(line)) if is_ready_line(&line) => {
                tracing::info!(pid, socket = %server.socket.display(), "warm grading server ready");
                return Ok(server);
            }
            Ok(Some(line)) => Some(format!("it printed {line:?} instead of its readiness line")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Some(format!("no readiness within {}s", READY_TIMEOUT.as_secs()))
            }
            // Its stdout closed: it exited (the status says how).
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => None,
        };
        let status = server.stop();
        // The server is gone, so its stderr pipe is closed and the reader ends.
        if let Some(reader) = stderr_reader {
            let _ = reader.join();
        }
        let reason = not_ready.unwrap_or_else(|| match status {
            Some(s) => format!("it exited ({s})"),
            None => "it exited".to_string(),
        });
        Err(WarmError::NotReady {
            python: python.to_path_buf(),
            reason,
            stderr: server.stderr_tail(),
        })
    }

    /// The server's process id (the parent of every run).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// True while the server process has not ended; a caller may start a new server otherwise.
    pub fn is_running(&self) -> bool {
        let Ok(mut guard) = self.child.lock() else {
            return false;
        };
        match guard.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) => {
                *guard = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// What the server printed to stderr lately (import errors, failures before a run's log
    /// was open).
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .map(|b| b.clone().into_string())
            .unwrap_or_default()
    }

    /// Kills the server's tree and reaps it; its exit status if it was still to be reaped.
    fn stop(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().ok()?;
        let mut child = guard.take()?;
        if let Ok(None) = child.try_wait() {
            process_tree::kill_tree(self.pid);
        }
        child.wait().ok()
    }

    /// A new, empty log file (0600) for one run, removed when the returned guard drops.
    fn new_log(&self) -> std::io::Result<RunLog> {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("run-{n}.log"));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(RunLog { path })
    }
}

impl Drop for WarmServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_ready_line(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|v| v.get("ready") == Some(&serde_json::Value::Bool(true)))
}

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
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let dir = work_dir.join(format!(".grader-warm-{}-{n}-{nanos:x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail(e)),
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// A run's log file; removed on drop.
struct RunLog {
    path: PathBuf,
}

impl RunLog {
    /// The log, capped at `cap` bytes like [`LogBuffer`]: only the head and the tail of a large
    /// file are read.
    fn read(&self, cap: usize) -> String {
        read_capped(&self.path, cap)
            .unwrap_or_else(|e| format!("grader: could not read the log: {e}\n"))
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_capped(path: &Path, cap: usize) -> std::io::Result<String> {
    let cap = cap.max(64);
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
    let head_cap = cap / 2;
    let tail_cap = cap - head_cap;
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

/// One line from the server.
#[derive(Debug, Deserialize)]
struct Reply {
    pid: Option<u32>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
}

enum Event {
    Started(u32),
    Ended(ExitStatus),
    Refused(String),
    Gone,
}

fn event(line: std::io::Result<Option<String>>) -> Event {
    let Ok(Some(line)) = line else {
        return Event::Gone;
    };
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply { pid: Some(p), .. }) => Event::Started(p),
        // Built from the raw wait status, so that it prints like the local backend's.
        Ok(Reply {
            exit_code: Some(c), ..
        }) => Event::Ended(ExitStatus::from_raw((c & 0xff) << 8)),
        Ok(Reply {
            signal: Some(s), ..
        }) => Event::Ended(ExitStatus::from_raw(s & 0x7f)),
        Ok(Reply { error: Some(e), .. }) => Event::Refused(e),
        _ => Event::Refused(format!("unexpected reply {line:?}")),
    }
}

/// The run's child as the server reported it, with its start time to guard against pid reuse.
#[derive(Default)]
struct RunChild(Option<(u32, Option<u64>)>);

impl RunChild {
    fn set(&mut self, pid: u32) {
        self.0 = Some((pid, start_time(pid)));
    }

    /// Kills the child's tree if the pid still names the child the server started.
    fn kill(&self) {
        if let Some((pid, Some(started))) = self.0
            && start_time(pid) == Some(started)
        {
            process_tree::kill_tree(pid);
        }
    }
}

/// Runs the grading tool through a [`WarmServer`], with the contract of
/// [`LocalBackend`](crate::LocalBackend).
#[derive(Debug, Clone)]
pub struct WarmBackend {
    server: Arc<WarmServer>,
    log_cap: usize,
}

impl WarmBackend {
    /// A backend running each task as a fork of `server`, keeping up to `log_cap` bytes of the
    /// tool's output.
    pub fn new(server: Arc<WarmServer>, log_cap: usize) -> Self {
        WarmBackend { server, log_cap }
    }

    /// The server this backend runs through.
    pub fn server(&self) -> &Arc<WarmServer> {
        &self.server
    }

    fn server_gone(&self, what: &str) -> String {
        format!(
            "the warm grading server {what}; it has to be restarted{}",
            stderr_suffix(&self.server.stderr_tail())
        )
    }
}

#[async_trait]
impl GradingBackend for WarmBackend {
    fn name(&self) -> &str {
        "local-warm"
    }

    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure> {
        let input = task.input_dir.to_string_lossy();
        let output = task.output_dir.to_string_lossy();
        let args = task.tool_args(&input, &output, false);
        let Some(cwd) = task.input_dir.to_str() else {
            return Err(BackendFailure::new(format!(
                "the input directory {} is not valid UTF-8",
                task.input_dir.display()
            )));
        };
        // The local backend's environment policy; JSON carries only UTF-8 values.
        let mut env: BTreeMap<&str, String> = passed_env()
            .filter_map(|(k, v)| v.into_string().ok().map(|v| (k, v)))
            .collect();
        env.insert("ASSIGNMENT_SETTINGS", task.settings_json());
        let log = self.server.new_log().map_err(|e| {
            BackendFailure::new(self.server_gone(&format!("has no usable directory ({e})")))
        })?;
        let request = serde_json::json!({
            "argv": args,
            "env": env,
            "cwd": cwd,
            "log_path": log.path,
        });
        let mut line = request.to_string();
        line.push('\n');

        let stream = UnixStream::connect(&self.server.socket)
            .await
            .map_err(|e| BackendFailure::new(self.server_gone(&format!("is not running ({e})"))))?;
        // The write half stays open until the end: the server reads EOF as "kill the run".
        let (read, mut write) = stream.into_split();
        if let Err(e) = write.write_all(line.as_bytes()).await {
            return Err(BackendFailure::new(
                self.server_gone(&format!("did not take the run ({e})")),
            ));
        }
        tracing::info!(tool = %self.server.tool, ?args, "starting grading tool (warm)");
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut child = RunChild::default();
        let deadline = tokio::time::sleep(task.max_grading_time);
        tokio::pin!(deadline);

        let stopped = loop {
            tokio::select! {
                line = lines.next_line() => match event(line) {
                    Event::Started(pid) => child.set(pid),
                    Event::Ended(status) => {
                        let logs = log.read(self.log_cap);
                        return if status.success() {
                            Ok(BackendOutput { logs })
                        } else {
                            Err(BackendFailure {
                                reason: format!("grading tool {:?} failed: {status}", self.server.tool),
                                logs,
                            })
                        };
                    }
                    Event::Refused(e) => {
                        return Err(BackendFailure {
                            reason: format!("the warm grading server refused the run: {e}"),
                            logs: log.read(self.log_cap),
                        });
                    }
                    Event::Gone => {
                        child.kill();
                        return Err(BackendFailure {
                            reason: self.server_gone("ended during the run"),
                            logs: log.read(self.log_cap),
                        });
                    }
                },
                _ = &mut deadline => break format!(
                    "grading exceeded max_grading_time of {}s and was killed",
                    task.max_grading_time.as_secs()
                ),
                _ = cancel.cancelled() => break "grading was cancelled".to_string(),
            }
        };

        // Kill the tree, then wait (bounded) until the server has reaped the child, so that the
        // log is complete and nothing of the run is left when this returns. A pid reported only
        // now is killed too.
        child.kill();
        let _ = tokio::time::timeout(KILL_GRACE, async {
            // Anything but a pid ends the run: an exit status, a refusal or a closed server.
            while let Event::Started(pid) = event(lines.next_line().await) {
                child.set(pid);
                child.kill();
            }
        })
        .await;
        drop(write);
        Err(BackendFailure {
            reason: stopped,
            logs: log.read(self.log_cap),
        })
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
    fn replies_map_to_exit_statuses_that_print_like_the_local_backends() {
        let ended = |l: &str| match event(Ok(Some(l.to_string()))) {
            Event::Ended(s) => s.to_string(),
            _ => panic!("not an end: {l}"),
        };
        assert_eq!(ended(r#"{"exit_code": 1}"#), "exit status: 1");
        assert_eq!(ended(r#"{"signal": 9}"#), "signal: 9 (SIGKILL)");
        assert!(matches!(event(Ok(None)), Event::Gone));
        assert!(matches!(
            event(Ok(Some("{\"pid\": 7}".into()))),
            Event::Started(7)
        ));
        assert!(matches!(
            event(Ok(Some("garbage".into()))),
            Event::Refused(_)
        ));
    }

    #[test]
    fn start_time_names_a_live_process() {
        assert!(start_time(std::process::id()).is_some());
    }
}

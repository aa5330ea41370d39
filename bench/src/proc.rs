//! Running a child process with its wall time and peak memory.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What a measured run of a child took.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From just before `fork` to `wait4` returning.
    pub wall: Duration,
    /// Exit code (128 + signal when killed).
    pub code: i32,
    /// `ru_maxrss` from `wait4`, KiB: the child's peak RSS or that of the largest descendant
    /// it reaped (git, the grading tool), whichever is larger.
    pub maxrss_with_children_kib: u64,
    /// The child's own peak RSS (`VmHWM` of `/proc/PID/status`, sampled every 20 ms while it
    /// ran; 0 when not sampled).
    pub own_hwm_kib: u64,
    /// User + system CPU time of the child and its reaped descendants.
    pub cpu: Duration,
    /// Most threads and open file descriptors of the child at once (0 when not sampled).
    pub max_threads: u64,
    pub max_fds: u64,
}

/// `VmHWM`, `VmRSS`, `RssAnon`, `RssFile` (KiB) and `Threads` of a process.
fn proc_status(pid: i32) -> Option<(u64, u64, u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((
        field("VmHWM:")?,
        field("VmRSS:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
        field("Threads:")?,
    ))
}

/// Runs `cmd` with stdout and stderr to files in `log_dir` (`<name>.stdout`, `.stderr`).
pub fn run(
    cmd: &mut Command,
    log_dir: &Path,
    name: &str,
    sample_memory: bool,
) -> anyhow::Result<Measured> {
    let stdout = std::fs::File::create(log_dir.join(format!("{name}.stdout")))?;
    let stderr = std::fs::File::create(log_dir.join(format!("{name}.stderr")))?;
    // `GRADER_*` variables are configuration of `grader` (and GRADER_BENCH_* would be
    // unknown keys): the children get only what the harness sets.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GRADER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    let pid = child.id() as i32;
    let hwm = Arc::new(AtomicU64::new(0));
    let threads_max = Arc::new(AtomicU64::new(0));
    let fds_max = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The memory timeline goes to `<name>.mem.tsv`: ms, VmRSS, VmHWM, RssAnon, RssFile (KiB),
    // threads, fds.
    let timeline = log_dir.join(format!("{name}.mem.tsv"));
    let sampler = sample_memory.then(|| {
        let (hwm, stop) = (hwm.clone(), stop.clone());
        let (threads_max, fds_max) = (threads_max.clone(), fds_max.clone());
        std::thread::spawn(move || {
            let mut lines =
                String::from("ms\trss_kib\thwm_kib\tanon_kib\tfile_kib\tthreads\tfds\n");
            while !stop.load(Ordering::Relaxed) {
                if let Some((h, rss, anon, file, threads)) = proc_status(pid) {
                    hwm.fetch_max(h, Ordering::Relaxed);
                    threads_max.fetch_max(threads, Ordering::Relaxed);
                    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                    fds_max.fetch_max(fds as u64, Ordering::Relaxed);
                    lines.push_str(&format!(
                        "{}\t{rss}\t{h}\t{anon}\t{file}\t{threads}\t{fds}\n",
                        start.elapsed().as_millis()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::write(&timeline, lines);
        })
    });
    let mut status = 0;
    // SAFETY: plain syscall on our own child; rusage is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    // The child is reaped; keep std from trying again.
    std::mem::forget(child);
    if r != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured {
        wall,
        code,
        maxrss_with_children_kib: usage.ru_maxrss as u64,
        own_hwm_kib: hwm.load(Ordering::Relaxed),
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_threads: threads_max.load(Ordering::Relaxed),
        max_fds: fds_max.load(Ordering::Relaxed),
    })
}

/// Runs a shell command and fails unless it succeeds.
pub fn sh(script: &str) -> anyhow::Result<()> {
    let status = Command::new("sh").arg("-c").arg(script).status()?;
    if !status.success() {
        bail!("`{script}` failed: {status}");
    }
    Ok(())
}

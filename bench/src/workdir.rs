//! Service directories of the example course, trivial grading tools and configuration files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use grader_local::job_file::load_job;
use grader_local::{Executor, ExecutorConfig, GradingTask, Job, JobKind, LocalBackend, ProcessGit};

/// A fresh temporary directory for one measurement, removed on drop unless
/// `GRADER_BENCH_KEEP=1`.
pub struct Work {
    path: PathBuf,
    _guard: Option<tempfile::TempDir>,
}

impl Work {
    pub fn new(prefix: &str) -> anyhow::Result<Work> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        if std::env::var("GRADER_BENCH_KEEP").as_deref() == Ok("1") {
            eprintln!("grader-bench: keeping {}", dir.path().display());
            return Ok(Work {
                path: dir.keep(),
                _guard: None,
            });
        }
        Ok(Work {
            path: dir.path().to_path_buf(),
            _guard: Some(dir),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the example course's service directory with `4 * copies` submissions
/// (`examples/make-service-dir.sh`).
pub fn make_service_dir(root: &Path, dir: &Path, copies: usize) -> anyhow::Result<()> {
    let status = Command::new("bash")
        .arg(root.join("examples/make-service-dir.sh"))
        .arg(dir)
        .args(["--copies", &copies.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("run examples/make-service-dir.sh")?;
    if !status.success() {
        bail!("examples/make-service-dir.sh failed: {status}");
    }
    Ok(())
}

/// The jobs of a service directory, in submission order.
pub fn jobs(service_dir: &Path) -> anyhow::Result<Vec<(PathBuf, Job)>> {
    let mut jobs = Vec::new();
    for entry in std::fs::read_dir(service_dir.join("jobs"))? {
        let path = entry?.path();
        let job = load_job(&path).with_context(|| format!("load {}", path.display()))?;
        jobs.push((path, job));
    }
    jobs.sort_by_key(|(_, j)| j.submission.id);
    Ok(jobs)
}

/// The backend task of `job` with the default pipeline settings under `service_dir` (what
/// `grader` with the default configuration hands its backend).
pub fn task(service_dir: &Path, job: &Job) -> anyhow::Result<GradingTask> {
    let exec = Executor::new(
        ExecutorConfig::new(service_dir),
        std::sync::Arc::new(ProcessGit::new("git")),
        std::sync::Arc::new(LocalBackend::new("unused", 64)),
    );
    Ok(exec.config().task(job, JobKind::Autograde)?)
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path.to_path_buf())
}

/// A trivial grading tool: copies the input notebooks to the output directory (so the
/// pipeline has something to commit) after `sleep_secs`, and exits 0. Called as
/// `TOOL autograde -i IN -o OUT -p *.ipynb ...`.
pub fn trivial_tool(path: &Path, sleep_secs: u64) -> anyhow::Result<PathBuf> {
    let sleep = if sleep_secs > 0 {
        format!("sleep {sleep_secs}\n")
    } else {
        String::new()
    };
    script(
        path,
        &format!(
            "# grader-bench: a trivial grading tool\n{sleep}cp \"$3\"/*.ipynb \"$5\"/ 2>/dev/null\nexit 0"
        ),
    )
}

/// Escapes a string for a TOML basic string.
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

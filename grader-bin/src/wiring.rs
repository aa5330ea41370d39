//! From configuration and job files to a running pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grader_config::{Backend, ConfigLoader, Layer, Loaded, MAX_WARM_WORKERS, Overrides, Settings};
use grader_local::job_file::load_job;
use grader_local::{
    Executor, GradingBackend, JobKind, LocalBackend, Outcome, ProcessGit, WarmBackend,
};
use tokio_util::sync::CancellationToken;

use crate::cli::{BackendArgs, Cli, GcArgs, GradeArgs, PodArgs};
use crate::{Exit, Usage};

/// Loads the layered configuration with the command line as the top layer.
pub fn load_config(cli: &Cli, backend: Option<&BackendArgs>) -> Result<Loaded, Usage> {
    let mut overrides = Overrides::new();
    for assignment in &cli.set {
        overrides = overrides.set_assignment(assignment, "--set")?;
    }
    if let Some(b) = backend {
        overrides = overrides
            .set_opt("backend", b.backend.map(Backend::from), "--backend")
            .set_opt(
                "service_dir",
                flag_dir(b.service_dir.as_deref())?,
                "--service-dir",
            );
        if b.keep_workdirs {
            overrides = overrides.set("keep_workdirs", true, "--keep-workdirs");
        }
    }
    let mut files = cli.config.clone();
    if files.is_empty()
        && let Some(path) = std::env::var_os("GRADER_CONFIG")
    {
        files.push(path.into());
    }
    let loaded = ConfigLoader::from_process()
        .files(files)
        .overrides(overrides)
        .load()?;
    Ok(loaded)
}

/// A directory given on the command line, made absolute against the working directory (a
/// relative `service_dir` in a file or variable is refused: relative to what?).
fn flag_dir(dir: Option<&Path>) -> Result<Option<PathBuf>, Usage> {
    dir.map(|d| {
        std::path::absolute(d)
            .with_context(|| format!("--service-dir {}: cannot make it absolute", d.display()))
    })
    .transpose()
    .map_err(Usage)
}

/// What is wrong with a configured program, found the way `execvp` finds it.
#[derive(Debug)]
pub enum ProgramError {
    /// A path (it has a `/`) that names nothing.
    Missing(PathBuf),
    /// A path that names a directory.
    Directory(PathBuf),
    /// A path that names something other than a regular file.
    NotAFile(PathBuf),
    /// A regular file without execute permission, and its mode.
    NotExecutable(PathBuf, u32),
    /// A name found in no directory of `PATH` (its value), with what was found instead.
    NotOnPath(String, Vec<String>),
    /// The path could not be inspected.
    Unreadable(PathBuf, std::io::Error),
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramError::Missing(p) => write!(f, "{} does not exist", p.display()),
            ProgramError::Directory(p) => {
                write!(f, "{} is a directory, not a program", p.display())
            }
            ProgramError::NotAFile(p) => write!(f, "{} is not a regular file", p.display()),
            ProgramError::NotExecutable(p, mode) => {
                write!(f, "{} is not executable (mode {mode:o})", p.display())
            }
            ProgramError::NotOnPath(path, seen) => {
                write!(f, "not found in any directory of PATH ({path})")?;
                for s in seen {
                    write!(f, "; {s}")?;
                }
                Ok(())
            }
            ProgramError::Unreadable(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ProgramError {}

/// Checks that `program` (a path, or a name looked up on `PATH` like `execvp`) is an
/// executable regular file, and returns what to run: a relative path made absolute (the
/// tool runs in the job's input dir, where a relative path would mean something else), a
/// name or an absolute path as given.
pub fn check_program(program: &Path) -> Result<PathBuf, ProgramError> {
    use std::os::unix::fs::PermissionsExt;
    let inspect = |path: &Path| -> Result<(), ProgramError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProgramError::Missing(path.to_path_buf()));
            }
            Err(e) => return Err(ProgramError::Unreadable(path.to_path_buf(), e)),
        };
        if meta.is_dir() {
            Err(ProgramError::Directory(path.to_path_buf()))
        } else if !meta.is_file() {
            Err(ProgramError::NotAFile(path.to_path_buf()))
        } else if meta.permissions().mode() & 0o111 == 0 {
            Err(ProgramError::NotExecutable(
                path.to_path_buf(),
                meta.permissions().mode() & 0o7777,
            ))
        } else {
            Ok(())
        }
    };
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        let path = std::path::absolute(program)
            .map_err(|e| ProgramError::Unreadable(program.to_path_buf(), e))?;
        inspect(&path)?;
        return Ok(if program.is_absolute() {
            program.to_path_buf()
        } else {
            path
        });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut seen = Vec::new();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match inspect(&candidate) {
            Ok(()) => return Ok(program.to_path_buf()),
            Err(ProgramError::Missing(_)) => {}
            Err(other) => seen.push(other.to_string()),
        }
    }
    Err(ProgramError::NotOnPath(
        path.to_string_lossy().into_owned(),
        seen,
    ))
}

/// [`check_program`] for the configuration key `key`, as an error naming the key, its value,
/// where it was set and what is wrong.
fn checked_program(loaded: &Loaded, key: &str, program: &Path) -> Result<PathBuf, Usage> {
    check_program(program).map_err(|e| {
        Usage(anyhow::anyhow!(
            "invalid configuration: {key} = {:?} ({}) cannot be run: {e}",
            program.display().to_string(),
            loaded.layer_of(key)
        ))
    })
}

/// `grader serve` and `grader batch` keep the grading tool imported between jobs: when no
/// layer set `local.warm_workers`, they get one warm worker per job graded at once
/// (`concurrency`, at most [`MAX_WARM_WORKERS`]); see [`Settings::with_default_warm_workers`].
/// A setting from any layer, `0` included, wins; without a usable worker jobs still run as
/// plain processes (the pool's fallback).
pub fn warm_by_default(loaded: &mut Loaded, concurrency: u32) {
    let explicit = loaded.layer_of("local.warm_workers") != Layer::Default;
    let workers = concurrency.clamp(1, MAX_WARM_WORKERS) as usize;
    if !explicit && loaded.settings.backend == Backend::Local {
        tracing::debug!(
            workers,
            "local.warm_workers is not set: one warm worker per concurrent job"
        );
    }
    loaded.settings = loaded
        .settings
        .clone()
        .with_default_warm_workers(workers, explicit);
}

/// The configured backend.
pub async fn backend(settings: &Settings) -> Result<Arc<dyn GradingBackend>, Usage> {
    // Callers have checked the programs (see [`executor`]).
    let local = &settings.local;
    match settings.backend {
        Backend::Local => match local.warm_pool() {
            Some(warm) => Ok(Arc::new(
                WarmBackend::start(
                    &local.convert_executable,
                    warm.pool.clone(),
                    warm.start_timeout,
                    &std::env::temp_dir(),
                    local.log_cap_bytes,
                )
                .await,
            )),
            None => Ok(Arc::new(LocalBackend::new(
                local.convert_executable.to_string_lossy(),
                local.log_cap_bytes,
            ))),
        },
        Backend::Kube => crate::wiring::kube::backend(&settings.kube).await,
    }
}

/// The pipeline of a loaded configuration over its git and backend (see [`executor_from`]).
pub async fn executor(loaded: &Loaded) -> Result<Executor, Usage> {
    executor_from(loaded, loaded.settings.clone()).await
}

/// The pipeline over `settings` (those of `loaded`, perhaps adjusted by the command, such as
/// [`Settings::with_default_warm_workers`]). The programs it runs are checked first, so that
/// a `convert_executable` that is a directory (or not executable, or not found) is refused
/// once, before any job, instead of failing every job; the local backend only: a grading pod
/// runs the tool of its image.
pub async fn executor_from(loaded: &Loaded, mut settings: Settings) -> Result<Executor, Usage> {
    settings.git_executable = checked_program(loaded, "git_executable", &settings.git_executable)?;
    if settings.backend == Backend::Local {
        settings.local.convert_executable = checked_program(
            loaded,
            "convert_executable",
            &settings.local.convert_executable,
        )?;
    }
    let config = settings.executor.clone();
    if !config.service_dir.is_dir() {
        return Err(Usage(anyhow::anyhow!(
            "service_dir {} does not exist or is not a directory",
            config.service_dir.display()
        )));
    }
    let git = Arc::new(ProcessGit::new(settings.git_executable.to_string_lossy()));
    Ok(Executor::new(config, git, backend(&settings).await?))
}

/// A token cancelled by the first Ctrl-C (SIGINT) or SIGTERM.
pub fn interrupt_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::warn!("interrupted: cleaning up running jobs (press Ctrl-C again to exit now)");
        t.cancel();
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("grader: interrupted twice, exiting without clean-up (run `grader gc` later)");
        std::process::exit(130);
    });
    token
}

/// Serializes an outcome for people and programs.
pub fn outcome_json(outcome: &Outcome) -> String {
    serde_json::to_string_pretty(outcome).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `grader autograde` and `grader feedback`.
pub async fn grade_one(cli: &Cli, args: &GradeArgs, kind: JobKind) -> Result<Exit, Usage> {
    let loaded = load_config(cli, Some(&args.backend))?;
    let job = load_job(&args.job)?;
    loaded
        .settings
        .executor
        .check(&job, kind)
        .with_context(|| format!("job file {}", args.job.display()))?;
    let exec = executor(&loaded).await?;
    let cancel = interrupt_token();
    let outcome = exec.run(&job, kind, cancel.clone()).await;
    exec.shutdown().await;
    let text = outcome_json(&outcome);
    match &args.output {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the outcome to {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(if cancel.is_cancelled() {
        Exit::Interrupted
    } else if outcome.status.is_success() {
        Exit::Graded
    } else {
        Exit::Failed
    })
}

/// `grader pod`.
pub async fn print_pod(cli: &Cli, args: &PodArgs) -> Result<Exit, Usage> {
    let loaded = load_config(cli, None)?;
    let job = load_job(&args.job)?;
    let kind = if args.feedback {
        JobKind::Feedback
    } else {
        JobKind::Autograde
    };
    let yaml = kube::pod_manifest(&loaded.settings, &job, kind, args.namespace.as_deref())?;
    print!("{yaml}");
    Ok(Exit::Done)
}

/// `grader gc`.
pub async fn gc(cli: &Cli, args: &GcArgs) -> Result<Exit, Usage> {
    let loaded = load_config(cli, None)?;
    kube::gc(&loaded, args.stale_after).await
}

pub mod kube {
    //! The Kubernetes side of the wiring.

    use super::*;
    use grader_kube::{ImageConfig, KubeBackend, KubePodApi, KubeSettings};
    use grader_local::Job;

    /// The Kubernetes backend, connected to the configured cluster.
    pub async fn backend(settings: &KubeSettings) -> Result<Arc<dyn GradingBackend>, Usage> {
        let settings = settings.clone();
        let images = ImageConfig::load(settings.image_config_path.as_deref())?;
        let (client, namespace) =
            grader_kube::connect(settings.context.as_deref(), settings.namespace.as_deref())
                .await?;
        tracing::info!(%namespace, "grading pods run in Kubernetes");
        Ok(Arc::new(KubeBackend::new(
            client, &namespace, settings, images,
        )))
    }

    /// The manifest (YAML) of the pod a job would get, built without a cluster.
    pub fn pod_manifest(
        settings: &Settings,
        job: &Job,
        kind: JobKind,
        namespace: Option<&str>,
    ) -> Result<String, Usage> {
        let task = settings.executor.task(job, kind)?;
        let settings = &settings.kube;
        let images = ImageConfig::load(settings.image_config_path.as_deref())?;
        let image = images.resolve(
            &job.lecture.code,
            job.assignment.id,
            &job.assignment.name,
            &settings.default_image_name,
        );
        // build_pod logs each field the extra configs override.
        let (mut pod, _overrides) = grader_kube::build_pod(settings, &task, &image)?;
        pod.metadata.namespace = Some(
            namespace
                .map(str::to_string)
                .or(settings.namespace.clone())
                .unwrap_or_else(|| "default".into()),
        );
        Ok(serde_yaml::to_string(&pod)?)
    }

    /// Deletes finished or stale grading pods and prints their names.
    pub async fn gc(loaded: &Loaded, stale_after: Option<u64>) -> Result<Exit, Usage> {
        let settings = &loaded.settings.kube;
        let max_grading_time = loaded.settings.executor.max_grading_time;
        let (client, namespace) =
            grader_kube::connect(settings.context.as_deref(), settings.namespace.as_deref())
                .await?;
        let stale = stale_after
            .map(Duration::from_secs)
            .unwrap_or(max_grading_time + settings.unschedulable_grace);
        let api = KubePodApi::new(client, &namespace);
        let deleted = grader_kube::collect_garbage(&api, &namespace, stale).await?;
        for name in &deleted {
            println!("{name}");
        }
        eprintln!(
            "grader gc: deleted {} grading pod(s) in namespace {namespace}",
            deleted.len()
        );
        Ok(Exit::Done)
    }
}

//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grader_config::Backend;

use crate::{Exit, Usage};

/// Grade Jupyter-notebook submissions with the course's grading tool (`grader-convert`), as a
/// local process or as a pod in a Kubernetes cluster.
#[derive(Debug, Parser)]
#[command(name = "grader", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file, instead of ./grader.toml (default: $GRADER_CONFIG); repeat for more
    /// (later files win).
    #[arg(long = "config", value_name = "PATH", global = true)]
    pub config: Vec<PathBuf>,
    /// Set a configuration key, e.g. `--set kube.namespace=grading` (highest layer).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Log filter in tracing's env-filter syntax (default: $GRADER_LOG, else `info`).
    #[arg(long, value_name = "FILTER", global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors in a cluster.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Grade one submission and print the outcome as JSON.
    Autograde(GradeArgs),
    /// Generate feedback (HTML) for one graded submission.
    Feedback(GradeArgs),
    /// Grade many submissions (one job per line of a JSONL file) at once.
    Batch(BatchArgs),
    /// Print the pod manifest (YAML) the Kubernetes backend would create for a job.
    Pod(PodArgs),
    /// Print the hashed slug of a text (Kubernetes-safe names).
    Slug(SlugArgs),
    /// Delete finished or stale grading pods.
    Gc(GcArgs),
    /// Print the effective configuration and the layer each key came from.
    Config,
    /// Run the grading service: an HTTP API on a Unix socket (and optionally TCP) that keeps
    /// its warm workers and Kubernetes watch between jobs.
    Serve(ServeArgs),
    /// Send a job to a running `grader serve`; with --wait, print its outcome as `grader
    /// autograde` does.
    Submit(SubmitArgs),
}

/// Flags shared by the commands that grade.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Backend to grade with (overrides `backend`).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Service directory with the repositories (overrides `service_dir`).
    #[arg(long, value_name = "DIR")]
    pub service_dir: Option<PathBuf>,
    /// Keep the work dirs after each job, for debugging (overrides `keep_workdirs`).
    #[arg(long)]
    pub keep_workdirs: bool,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Local,
    Kube,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Local => Backend::Local,
            BackendArg::Kube => Backend::Kube,
        }
    }
}

/// `grader autograde` / `grader feedback`.
#[derive(Debug, Args)]
pub struct GradeArgs {
    /// The job file (JSON).
    #[arg(long, value_name = "JOB.json")]
    pub job: PathBuf,
    /// Write the outcome here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `grader batch`.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Jobs, one JSON object per line.
    #[arg(value_name = "JOBS.jsonl")]
    pub jobs: PathBuf,
    /// How many submissions are graded at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Directory for one outcome file per job and the summary.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    /// Skip jobs whose outcome file already exists in the results directory (resume).
    #[arg(long)]
    pub skip_existing: bool,
    /// Generate feedback instead of autograding.
    #[arg(long)]
    pub feedback: bool,
    /// Progress: a bar on a terminal, plain lines otherwise.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// How batch progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// A bar when stderr is a terminal, else lines.
    Auto,
    Bar,
    Lines,
    None,
}

/// `grader serve` (its settings are the `[serve]` keys).
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `grader submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job file (JSON); its gradebook files are sent inline.
    #[arg(long, value_name = "JOB.json")]
    pub job: PathBuf,
    /// Generate feedback instead of autograding.
    #[arg(long)]
    pub feedback: bool,
    /// Wait for the outcome and print it (exit codes as `grader autograde`); without it, print
    /// the job id.
    #[arg(long)]
    pub wait: bool,
    /// The service's Unix socket (default: serve.socket).
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub socket: Option<PathBuf>,
    /// The service's TCP address, e.g. http://127.0.0.1:8600.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// File with the bearer token (default with --url: serve.token_file).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `grader pod`.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// The job file (JSON).
    #[arg(long, value_name = "JOB.json")]
    pub job: PathBuf,
    /// Print the feedback pod instead of the autograde pod.
    #[arg(long)]
    pub feedback: bool,
    /// Namespace to show in the manifest (default: from the configuration, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// `grader slug`.
#[derive(Debug, Args)]
pub struct SlugArgs {
    /// Longest result, in characters.
    #[arg(long, default_value_t = grader_model::slug::DEFAULT_LIMIT)]
    pub limit: usize,
    /// Characters of the SHA-256 suffix.
    #[arg(long, default_value_t = grader_model::slug::DEFAULT_HASH_LENGTH)]
    pub hash_length: usize,
    /// The text to shorten.
    pub text: String,
}

/// `grader gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also delete unfinished grading pods older than this many seconds (default:
    /// max_grading_time plus unschedulable_grace).
    #[arg(long, value_name = "SECONDS")]
    pub stale_after: Option<u64>,
}

/// Sets up tracing on stderr.
pub fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f)?,
        None => match std::env::var("GRADER_LOG") {
            Ok(f) => EnvFilter::try_new(&f)
                .map_err(|e| anyhow::anyhow!("GRADER_LOG={f:?} is not a valid log filter: {e}"))?,
            // A batch reports per job itself; keep the pipeline's per-job lines out of its way.
            Err(_) if matches!(cli.command, Command::Batch(_)) => EnvFilter::new("warn"),
            Err(_) => EnvFilter::new("info"),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// `grader slug`.
pub fn slug(args: &SlugArgs) -> Result<Exit, Usage> {
    let s = grader_model::slug::hashed_slug(&args.text, args.limit, args.hash_length)?;
    println!("{s}");
    Ok(Exit::Done)
}

//! `grader-bench`: the measurements behind the numbers in the README (project issue 7).
//!
//! * `local-overhead`: `grader autograde` (local backend) against the bare `grader-convert`
//!   run it wraps, on the same submission; the per-step breakdown from the outcome's timings.
//! * `kube-latency`: on the test control plane, from a grading pod turning `Succeeded` in the
//!   API server to the backend returning the outcome; API requests per graded submission.
//! * `kube-node`: the example course with the real grading tool on a real node (kubelet,
//!   containerd, runc, the grading image) beside the test node agent: each pod's life
//!   (created, scheduled, container started, `Succeeded`) and the whole per-submission time
//!   (project issue 16).
//! * `batch`: `grader batch` of many submissions with a trivial grading command, local and
//!   kube backends: submissions per second and peak memory.
//! * `warm`: `grader batch` with the real grading tool, a plain process per submission
//!   against warm workers (`local.warm_workers`), beside the reference's in-process time
//!   (project issue 8).
//! * `serve`: submissions sent one at a time through `grader submit --wait` to `grader serve`
//!   with a warm worker, beside the reference's in-process time and cold `grader autograde`
//!   (project issue 14).
//! * `prestart`: one warm worker with and without kernels started ahead of need, beside the
//!   reference's in-process executor, on the example course and a course of several notebooks
//!   (project issue 17).
//! * `criterion-summary`: the criterion results of `cargo bench -p grader-model` as a table.
//!
//! Every subcommand prints a markdown table and writes `<name>.json` and `<name>.md` to the
//! output directory. `bench/run.sh` runs them all; `bench/README.md` explains the method.

mod batch;
mod cluster;
mod counting;
mod criterion_summary;
mod kube_latency;
mod kube_node;
mod local_overhead;
mod prestart;
mod proc;
mod report;
mod serve;
mod stats;
mod warm;
mod workdir;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks of grader.
#[derive(Debug, Parser)]
#[command(name = "grader-bench")]
struct Cli {
    /// Where results (`*.json`, `*.md`) are written.
    #[arg(long, global = true, default_value = default_out())]
    out: PathBuf,
    /// The repository root (for `examples/make-service-dir.sh`).
    #[arg(long, global = true, default_value = default_root())]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

fn default_root() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/..")
}

fn default_out() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/results")
}

#[derive(Debug, Subcommand)]
enum Command {
    /// `grader autograde` vs. the bare `grader-convert autograde` it wraps.
    LocalOverhead(local_overhead::Args),
    /// Completion latency and API requests of the kube backend on the test control plane.
    KubeLatency(kube_latency::Args),
    /// Pod start to `Succeeded` and per-submission time, real node beside the node agent.
    KubeNode(kube_node::Args),
    /// `grader batch` throughput and peak memory, local and kube backends.
    Batch(batch::Args),
    /// Warm workers against a plain process per submission, beside the reference.
    Warm(warm::Args),
    /// `grader submit --wait` against `grader serve`, beside the reference and cold runs.
    Serve(serve::Args),
    /// Kernels started ahead of need: warm before/after beside the reference (issue 17).
    Prestart(prestart::Args),
    /// Table of the criterion results under a target directory.
    CriterionSummary(criterion_summary::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRADER_BENCH_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,kube_client::client::builder=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&cli.out)?;
    let root = std::fs::canonicalize(&cli.root)?;
    let out = std::fs::canonicalize(&cli.out)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::LocalOverhead(args) => local_overhead::run(&root, &out, args).await,
            Command::KubeLatency(args) => kube_latency::run(&root, &out, args).await,
            Command::KubeNode(args) => kube_node::run(&root, &out, args).await,
            Command::Batch(args) => batch::run(&root, &out, args).await,
            Command::Warm(args) => warm::run(&root, &out, args).await,
            Command::Serve(args) => serve::run(&root, &out, args).await,
            Command::Prestart(args) => prestart::run(&root, &out, args).await,
            Command::CriterionSummary(args) => criterion_summary::run(&out, args),
        }
    })
}

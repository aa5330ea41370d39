//! `grader`: grade Jupyter-notebook submissions with the course's grading tool, as a local
//! process or as a pod in a Kubernetes cluster.
//!
//! Exit codes: 0 graded, 1 grading failed, 2 bad input or configuration, 130 interrupted.

mod batch;
mod cli;
mod serve;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// How a command ended, mapped onto the exit code.
#[derive(Debug)]
pub enum Exit {
    /// A command that grades nothing did what it was asked (`config`, `slug`, `pod`, `gc`,
    /// `serve` after a clean shutdown).
    Done,
    /// Everything asked for was graded.
    Graded,
    /// At least one grading failed.
    Failed,
    /// Interrupted by the operator.
    Interrupted,
}

/// An error before or outside grading: bad input or configuration (exit code 2).
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.into())
    }
}

fn main() -> ExitCode {
    // First thing: student code run by the grading tool must not read grader's environment,
    // memory or descriptors through /proc (issue 12).
    let hardened = grader_local::harden_process();
    let cli = Cli::parse();
    if let Err(e) = cli::init_logging(&cli) {
        eprintln!("grader: {e:#}");
        return ExitCode::from(2);
    }
    if let Err(e) = hardened {
        tracing::warn!("could not make grader non-dumpable: {e}");
    }
    // `grader submit` only talks to a service and waits: one thread does (no worker threads
    // to start and stop, which is most of a client's own time besides loading the binary).
    let runtime = match &cli.command {
        Command::Submit(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grader: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli));
    // Jobs clean up before returning; do not wait for stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(Exit::Done | Exit::Graded) => ExitCode::SUCCESS,
        Ok(Exit::Failed) => ExitCode::from(1),
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Err(Usage(e)) => {
            eprintln!("grader: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<Exit, Usage> {
    match &cli.command {
        Command::Slug(args) => cli::slug(args),
        Command::Config => {
            let loaded = wiring::load_config(&cli, None)?;
            print!("{}", loaded.render_effective());
            Ok(Exit::Done)
        }
        Command::Autograde(args) => {
            wiring::grade_one(&cli, args, grader_local::JobKind::Autograde).await
        }
        Command::Feedback(args) => {
            wiring::grade_one(&cli, args, grader_local::JobKind::Feedback).await
        }
        Command::Batch(args) => batch::run(&cli, args).await,
        Command::Pod(args) => wiring::print_pod(&cli, args).await,
        Command::Gc(args) => wiring::gc(&cli, args).await,
        Command::Serve(args) => serve::serve(&cli, args).await,
        Command::Submit(args) => serve::client::run(&cli, args).await,
    }
}

//! `grader batch`: many submissions at once, with progress, a summary and a clean Ctrl-C.
//!
//! The job list is read and checked whole first ([`grader_local::read_job_list`]); jobs then
//! run on one executor at `--concurrency`; each outcome is written to the results dir
//! ([`results`]) and counted ([`summary`]).

mod results;
mod summary;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use grader_local::{JobKind, read_job_list};
use indicatif::{ProgressBar, ProgressStyle};

pub use results::{check_writable, outcome_path, write_atomically};
pub use summary::{Finished, Summary};

use crate::cli::{BatchArgs, Cli, Progress};
use crate::wiring::{executor, interrupt_token, load_config, outcome_json, warm_by_default};
use crate::{Exit, Usage};

/// `grader batch`.
pub async fn run(cli: &Cli, args: &BatchArgs) -> Result<Exit, Usage> {
    let mut loaded = load_config(cli, Some(&args.backend))?;
    let kind = if args.feedback {
        JobKind::Feedback
    } else {
        JobKind::Autograde
    };
    let mut jobs = read_job_list(&args.jobs, &loaded.settings.executor, kind)?;
    std::fs::create_dir_all(&args.results)
        .with_context(|| format!("cannot create results dir {}", args.results.display()))?;
    check_writable(&args.results)?;
    // One warm worker per concurrent job unless local.warm_workers is set (no more than jobs).
    let concurrent = args
        .concurrency
        .min(u32::try_from(jobs.len()).unwrap_or(u32::MAX));
    warm_by_default(&mut loaded, concurrent);
    let exec = Arc::new(executor(&loaded).await?);
    let workers = loaded
        .settings
        .local
        .warm_pool()
        .map_or(0, |w| w.pool.workers);
    if loaded.settings.backend == grader_config::Backend::Local
        && workers > 0
        && args.concurrency as usize > workers
    {
        tracing::warn!(
            "--concurrency {} is more than local.warm_workers = {workers}: at most {workers} jobs grade at once",
            args.concurrency
        );
    }

    let mut summary = Summary {
        jobs: jobs.len(),
        ..Default::default()
    };
    if args.skip_existing {
        let before = jobs.len();
        jobs.retain(|j| !outcome_path(&args.results, kind, j.submission.id).exists());
        summary.skipped = before - jobs.len();
    }

    let cancel = interrupt_token();
    let bar = match args.progress {
        Progress::Bar => true,
        Progress::Auto => std::io::stderr().is_terminal(),
        Progress::Lines | Progress::None => false,
    };
    let lines = matches!(args.progress, Progress::Lines)
        || (matches!(args.progress, Progress::Auto) && !bar);
    let pb = if bar {
        let pb = ProgressBar::new(jobs.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    } else {
        ProgressBar::hidden()
    };

    let total = jobs.len();
    let started = Instant::now();
    let mut finished: Vec<Finished> = Vec::new();
    let mut stream = futures::stream::iter(jobs.into_iter().map(|job| {
        let exec = exec.clone();
        let cancel = cancel.clone();
        async move {
            if cancel.is_cancelled() {
                return None;
            }
            let outcome = exec.run(&job, kind, cancel.clone()).await;
            Some((job.submission.username.clone(), outcome))
        }
    }))
    .buffer_unordered(args.concurrency as usize);

    while let Some(result) = stream.next().await {
        let Some((username, outcome)) = result else {
            summary.interrupted += 1;
            continue;
        };
        if cancel.is_cancelled() && !outcome.status.is_success() {
            summary.interrupted += 1;
            continue;
        }
        // The job is done (and its results committed) whether or not its outcome file can be
        // written: count it, and report the write failure in the summary and the exit code.
        let path = outcome_path(&args.results, kind, outcome.submission_id);
        if let Err(e) = write_atomically(&path, &(outcome_json(&outcome) + "\n")) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the outcome");
            summary.unwritten += 1;
            summary
                .write_errors
                .insert(outcome.submission_id, format!("{}: {e}", path.display()));
        }
        summary.record(&outcome);
        let line = format!(
            "[{}/{}] submission {} ({}): {} {}in {:.1}s",
            summary.graded + summary.failed,
            total,
            outcome.submission_id,
            username,
            serde_json::to_value(outcome.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            outcome
                .score
                .map_or(String::new(), |s| format!("score {s} ")),
            outcome.duration_ms as f64 / 1000.0
        );
        if lines {
            eprintln!("{line}");
        }
        pb.set_message(format!("{} failed", summary.failed));
        pb.inc(1);
        finished.push(Finished {
            submission_id: outcome.submission_id,
            score: outcome.score,
            duration_ms: outcome.duration_ms,
        });
    }
    pb.finish_and_clear();
    exec.shutdown().await;
    summary.finish(&finished, started.elapsed().as_secs_f64());
    let summary_path = args.results.join("summary.json");
    let summary_written = write_atomically(
        &summary_path,
        &(serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n"),
    );
    eprint!("{}", summary.render());
    eprintln!("outcomes in {}", args.results.display());
    if let Err(e) = &summary_written {
        eprintln!(
            "grader: error: cannot write the summary {}: {e}",
            summary_path.display()
        );
    }
    if summary.unwritten > 0 {
        eprintln!(
            "grader: error: {} outcome(s) could not be written to results dir {} (their jobs \
             were graded and their results committed; grade them again to get the outcomes)",
            summary.unwritten,
            args.results.display()
        );
    }
    // Exit 2 means "refused, nothing was graded"; here jobs were graded and committed, so
    // outcomes that could not be written make the run fail (1) instead.
    Ok(if cancel.is_cancelled() {
        Exit::Interrupted
    } else if summary.failed > 0 || summary.unwritten > 0 || summary_written.is_err() {
        Exit::Failed
    } else {
        Exit::Graded
    })
}

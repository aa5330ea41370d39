//! `grader batch`: many submissions at once, with progress, a summary and a clean Ctrl-C.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use grader_local::job_file::JobReader;
use grader_local::{Job, JobKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::{BatchArgs, Cli, Progress};
use crate::wiring::{executor, interrupt_token, load_config, outcome_json, warm_by_default};
use crate::{Exit, Usage};

/// Reads and checks every line of a JSONL job file; all problems are reported together.
pub fn read_jobs(path: &Path) -> Result<Vec<Job>, Usage> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job list {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    let mut reader = JobReader::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match reader.parse(line, base, &format!("{}:{}", path.display(), i + 1)) {
            Ok(job) => jobs.push(job),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(Usage(anyhow::anyhow!(
            "{} bad job(s), nothing was graded:\n  {}",
            errors.len(),
            errors.join("\n  ")
        )));
    }
    if jobs.is_empty() {
        return Err(Usage(anyhow::anyhow!("{} holds no jobs", path.display())));
    }
    Ok(jobs)
}

/// The file an outcome is written to.
pub(crate) fn outcome_path(results: &Path, kind: JobKind, submission_id: u64) -> PathBuf {
    match kind {
        JobKind::Autograde => results.join(format!("submission_{submission_id}.json")),
        JobKind::Feedback => results.join(format!("feedback_{submission_id}.json")),
    }
}

/// Writes `text` to `path` through a temporary file renamed into place, so that a reader
/// never sees half an outcome; on failure the temporary file is removed again (a full disk
/// must not leave empty `.json.tmp` files behind).
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Refuses, before anything is graded, a results dir that cannot take a file (read-only,
/// full): outcomes of graded jobs would be lost.
pub(crate) fn check_writable(results: &Path) -> Result<(), Usage> {
    let probe = results.join(format!(".grader-write-check-{}", std::process::id()));
    let written = std::fs::write(&probe, b"grader checks that outcomes can be written here\n");
    let _ = std::fs::remove_file(&probe);
    written.with_context(|| {
        format!(
            "results dir {} cannot be written, nothing was graded",
            results.display()
        )
    })?;
    Ok(())
}

/// What the summary keeps of a finished job (not the whole outcome: a batch may be large).
struct Finished {
    submission_id: u64,
    score: Option<f64>,
    duration_ms: u64,
}

/// What a batch did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub jobs: usize,
    pub graded: usize,
    pub failed: usize,
    /// Not started or stopped by an interrupt; their outcomes are not written.
    pub interrupted: usize,
    /// Skipped because their outcome already existed (`--skip-existing`).
    pub skipped: usize,
    /// Graded or failed (and counted as such) but their outcome file could not be written.
    pub unwritten: usize,
    pub score_min: Option<f64>,
    pub score_median: Option<f64>,
    pub score_max: Option<f64>,
    pub score_mean: Option<f64>,
    pub wall_seconds: f64,
    pub per_second: f64,
    /// The slowest jobs: (submission id, milliseconds).
    pub slowest: Vec<(u64, u64)>,
    /// Failed jobs: submission id and reason.
    pub failures: BTreeMap<u64, String>,
    /// Outcomes that could not be written: submission id and why.
    pub write_errors: BTreeMap<u64, String>,
}

impl Summary {
    fn finish(&mut self, outcomes: &[Finished], wall: f64) {
        let mut scores: Vec<f64> = outcomes.iter().filter_map(|o| o.score).collect();
        scores.sort_by(f64::total_cmp);
        if !scores.is_empty() {
            self.score_min = scores.first().copied();
            self.score_max = scores.last().copied();
            self.score_median = Some(if scores.len() % 2 == 1 {
                scores[scores.len() / 2]
            } else {
                (scores[scores.len() / 2 - 1] + scores[scores.len() / 2]) / 2.0
            });
            self.score_mean = Some(scores.iter().sum::<f64>() / scores.len() as f64);
        }
        let mut slow: Vec<(u64, u64)> = outcomes
            .iter()
            .map(|o| (o.submission_id, o.duration_ms))
            .collect();
        slow.sort_by_key(|s| std::cmp::Reverse(s.1));
        slow.truncate(5);
        self.slowest = slow;
        self.wall_seconds = wall;
        let done = (self.graded + self.failed) as f64;
        self.per_second = if wall > 0.0 { done / wall } else { 0.0 };
    }

    fn render(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let mut s = format!(
            "batch: {} jobs: {} graded, {} failed, {} interrupted, {} skipped in {:.1}s ({:.2}/s)\n\
             scores: min {} / median {} / mean {} / max {}\n",
            self.jobs,
            self.graded,
            self.failed,
            self.interrupted,
            self.skipped,
            self.wall_seconds,
            self.per_second,
            f(self.score_min),
            f(self.score_median),
            f(self.score_mean),
            f(self.score_max),
        );
        if !self.slowest.is_empty() {
            let list: Vec<String> = self
                .slowest
                .iter()
                .map(|(id, ms)| format!("#{id} {:.1}s", *ms as f64 / 1000.0))
                .collect();
            s.push_str(&format!("slowest: {}\n", list.join(", ")));
        }
        for (id, why) in self.failures.iter().take(10) {
            s.push_str(&format!("failed #{id}: {why}\n"));
        }
        for (id, why) in self.write_errors.iter().take(10) {
            s.push_str(&format!("outcome of #{id} not written: {why}\n"));
        }
        s
    }
}

/// `grader batch`.
pub async fn run(cli: &Cli, args: &BatchArgs) -> Result<Exit, Usage> {
    let mut loaded = load_config(cli, Some(&args.backend))?;
    let kind = if args.feedback {
        JobKind::Feedback
    } else {
        JobKind::Autograde
    };
    let mut jobs = read_jobs(&args.jobs)?;
    let pipeline = &loaded.settings.executor;
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Err(e) = pipeline.check(job, kind) {
            problems.push(format!(
                "job {} (submission {}): {e}",
                i + 1,
                job.submission.id
            ));
        }
        if let Some(first) = seen.insert(job.submission.id, i + 1) {
            problems.push(format!(
                "jobs {first} and {} both have submission id {} (they would share work dirs)",
                i + 1,
                job.submission.id
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Usage(anyhow::anyhow!(
            "{} problem(s) in {}, nothing was graded:\n  {}",
            problems.len(),
            args.jobs.display(),
            problems.join("\n  ")
        )));
    }
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
        .warm
        .as_ref()
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
        if outcome.status.is_success() {
            summary.graded += 1;
        } else {
            summary.failed += 1;
            summary.failures.insert(
                outcome.submission_id,
                outcome.error.clone().unwrap_or_default(),
            );
        }
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

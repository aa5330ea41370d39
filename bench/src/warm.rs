//! Warm workers (project issue 8): `grader batch` of the example course with the real grading
//! tool, each tool run a plain process (cold, the default) or a fork of a warm worker that
//! imported the tool once (`local.warm_workers = c`), beside the reference's in-process time.
//!
//! The reference (Grader Service 0.12.5) grades inside its running service: the tool is
//! imported once and every submission costs only the `Autograde` converter's run.
//! A plain process per submission pays the tool's import (about 3 s) every time; the warm
//! pool is meant to remove that. Issue 8's target, for a batch of 50 submissions: the warm
//! pool's wall time per submission (at concurrency 1, without the one-time worker start; a
//! mean over the batch) is at most the reference's in-process time per submission, and within
//! 10% of the time the kernels themselves take (the reference's `Execute` preprocessor: kernel start, every
//! cell, kernel shutdown). Both reference figures come from `bench/reference_inprocess.py`,
//! run with the tool's own interpreter on the same submissions.
//!
//! Every `grader` run gets a fresh service directory (graded results are committed into it),
//! and every outcome must carry the score `examples/make-service-dir.sh` expects; warm runs
//! must report the backend `local-warm`, cold runs `local`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::proc;
use crate::report::{self, Table, ms};
use crate::stats::{Summary, summarize};
use crate::workdir::{self, Work, toml_str};

/// Options of `warm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// The grading tool, `grader-convert` (`bash scripts/setup-venv.sh | tail -1` prints it).
    #[arg(long, required_unless_present = "from_json")]
    convert: Option<PathBuf>,
    /// Submissions per batch: the first N jobs of the example course with N/4 copies,
    /// rounded up (alice, bob, carol, dave, alice-2, ...; 50 → `--copies 13`).
    #[arg(long, default_value_t = 50)]
    submissions: usize,
    /// `--concurrency` values to run (each cold and warm, with `warm_workers` = concurrency).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    concurrency: Vec<u32>,
    /// The tool's Python, for `bench/reference_inprocess.py` (default: `python` next to
    /// `--convert`, i.e. the tool's venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Measure nothing: write `warm.md` again from the `warm.json` of an earlier run (after a
    /// change to the report's text); `warm.json` is left as it is.
    #[arg(long, value_name = "WARM.json")]
    from_json: Option<PathBuf>,
}

/// The log line of a warm worker that imported the tool and is ready for jobs.
const READY: &str = "warm grading worker ready";
/// The log line of the executor when a job starts.
const JOB_STARTING: &str = "starting";
/// The start of the log line of the pool when it recycles or replaces a worker.
const REPLACING: &str = "replacing a warm grading worker";

/// One graded submission of a `grader batch` run.
#[derive(Debug, Serialize, Deserialize)]
struct Graded {
    submission_id: u64,
    score: f64,
    backend: String,
    duration_ms: f64,
    grading_ms: f64,
}

/// One `grader batch` run.
#[derive(Debug, Serialize, Deserialize)]
struct Run {
    /// `cold` (a plain process per submission) or `warm` (`local.warm_workers = concurrency`).
    mode: String,
    concurrency: u32,
    submissions: usize,
    config: String,
    /// Wall time of the whole `grader` process.
    wall_s: f64,
    /// wall_s / submissions.
    per_submission_s: f64,
    /// Warm: spawn → the `concurrency`-th "warm grading worker ready" log line (the pool's
    /// start). Cold: spawn → the first job's "starting" log line (process start-up).
    startup_s: f64,
    /// (wall_s − startup_s) / submissions.
    per_submission_excl_startup_s: f64,
    /// "warm grading worker ready" lines in the run (worker starts, recycling included).
    worker_starts: usize,
    /// Log lines of the pool replacing a worker (recycling or a broken worker).
    worker_replacements: usize,
    grading_ms: Summary,
    duration_ms: Summary,
    /// User + system CPU time of `grader` and every child it reaped.
    cpu_s: f64,
    /// `ru_maxrss` of wait4: the largest of `grader` and its reaped children (workers, tool
    /// runs, git), MiB.
    maxrss_with_children_mib: f64,
    load_after: String,
    outcomes: Vec<Graded>,
}

/// `bench/reference_inprocess.py` on the same submissions (also used by `serve`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reference {
    /// Wall time of the whole Python process (import included).
    pub(crate) wall_s: f64,
    pub(crate) median_inprocess_s: f64,
    pub(crate) median_kernel_s: f64,
    pub(crate) import_s: f64,
    pub(crate) inprocess: Summary,
    pub(crate) kernel: Summary,
    pub(crate) load_after: String,
    /// The script's JSON output as it is.
    pub(crate) output: Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Results {
    submissions: usize,
    concurrency: Vec<u32>,
    load_before: String,
    load_after: String,
    runs: Vec<Run>,
    reference: Reference,
}

/// Warm at the lowest concurrency against the targets. The target speaks of the wall time
/// per submission of a batch, a mean; it is compared with the reference's means, and the
/// medians (less sensitive to the tool's occasional slow run, in both) are given too.
struct Target {
    concurrency: u32,
    warm_per_submission_excl_startup_s: f64,
    warm_per_submission_s: f64,
    /// Medians of the warm outcomes' `duration_ms` and `timings.grading_ms`, in seconds.
    warm_median_duration_s: f64,
    warm_median_grading_s: f64,
    /// The warm run's slowest submission (`duration_ms`), in seconds.
    warm_max_duration_s: f64,
}

impl Target {
    fn of(r: &Results) -> Option<Target> {
        let c = *r.concurrency.iter().min()?;
        let warm = r
            .runs
            .iter()
            .find(|x| x.mode == "warm" && x.concurrency == c)?;
        Some(Target {
            concurrency: c,
            warm_per_submission_excl_startup_s: warm.per_submission_excl_startup_s,
            warm_per_submission_s: warm.per_submission_s,
            warm_median_duration_s: warm.duration_ms.median / 1000.0,
            warm_median_grading_s: warm.grading_ms.median / 1000.0,
            warm_max_duration_s: warm.duration_ms.max / 1000.0,
        })
    }
}

/// Expected score per submission id (`expected.jsonl` of the service dir).
fn expected_scores(service: &Path) -> anyhow::Result<BTreeMap<u64, f64>> {
    let path = service.join("expected.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut scores = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        if let (Some(id), Some(score)) = (v["submission_id"].as_u64(), v["score"].as_f64()) {
            scores.insert(id, score);
        }
    }
    Ok(scores)
}

/// A fresh service dir of the example course under `dir` with `jobs-N.jsonl`, the first
/// `n` jobs of its `jobs.jsonl`. Returns the service dir, the jobs file and the expected
/// scores of those jobs.
pub(crate) fn fresh_service(
    root: &Path,
    dir: &Path,
    n: usize,
) -> anyhow::Result<(PathBuf, PathBuf, BTreeMap<u64, f64>)> {
    let service = dir.join("service");
    workdir::make_service_dir(root, &service, n.div_ceil(4))?;
    let all = std::fs::read_to_string(service.join("jobs.jsonl"))?;
    let lines: Vec<&str> = all.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < n {
        bail!("{} has {} jobs, need {n}", service.display(), lines.len());
    }
    let mut expected = expected_scores(&service)?;
    let mut ids = Vec::new();
    for line in &lines[..n] {
        let v: Value = serde_json::from_str(line)?;
        ids.push(
            v["submission"]["id"]
                .as_u64()
                .context("job without submission.id")?,
        );
    }
    expected.retain(|id, _| ids.contains(id));
    if expected.len() != n {
        bail!("expected.jsonl lacks scores for some of the first {n} jobs");
    }
    let jobs = service.join(format!("jobs-{n}.jsonl"));
    std::fs::write(&jobs, lines[..n].join("\n") + "\n")?;
    Ok((service, jobs, expected))
}

pub(crate) struct Bench<'a> {
    pub(crate) root: &'a Path,
    pub(crate) grader: &'a Path,
    pub(crate) convert: &'a Path,
    pub(crate) work: &'a Path,
    pub(crate) logs: PathBuf,
    pub(crate) submissions: usize,
}

impl Bench<'_> {
    fn batch(&self, mode: &str, concurrency: u32) -> anyhow::Result<Run> {
        let name = format!("{mode}-c{concurrency}");
        let dir = self.work.join(&name);
        let (service, jobs, expected) = fresh_service(self.root, &dir, self.submissions)?;
        let config = dir.join("grader.toml");
        let extra = if mode == "warm" {
            format!("[local]\nwarm_workers = {concurrency}\n")
        } else {
            String::new()
        };
        let config_text = format!(
            "backend = \"local\"\nservice_dir = {}\nconvert_executable = {}\nmax_grading_time = 600\n{extra}",
            toml_str(&service.to_string_lossy()),
            toml_str(&self.convert.to_string_lossy())
        );
        std::fs::write(&config, &config_text)?;
        let results = dir.join("results");
        let mut cmd = Command::new(self.grader);
        // `batch` logs only warnings by default; `info` adds the workers' ready lines and
        // each job's start (a few lines per job, the same for both modes).
        cmd.arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "--log", "info", "batch"])
            .arg(&jobs)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--progress",
                "none",
                "--results",
            ])
            .arg(&results);
        eprintln!(
            "warm: {mode} concurrency {concurrency}: grading {} submissions",
            self.submissions
        );
        let spawned = SystemTime::now();
        let m = proc::run(&mut cmd, &self.logs, &name, false)?;
        let stderr = self.logs.join(format!("{name}.stderr"));
        if m.code != 0 {
            bail!(
                "grader batch ({name}) exited {}; see {}",
                m.code,
                stderr.display()
            );
        }
        let mut outcomes = Vec::new();
        for (&id, &want) in &expected {
            let path = results.join(format!("submission_{id}.json"));
            let o: Value = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
            )?;
            let backend = o["backend"].as_str().unwrap_or_default().to_string();
            let score = o["score"].as_f64();
            if o["status"] != "automatically_graded" || score != Some(want) {
                bail!(
                    "{name}: submission {id} ended {} with score {score:?}, expected {want}: {}; see {}",
                    o["status"],
                    o["error"],
                    path.display()
                );
            }
            let want_backend = if mode == "warm" {
                "local-warm"
            } else {
                "local"
            };
            if backend != want_backend {
                bail!(
                    "{name}: submission {id} was graded with backend {backend:?}, not {want_backend:?}; see {}",
                    stderr.display()
                );
            }
            outcomes.push(Graded {
                submission_id: id,
                score: want,
                backend,
                duration_ms: o["duration_ms"].as_f64().unwrap_or(f64::NAN),
                grading_ms: o["timings"]["grading_ms"].as_f64().unwrap_or(f64::NAN),
            });
        }
        let since_spawn = |t: &SystemTime| {
            t.duration_since(spawned)
                .map_or(f64::NAN, |d| d.as_secs_f64())
        };
        let ready = report::log_times(&stderr, READY, false)?;
        let replacements = report::log_times(&stderr, REPLACING, true)?.len();
        let startup_s = if mode == "warm" {
            match ready.get(concurrency as usize - 1) {
                Some(t) => since_spawn(t),
                None => bail!(
                    "{name}: {} of {concurrency} \"{READY}\" log lines; see {}",
                    ready.len(),
                    stderr.display()
                ),
            }
        } else {
            report::log_times(&stderr, JOB_STARTING, false)?
                .first()
                .map_or(f64::NAN, since_spawn)
        };
        let wall_s = m.wall.as_secs_f64();
        let n = self.submissions as f64;
        let run = Run {
            mode: mode.into(),
            concurrency,
            submissions: self.submissions,
            config: config_text,
            wall_s,
            per_submission_s: wall_s / n,
            startup_s,
            per_submission_excl_startup_s: (wall_s - startup_s) / n,
            worker_starts: ready.len(),
            worker_replacements: replacements,
            grading_ms: summarize(&outcomes.iter().map(|o| o.grading_ms).collect::<Vec<_>>()),
            duration_ms: summarize(&outcomes.iter().map(|o| o.duration_ms).collect::<Vec<_>>()),
            cpu_s: m.cpu.as_secs_f64(),
            maxrss_with_children_mib: m.maxrss_with_children_kib as f64 / 1024.0,
            load_after: report::load_average(),
            outcomes,
        };
        eprintln!(
            "warm: {mode} concurrency {concurrency}: {wall_s:.1} s, {:.3} s per submission \
             ({:.3} s without the {startup_s:.2} s start-up)",
            run.per_submission_s, run.per_submission_excl_startup_s
        );
        Ok(run)
    }

    pub(crate) fn reference(&self, python: &Path) -> anyhow::Result<Reference> {
        let dir = self.work.join("reference");
        let (service, _, _) = fresh_service(self.root, &dir, self.submissions)?;
        let json = dir.join("reference.json");
        let mut cmd = Command::new(python);
        cmd.arg(self.root.join("bench/reference_inprocess.py"))
            .arg("--service-dir")
            .arg(&service)
            .args(["--submissions", &self.submissions.to_string()])
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--json")
            .arg(&json);
        eprintln!(
            "warm: reference in-process on {} submissions",
            self.submissions
        );
        let m = proc::run(&mut cmd, &self.logs, "reference", false)?;
        let log = self.logs.join("reference.stdout");
        if m.code != 0 {
            bail!(
                "bench/reference_inprocess.py exited {} (score mismatches or an error); see {} and {}",
                m.code,
                log.display(),
                self.logs.join("reference.stderr").display()
            );
        }
        let output: Value = serde_json::from_slice(
            &std::fs::read(&json).with_context(|| format!("read {}", json.display()))?,
        )?;
        let runs = output["runs"].as_array().cloned().unwrap_or_default();
        if runs.len() != self.submissions || output["mismatches"].as_u64() != Some(0) {
            bail!(
                "the reference graded {} of {} submissions with {} mismatch(es); see {}",
                runs.len(),
                self.submissions,
                output["mismatches"],
                log.display()
            );
        }
        let col = |k: &str| {
            summarize(
                &runs
                    .iter()
                    .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
            )
        };
        let num = |k: &str| output[k].as_f64().unwrap_or(f64::NAN);
        let reference = Reference {
            wall_s: m.wall.as_secs_f64(),
            median_inprocess_s: num("median_inprocess_s"),
            median_kernel_s: num("median_kernel_s"),
            import_s: num("import_s"),
            inprocess: col("inprocess_s"),
            kernel: col("kernel_s"),
            load_after: report::load_average(),
            output,
        };
        eprintln!(
            "warm: reference: median in-process {:.3} s, median kernel {:.3} s per submission",
            reference.median_inprocess_s, reference.median_kernel_s
        );
        Ok(reference)
    }
}

/// Runs the benchmark and writes `warm.json` and `warm.md` to `out`.
pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.from_json {
        let results: Results = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
        )
        .with_context(|| format!("parse {}", path.display()))?;
        let md = markdown(&results);
        let md_path = out.join("warm.md");
        std::fs::write(&md_path, &md).with_context(|| format!("write {}", md_path.display()))?;
        println!("{md}");
        eprintln!("grader-bench: wrote {}", md_path.display());
        return Ok(());
    }
    let grader = std::fs::canonicalize(&args.grader)
        .with_context(|| format!("grader binary {}", args.grader.display()))?;
    let convert = args.convert.as_ref().context("--convert is required")?;
    let convert = std::fs::canonicalize(convert)
        .with_context(|| format!("grading tool {}", convert.display()))?;
    // Not canonicalized: the venv's `python` is a symlink, and only its own path selects
    // the venv.
    let python = match &args.python {
        Some(p) => p.clone(),
        None => convert
            .parent()
            .context("--convert has no parent directory")?
            .join("python"),
    };
    if !python.exists() {
        bail!(
            "no Python at {} (pass --python, the grading tool's interpreter)",
            python.display()
        );
    }
    if args.submissions == 0 {
        bail!("--submissions must be positive");
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency must list positive values");
    }
    let load_before = report::load_average();
    let work = Work::new("grader-bench-warm-")?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let bench = Bench {
        root,
        grader: &grader,
        convert: &convert,
        work: work.path(),
        logs,
        submissions: args.submissions,
    };
    // One heavy thing at a time: the runs are sequential.
    let mut runs = Vec::new();
    for &c in &args.concurrency {
        for mode in ["cold", "warm"] {
            runs.push(bench.batch(mode, c)?);
        }
    }
    let reference = bench.reference(&python)?;

    let results = Results {
        submissions: args.submissions,
        concurrency: args.concurrency.clone(),
        load_before,
        load_after: report::load_average(),
        runs,
        reference,
    };
    let md = markdown(&results);
    report::write(out, "warm", &results, &md)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn markdown(r: &Results) -> String {
    let mut t = Table::new(&[
        "run",
        "concurrency",
        "wall s",
        "per submission s",
        "start-up s",
        "per submission without start-up s",
        "median `grading_ms`",
        "median `duration_ms`",
        "worker starts",
        "CPU s",
    ]);
    for run in &r.runs {
        let label = if run.mode == "warm" {
            format!("warm (`warm_workers = {}`)", run.concurrency)
        } else {
            "cold (plain process per submission)".into()
        };
        t.row(vec![
            label,
            run.concurrency.to_string(),
            format!("{:.1}", run.wall_s),
            format!("{:.3}", run.per_submission_s),
            format!("{:.2}", run.startup_s),
            format!("**{:.3}**", run.per_submission_excl_startup_s),
            ms(run.grading_ms.median),
            ms(run.duration_ms.median),
            if run.mode == "warm" {
                run.worker_starts.to_string()
            } else {
                "-".into()
            },
            format!("{:.1}", run.cpu_s),
        ]);
    }
    let rf = &r.reference;
    t.row(vec![
        "reference in-process (mean per submission; median in the `duration_ms` column)".into(),
        "1".into(),
        format!("{:.1}", rf.wall_s),
        format!(
            "{:.3}",
            rf.inprocess.mean + rf.import_s / rf.inprocess.n.max(1) as f64
        ),
        format!("{:.2} (import)", rf.import_s),
        format!("**{:.3}**", rf.inprocess.mean),
        "-".into(),
        ms(rf.median_inprocess_s * 1000.0),
        "-".into(),
        "-".into(),
    ]);
    t.row(vec![
        "reference: kernels' own work (mean per submission; median in the `duration_ms` column)"
            .into(),
        "1".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        format!("**{:.3}**", rf.kernel.mean),
        "-".into(),
        ms(rf.median_kernel_s * 1000.0),
        "-".into(),
        "-".into(),
    ]);

    let mut lines = Vec::new();
    let find = |mode: &str, c: u32| r.runs.iter().find(|x| x.mode == mode && x.concurrency == c);
    if let Some(g) = Target::of(r) {
        let pct = |a: f64, b: f64| (a / b - 1.0) * 100.0;
        let kernel_bound = 1.10 * rf.kernel.mean;
        let kernel_bound_median = 1.10 * rf.median_kernel_s;
        lines.push(format!(
            "Targets, warm at concurrency {c}, per submission of the batch without the one-time \
             worker start: **{w:.3} s** against the reference's in-process {ri:.3} s: {v1} \
             ({p1:+.1}%); within 10% of the kernels' own work (1.10 × {rk:.3} s = {kb:.3} s): \
             {v2} ({p2:+.1}% of the kernel time). With the worker start ({ws:.3} s per \
             submission) against the reference with its import ({ri2:.3} s): {v3}.",
            c = g.concurrency,
            w = g.warm_per_submission_excl_startup_s,
            ri = rf.inprocess.mean,
            v1 = verdict(g.warm_per_submission_excl_startup_s <= rf.inprocess.mean),
            p1 = pct(g.warm_per_submission_excl_startup_s, rf.inprocess.mean),
            rk = rf.kernel.mean,
            kb = kernel_bound,
            v2 = verdict(g.warm_per_submission_excl_startup_s <= kernel_bound),
            p2 = pct(g.warm_per_submission_excl_startup_s, rf.kernel.mean),
            ws = g.warm_per_submission_s,
            ri2 = rf.inprocess.mean + rf.import_s / rf.inprocess.n.max(1) as f64,
            v3 = verdict(
                g.warm_per_submission_s
                    <= rf.inprocess.mean + rf.import_s / rf.inprocess.n.max(1) as f64
            ),
        ));
        lines.push(format!(
            "Medians (the tool's run has a heavy tail in both: slowest warm submission {wm:.3} s, \
             slowest reference run {rm:.3} s): warm `duration_ms` {wd:.3} s (the whole pipeline \
             of one submission; the forked tool run `grading_ms` {wg:.3} s) against the \
             reference's in-process {ri:.3} s: {v1} ({p1:+.1}%); against 1.10 × the kernels' \
             {rk:.3} s = {kb:.3} s: {v2} ({p2:+.1}% of the kernel time).",
            wm = g.warm_max_duration_s,
            rm = rf.inprocess.max,
            wd = g.warm_median_duration_s,
            wg = g.warm_median_grading_s,
            ri = rf.median_inprocess_s,
            v1 = verdict(g.warm_median_duration_s <= rf.median_inprocess_s),
            p1 = pct(g.warm_median_duration_s, rf.median_inprocess_s),
            rk = rf.median_kernel_s,
            kb = kernel_bound_median,
            v2 = verdict(g.warm_median_duration_s <= kernel_bound_median),
            p2 = pct(g.warm_median_duration_s, rf.median_kernel_s),
        ));
    }
    let lowest = r.concurrency.iter().min().copied().unwrap_or(1);
    for &c in &r.concurrency {
        let (Some(warm), Some(cold)) = (find("warm", c), find("cold", c)) else {
            continue;
        };
        let mut s = format!(
            "Concurrency {c}: warm {:.3} s per submission, cold {:.3} s: warm is {:.2}× as fast",
            warm.per_submission_s,
            cold.per_submission_s,
            cold.per_submission_s / warm.per_submission_s
        );
        if c != lowest
            && let Some(w1) = find("warm", lowest)
        {
            s.push_str(&format!(
                "; {:.2}× the throughput of warm at concurrency {lowest}",
                w1.per_submission_s / warm.per_submission_s
            ));
        }
        let replaced: usize = warm.worker_replacements;
        if replaced > 0 {
            s.push_str(&format!("; {replaced} worker(s) replaced during the batch"));
        }
        s.push('.');
        lines.push(s);
    }
    format!(
        "### Warm workers\n\n\
         `grader batch` of {n} submissions of the example course (alice, bob, carol, dave, \
         repeated) with the real grading tool, each run on a fresh service directory and \
         every outcome checked against the expected score. Cold: the default configuration, \
         a plain `grader-convert` process per submission. Warm: `local.warm_workers` = the \
         concurrency; every outcome reported the backend `local-warm`. Per submission = wall \
         time of the whole `grader` process / {n}; start-up = from spawning `grader` to the \
         last of its first workers' \"warm grading worker ready\" log lines (cold: to the first \
         job's start). Reference: `bench/reference_inprocess.py` with the tool's own Python \
         on the same {n} submissions, one after another in one process that imported the tool \
         once (Grader Service 0.12.5's `LocalAutogradeExecutor`; its git checkout is not \
         timed, grader's git export and commit are); kernels' own work = time inside the \
         `Execute` preprocessor (kernel start, cells, shutdown). Load average before / after: \
         {} / {}.\n\n{}\n{}\n",
        r.load_before,
        r.load_after,
        t.render(),
        lines.join("\n\n"),
        n = r.submissions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_match_exact_or_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        std::fs::write(
            &path,
            concat!(
                r#"{"timestamp":"2026-01-01T00:00:01Z","fields":{"message":"warm grading worker ready"}}"#,
                "\nnot json\n",
                r#"{"timestamp":"2026-01-01T00:00:02Z","fields":{"message":"starting"}}"#,
                "\n",
                r#"{"timestamp":"2026-01-01T00:00:03Z","fields":{"message":"replacing a warm grading worker: recycled"}}"#,
                "\n",
                r#"{"timestamp":"2026-01-01T00:00:04Z","fields":{"message":"warm grading worker ready"}}"#,
                "\n",
            ),
        )
        .unwrap();
        let ready = report::log_times(&path, READY, false).unwrap();
        assert_eq!(ready.len(), 2);
        let gap = ready[1].duration_since(ready[0]).unwrap();
        assert_eq!(gap.as_secs(), 3);
        assert_eq!(
            report::log_times(&path, JOB_STARTING, false).unwrap().len(),
            1
        );
        assert_eq!(report::log_times(&path, REPLACING, true).unwrap().len(), 1);
        assert_eq!(report::log_times(&path, REPLACING, false).unwrap().len(), 0);
    }
}

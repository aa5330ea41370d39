//! `grader autograde` (local backend) against the bare `grader-convert autograde` it wraps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use grader_local::PASSED_ENV;
use grader_local::{GradingTask, Job};
use grader_model::gradebook::Gradebook;
use serde::Serialize;
use serde_json::Value;

use crate::proc::{self, Measured};
use crate::report::{self, Table, ms};
use crate::stats::{Summary, median, summarize};
use crate::workdir::{self, Work, toml_str};

/// Options of `local-overhead`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// The grading tool, `grader-convert` (`bash scripts/setup-venv.sh | tail -1` prints it).
    #[arg(long)]
    convert: PathBuf,
    /// Measured runs of each with the real grading tool (after one warm-up run each).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Measured runs of each with a no-op grading tool (grader's fixed cost alone).
    #[arg(long, default_value_t = 15)]
    noop_runs: usize,
    /// The student of the example course whose submission is graded.
    #[arg(long, default_value = "bob")]
    student: String,
}

#[derive(Debug, Serialize)]
struct GraderRun {
    /// The outcome's `backend` (`local` or `local-warm`).
    backend: String,
    wall_ms: f64,
    duration_ms: f64,
    timings: Value,
    score: Option<f64>,
    /// wall − timings.grading_ms: everything grader does besides running the tool.
    overhead_ms: f64,
    /// wall − duration_ms: process start, configuration, backend start, job file, output.
    outside_pipeline_ms: f64,
    /// From spawning `grader` to its log line "warm grading worker ready".
    warm_server_ms: Option<f64>,
    peak_rss_kib: u64,
}

#[derive(Debug, Serialize)]
struct BareRun {
    wall_ms: f64,
    score: Option<f64>,
}

/// One way of running `grader`, summarized.
#[derive(Debug, Serialize)]
struct Mode {
    config: String,
    runs: Vec<GraderRun>,
    wall: Summary,
    overhead: Summary,
    outside_pipeline: Summary,
    warm_server: Summary,
    steps: Vec<(String, Summary)>,
}

impl Mode {
    fn new(config: &Path, runs: Vec<GraderRun>) -> Mode {
        let col =
            |f: &dyn Fn(&GraderRun) -> f64| summarize(&runs.iter().map(f).collect::<Vec<_>>());
        let steps = STEPS
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    col(&|r: &GraderRun| r.timings[*k].as_f64().unwrap_or(f64::NAN)),
                )
            })
            .collect();
        Mode {
            config: std::fs::read_to_string(config).unwrap_or_default(),
            wall: col(&|r| r.wall_ms),
            overhead: col(&|r| r.overhead_ms),
            outside_pipeline: col(&|r| r.outside_pipeline_ms),
            warm_server: col(&|r| r.warm_server_ms.unwrap_or(f64::NAN)),
            steps,
            runs,
        }
    }

    fn step(&self, key: &str) -> Summary {
        self.steps
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }
}

const STEPS: &[&str] = &[
    "prepare_ms",
    "fetch_ms",
    "gradebook_ms",
    "grading_ms",
    "commit_ms",
    "score_ms",
    "cleanup_ms",
];

#[derive(Debug, Serialize)]
struct Results {
    student: String,
    submission_id: u64,
    expected_score: Option<f64>,
    runs: usize,
    noop_runs: usize,
    load_before: String,
    load_after: String,
    /// The real tool as a plain child process (the default).
    plain: Mode,
    /// The real tool on a warm worker (`local.warm_workers = 1`).
    warm: Mode,
    bare: Vec<BareRun>,
    bare_wall: Summary,
    /// A no-op tool (plain process): grader's fixed cost alone.
    noop: Mode,
    noop_bare: Vec<BareRun>,
    noop_bare_wall: Summary,
    /// median(plain grader wall) / median(bare wall).
    plain_ratio: f64,
    /// median(plain wall − grading_ms) / median(bare wall).
    plain_overhead_fraction: f64,
    /// median(warm grader wall) / median(bare wall).
    warm_ratio: f64,
}

struct Setup<'a> {
    grader: &'a Path,
    service: PathBuf,
    job_path: PathBuf,
    job: Job,
    task: GradingTask,
    logs: PathBuf,
}

/// The time of the first JSON log line whose message is `message`, if any.
fn log_time(stderr: &Path, message: &str) -> Option<SystemTime> {
    report::log_times(stderr, message, false)
        .ok()?
        .into_iter()
        .next()
}

impl Setup<'_> {
    fn grader_run(&self, config: &Path, name: &str) -> anyhow::Result<GraderRun> {
        let out = self.logs.join(format!("{name}.outcome.json"));
        let mut cmd = Command::new(self.grader);
        cmd.arg("--config")
            .arg(config)
            .args(["--log-format", "json", "autograde", "--job"])
            .arg(&self.job_path)
            .arg("--output")
            .arg(&out);
        let spawned = SystemTime::now();
        let m = proc::run(&mut cmd, &self.logs, name, true)?;
        let outcome: Value = serde_json::from_slice(
            &std::fs::read(&out).with_context(|| format!("read {}", out.display()))?,
        )?;
        if m.code != 0 || outcome["status"] != "automatically_graded" {
            bail!(
                "grader autograde failed (exit {}): {}; see {}",
                m.code,
                outcome["error"],
                self.logs.display()
            );
        }
        let wall = m.wall.as_secs_f64() * 1000.0;
        let duration = outcome["duration_ms"].as_f64().unwrap_or(f64::NAN);
        let grading = outcome["timings"]["grading_ms"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let warm_server_ms = log_time(
            &self.logs.join(format!("{name}.stderr")),
            "warm grading worker ready",
        )
        .and_then(|t| t.duration_since(spawned).ok())
        .map(|d| d.as_secs_f64() * 1000.0);
        Ok(GraderRun {
            backend: outcome["backend"].as_str().unwrap_or_default().to_string(),
            wall_ms: wall,
            duration_ms: duration,
            timings: outcome["timings"].clone(),
            score: outcome["score"].as_f64(),
            overhead_ms: wall - grading,
            outside_pipeline_ms: wall - duration,
            warm_server_ms,
            peak_rss_kib: m.own_hwm_kib,
        })
    }

    /// Prepares the work dirs exactly as the pipeline does (untimed), runs the tool exactly
    /// as the local backend does (timed), and cleans up (untimed).
    fn bare_run(&self, tool: &Path, name: &str) -> anyhow::Result<BareRun> {
        let (input, output) = (&self.task.input_dir, &self.task.output_dir);
        for dir in [input, output] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
            std::fs::create_dir_all(dir)?;
        }
        let repo = self
            .service
            .join("git/cs101/1/user")
            .join(&self.job.submission.username);
        proc::sh(&format!(
            "git --git-dir '{}' archive --format=tar {} | tar -x -C '{}'",
            repo.display(),
            self.job.submission.commit_hash,
            input.display()
        ))?;
        std::fs::write(
            output.join("gradebook.json"),
            self.job.gradebook.to_vec_pretty(),
        )?;
        let kernels = grader_local::KernelDir::create()?;
        let args = self.task.tool_args(
            &input.to_string_lossy(),
            &output.to_string_lossy(),
            false,
            &kernels.connection_file().to_string_lossy(),
        );
        let mut cmd = Command::new(tool);
        cmd.args(&args)
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .env("ASSIGNMENT_SETTINGS", self.task.settings_json())
            .current_dir(input);
        let m: Measured = proc::run(&mut cmd, &self.logs, name, false)?;
        if m.code != 0 {
            bail!(
                "bare {} failed (exit {}); see {}",
                tool.display(),
                m.code,
                self.logs.display()
            );
        }
        let score = std::fs::read(output.join("gradebook.json"))
            .ok()
            .and_then(|b| Gradebook::from_slice(&b).ok())
            .map(|g| g.score());
        for dir in [input, output] {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(BareRun {
            wall_ms: m.wall.as_secs_f64() * 1000.0,
            score,
        })
    }

    /// One warm-up run of each, then `runs` of each, interleaved in rotating order.
    /// Returns the runs of each config (in order) and the bare runs.
    fn series(
        &self,
        label: &str,
        configs: &[&Path],
        tool: &Path,
        runs: usize,
    ) -> anyhow::Result<(Vec<Vec<GraderRun>>, Vec<BareRun>)> {
        for (k, config) in configs.iter().enumerate() {
            self.grader_run(config, &format!("{label}-warmup-grader{k}"))?;
        }
        self.bare_run(tool, &format!("{label}-warmup-bare"))?;
        let mut grader: Vec<Vec<GraderRun>> = configs.iter().map(|_| Vec::new()).collect();
        let mut bare = Vec::new();
        let slots = configs.len() + 1;
        for i in 0..runs {
            for j in 0..slots {
                let slot = (i + j) % slots;
                if slot == configs.len() {
                    bare.push(self.bare_run(tool, &format!("{label}-{i}-bare"))?);
                } else {
                    let r = self.grader_run(configs[slot], &format!("{label}-{i}-grader{slot}"))?;
                    grader[slot].push(r);
                }
            }
            let walls: Vec<String> = grader
                .iter()
                .map(|g| format!("{:.0} ms", g[i].wall_ms))
                .collect();
            eprintln!(
                "local-overhead [{label}] run {}/{runs}: grader {}, bare {:.0} ms",
                i + 1,
                walls.join(" / "),
                bare[i].wall_ms
            );
        }
        Ok((grader, bare))
    }
}

fn expected_score(service: &Path, id: u64) -> Option<f64> {
    let text = std::fs::read_to_string(service.join("expected.jsonl")).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["submission_id"].as_u64() == Some(id))
        .and_then(|v| v["score"].as_f64())
}

pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    let grader = std::fs::canonicalize(&args.grader)
        .with_context(|| format!("grader binary {}", args.grader.display()))?;
    let convert = std::fs::canonicalize(&args.convert)
        .with_context(|| format!("grading tool {}", args.convert.display()))?;
    let load_before = report::load_average();
    let work = Work::new("grader-bench-local-")?;
    let service = work.path().join("service");
    workdir::make_service_dir(root, &service, 1)?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let noop = workdir::script(&work.path().join("noop-tool"), "exit 0")?;

    let job_path = service.join("jobs").join(format!("{}.json", args.student));
    let job = grader_local::job_file::load_job(&job_path)
        .with_context(|| format!("job {}", job_path.display()))?;
    let task = workdir::task(&service, &job)?;
    let expected = expected_score(&service, job.submission.id);
    let config = |name: &str, tool: &Path, extra: &str| -> anyhow::Result<PathBuf> {
        let path = work.path().join(name);
        std::fs::write(
            &path,
            format!(
                "backend = \"local\"\nservice_dir = {}\nconvert_executable = {}\nmax_grading_time = 600\n{extra}",
                toml_str(&service.to_string_lossy()),
                toml_str(&tool.to_string_lossy())
            ),
        )?;
        Ok(path)
    };
    let plain_config = config("grader-plain.toml", &convert, "")?;
    let warm_config = config("grader-warm.toml", &convert, "[local]\nwarm_workers = 1\n")?;
    let noop_config = config("grader-noop.toml", &noop, "")?;
    let setup = Setup {
        grader: &grader,
        service: service.clone(),
        job_path,
        job,
        task,
        logs,
    };

    let (mut real, bare) =
        setup.series("real", &[&plain_config, &warm_config], &convert, args.runs)?;
    let scores = real
        .iter()
        .flatten()
        .map(|r| r.score)
        .chain(bare.iter().map(|r| r.score));
    for (i, score) in scores.enumerate() {
        if expected.is_some() && score != expected {
            bail!("run {i} scored {score:?}, expected {expected:?}");
        }
    }
    let warm = Mode::new(&warm_config, real.pop().unwrap_or_default());
    let plain = Mode::new(&plain_config, real.pop().unwrap_or_default());
    if let Some(r) = warm.runs.iter().find(|r| r.backend != "local-warm") {
        eprintln!(
            "local-overhead: warning: the default configuration graded with backend {:?}",
            r.backend
        );
    }
    let (mut noop_runs, noop_bare) =
        setup.series("noop", &[&noop_config], &noop, args.noop_runs)?;
    let noop = Mode::new(&noop_config, noop_runs.pop().unwrap_or_default());
    let load_after = report::load_average();
    let bare_wall = summarize(&bare.iter().map(|r| r.wall_ms).collect::<Vec<_>>());

    let results = Results {
        student: args.student.clone(),
        submission_id: setup.job.submission.id,
        expected_score: expected,
        runs: args.runs,
        noop_runs: args.noop_runs,
        load_before,
        load_after,
        plain_ratio: plain.wall.median / bare_wall.median,
        plain_overhead_fraction: plain.overhead.median / bare_wall.median,
        warm_ratio: warm.wall.median / bare_wall.median,
        plain,
        warm,
        bare,
        bare_wall,
        noop,
        noop_bare_wall: summarize(&noop_bare.iter().map(|r| r.wall_ms).collect::<Vec<_>>()),
        noop_bare,
    };
    let md = markdown(&results);
    report::write(out, "local-overhead", &results, &md)
}

fn markdown(r: &Results) -> String {
    let mut t = Table::new(&["measure", "median ms", "min ms", "max ms"]);
    let row = |t: &mut Table, name: &str, s: &Summary| {
        t.row(vec![name.to_string(), ms(s.median), ms(s.min), ms(s.max)]);
    };
    let blank = |t: &mut Table, name: &str, v: String| {
        t.row(vec![name.into(), v, String::new(), String::new()])
    };
    let (plain, warm, noop) = (&r.plain, &r.warm, &r.noop);
    row(
        &mut t,
        "bare `grader-convert autograde` wall time",
        &r.bare_wall,
    );
    row(
        &mut t,
        "`grader autograde`, plain process (default), wall time",
        &plain.wall,
    );
    blank(
        &mut t,
        "  ratio of the medians (grader / bare)",
        format!("{:.3}", r.plain_ratio),
    );
    row(
        &mut t,
        "  **overhead: grader wall − `timings.grading_ms`**",
        &plain.overhead,
    );
    row(
        &mut t,
        "    process start, config, job file, output (wall − `duration_ms`)",
        &plain.outside_pipeline,
    );
    let step_names = [
        ("prepare_ms", "    prepare (clean + create work dirs)"),
        ("fetch_ms", "    git fetch (`git archive` + unpack)"),
        ("gradebook_ms", "    gradebook (write `gradebook.json`)"),
        (
            "commit_ms",
            "    commit + push (one commit straight into the bare autograde repo)",
        ),
        ("score_ms", "    score (read `gradebook.json` back)"),
        ("cleanup_ms", "    clean-up (remove work dirs)"),
    ];
    for (key, label) in step_names {
        row(&mut t, label, &plain.step(key));
    }
    row(
        &mut t,
        "  `timings.grading_ms` (the tool as a child of grader)",
        &plain.step("grading_ms"),
    );
    row(
        &mut t,
        "`grader autograde`, one warm worker (`local.warm_workers = 1`), wall time",
        &warm.wall,
    );
    blank(
        &mut t,
        "  ratio of the medians (grader / bare)",
        format!("{:.3}", r.warm_ratio),
    );
    row(
        &mut t,
        "  start of the warm worker (spawn → \"warm grading worker ready\")",
        &warm.warm_server,
    );
    row(
        &mut t,
        "  `timings.grading_ms` (one forked run)",
        &warm.step("grading_ms"),
    );
    row(
        &mut t,
        "  pipeline without grading (`duration_ms` − `grading_ms`)",
        &summarize(
            &warm
                .runs
                .iter()
                .map(|g| g.duration_ms - g.timings["grading_ms"].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        ),
    );
    row(&mut t, "no-op tool: bare tool wall time", &r.noop_bare_wall);
    row(
        &mut t,
        "no-op tool: `grader autograde` wall time",
        &noop.wall,
    );
    blank(
        &mut t,
        "  difference of the medians (grader's fixed cost)",
        ms(noop.wall.median - r.noop_bare_wall.median),
    );
    row(
        &mut t,
        "  grader wall − `timings.grading_ms`",
        &noop.overhead,
    );
    let peak = median(
        &plain
            .runs
            .iter()
            .map(|g| g.peak_rss_kib as f64)
            .collect::<Vec<_>>(),
    );
    let pct = r.plain_overhead_fraction * 100.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let warm_diff = warm.wall.median - r.bare_wall.median;
    format!(
        "### Local overhead\n\n\
         Submission {} ({}, cs101/hw1, expected score {}); {} rounds, each running bare \
         `grader-convert`, `grader autograde` with a plain process (the default) and `grader autograde` with \
         one warm worker once, in rotating order, after one warm-up run of each; no-op \
         tool: {} rounds. Load average before / after: {} / {}.\n\n{}\n\
         Plain process: overhead **{:.1} ms = {:.2}%** of the bare run (median of grader wall − \
         `grading_ms` over the median bare wall time; targets < 50 ms: {}, < 5%: {}); ratio of \
         the medians {:.3} (the grading tool's own spread: bare runs ranged over {:.0} ms). \
         One warm worker: {:+.0} ms against the bare run for a single submission \
         (ratio {:.3}); the worker's start replaces the tool's import, and every further \
         submission of a batch costs only a forked run ({:.0} ms here instead of {:.0} ms; \
         see the warm worker benchmark). \
         Peak RSS of `grader` (plain): {:.1} MiB.\n",
        r.submission_id,
        r.student,
        r.expected_score.map_or("?".into(), |s| s.to_string()),
        r.runs,
        r.noop_runs,
        r.load_before,
        r.load_after,
        t.render(),
        plain.overhead.median,
        pct,
        verdict(plain.overhead.median < 50.0),
        verdict(pct < 5.0),
        r.plain_ratio,
        r.bare_wall.max - r.bare_wall.min,
        warm_diff,
        r.warm_ratio,
        warm.step("grading_ms").median,
        r.bare_wall.median,
        peak / 1024.0,
    )
}

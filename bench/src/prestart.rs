//! Kernels started ahead of need (project issue 17): `grader batch` with one warm worker,
//! before (each notebook's kernel launched by the tool, `local.warm_prestart_kernels = false`) and after
//! (kernels forked by the job's kernel zygote, the default), beside the reference's in-process
//! executor (`bench/reference_inprocess.py`, run repeatedly in one process), on the example
//! course and on a course with several notebooks per submission
//! (`examples/make-multi-service-dir.sh`). Reports the distribution of the per-submission
//! time (median, p90, p95, max), the targets (warm after ≤ 0.6 × the reference's median;
//! p95 ≤ 1.5 × median) and where the time of a warm job goes (`WARM_WORKER_PHASES=1`: the
//! job's child logs its phases).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::proc;
use crate::report::{self, Table, ms};
use crate::stats::quantile;
use crate::workdir::{Work, toml_str};

/// Options of `prestart`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// The grading tool, `grader-convert`.
    #[arg(long)]
    convert: PathBuf,
    /// The tool's Python for the reference (default: `python` next to `--convert`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Submissions per run on the example course (a multiple of 4 is fairest).
    #[arg(long, default_value_t = 20)]
    submissions: usize,
    /// Submissions per run on the course with several notebooks.
    #[arg(long, default_value_t = 12)]
    multi_submissions: usize,
    /// Notebooks per submission of that course.
    #[arg(long, default_value_t = 3)]
    notebooks: usize,
}

/// A distribution with the p95 the issue asks for.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Dist {
    n: usize,
    median: f64,
    p90: f64,
    p95: f64,
    max: f64,
    mean: f64,
}

fn dist(values: &[f64]) -> Dist {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Dist::default();
    }
    Dist {
        n: v.len(),
        median: quantile(&v, 0.5),
        p90: quantile(&v, 0.9),
        p95: quantile(&v, 0.95),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    }
}

/// One measured series: per-submission times in ms.
#[derive(Debug, Serialize, Deserialize)]
struct Series {
    course: String,
    run: String,
    /// Warm: the outcomes' `duration_ms` (the whole pipeline of one submission: git export,
    /// the forked tool run, commit). Reference: its in-process time.
    per_submission_ms: Dist,
    /// Warm: `timings.grading_ms` (the forked tool run). Reference: time in `Execute`.
    inner_ms: Dist,
    /// Warm: (wall of `grader batch` − the worker's start) / submissions.
    wall_per_submission_ms: Option<f64>,
    /// Warm: phase sums per job from the child's `grader-warm-phases` line.
    phases_ms: BTreeMap<String, Dist>,
    load_after: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Results {
    load_before: String,
    load_after: String,
    series: Vec<Series>,
}

/// Makes a fresh service dir for `course`: `example` or `multi`.
fn service(
    root: &Path,
    dir: &Path,
    course: &str,
    n: usize,
    notebooks: usize,
) -> anyhow::Result<()> {
    let mut cmd = Command::new("bash");
    if course == "multi" {
        cmd.arg(root.join("examples/make-multi-service-dir.sh"))
            .arg(dir)
            .args(["--notebooks", &notebooks.to_string()]);
    } else {
        cmd.arg(root.join("examples/make-service-dir.sh")).arg(dir);
    }
    let status = cmd
        .args(["--copies", &n.div_ceil(4).to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("make the service dir")?;
    if !status.success() {
        bail!("making the {course} service dir failed: {status}");
    }
    Ok(())
}

fn expected(service: &Path) -> anyhow::Result<BTreeMap<u64, f64>> {
    let text = std::fs::read_to_string(service.join("expected.jsonl"))?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        if let (Some(id), Some(s)) = (v["submission_id"].as_u64(), v["score"].as_f64()) {
            out.insert(id, s);
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    root: &'a Path,
    work: &'a Path,
    logs: PathBuf,
    args: &'a Args,
}

impl Ctx<'_> {
    fn warm(&self, course: &str, n: usize, prestart: bool) -> anyhow::Result<Series> {
        let run = if prestart { "after" } else { "before" };
        let name = format!("{course}-{run}");
        let dir = self.work.join(&name);
        let svc = dir.join("service");
        service(self.root, &svc, course, n, self.args.notebooks)?;
        let all = std::fs::read_to_string(svc.join("jobs.jsonl"))?;
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(n)
            .collect();
        let jobs = dir.join("jobs.jsonl");
        std::fs::write(&jobs, lines.join("\n") + "\n")?;
        let mut want = expected(&svc)?;
        let ids: Vec<u64> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["submission"]["id"].as_u64())
            .collect();
        want.retain(|id, _| ids.contains(id));
        let config = dir.join("grader.toml");
        std::fs::write(
            &config,
            format!(
                "backend = \"local\"\nservice_dir = {}\nconvert_executable = {}\nmax_grading_time = 600\n[local]\nwarm_workers = 1\nwarm_prestart_kernels = {prestart}\n",
                toml_str(&svc.to_string_lossy()),
                toml_str(&self.args.convert.to_string_lossy())
            ),
        )?;
        let results = dir.join("results");
        let mut cmd = Command::new(&self.args.grader);
        cmd.arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "--log", "info", "batch"])
            .arg(&jobs)
            .args(["--concurrency", "1", "--progress", "none", "--results"])
            .arg(&results)
            .env("WARM_WORKER_PHASES", "1");
        eprintln!("prestart: {name}: grading {n} submissions");
        let spawned = std::time::SystemTime::now();
        let m = proc::run(&mut cmd, &self.logs, &name, false)?;
        let stderr = self.logs.join(format!("{name}.stderr"));
        if m.code != 0 {
            bail!(
                "grader batch ({name}) exited {}; see {}",
                m.code,
                stderr.display()
            );
        }
        let ready = report::log_times(&stderr, "warm grading worker ready", false)?;
        let startup = ready
            .first()
            .and_then(|t| t.duration_since(spawned).ok())
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let (mut per, mut inner) = (Vec::new(), Vec::new());
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (id, score) in &want {
            let path = results.join(format!("submission_{id}.json"));
            let o: Value = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
            )?;
            if o["status"] != "automatically_graded"
                || o["score"].as_f64() != Some(*score)
                || o["backend"] != "local-warm"
            {
                bail!(
                    "{name}: submission {id}: {} {} {} (expected {score}); see {}",
                    o["status"],
                    o["score"],
                    o["backend"],
                    path.display()
                );
            }
            per.push(o["duration_ms"].as_f64().unwrap_or(f64::NAN));
            inner.push(o["timings"]["grading_ms"].as_f64().unwrap_or(f64::NAN));
            let logs = o["logs"].as_str().unwrap_or_default();
            if let Some(line) = logs
                .lines()
                .find_map(|l| l.strip_prefix("grader-warm-phases: "))
                && let Ok(v) = serde_json::from_str::<Value>(line)
            {
                let total = v["total"].as_f64().unwrap_or(f64::NAN);
                let mut known = 0.0;
                if let Some(sums) = v["sums"].as_object() {
                    for (k, x) in sums {
                        let x = x.as_f64().unwrap_or(0.0);
                        // `kernel_pre_launch` and `kernel_launch` are parts of `kernel_start`.
                        if !matches!(
                            k.as_str(),
                            "notebook" | "kernel_pre_launch" | "kernel_launch"
                        ) {
                            known += x;
                        }
                        phases.entry(k.clone()).or_default().push(x);
                    }
                }
                phases.entry("total".into()).or_default().push(total);
                phases
                    .entry("tool (rest)".into())
                    .or_default()
                    .push(total - known);
            }
        }
        let wall = m.wall.as_secs_f64() * 1000.0;
        Ok(Series {
            course: course.into(),
            run: format!("warm, {run}"),
            per_submission_ms: dist(&per),
            inner_ms: dist(&inner),
            wall_per_submission_ms: Some((wall - startup) / n as f64),
            phases_ms: phases.iter().map(|(k, v)| (k.clone(), dist(v))).collect(),
            load_after: report::load_average(),
        })
    }

    fn reference(&self, course: &str, n: usize, python: &Path) -> anyhow::Result<Series> {
        let name = format!("{course}-reference");
        let dir = self.work.join(&name);
        let svc = dir.join("service");
        service(self.root, &svc, course, n, self.args.notebooks)?;
        let json = dir.join("reference.json");
        let mut cmd = Command::new(python);
        cmd.arg(self.root.join("bench/reference_inprocess.py"))
            .arg("--service-dir")
            .arg(&svc)
            .args(["--submissions", &n.to_string()])
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--json")
            .arg(&json);
        eprintln!("prestart: {name}: grading {n} submissions in process");
        let m = proc::run(&mut cmd, &self.logs, &name, false)?;
        if m.code != 0 {
            bail!(
                "reference ({name}) exited {}; see {}",
                m.code,
                self.logs.display()
            );
        }
        let out: Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        let runs = out["runs"].as_array().cloned().unwrap_or_default();
        if runs.len() != n || out["mismatches"].as_u64() != Some(0) {
            bail!(
                "reference ({name}): {} runs, mismatches {}",
                runs.len(),
                out["mismatches"]
            );
        }
        let col = |k: &str| {
            dist(
                &runs
                    .iter()
                    .map(|r| r[k].as_f64().unwrap_or(f64::NAN) * 1000.0)
                    .collect::<Vec<_>>(),
            )
        };
        Ok(Series {
            course: course.into(),
            run: "reference in-process".into(),
            per_submission_ms: col("inprocess_s"),
            inner_ms: col("kernel_s"),
            wall_per_submission_ms: None,
            phases_ms: BTreeMap::new(),
            load_after: report::load_average(),
        })
    }
}

/// Runs the benchmark and writes `prestart.json` and `prestart.md` to `out`.
pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    let python = match &args.python {
        Some(p) => p.clone(),
        None => args
            .convert
            .parent()
            .context("--convert has no directory")?
            .join("python"),
    };
    let work = Work::new("grader-bench-prestart")?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let ctx = Ctx {
        root,
        work: work.path(),
        logs,
        args: &args,
    };
    let load_before = report::load_average();
    let mut series = Vec::new();
    for (course, n) in [
        ("example", args.submissions),
        ("multi", args.multi_submissions),
    ] {
        series.push(ctx.warm(course, n, false)?);
        series.push(ctx.warm(course, n, true)?);
        series.push(ctx.reference(course, n, &python)?);
    }
    let results = Results {
        load_before,
        load_after: report::load_average(),
        series,
    };
    report::write(out, "prestart", &results, &markdown(&results, &args))
}

fn markdown(r: &Results, args: &Args) -> String {
    let mut s = String::from("### Kernels started ahead of need\n\n");
    s.push_str(&format!(
        "`grader batch` at concurrency 1 with one warm worker, per submission (the outcome's `duration_ms`: git export, the forked tool run, commit), before (the tool launches each notebook's kernel: `local.warm_prestart_kernels = false`) and after (kernels forked by the job's kernel zygote, the default), beside the reference's in-process executor run repeatedly in one process (`bench/reference_inprocess.py`; its checkout is not timed). Example course: {} submissions; `multi`: {} submissions of {} notebooks each (`examples/make-multi-service-dir.sh`). Every outcome checked against the expected score. Load average before / after: {} / {}.\n\n",
        args.submissions, args.multi_submissions, args.notebooks, r.load_before, r.load_after
    ));
    let mut t = Table::new(&[
        "course",
        "run",
        "median ms",
        "p90",
        "p95",
        "max",
        "mean",
        "wall per submission without start-up ms",
        "tool run / kernels' work median ms",
        "load after",
    ]);
    for x in &r.series {
        let d = &x.per_submission_ms;
        t.row(vec![
            x.course.clone(),
            x.run.clone(),
            format!("**{}**", ms(d.median)),
            ms(d.p90),
            ms(d.p95),
            ms(d.max),
            ms(d.mean),
            x.wall_per_submission_ms.map_or("-".into(), ms),
            ms(x.inner_ms.median),
            x.load_after.clone(),
        ]);
    }
    s.push_str(&t.render());
    s.push('\n');
    for course in ["example", "multi"] {
        let find = |run: &str| r.series.iter().find(|x| x.course == course && x.run == run);
        if let (Some(after), Some(reference)) = (find("warm, after"), find("reference in-process"))
        {
            let ratio = after.per_submission_ms.median / reference.per_submission_ms.median;
            let tail = after.per_submission_ms.p95 / after.per_submission_ms.median;
            s.push_str(&format!(
                "\n{course}: warm (after) median {} ms = **{ratio:.2}×** the reference's {} ms (target ≤ 0.6×: {}); p95 / median = **{tail:.2}** (target ≤ 1.5: {}).",
                ms(after.per_submission_ms.median),
                ms(reference.per_submission_ms.median),
                if ratio <= 0.6 { "met" } else { "MISSED" },
                if tail <= 1.5 { "met" } else { "MISSED" },
            ));
            if let Some(before) = find("warm, before") {
                s.push_str(&format!(
                    " Before: median {} ms, p95 {} ms.",
                    ms(before.per_submission_ms.median),
                    ms(before.per_submission_ms.p95)
                ));
            }
            s.push('\n');
        }
    }
    s.push_str("\nWhere a warm job's time goes (the child's phase timings, ms per submission; `kernel_start`: the manager's launch (of which `kernel_pre_launch`: the provisioner's preparation, `kernel_launch`: the fork by the zygote or the tool's own launch), `kernel_ready`: until the kernel answered, `cell`: every cell, `kernel_shutdown`: until the kernel ended, `notebook`: the tool's conversion of each notebook including all of these, `tool (rest)`: the child's total minus the kernel phases):\n\n");
    let mut p = Table::new(&["course", "run", "phase", "median", "p95", "max"]);
    for x in &r.series {
        for (k, d) in &x.phases_ms {
            p.row(vec![
                x.course.clone(),
                x.run.clone(),
                k.clone(),
                ms(d.median),
                ms(d.p95),
                ms(d.max),
            ]);
        }
    }
    s.push_str(&p.render());
    s
}

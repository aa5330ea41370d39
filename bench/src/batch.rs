//! `grader batch` throughput and peak memory, local and kube backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{Cluster, NAMESPACE};
use crate::proc;
use crate::report::{self, Table};
use crate::workdir::{self, Work, toml_str};

/// Options of `batch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// Submissions per batch (a multiple of 4).
    #[arg(long, default_value_t = 200)]
    submissions: usize,
    /// `--concurrency` values to run.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<u32>,
    /// Backends to run.
    #[arg(long, value_delimiter = ',', default_value = "local,kube")]
    backends: Vec<String>,
    /// Kube only: one more run with this concurrency and a tool that sleeps, so that this
    /// many pods are in flight at once (0: skip).
    #[arg(long, default_value_t = 200)]
    kube_inflight: u32,
    /// Seconds the tool of the in-flight run sleeps.
    #[arg(long, default_value_t = 10)]
    inflight_sleep: u64,
    /// Extra environment of `grader` (for experiments, e.g. `MALLOC_ARENA_MAX=2`).
    #[arg(long, value_name = "KEY=VALUE")]
    grader_env: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Run {
    backend: String,
    concurrency: u32,
    tool: String,
    submissions: usize,
    graded: u64,
    failed: u64,
    wall_s: f64,
    per_second: f64,
    /// `grader`'s own peak RSS (VmHWM), MiB.
    peak_rss_mib: f64,
    /// `ru_maxrss` of wait4 (the largest of grader and the children it reaped), MiB.
    maxrss_with_children_mib: f64,
    cpu_s: f64,
    /// Most threads and open file descriptors of `grader` at once.
    max_threads: u64,
    max_fds: u64,
    /// Kube: most grading pods present / not yet finished at once (admin watch).
    max_pods_present: Option<usize>,
    max_pods_running: Option<usize>,
    load_after: String,
}

#[derive(Debug, Serialize)]
struct Results {
    load_before: String,
    load_after: String,
    runs: Vec<Run>,
}

fn write_config(path: &Path, backend: &str, service: &Path, tool: &str) -> anyhow::Result<()> {
    let mut text = format!(
        "backend = \"{backend}\"\nservice_dir = {}\nconvert_executable = {}\nmax_grading_time = 600\n",
        toml_str(&service.to_string_lossy()),
        toml_str(tool)
    );
    if backend == "kube" {
        text.push_str(&format!(
            "[kube]\ncontext = \"testkit\"\nnamespace = \"{NAMESPACE}\"\n"
        ));
    }
    std::fs::write(path, text)?;
    Ok(())
}

struct Batch<'a> {
    grader: &'a Path,
    extra_env: Vec<(String, String)>,
    service: PathBuf,
    logs: PathBuf,
    submissions: usize,
}

impl Batch<'_> {
    fn run(
        &self,
        backend: &str,
        config: &Path,
        tool: &str,
        concurrency: u32,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Run> {
        let name = format!(
            "{backend}-c{concurrency}-{}",
            tool.rsplit('/').next().unwrap_or(tool)
        );
        let results = self.logs.join(format!("{name}-results"));
        let _ = std::fs::remove_dir_all(&results);
        let mut cmd = Command::new(self.grader);
        cmd.arg("--config")
            .arg(config)
            .arg("batch")
            .arg(self.service.join("jobs.jsonl"))
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--progress",
                "none",
                "--results",
            ])
            .arg(&results);
        for (k, v) in env {
            cmd.env(k, v);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let m = proc::run(&mut cmd, &self.logs, &name, true)?;
        let summary_path = results.join("summary.json");
        let summary: Value = serde_json::from_slice(
            &std::fs::read(&summary_path)
                .with_context(|| format!("read {}", summary_path.display()))?,
        )?;
        let graded = summary["graded"].as_u64().unwrap_or(0);
        let failed = summary["failed"].as_u64().unwrap_or(0);
        if m.code != 0 || graded as usize != self.submissions {
            bail!(
                "grader batch ({name}) exited {} with {graded} graded, {failed} failed: {}; see {}",
                m.code,
                summary["failures"],
                self.logs.display()
            );
        }
        let wall_s = m.wall.as_secs_f64();
        let run = Run {
            backend: backend.into(),
            concurrency,
            tool: tool.into(),
            submissions: self.submissions,
            graded,
            failed,
            wall_s,
            per_second: graded as f64 / wall_s,
            peak_rss_mib: m.own_hwm_kib as f64 / 1024.0,
            maxrss_with_children_mib: m.maxrss_with_children_kib as f64 / 1024.0,
            cpu_s: m.cpu.as_secs_f64(),
            max_threads: m.max_threads,
            max_fds: m.max_fds,
            max_pods_present: None,
            max_pods_running: None,
            load_after: report::load_average(),
        };
        eprintln!(
            "batch: {backend} concurrency {concurrency}: {graded} graded in {wall_s:.1} s ({:.1}/s), peak RSS {:.1} MiB",
            run.per_second, run.peak_rss_mib
        );
        Ok(run)
    }
}

pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    let grader = std::fs::canonicalize(&args.grader)
        .with_context(|| format!("grader binary {}", args.grader.display()))?;
    if args.submissions == 0 || !args.submissions.is_multiple_of(4) {
        bail!("--submissions must be a positive multiple of 4");
    }
    let load_before = report::load_average();
    let mut runs = Vec::new();
    for backend in &args.backends {
        let work = Work::new(&format!("grader-bench-batch-{backend}-"))?;
        let service = work.path().join("service");
        workdir::make_service_dir(root, &service, args.submissions / 4)?;
        let logs = work.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let batch = Batch {
            grader: &grader,
            extra_env: args
                .grader_env
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service: service.clone(),
            logs,
            submissions: args.submissions,
        };
        let tool = workdir::trivial_tool(&work.path().join("trivial-tool"), 0)?;
        match backend.as_str() {
            "local" => {
                let config = work.path().join("grader-local.toml");
                write_config(&config, "local", &service, &tool.to_string_lossy())?;
                for &c in &args.concurrency {
                    runs.push(batch.run("local", &config, &tool.to_string_lossy(), c, &[])?);
                }
            }
            "kube" => {
                let slow = workdir::trivial_tool(
                    &work.path().join("trivial-tool-sleep"),
                    args.inflight_sleep,
                )?;
                let slow_name = format!("bench-tool-sleep-{}s", args.inflight_sleep);
                let executables = BTreeMap::from([
                    ("grader-convert".to_string(), tool.clone()),
                    (slow_name.clone(), slow),
                ]);
                eprintln!("batch: starting the test control plane");
                let cluster = Cluster::start(&service, executables).await?;
                let kubeconfig = cluster.cp.kubeconfig_path().to_path_buf();
                let config = work.path().join("grader-kube.toml");
                write_config(&config, "kube", &service, "grader-convert")?;
                let slow_config = work.path().join("grader-kube-slow.toml");
                write_config(&slow_config, "kube", &service, &slow_name)?;
                let env = [("KUBECONFIG", kubeconfig.as_path())];
                let mut plan: Vec<(u32, &Path, &str)> = args
                    .concurrency
                    .iter()
                    .map(|&c| (c, config.as_path(), "grader-convert"))
                    .collect();
                if args.kube_inflight > 0 {
                    plan.push((
                        args.kube_inflight,
                        slow_config.as_path(),
                        slow_name.as_str(),
                    ));
                }
                for (c, config, tool) in plan {
                    cluster.wait_empty(Duration::from_secs(120)).await?;
                    cluster.tracker.reset_peaks();
                    let batch_run = {
                        let (batch, config, tool) =
                            (&batch, config.to_path_buf(), tool.to_string());
                        let env = env.map(|(k, v)| (k, v.to_path_buf()));
                        // The control plane and node agent live on this runtime: wait off it.
                        tokio::task::block_in_place(|| {
                            let env: Vec<(&str, &Path)> =
                                env.iter().map(|(k, v)| (*k, v.as_path())).collect();
                            batch.run("kube", &config, &tool, c, &env)
                        })
                    };
                    let mut r = batch_run?;
                    let (present, running) = cluster.tracker.peaks();
                    r.max_pods_present = Some(present);
                    r.max_pods_running = Some(running);
                    runs.push(r);
                }
                cluster.stop().await;
            }
            other => bail!("unknown backend {other:?} (local, kube)"),
        }
    }
    let results = Results {
        load_before,
        load_after: report::load_average(),
        runs,
    };
    let md = markdown(&results, &args);
    report::write(out, "batch", &results, &md)
}

fn markdown(r: &Results, args: &Args) -> String {
    let mut t = Table::new(&[
        "backend",
        "concurrency",
        "grading tool",
        "submissions/s",
        "wall s",
        "peak RSS of grader, MiB",
        "CPU s (grader + git + tool)",
        "threads / fds of grader (max)",
        "pods in flight (max)",
    ]);
    for run in &r.runs {
        let tool = if run.tool.contains("sleep") {
            format!("sleeps {} s", args.inflight_sleep)
        } else {
            "trivial".into()
        };
        t.row(vec![
            run.backend.clone(),
            run.concurrency.to_string(),
            tool,
            format!("**{:.1}**", run.per_second),
            format!("{:.1}", run.wall_s),
            format!("**{:.1}**", run.peak_rss_mib),
            format!("{:.1}", run.cpu_s),
            format!("{} / {}", run.max_threads, run.max_fds),
            run.max_pods_present.map_or("-".into(), |p| p.to_string()),
        ]);
    }
    let inflight = r
        .runs
        .iter()
        .filter(|x| {
            x.backend == "kube" && x.concurrency == args.kube_inflight && x.tool.contains("sleep")
        })
        .map(|x| (x.peak_rss_mib, x.max_pods_present.unwrap_or(0)))
        .next();
    let verdict = match inflight {
        Some((rss, pods)) => format!(
            "With {pods} grading pods in flight at once the peak RSS of `grader` was {rss:.1} MiB \
             (target < 50 MiB: {}).",
            if rss < 50.0 { "met" } else { "MISSED" }
        ),
        None => String::new(),
    };
    format!(
        "### Batch throughput and memory\n\n\
         `grader batch` of {} submissions of the example course with a trivial grading tool (a \
         shell script that copies the notebooks to the output dir and exits 0; the pipeline \
         still exports with git, writes the gradebook, commits and reads it back). Kube: the \
         real `grader` binary against the test control plane, the node agent running the tool \
         as each pod's process (on the same 2 cores). Submissions/s = graded / wall time of the \
         whole `grader` process. Peak RSS = `VmHWM` of the `grader` process. Load average \
         before / after: {} / {}.\n\n{}\n{verdict}\n",
        args.submissions,
        r.load_before,
        r.load_after,
        t.render(),
    )
}

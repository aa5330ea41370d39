//! `grader serve` (project issue 14): submissions of the example course sent one at a time
//! through `grader submit --wait` to a running `grader serve` whose warm worker stays
//! imported between jobs, side by side in the same run with the reference's in-process
//! executor (`bench/reference_inprocess.py`) and a cold `grader autograde` per submission.
//!
//! Issue 14's targets: per submission at most 0.9× the reference's in-process time, and the
//! HTTP hop (the `grader submit --wait` process's wall time minus the outcome's
//! `duration_ms`: client start, configuration, job file, request, queueing, long-poll answer)
//! under 5 ms at the median.
//!
//! Every outcome must carry the score `examples/make-service-dir.sh` expects; served ones
//! the backend `local-warm`, cold ones `local`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::proc;
use crate::report::{self, Table};
use crate::stats::quantile;
use crate::warm::{Bench, Reference, fresh_service};
use crate::workdir::{Work, toml_str};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `grader` binary (a release build).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/grader"))]
    grader: PathBuf,
    /// The grading tool, `grader-convert` (`bash scripts/setup-venv.sh | tail -1` prints it).
    #[arg(long, required_unless_present = "from_json")]
    convert: Option<PathBuf>,
    /// Submissions: the first N jobs of the example course (alice, bob, carol, dave, alice-2, ...).
    #[arg(long, default_value_t = 20)]
    submissions: usize,
    /// The tool's Python, for `bench/reference_inprocess.py` (default: `python` next to
    /// `--convert`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Measure nothing: write `serve.md` again from an earlier `serve.json`.
    #[arg(long, value_name = "SERVE.json")]
    from_json: Option<PathBuf>,
}

/// How long `grader serve` may take to answer `/readyz` (the warm worker imports the tool).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Median, 95th percentile, mean, min and max of a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Dist {
    n: usize,
    median: f64,
    p95: f64,
    mean: f64,
    min: f64,
    max: f64,
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
        p95: quantile(&v, 0.95),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// One submission graded by one of the two `grader` ways.
#[derive(Debug, Serialize, Deserialize)]
struct Graded {
    submission_id: u64,
    score: f64,
    backend: String,
    /// The client process (`grader submit --wait` or `grader autograde`), fork to wait4.
    wall_s: f64,
    /// The outcome's `duration_ms`: the pipeline of the submission.
    duration_ms: f64,
    /// wall_s − duration_ms, in ms.
    outside_ms: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Served {
    /// Spawning `grader serve` to its first 200 from `/readyz` (the warm worker imported).
    startup_s: f64,
    config: String,
    per_submission_s: Dist,
    duration_ms: Dist,
    /// The HTTP hop: submit --wait wall time minus the outcome's duration_ms.
    hop_ms: Dist,
    graded: Vec<Graded>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cold {
    config: String,
    per_submission_s: Dist,
    duration_ms: Dist,
    graded: Vec<Graded>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Results {
    submissions: usize,
    load_before: String,
    load_after: String,
    serve: Served,
    cold: Cold,
    /// The reference's in-process time per submission (import excluded), seconds.
    reference_inprocess_s: Dist,
    reference: Reference,
}

/// One request over the Unix socket; the status code.
fn http_status(socket: &Path, path: &str) -> Option<u16> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Writes each of the first jobs of `service`'s `jobs-N.jsonl` as its own job file (next to
/// the service's own job files, so relative paths resolve alike); returns them by id.
fn job_files(service: &Path, jobs: &Path) -> anyhow::Result<BTreeMap<u64, PathBuf>> {
    let mut files = BTreeMap::new();
    for line in std::fs::read_to_string(jobs)?
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)?;
        let id = v["submission"]["id"]
            .as_u64()
            .context("job without submission.id")?;
        let path = service.join(format!("jobs/bench-{id}.json"));
        std::fs::write(&path, line)?;
        files.insert(id, path);
    }
    Ok(files)
}

/// Reads the outcome `name` printed and checks its score and backend.
fn graded(
    logs: &Path,
    name: &str,
    id: u64,
    want: f64,
    backend: &str,
    wall_s: f64,
) -> anyhow::Result<Graded> {
    let stdout = logs.join(format!("{name}.stdout"));
    let o: Value = serde_json::from_slice(&std::fs::read(&stdout)?)
        .with_context(|| format!("{name}: no outcome on stdout; see {}", stdout.display()))?;
    let score = o["score"].as_f64();
    if o["status"] != "automatically_graded" || score != Some(want) {
        bail!(
            "{name}: submission {id} ended {} with score {score:?}, expected {want}: {}",
            o["status"],
            o["error"]
        );
    }
    if o["backend"] != backend {
        bail!(
            "{name}: submission {id} was graded with backend {}, not {backend}",
            o["backend"]
        );
    }
    let duration_ms = o["duration_ms"].as_f64().unwrap_or(f64::NAN);
    Ok(Graded {
        submission_id: id,
        score: want,
        backend: backend.into(),
        wall_s,
        duration_ms,
        outside_ms: wall_s * 1000.0 - duration_ms,
    })
}

fn config_text(service: &Path, convert: &Path, serve: Option<&Path>) -> String {
    let mut text = format!(
        "backend = \"local\"\nservice_dir = {}\nconvert_executable = {}\nmax_grading_time = 600\n",
        toml_str(&service.to_string_lossy()),
        toml_str(&convert.to_string_lossy())
    );
    if let Some(socket) = serve {
        // Warm workers are on by default in serve: one per slot.
        text.push_str(&format!(
            "[serve]\nsocket = {}\nconcurrency = 1\n",
            toml_str(&socket.to_string_lossy())
        ));
    }
    text
}

/// Stops `grader serve` with SIGTERM (its warm worker exits with it) and waits.
fn stop(mut child: Child) -> anyhow::Result<()> {
    let pid = i32::try_from(child.id()).context("pid")?;
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("grader serve did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn served(b: &Bench) -> anyhow::Result<Served> {
    let dir = b.work.join("serve");
    let (service, jobs, expected) = fresh_service(b.root, &dir, b.submissions)?;
    let files = job_files(&service, &jobs)?;
    let socket = dir.join("grader.sock");
    let config = dir.join("grader.toml");
    let config_text = config_text(&service, b.convert, Some(&socket));
    std::fs::write(&config, &config_text)?;
    let stderr = std::fs::File::create(b.logs.join("serve.stderr"))?;
    eprintln!("serve: starting grader serve (one warm worker)");
    let spawned = Instant::now();
    let child = Command::new(b.grader)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "--log", "info", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("spawn grader serve")?;
    let mut child = Some(child);
    let result = (|| {
        loop {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("grader serve exited early ({status}); see its log in the work dir");
            }
            if http_status(&socket, "/readyz") == Some(200) {
                break;
            }
            if spawned.elapsed() > READY_TIMEOUT {
                bail!("grader serve not ready within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let startup_s = spawned.elapsed().as_secs_f64();
        let mut graded_all = Vec::new();
        for (&id, &want) in &expected {
            let name = format!("submit-{id}");
            let mut cmd = Command::new(b.grader);
            cmd.arg("--config")
                .arg(&config)
                .args(["submit", "--wait", "--job"])
                .arg(&files[&id]);
            let m = proc::run(&mut cmd, &b.logs, &name, false)?;
            if m.code != 0 {
                bail!("grader submit --wait ({name}) exited {}", m.code);
            }
            let g = graded(&b.logs, &name, id, want, "local-warm", m.wall.as_secs_f64())?;
            eprintln!(
                "serve: submission {id}: {:.3} s (hop {:.1} ms)",
                g.wall_s, g.outside_ms
            );
            graded_all.push(g);
        }
        Ok((startup_s, graded_all))
    })();
    if let Some(c) = child.take() {
        stop(c)?;
    }
    let (startup_s, graded_all) = result?;
    Ok(Served {
        startup_s,
        config: config_text,
        per_submission_s: dist(&graded_all.iter().map(|g| g.wall_s).collect::<Vec<_>>()),
        duration_ms: dist(&graded_all.iter().map(|g| g.duration_ms).collect::<Vec<_>>()),
        hop_ms: dist(&graded_all.iter().map(|g| g.outside_ms).collect::<Vec<_>>()),
        graded: graded_all,
    })
}

fn cold(b: &Bench) -> anyhow::Result<Cold> {
    let dir = b.work.join("cold");
    let (service, jobs, expected) = fresh_service(b.root, &dir, b.submissions)?;
    let files = job_files(&service, &jobs)?;
    let config = dir.join("grader.toml");
    let config_text = config_text(&service, b.convert, None);
    std::fs::write(&config, &config_text)?;
    let mut graded_all = Vec::new();
    for (&id, &want) in &expected {
        let name = format!("autograde-{id}");
        let mut cmd = Command::new(b.grader);
        cmd.arg("--config")
            .arg(&config)
            .args(["autograde", "--job"])
            .arg(&files[&id]);
        let m = proc::run(&mut cmd, &b.logs, &name, false)?;
        if m.code != 0 {
            bail!("grader autograde ({name}) exited {}", m.code);
        }
        let g = graded(&b.logs, &name, id, want, "local", m.wall.as_secs_f64())?;
        eprintln!(
            "serve: cold autograde of submission {id}: {:.3} s",
            g.wall_s
        );
        graded_all.push(g);
    }
    Ok(Cold {
        config: config_text,
        per_submission_s: dist(&graded_all.iter().map(|g| g.wall_s).collect::<Vec<_>>()),
        duration_ms: dist(&graded_all.iter().map(|g| g.duration_ms).collect::<Vec<_>>()),
        graded: graded_all,
    })
}

/// Runs the benchmark and writes `serve.json` and `serve.md` to `out`.
pub async fn run(root: &Path, out: &Path, args: Args) -> anyhow::Result<()> {
    if let Some(path) = &args.from_json {
        let results: Results = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
        )
        .with_context(|| format!("parse {}", path.display()))?;
        let md = markdown(&results);
        std::fs::write(out.join("serve.md"), &md)?;
        println!("{md}");
        return Ok(());
    }
    let grader = std::fs::canonicalize(&args.grader)
        .with_context(|| format!("grader binary {}", args.grader.display()))?;
    let convert = args.convert.as_ref().context("--convert is required")?;
    let convert = std::fs::canonicalize(convert)
        .with_context(|| format!("grading tool {}", convert.display()))?;
    let python = match &args.python {
        Some(p) => p.clone(),
        None => convert
            .parent()
            .context("--convert has no parent directory")?
            .join("python"),
    };
    if !python.exists() {
        bail!("no Python at {} (pass --python)", python.display());
    }
    if args.submissions == 0 {
        bail!("--submissions must be positive");
    }
    let load_before = report::load_average();
    let work = Work::new("grader-bench-serve-")?;
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
    // One heavy thing at a time.
    let serve = served(&bench)?;
    let reference = bench.reference(&python)?;
    let cold = cold(&bench)?;
    let inprocess: Vec<f64> = reference.output["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| r["inprocess_s"].as_f64().unwrap_or(f64::NAN))
                .collect()
        })
        .unwrap_or_default();
    let results = Results {
        submissions: args.submissions,
        load_before,
        load_after: report::load_average(),
        serve,
        cold,
        reference_inprocess_s: dist(&inprocess),
        reference,
    };
    let md = markdown(&results);
    report::write(out, "serve", &results, &md)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn s3(x: f64) -> String {
    format!("{x:.3}")
}

fn markdown(r: &Results) -> String {
    let mut t = Table::new(&[
        "way",
        "median s",
        "p95 s",
        "mean s",
        "min s",
        "max s",
        "one-time start-up s",
    ]);
    let row = |t: &mut Table, label: &str, d: &Dist, startup: String| {
        t.row(vec![
            label.into(),
            format!("**{}**", s3(d.median)),
            s3(d.p95),
            s3(d.mean),
            s3(d.min),
            s3(d.max),
            startup,
        ]);
    };
    row(
        &mut t,
        "`grader submit --wait` to `grader serve` (one warm worker)",
        &r.serve.per_submission_s,
        format!("{:.2} (serve ready)", r.serve.startup_s),
    );
    row(
        &mut t,
        "reference in-process (`bench/reference_inprocess.py`)",
        &r.reference_inprocess_s,
        format!("{:.2} (import)", r.reference.import_s),
    );
    row(
        &mut t,
        "cold `grader autograde` per submission",
        &r.cold.per_submission_s,
        "-".into(),
    );
    let mut h = Table::new(&["HTTP hop (submit --wait wall − `duration_ms`)", "ms"]);
    let hop = &r.serve.hop_ms;
    for (k, v) in [
        ("median", hop.median),
        ("p95", hop.p95),
        ("mean", hop.mean),
        ("min", hop.min),
        ("max", hop.max),
    ] {
        h.row(vec![k.into(), report::ms(v)]);
    }
    let serve = r.serve.per_submission_s.median;
    let reference = r.reference_inprocess_s.median;
    let ratio = serve / reference;
    let mean_ratio = r.serve.per_submission_s.mean / r.reference_inprocess_s.mean;
    format!(
        "### `grader serve`\n\n\
         {n} submissions of the example course (alice, bob, carol, dave, repeated) with the real \
         grading tool, each way on its own fresh service directory, every outcome checked \
         against the expected score. Served: `grader serve` (`concurrency = 1`, warm workers by \
         default: one), each submission sent after the previous one ended with `grader submit \
         --wait --job J` over the Unix socket; time per submission = that client process's wall \
         time (fork to exit: client start, configuration, job file, request, grading, long-poll \
         answer, printing). Reference: `bench/reference_inprocess.py` with the tool's own \
         Python, the same submissions one after another in one process that imported the tool \
         once (its git checkout untimed; grader's git export and commit are timed). Cold: one \
         `grader autograde --job J` process per submission (the tool imported every time). \
         Load average before / after: {} / {}.\n\n{}\n{}\n\
         Targets: per submission at most 0.9× the reference's in-process time: served median \
         {} s = {ratio:.2}× the reference's {} s: {} (means: {} s vs {} s, {mean_ratio:.2}×). \
         HTTP hop under 5 ms at the median: {} ms: {}. Cold `grader autograde` median {} s: \
         served is {:.1}× as fast.\n",
        r.load_before,
        r.load_after,
        t.render(),
        h.render(),
        s3(serve),
        s3(reference),
        verdict(ratio <= 0.9),
        s3(r.serve.per_submission_s.mean),
        s3(r.reference_inprocess_s.mean),
        report::ms(hop.median),
        verdict(hop.median < 5.0),
        s3(r.cold.per_submission_s.median),
        r.cold.per_submission_s.median / serve,
        n = r.submissions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_gives_median_p95_and_mean() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let d = dist(&v);
        assert_eq!(d.n, 20);
        assert_eq!(d.median, 10.5);
        assert!((d.p95 - 19.05).abs() < 1e-9, "{d:?}");
        assert_eq!(d.mean, 10.5);
        assert_eq!((d.min, d.max), (1.0, 20.0));
    }
}

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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Served submissions: where the hop went, from the service's timeline of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    split: Option<Split>,
}

/// One served submission's wall time cut at the service's timeline of its job
/// (`GET /v1/jobs`: `timeline`, µs since the epoch; the client's fork and reaping from the
/// bench's own clock), in ms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Split {
    /// Fork of `grader submit` → the service has read its request: process start,
    /// configuration, job file, connecting, sending.
    client_to_received_ms: f64,
    /// Request read → pipeline started: checks, queueing, the runner task, a slot.
    received_to_started_ms: f64,
    /// The pipeline as the service timed it (µs), started → returned.
    pipeline_ms: f64,
    /// `pipeline_ms − duration_ms`: the executor's work outside its own clock plus
    /// `duration_ms`'s truncation to whole ms.
    pipeline_over_duration_ms: f64,
    /// Pipeline returned → job final and its waiter woken (outcome file, registry).
    ended_to_settled_ms: f64,
    /// Waiter woken → outcome answer handed to HTTP (long-poll wake-up, serialisation).
    settled_to_answered_ms: f64,
    /// Answer handed to HTTP → `grader submit` reaped: writing and reading the answer,
    /// printing, exiting.
    answered_to_exit_ms: f64,
}

/// The service's timeline of one job, µs since the Unix epoch.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Timeline {
    received_us: u64,
    started_us: Option<u64>,
    ended_us: Option<u64>,
    settled_us: Option<u64>,
    answered_us: Option<u64>,
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
    /// The hop's parts (see [`Split`]), each over the submissions, by name.
    #[serde(default)]
    hop_split_ms: BTreeMap<String, Dist>,
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

/// `GET path` over the Unix socket: the JSON body of a 200 answer.
fn http_get_json(socket: &Path, path: &str) -> anyhow::Result<Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connect {}", socket.display()))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: no HTTP answer"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).with_context(|| format!("GET {path}: not JSON"))
}

/// The service's timeline of the job it finished last, which must be submission `id`'s.
fn last_timeline(socket: &Path, id: u64) -> anyhow::Result<Timeline> {
    let jobs = http_get_json(socket, "/v1/jobs")?;
    let job = jobs["recent"]
        .as_array()
        .and_then(|r| r.last())
        .map(|r| &r["job"])
        .context("GET /v1/jobs: no finished job")?;
    if job["submission_id"].as_u64() != Some(id) {
        bail!(
            "GET /v1/jobs: the last finished job is submission {}, not {id}",
            job["submission_id"]
        );
    }
    serde_json::from_value(job["timeline"].clone()).context("GET /v1/jobs: no timeline")
}

/// Cuts a served submission's wall time (fork at `forked`, reaped `wall_s` later) at the
/// service's timeline.
fn split(forked: SystemTime, wall_s: f64, duration_ms: f64, t: &Timeline) -> Option<Split> {
    let fork_us = forked.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1e6;
    let exit_us = fork_us + wall_s * 1e6;
    let (started, ended) = (t.started_us? as f64, t.ended_us? as f64);
    let (settled, answered) = (t.settled_us? as f64, t.answered_us? as f64);
    let received = t.received_us as f64;
    let ms = |a: f64, b: f64| (b - a) / 1000.0;
    Some(Split {
        client_to_received_ms: ms(fork_us, received),
        received_to_started_ms: ms(received, started),
        pipeline_ms: ms(started, ended),
        pipeline_over_duration_ms: ms(started, ended) - duration_ms,
        ended_to_settled_ms: ms(ended, settled),
        settled_to_answered_ms: ms(settled, answered),
        answered_to_exit_ms: ms(answered, exit_us),
    })
}

/// The parts of [`Split`] in the order they happen, with their labels.
const SPLIT_PARTS: [(&str, &str); 6] = [
    (
        "client_to_received_ms",
        "`grader submit` forked → service read its request (process start, configuration, job file, connect, send)",
    ),
    (
        "received_to_started_ms",
        "request read → pipeline started (checks, queue, runner task, slot)",
    ),
    (
        "pipeline_over_duration_ms",
        "pipeline started → returned, beyond `duration_ms` (executor outside its clock + ms truncation)",
    ),
    (
        "ended_to_settled_ms",
        "pipeline returned → job final, waiter woken",
    ),
    (
        "settled_to_answered_ms",
        "waiter woken → outcome answer handed to HTTP (long-poll wake-up, serialisation)",
    ),
    (
        "answered_to_exit_ms",
        "answer handed to HTTP → `grader submit` reaped (transfer, printing, exit)",
    ),
];

fn split_dists(graded: &[Graded]) -> BTreeMap<String, Dist> {
    let splits: Vec<Split> = graded.iter().filter_map(|g| g.split).collect();
    let value = |s: &Split, name: &str| match name {
        "client_to_received_ms" => s.client_to_received_ms,
        "received_to_started_ms" => s.received_to_started_ms,
        "pipeline_ms" => s.pipeline_ms,
        "pipeline_over_duration_ms" => s.pipeline_over_duration_ms,
        "ended_to_settled_ms" => s.ended_to_settled_ms,
        "settled_to_answered_ms" => s.settled_to_answered_ms,
        "answered_to_exit_ms" => s.answered_to_exit_ms,
        _ => f64::NAN,
    };
    let mut names: Vec<&str> = SPLIT_PARTS.iter().map(|(n, _)| *n).collect();
    names.push("pipeline_ms");
    names
        .into_iter()
        .map(|n| {
            let v: Vec<f64> = splits.iter().map(|s| value(s, n)).collect();
            (n.to_string(), dist(&v))
        })
        .collect()
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
        split: None,
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
            let forked = SystemTime::now();
            let m = proc::run(&mut cmd, &b.logs, &name, false)?;
            if m.code != 0 {
                bail!("grader submit --wait ({name}) exited {}", m.code);
            }
            let mut g = graded(&b.logs, &name, id, want, "local-warm", m.wall.as_secs_f64())?;
            // After the timed run: the service's side of it.
            let timeline = last_timeline(&socket, id)?;
            g.split = split(forked, g.wall_s, g.duration_ms, &timeline);
            eprintln!(
                "serve: submission {id}: {:.3} s (hop {:.1} ms: {})",
                g.wall_s,
                g.outside_ms,
                g.split.map_or("-".into(), |s| format!(
                    "client {:.2} + queue {:.2} + pipeline beyond duration_ms {:.2} + settle {:.3} + answer {:.2} + to exit {:.2}",
                    s.client_to_received_ms,
                    s.received_to_started_ms,
                    s.pipeline_over_duration_ms,
                    s.ended_to_settled_ms,
                    s.settled_to_answered_ms,
                    s.answered_to_exit_ms
                ))
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
        hop_split_ms: split_dists(&graded_all),
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
    let split = if r.serve.hop_split_ms.is_empty() {
        String::new()
    } else {
        let mut t = Table::new(&[
            "part of the hop",
            "median ms",
            "p95 ms",
            "mean ms",
            "max ms",
        ]);
        let mut sum = 0.0;
        for (name, label) in SPLIT_PARTS {
            let d = r.serve.hop_split_ms.get(name).copied().unwrap_or_default();
            sum += d.median;
            t.row(vec![
                label.into(),
                report::ms(d.median),
                report::ms(d.p95),
                report::ms(d.mean),
                report::ms(d.max),
            ]);
        }
        format!(
            "Where the hop goes: each served submission's wall time cut at the service's \
             timeline of its job (`timeline` in `GET /v1/jobs`, µs; the fork and the reaping \
             of `grader submit` from the bench's clock). The medians of the parts add up to \
             {} ms.\n\n{}\n",
            report::ms(sum),
            t.render()
        )
    };
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
         Load average before / after: {} / {}.\n\n{}\n{}\n{split}\
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

    #[test]
    fn the_split_cuts_the_wall_time_into_parts_that_add_up_to_the_hop() {
        let forked = UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms: f64| 1_000_000_000 + (ms * 1000.0) as u64;
        let t = Timeline {
            received_us: at(2.5),
            started_us: Some(at(2.75)),
            ended_us: Some(at(802.75)),
            settled_us: Some(at(802.8)),
            answered_us: Some(at(803.0)),
        };
        let (wall_s, duration_ms) = (0.804, 799.0);
        let s = split(forked, wall_s, duration_ms, &t).unwrap();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(near(s.client_to_received_ms, 2.5), "{s:?}");
        assert!(near(s.received_to_started_ms, 0.25), "{s:?}");
        assert!(near(s.pipeline_ms, 800.0), "{s:?}");
        assert!(near(s.pipeline_over_duration_ms, 1.0), "{s:?}");
        assert!(near(s.ended_to_settled_ms, 0.05), "{s:?}");
        assert!(near(s.settled_to_answered_ms, 0.2), "{s:?}");
        assert!(near(s.answered_to_exit_ms, 1.0), "{s:?}");
        let parts = s.client_to_received_ms
            + s.received_to_started_ms
            + s.pipeline_over_duration_ms
            + s.ended_to_settled_ms
            + s.settled_to_answered_ms
            + s.answered_to_exit_ms;
        assert!(near(parts, wall_s * 1000.0 - duration_ms), "{parts}");
        // A job the service never answered has no split.
        let unanswered = Timeline {
            answered_us: None,
            ..t
        };
        assert!(split(forked, wall_s, duration_ms, &unanswered).is_none());
    }
}

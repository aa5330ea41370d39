//! `GET /metrics`: the service in the Prometheus text format (version 0.0.4), written by
//! hand from the registry's [`Snapshot`] and the backend's own statistics (no client
//! library: a dozen series do not need one).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `grader_jobs_accepted_total` | counter | |
//! | `grader_jobs_deduplicated_total` | counter | |
//! | `grader_jobs_refused_total` | counter | `reason` (`queue_full`) |
//! | `grader_jobs_finished_total` | counter | `kind`, `result`, `failure` |
//! | `grader_grading_duration_seconds` | histogram | `kind` |
//! | `grader_queue_depth`, `grader_queue_limit` | gauge | |
//! | `grader_jobs_running`, `grader_concurrency` | gauge | |
//! | `grader_accepting_jobs`, `grader_backend_ready` | gauge | `backend` (ready only) |
//! | `grader_warm_workers` | gauge | `state` (`busy`, `idle`) |
//! | `grader_warm_worker_events_total` | counter | `event` |
//! | `grader_kube_pods_in_flight` | gauge | |
//! | `grader_kube_api_requests_total` | counter | `verb` |
//!
//! `result` is the outcome's status for jobs that ran to their end (`automatically_graded`,
//! `grading_failed`, ...) or the state of a stopped job (`cancelled`, `interrupted`);
//! `failure` is the outcome's failure kind (`timed_out`, `tool_exited`, ...) or `none`.

use std::fmt::Write;

use grader_kube::KubeBackend;
use grader_local::{Executor, WarmBackend};

use super::registry::Snapshot;

/// Upper bounds (seconds) of the grading duration histogram: from a warm job on a small
/// notebook (~0.5 s) to the longest sensible grading time.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A cumulative histogram over [`DURATION_BUCKETS`] (plus `+Inf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or under each bound (not yet cumulative).
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Counts one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// What the backend adds to the metrics, read from the executor's backend.
#[derive(Debug, Clone, Default)]
pub struct BackendStats {
    /// Warm workers `(busy, idle)` and the pool's events, when the backend is the warm one
    /// with a pool.
    pub warm: Option<((usize, usize), grader_local::warm::PoolStats)>,
    /// The kube backend's pods in flight and requests.
    pub kube: Option<grader_kube::KubeStats>,
}

impl BackendStats {
    /// The statistics of `exec`'s backend, if it is one that keeps any.
    pub fn of(exec: &Executor) -> BackendStats {
        let backend: &dyn std::any::Any = exec.backend();
        let mut stats = BackendStats::default();
        if let Some(pool) = backend
            .downcast_ref::<WarmBackend>()
            .and_then(WarmBackend::pool)
        {
            stats.warm = Some(((pool.busy(), pool.idle_pids().len()), pool.stats()));
        }
        if let Some(kube) = backend.downcast_ref::<KubeBackend>() {
            stats.kube = Some(kube.stats());
        }
        stats
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn seconds(x: f64) -> String {
    // Prometheus reads any float; keep integers short.
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// The metrics page: `snap` is the registry's picture, `backend` the backend's name once it
/// is built and its statistics.
pub fn render(snap: &Snapshot, backend: Option<(&str, BackendStats)>) -> String {
    let mut out = String::with_capacity(4096);
    let c = &snap.counters;

    header(
        &mut out,
        "grader_jobs_accepted_total",
        "counter",
        "Jobs accepted (deduplicated submissions not counted).",
    );
    let _ = writeln!(out, "grader_jobs_accepted_total {}", c.accepted);
    header(
        &mut out,
        "grader_jobs_deduplicated_total",
        "counter",
        "Submissions answered with the job already queued or running for the same submission, commit and kind.",
    );
    let _ = writeln!(out, "grader_jobs_deduplicated_total {}", c.deduplicated);
    header(
        &mut out,
        "grader_jobs_refused_total",
        "counter",
        "Submissions refused (429) because the queue was full.",
    );
    let _ = writeln!(
        out,
        "grader_jobs_refused_total{{reason=\"queue_full\"}} {}",
        c.refused_full
    );

    header(
        &mut out,
        "grader_jobs_finished_total",
        "counter",
        "Finished jobs by kind, result (the outcome's status, or cancelled/interrupted) and failure kind (none when graded).",
    );
    for ((kind, result, failure), n) in &c.outcomes {
        let _ = writeln!(
            out,
            "grader_jobs_finished_total{{kind=\"{kind}\",result=\"{}\",failure=\"{}\"}} {n}",
            label(result),
            label(failure)
        );
    }

    header(
        &mut out,
        "grader_grading_duration_seconds",
        "histogram",
        "Time from the start of a job's pipeline to its outcome, for jobs that started.",
    );
    for (kind, h) in &c.durations {
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "grader_grading_duration_seconds_bucket{{kind=\"{kind}\",le=\"{}\"}} {cumulative}",
                seconds(*bound)
            );
        }
        let _ = writeln!(
            out,
            "grader_grading_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "grader_grading_duration_seconds_sum{{kind=\"{kind}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "grader_grading_duration_seconds_count{{kind=\"{kind}\"}} {}",
            h.count
        );
    }

    gauge(
        &mut out,
        "grader_queue_depth",
        "Jobs waiting for a slot.",
        snap.queued.len(),
    );
    gauge(
        &mut out,
        "grader_queue_limit",
        "Most jobs that may wait (serve.queue_limit).",
        snap.queue_limit,
    );
    gauge(
        &mut out,
        "grader_jobs_running",
        "Jobs being graded.",
        snap.running.len(),
    );
    gauge(
        &mut out,
        "grader_concurrency",
        "Most jobs graded at once (serve.concurrency).",
        snap.concurrency,
    );
    gauge(
        &mut out,
        "grader_accepting_jobs",
        "1 while new jobs are taken, 0 once shutting down.",
        u8::from(snap.accepting),
    );
    header(
        &mut out,
        "grader_backend_ready",
        "gauge",
        "1 once the grading backend is built (warm workers started or fell back, kube client connected).",
    );
    match &backend {
        Some((name, _)) => {
            let _ = writeln!(out, "grader_backend_ready{{backend=\"{}\"}} 1", label(name));
        }
        None => {
            let _ = writeln!(out, "grader_backend_ready{{backend=\"\"}} 0");
        }
    }

    let stats = backend.map(|(_, s)| s).unwrap_or_default();
    if let Some(((busy, idle), pool)) = stats.warm {
        header(
            &mut out,
            "grader_warm_workers",
            "gauge",
            "Warm grading workers: busy (lent to a job, or being replaced) and idle (imported, waiting).",
        );
        let _ = writeln!(out, "grader_warm_workers{{state=\"busy\"}} {busy}");
        let _ = writeln!(out, "grader_warm_workers{{state=\"idle\"}} {idle}");
        header(
            &mut out,
            "grader_warm_worker_events_total",
            "counter",
            "What the warm pool did: workers started, failed starts, recycled, replaced; jobs run on a worker.",
        );
        for (event, n) in [
            ("started", pool.started),
            ("failed_start", pool.failed_starts),
            ("recycled", pool.recycled),
            ("replaced", pool.replaced),
            ("job", pool.jobs),
        ] {
            let _ = writeln!(
                out,
                "grader_warm_worker_events_total{{event=\"{event}\"}} {n}"
            );
        }
    }
    if let Some(kube) = stats.kube {
        gauge(
            &mut out,
            "grader_kube_pods_in_flight",
            "Grading pods created (or being created) and not yet finished with.",
            kube.pods_in_flight,
        );
        header(
            &mut out,
            "grader_kube_api_requests_total",
            "counter",
            "Kubernetes API requests by verb (watch: watch streams opened).",
        );
        for (verb, n) in kube.requests() {
            let _ = writeln!(out, "grader_kube_api_requests_total{{verb=\"{verb}\"}} {n}");
        }
    }
    out
}

/// Parses the samples of a metrics page: `name{labels}` → value.
#[cfg(test)]
fn parse(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_first_bucket_and_renders_cumulatively() {
        let mut h = Histogram::default();
        for s in [0.2, 0.5, 0.7, 4.0, 900.0] {
            h.observe(s);
        }
        assert_eq!(h.count, 5);
        let mut counters = super::super::registry::Counters::default();
        counters.durations.insert("autograde", h);
        let snap = Snapshot {
            running: vec![],
            queued: vec![],
            recent: vec![],
            counters,
            concurrency: 2,
            queue_limit: 10,
            accepting: true,
        };
        let m = parse(&render(&snap, None));
        let b = |le: &str| {
            m[&format!("grader_grading_duration_seconds_bucket{{kind=\"autograde\",le=\"{le}\"}}")]
        };
        assert_eq!(b("0.5"), 2.0);
        assert_eq!(b("1.0"), 3.0);
        assert_eq!(b("5.0"), 4.0);
        assert_eq!(b("600.0"), 4.0);
        assert_eq!(b("+Inf"), 5.0);
        assert_eq!(
            m["grader_grading_duration_seconds_sum{kind=\"autograde\"}"],
            905.4
        );
        assert_eq!(m["grader_backend_ready{backend=\"\"}"], 0.0);
        assert_eq!(m["grader_queue_limit"], 10.0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

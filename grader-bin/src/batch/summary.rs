//! What a batch did: counts by result and by failure kind, the score spread, the slowest jobs;
//! printed for people and written as `summary.json`.

use std::collections::BTreeMap;

use grader_local::{FailureKind, Outcome};
use serde::Serialize;

/// What the summary keeps of a finished job (not the whole outcome: a batch may be large).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The job's submission.
    pub submission_id: u64,
    /// Its score, when graded.
    pub score: Option<f64>,
    /// How long it took.
    pub duration_ms: u64,
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
    /// Failed jobs counted by the kind of failure.
    pub failure_kinds: BTreeMap<FailureKind, usize>,
    /// Outcomes that could not be written: submission id and why.
    pub write_errors: BTreeMap<u64, String>,
}

impl Summary {
    /// Counts a finished job's outcome: graded, or failed with its reason and kind.
    pub fn record(&mut self, outcome: &Outcome) {
        if outcome.status.is_success() {
            self.graded += 1;
        } else {
            self.failed += 1;
            self.failures.insert(
                outcome.submission_id,
                outcome.error.clone().unwrap_or_default(),
            );
            if let Some(kind) = outcome.failure {
                *self.failure_kinds.entry(kind).or_default() += 1;
            }
        }
    }

    /// Fills in the score spread, the slowest jobs and the rate, once every job finished.
    pub fn finish(&mut self, outcomes: &[Finished], wall: f64) {
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

    /// The summary for people, as `grader batch` prints it.
    pub fn render(&self) -> String {
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
        if !self.failure_kinds.is_empty() {
            let kinds: Vec<String> = self
                .failure_kinds
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            s.push_str(&format!("failures by kind: {}\n", kinds.join(", ")));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use grader_local::{JobKind, Status, Timings};
    use grader_model::AutoStatus;

    fn outcome(id: u64, score: Option<f64>, failure: Option<FailureKind>) -> Outcome {
        Outcome {
            submission_id: id,
            kind: JobKind::Autograde,
            status: Status::Auto(if failure.is_some() {
                AutoStatus::GradingFailed
            } else {
                AutoStatus::AutomaticallyGraded
            }),
            grading_score: score,
            score,
            max_score: score.map(|_| 6.0),
            backend: "local".into(),
            duration_ms: id * 100,
            timings: Timings::default(),
            branch: None,
            commit: None,
            failure,
            error: failure.map(|k| format!("because {k}")),
            logs: String::new(),
            gradebook: None,
        }
    }

    fn summarise(outcomes: &[Outcome]) -> Summary {
        let mut s = Summary {
            jobs: outcomes.len(),
            ..Summary::default()
        };
        let finished: Vec<Finished> = outcomes
            .iter()
            .map(|o| {
                s.record(o);
                Finished {
                    submission_id: o.submission_id,
                    score: o.score,
                    duration_ms: o.duration_ms,
                }
            })
            .collect();
        s.finish(&finished, 2.0);
        s
    }

    #[test]
    fn failures_are_counted_by_kind_and_shown() {
        let s = summarise(&[
            outcome(1, Some(6.0), None),
            outcome(2, None, Some(FailureKind::TimedOut)),
            outcome(3, None, Some(FailureKind::TimedOut)),
            outcome(4, None, Some(FailureKind::ToolExited)),
        ]);
        assert_eq!((s.graded, s.failed), (1, 3));
        assert_eq!(s.failure_kinds[&FailureKind::TimedOut], 2);
        assert_eq!(s.failure_kinds[&FailureKind::ToolExited], 1);
        let text = s.render();
        assert!(
            text.contains("failures by kind: 2 timed_out, 1 tool_exited"),
            "{text}"
        );
        assert!(text.contains("failed #2: because timed_out"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["failure_kinds"]["timed_out"], 2);
    }

    #[test]
    fn scores_spread_and_rate() {
        let s = summarise(&[
            outcome(1, Some(1.0), None),
            outcome(2, Some(4.0), None),
            outcome(3, Some(2.0), None),
            outcome(4, Some(6.0), None),
        ]);
        assert_eq!(s.score_min, Some(1.0));
        assert_eq!(s.score_max, Some(6.0));
        assert_eq!(
            s.score_median,
            Some(3.0),
            "even count: mean of the middle two"
        );
        assert_eq!(s.score_mean, Some(13.0 / 4.0));
        assert_eq!(s.per_second, 2.0);
        assert_eq!(s.slowest[0], (4, 400));
        let odd = summarise(&[
            outcome(1, Some(1.0), None),
            outcome(2, Some(5.0), None),
            outcome(3, Some(2.0), None),
        ]);
        assert_eq!(odd.score_median, Some(2.0));
    }

    #[test]
    fn no_scores_leave_the_spread_empty() {
        let s = summarise(&[outcome(1, None, Some(FailureKind::Workdir))]);
        assert_eq!(s.score_median, None);
        assert!(
            s.render()
                .contains("scores: min - / median - / mean - / max -")
        );
    }
}

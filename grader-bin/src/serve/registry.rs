//! The jobs a service knows: their states, the one-run-per-submission rule (dedup), the
//! bounded queue, retention of finished outcomes, and a read-only snapshot for status pages
//! and metrics.
//!
//! A job goes `queued` → `running` → `done`; `cancelled` (by `DELETE /v1/jobs/{id}`) and
//! `interrupted` (the service shut down) end it early. Every final state has an outcome: the
//! pipeline's, or for a job that never started one saying why (status `grading_failed` /
//! `generation_failed`). A job that graded successfully is `done` even when a stop came too
//! late to matter.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grader_local::Timings;

use super::metrics::Histogram;
use grader_local::{Job, JobKind, Outcome, Status};
use grader_model::{AutoStatus, FeedbackStatus};
use serde::{Serialize, Serializer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free slot (or for the backend to be ready).
    Queued,
    /// Being graded.
    Running,
    /// The pipeline ran to its end; the outcome says whether it graded.
    Done,
    /// Stopped by `DELETE /v1/jobs/{id}`.
    Cancelled,
    /// Stopped because the service shut down.
    Interrupted,
}

impl JobState {
    /// True once the job has its outcome.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    Interrupted,
}

impl Stop {
    fn state(self) -> JobState {
        match self {
            Stop::Cancelled => JobState::Cancelled,
            Stop::Interrupted => JobState::Interrupted,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Stop::Cancelled => "cancelled by a DELETE request",
            Stop::Interrupted => "interrupted: grader serve shut down",
        }
    }
}

/// The spelling of a job kind in the API.
pub fn kind_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Autograde => "autograde",
        JobKind::Feedback => "feedback",
    }
}

/// The status of an outcome as the API spells it (`automatically_graded`, ...).
pub fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch (the timeline's unit).
pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// When a job passed each step on the service's side, in microseconds since the Unix epoch:
/// what a client's wait is made of apart from the pipeline's own `duration_ms` (the HTTP hop,
/// measured by `grader-bench serve`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The submission's request was read (body included) and handed to its handler.
    pub received_us: u64,
    /// The job had a slot and the backend; its pipeline starts.
    pub started_us: Option<u64>,
    /// Its pipeline returned the outcome.
    pub ended_us: Option<u64>,
    /// The job was final and its waiters woken (after the outcome file, if any, was written).
    pub settled_us: Option<u64>,
    /// The outcome was first handed to the HTTP layer as an answer
    /// (`GET /v1/jobs/{id}/outcome`).
    pub answered_us: Option<u64>,
}

/// What identifies a job apart from its id: what it grades.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub kind: JobKind,
    pub submission_id: u64,
    pub commit_hash: String,
    pub username: String,
    pub lecture: String,
    pub assignment_id: u64,
    pub assignment: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

/// An outcome shared between the registry and its readers.
#[derive(Debug, Clone)]
pub struct SharedOutcome(pub Arc<Outcome>);

impl Serialize for SharedOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub info: JobInfo,
    pub state: JobState,
    /// Jobs ahead of it in the queue (queued jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    /// Whether it graded (final states only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// True once a cancel was asked for a job still running.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
    /// When it passed each step on the service's side.
    pub timeline: Timeline,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SharedOutcome>,
}

struct Entry {
    info: JobInfo,
    timeline: Timeline,
    state: JobState,
    stop: Option<Stop>,
    cancel: CancellationToken,
    outcome: Option<Arc<Outcome>>,
    changed: watch::Sender<JobState>,
}

/// One run per submission, commit and kind at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DedupKey {
    submission_id: u64,
    commit_hash: String,
    kind: &'static str,
}

impl DedupKey {
    fn of(info: &JobInfo) -> Self {
        DedupKey {
            submission_id: info.submission_id,
            commit_hash: info.commit_hash.clone(),
            kind: kind_name(info.kind),
        }
    }
}

/// Counters since the service started.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Jobs accepted (not counting deduplicated submissions).
    pub accepted: u64,
    /// Submissions answered with a job already queued or running.
    pub deduplicated: u64,
    /// Submissions refused because the queue was full.
    pub refused_full: u64,
    /// Finished jobs by kind and result: the outcome's status for `done`, else the state
    /// (`cancelled`, `interrupted`).
    pub finished: BTreeMap<(&'static str, String), u64>,
    /// Finished jobs by kind, result and failure kind (`none` when graded), for metrics.
    pub outcomes: BTreeMap<(&'static str, String, String), u64>,
    /// Grading durations of the jobs that started, by kind.
    pub durations: BTreeMap<&'static str, Histogram>,
    /// Scores of graded autograde jobs by assignment (`lecture / assignment`), in tenths of
    /// the maximum score.
    pub scores: BTreeMap<String, ScoreHistogram>,
}

/// How many graded submissions of one assignment scored in each tenth of the maximum
/// (`[0, 10%)`, ..., `[90%, 100%]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScoreHistogram {
    pub buckets: [u64; 10],
    pub max_score: Option<u64>,
}

impl ScoreHistogram {
    /// Counts `score` out of `max`; a maximum of 0 counts as full marks.
    pub fn observe(&mut self, score: f64, max: f64) {
        let fraction = if max > 0.0 { score / max } else { 1.0 };
        let i = (fraction.clamp(0.0, 1.0) * 10.0).floor() as usize;
        self.buckets[i.min(9)] += 1;
        self.max_score = Some(max.round() as u64);
    }
}

/// A read-only picture of the service for status pages and metrics.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub running: Vec<JobView>,
    /// In queue order.
    pub queued: Vec<JobView>,
    /// Finished jobs still retained, oldest first, with their outcomes.
    pub recent: Vec<JobView>,
    pub counters: Counters,
    pub concurrency: u32,
    pub queue_limit: u32,
    /// False once the service is shutting down.
    pub accepting: bool,
}

/// What became of a submission.
pub enum Submitted {
    /// A new job, queued; run it with the token.
    New(JobView, CancellationToken),
    /// The same submission, commit and kind is already queued or running: that job.
    Existing(JobView),
    /// The queue is full.
    Full { queued: usize, running: usize },
    /// The service is shutting down.
    Closed,
}

struct Inner {
    jobs: HashMap<String, Entry>,
    active: HashMap<DedupKey, String>,
    queue: VecDeque<String>,
    running: usize,
    /// Finished jobs in the order they finished, for retention.
    finished: VecDeque<(Instant, String)>,
    next: u64,
    accepting: bool,
    counters: Counters,
}

/// The jobs of one service.
pub struct Registry {
    inner: Mutex<Inner>,
    concurrency: u32,
    queue_limit: u32,
    retain: Duration,
    /// Names jobs of this run apart from an earlier run's.
    nonce: u32,
    /// The backend's name, for outcomes of jobs that never started.
    backend: Mutex<String>,
    /// Queued plus running jobs.
    active_jobs: watch::Sender<usize>,
}

impl Registry {
    /// An empty registry: `concurrency` jobs run at once, `queue_limit` more may wait,
    /// finished ones are kept for `retain`.
    pub fn new(concurrency: u32, queue_limit: u32, retain: Duration, backend: &str) -> Self {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        Registry {
            inner: Mutex::new(Inner {
                jobs: HashMap::new(),
                active: HashMap::new(),
                queue: VecDeque::new(),
                running: 0,
                finished: VecDeque::new(),
                next: 1,
                accepting: true,
                counters: Counters::default(),
            }),
            concurrency,
            queue_limit,
            retain,
            nonce,
            backend: Mutex::new(backend.to_string()),
            active_jobs: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names the backend once it is built.
    pub fn set_backend(&self, name: &str) {
        *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = name.to_string();
    }

    /// Takes a checked job whose request was read at `received`: a new queued job, the one
    /// already queued or running for the same submission, commit and kind, or a refusal.
    pub fn submit(&self, job: &Job, kind: JobKind, received: SystemTime) -> Submitted {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        if !inner.accepting {
            return Submitted::Closed;
        }
        let key = DedupKey {
            submission_id: job.submission.id,
            commit_hash: job.submission.commit_hash.clone(),
            kind: kind_name(kind),
        };
        if let Some(id) = inner.active.get(&key).cloned() {
            inner.counters.deduplicated += 1;
            if let Some(view) = view_of(&inner, &id, false) {
                return Submitted::Existing(view);
            }
        }
        if inner.queue.len() >= self.queue_limit as usize {
            inner.counters.refused_full += 1;
            return Submitted::Full {
                queued: inner.queue.len(),
                running: inner.running,
            };
        }
        let id = format!("{:08x}-{}", self.nonce, inner.next);
        inner.next += 1;
        let info = JobInfo {
            id: id.clone(),
            kind,
            submission_id: job.submission.id,
            commit_hash: job.submission.commit_hash.clone(),
            username: job.submission.username.clone(),
            lecture: job.lecture.code.clone(),
            assignment_id: job.assignment.id,
            assignment: job.assignment.name.clone(),
            submitted_at_ms: unix_ms(SystemTime::now()),
            started_at_ms: None,
            finished_at_ms: None,
        };
        let cancel = CancellationToken::new();
        let (changed, _) = watch::channel(JobState::Queued);
        inner.jobs.insert(
            id.clone(),
            Entry {
                info,
                timeline: Timeline {
                    received_us: unix_us(received),
                    ..Timeline::default()
                },
                state: JobState::Queued,
                stop: None,
                cancel: cancel.clone(),
                outcome: None,
                changed,
            },
        );
        inner.active.insert(key, id.clone());
        inner.queue.push_back(id.clone());
        inner.counters.accepted += 1;
        self.publish_active(&inner);
        match view_of(&inner, &id, false) {
            Some(view) => Submitted::New(view, cancel),
            None => Submitted::Closed,
        }
    }

    /// Moves a queued job to running; false when it was stopped meanwhile (do not run it).
    pub fn start(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner.jobs.get_mut(id) else {
            return false;
        };
        if entry.state != JobState::Queued || entry.stop.is_some() {
            return false;
        }
        let now = SystemTime::now();
        entry.state = JobState::Running;
        entry.info.started_at_ms = Some(unix_ms(now));
        entry.timeline.started_us = Some(unix_us(now));
        entry.changed.send_replace(JobState::Running);
        inner.queue.retain(|q| q != id);
        inner.running += 1;
        true
    }

    /// The state a finished run's outcome will give its job.
    pub fn final_state(&self, id: &str, outcome: &Outcome) -> JobState {
        let inner = self.lock();
        match inner.jobs.get(id).and_then(|e| e.stop) {
            Some(stop) if !outcome.status.is_success() => stop.state(),
            _ => JobState::Done,
        }
    }

    /// Records the outcome of a run that started; its pipeline returned at `ended`.
    pub fn finish(&self, id: &str, mut outcome: Outcome, ended: SystemTime) {
        let mut inner = self.lock();
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        entry.timeline.ended_us = Some(unix_us(ended));
        let state = match entry.stop {
            Some(stop) if !outcome.status.is_success() => {
                outcome.error = Some(match outcome.error.take() {
                    Some(e) => format!("{} ({e})", stop.reason()),
                    None => stop.reason().to_string(),
                });
                stop.state()
            }
            _ => JobState::Done,
        };
        inner.running = inner.running.saturating_sub(1);
        self.settle(&mut inner, id, state, outcome);
    }

    /// Ends a job that never started (its token fired, or the backend never came up),
    /// unless it already ended.
    pub fn abandon(&self, id: &str) {
        let mut inner = self.lock();
        let stop = match inner.jobs.get(id) {
            Some(e) if e.state == JobState::Queued => e.stop.unwrap_or(Stop::Interrupted),
            _ => return,
        };
        self.stop_queued(&mut inner, id, stop);
    }

    fn stop_queued(&self, inner: &mut Inner, id: &str, stop: Stop) {
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        entry.stop = Some(stop);
        entry.cancel.cancel();
        let info = entry.info.clone();
        inner.queue.retain(|q| q != id);
        let backend = self
            .backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let why = format!("{} before the job started", stop.reason());
        self.settle(
            inner,
            id,
            stop.state(),
            unstarted_outcome(&info, backend, why),
        );
    }

    /// Puts a job in its final state with its outcome and wakes its waiters.
    fn settle(&self, inner: &mut Inner, id: &str, state: JobState, outcome: Outcome) {
        let Some(entry) = inner.jobs.get_mut(id) else {
            return;
        };
        let result = if state == JobState::Done {
            status_name(outcome.status)
        } else {
            serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let now = SystemTime::now();
        entry.state = state;
        entry.info.finished_at_ms = Some(unix_ms(now));
        entry.timeline.settled_us = Some(unix_us(now));
        entry.outcome = Some(Arc::new(outcome));
        entry.changed.send_replace(state);
        let key = DedupKey::of(&entry.info);
        let kind = kind_name(entry.info.kind);
        if inner.active.get(&key).is_some_and(|a| a == id) {
            inner.active.remove(&key);
        }
        let outcome = entry.outcome.clone();
        let assignment = format!("{} / {}", entry.info.lecture, entry.info.assignment);
        let started = entry.info.started_at_ms.is_some();
        if let Some(o) = &outcome {
            let failure = o.failure.map_or("none", |f| f.as_str()).to_string();
            *inner
                .counters
                .outcomes
                .entry((kind, result.clone(), failure))
                .or_default() += 1;
            if started {
                inner
                    .counters
                    .durations
                    .entry(kind)
                    .or_default()
                    .observe(o.duration_ms as f64 / 1000.0);
            }
            if state == JobState::Done
                && o.kind == JobKind::Autograde
                && o.status.is_success()
                && let (Some(score), Some(max)) = (o.score, o.max_score)
            {
                inner
                    .counters
                    .scores
                    .entry(assignment)
                    .or_default()
                    .observe(score, max);
            }
        }
        *inner.counters.finished.entry((kind, result)).or_default() += 1;
        inner.finished.push_back((Instant::now(), id.to_string()));
        self.publish_active(inner);
    }

    /// Asks a job to stop: a queued one ends now as `cancelled`, a running one's token fires
    /// (its process tree is killed, its pod deleted) and it ends when its pipeline returns.
    /// `None` for an unknown id.
    pub fn cancel(&self, id: &str) -> Option<JobView> {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        match inner.jobs.get(id)?.state {
            JobState::Queued => self.stop_queued(&mut inner, id, Stop::Cancelled),
            JobState::Running => {
                if let Some(entry) = inner.jobs.get_mut(id) {
                    entry.stop.get_or_insert(Stop::Cancelled);
                    entry.cancel.cancel();
                }
            }
            _ => {}
        }
        view_of(&inner, id, true)
    }

    /// Stops taking jobs and ends every queued one as `interrupted` (shutdown, first step).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.accepting = false;
        let queued: Vec<String> = inner.queue.iter().cloned().collect();
        for id in queued {
            self.stop_queued(&mut inner, &id, Stop::Interrupted);
        }
    }

    /// Fires the tokens of the running jobs, which end as `interrupted` (shutdown, after
    /// the grace period).
    pub fn interrupt_running(&self) {
        let mut inner = self.lock();
        for entry in inner.jobs.values_mut() {
            if entry.state == JobState::Running {
                entry.stop.get_or_insert(Stop::Interrupted);
                entry.cancel.cancel();
            }
        }
    }

    /// Waits until no job is queued or running.
    pub async fn idle(&self) {
        let mut rx = self.active_jobs.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Queued plus running jobs.
    pub fn active(&self) -> usize {
        *self.active_jobs.borrow()
    }

    fn publish_active(&self, inner: &Inner) {
        self.active_jobs
            .send_replace(inner.queue.len() + inner.running);
    }

    /// A job with its outcome when final, and a receiver that changes with its state.
    pub fn get(&self, id: &str) -> Option<(JobView, watch::Receiver<JobState>)> {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        let rx = inner.jobs.get(id)?.changed.subscribe();
        Some((view_of(&inner, id, true)?, rx))
    }

    /// Notes that job `id`'s outcome was handed to the HTTP layer (the first time counts).
    pub fn answered(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(entry) = inner.jobs.get_mut(id) {
            entry
                .timeline
                .answered_us
                .get_or_insert_with(|| unix_us(SystemTime::now()));
        }
    }

    /// A job's state and outcome (when final).
    pub fn outcome(&self, id: &str) -> Option<(JobState, Option<Arc<Outcome>>)> {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        inner.jobs.get(id).map(|e| (e.state, e.outcome.clone()))
    }

    /// The read-only picture: running, queued and recent jobs, counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        self.sweep(&mut inner);
        let mut running: Vec<JobView> = inner
            .jobs
            .values()
            .filter(|e| e.state == JobState::Running)
            .filter_map(|e| view_of(&inner, &e.info.id, false))
            .collect();
        running.sort_by_key(|v| v.info.started_at_ms);
        let queued = inner
            .queue
            .iter()
            .filter_map(|id| view_of(&inner, id, false))
            .collect();
        let recent = inner
            .finished
            .iter()
            .filter_map(|(_, id)| view_of(&inner, id, true))
            .collect();
        Snapshot {
            running,
            queued,
            recent,
            counters: inner.counters.clone(),
            concurrency: self.concurrency,
            queue_limit: self.queue_limit,
            accepting: inner.accepting,
        }
    }

    /// Forgets finished jobs older than the retention time.
    fn sweep(&self, inner: &mut Inner) {
        let now = Instant::now();
        while let Some((at, _)) = inner.finished.front() {
            if now.saturating_duration_since(*at) < self.retain {
                break;
            }
            if let Some((_, id)) = inner.finished.pop_front() {
                inner.jobs.remove(&id);
            }
        }
    }
}

fn view_of(inner: &Inner, id: &str, with_outcome: bool) -> Option<JobView> {
    let entry = inner.jobs.get(id)?;
    Some(JobView {
        info: entry.info.clone(),
        state: entry.state,
        queue_position: (entry.state == JobState::Queued)
            .then(|| inner.queue.iter().position(|q| q == id))
            .flatten(),
        succeeded: entry.outcome.as_ref().map(|o| o.status.is_success()),
        stopping: entry.state == JobState::Running && entry.stop.is_some(),
        timeline: entry.timeline,
        outcome: if with_outcome {
            entry.outcome.clone().map(SharedOutcome)
        } else {
            None
        },
    })
}

/// The outcome of a job stopped before it started: failed, with the reason.
fn unstarted_outcome(info: &JobInfo, backend: String, why: String) -> Outcome {
    Outcome {
        submission_id: info.submission_id,
        kind: info.kind,
        status: match info.kind {
            JobKind::Autograde => Status::Auto(AutoStatus::GradingFailed),
            JobKind::Feedback => Status::Feedback(FeedbackStatus::GenerationFailed),
        },
        grading_score: None,
        score: None,
        max_score: None,
        backend,
        duration_ms: 0,
        timings: Timings::default(),
        branch: None,
        commit: None,
        failure: Some(grader_local::FailureKind::Cancelled),
        error: Some(why),
        logs: String::new(),
        gradebook: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(submission: u64) -> Job {
        let text = format!(
            r#"{{"lecture": {{"code": "cs101"}},
                "assignment": {{"id": 1, "name": "hw1", "gradebook": {{"notebooks": {{}}}}}},
                "submission": {{"id": {submission}, "commit_hash": "{}", "username": "alice"}}}}"#,
            "a".repeat(40)
        );
        grader_local::job_file::parse_job(&text, std::path::Path::new("/"), "test").unwrap()
    }

    fn graded(submission: u64) -> Outcome {
        let info = JobInfo {
            id: String::new(),
            kind: JobKind::Autograde,
            submission_id: submission,
            commit_hash: String::new(),
            username: String::new(),
            lecture: String::new(),
            assignment_id: 1,
            assignment: String::new(),
            submitted_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
        };
        let mut o = unstarted_outcome(&info, "local".into(), String::new());
        o.status = Status::Auto(AutoStatus::AutomaticallyGraded);
        o.failure = None;
        o.error = None;
        o
    }

    fn timeline(r: &Registry, id: &str) -> Timeline {
        r.get(id).unwrap().0.timeline
    }

    #[test]
    fn the_timeline_follows_a_job_from_its_request_to_its_first_answer() {
        let r = Registry::new(1, 4, Duration::from_secs(60), "local");
        let received = SystemTime::now() - Duration::from_millis(5);
        let Submitted::New(view, _) = r.submit(&job(7), JobKind::Autograde, received) else {
            panic!("not queued");
        };
        let id = view.info.id;
        let t = timeline(&r, &id);
        assert_eq!(t.received_us, unix_us(received));
        assert_eq!((t.started_us, t.ended_us, t.settled_us), (None, None, None));

        assert!(r.start(&id));
        let started = timeline(&r, &id).started_us.unwrap();
        assert!(started >= t.received_us + 5_000, "{started} vs {t:?}");

        let ended = SystemTime::now();
        r.finish(&id, graded(7), ended);
        let t = timeline(&r, &id);
        assert_eq!(t.ended_us, Some(unix_us(ended)));
        assert!(t.settled_us.unwrap() >= t.ended_us.unwrap());
        assert_eq!(t.answered_us, None);

        r.answered(&id);
        let first = timeline(&r, &id).answered_us.unwrap();
        assert!(first >= t.settled_us.unwrap());
        std::thread::sleep(Duration::from_millis(2));
        r.answered(&id);
        assert_eq!(
            timeline(&r, &id).answered_us,
            Some(first),
            "the first answer counts"
        );

        // The view's JSON carries it for clients (`GET /v1/jobs`).
        let json = serde_json::to_value(r.get(&id).unwrap().0).unwrap();
        assert_eq!(json["timeline"]["answered_us"], first);
        assert_eq!(json["timeline"]["received_us"], unix_us(received));
    }

    #[test]
    fn a_job_cancelled_in_the_queue_settles_without_starting() {
        let r = Registry::new(1, 4, Duration::from_secs(60), "local");
        let Submitted::New(view, _) = r.submit(&job(8), JobKind::Autograde, SystemTime::now())
        else {
            panic!("not queued");
        };
        let id = view.info.id;
        r.cancel(&id).unwrap();
        let t = timeline(&r, &id);
        assert_eq!((t.started_us, t.ended_us), (None, None));
        assert!(t.settled_us.unwrap() >= t.received_us);
    }
}

//! Waiting for one grading pod to end.

use std::sync::Arc;
use std::time::Duration;

use grader_local::FailureKind;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::PodApi;
use crate::pod::CONTAINER;
use crate::watcher::{Seen, Subscription};

/// How a pod that ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Phase `Succeeded`.
    Succeeded,
    /// Phase `Failed`; `reason` names the pod and says why (exit code, eviction, deadline).
    Failed {
        /// What kind of failure it is.
        kind: FailureKind,
        /// Readable reason, e.g. `pod p in namespace n failed: container autograde exited
        /// with code 1 (Error)`.
        reason: String,
    },
}

/// Why waiting for a pod ended without the pod finishing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// `max_grading_time` passed.
    #[error(
        "grading exceeded max_grading_time of {secs}s: pod {name} in namespace {namespace} did not finish"
    )]
    TimedOut {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The bound in seconds.
        secs: u64,
    },
    /// [`GraderPod::stop_polling`] was called (the job was cancelled).
    #[error("grading was cancelled while pod {name} in namespace {namespace} was running")]
    Stopped {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// The pod cannot start: a bad image, a bad container config, or it stayed unschedulable
    /// or failing to pull its image for longer than `unschedulable_grace`.
    #[error("pod {name} in namespace {namespace} could not start: {reason}")]
    NotStarted {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// Kubernetes' reason and message.
        reason: String,
    },
    /// Someone else deleted the pod (or started deleting it) before it finished.
    #[error("pod {name} in namespace {namespace} was deleted before it finished")]
    Deleted {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
    },
}

impl WaitError {
    /// What kind of failure it is.
    pub fn kind(&self) -> FailureKind {
        match self {
            WaitError::TimedOut { .. } => FailureKind::TimedOut,
            WaitError::Stopped { .. } => FailureKind::Cancelled,
            WaitError::NotStarted { .. } => FailureKind::ToolNotStarted,
            WaitError::Deleted { .. } => FailureKind::Infrastructure,
        }
    }
}

/// What a pod's status says, as far as waiting for it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully: the kind, and text that completes "pod X in namespace Y ...".
    Failed(FailureKind, String),
    /// Being deleted before it succeeded.
    Terminating,
    /// Will never start: `InvalidImageName`, `ErrImageNeverPull`,
    /// `CreateContainerConfigError` (reason and message).
    CannotStart(String),
    /// Not starting, but may still recover: `ErrImagePull`, `ImagePullBackOff`,
    /// `CreateContainerError`, or `PodScheduled=False` with reason `Unschedulable`; fails
    /// after `unschedulable_grace`.
    Stuck(String),
    /// Pending or running normally.
    Progressing,
}

/// Waiting reasons that never resolve by themselves: fail at once.
const FATAL_WAITING: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];
/// Waiting reasons that may resolve (a registry hiccup): fail after `unschedulable_grace`.
const STUCK_WAITING: &[&str] = &["ErrImagePull", "ImagePullBackOff", "CreateContainerError"];

/// Classifies a pod by its status. Pure, so every case is unit-tested.
pub fn classify(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    if phase == "Succeeded" {
        return PodState::Succeeded;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Terminating;
    }
    let Some(status) = status else {
        return PodState::Progressing;
    };
    let message = status.message.as_deref().unwrap_or("").trim();
    if phase == "Failed" {
        let (kind, text) = match status.reason.as_deref() {
            Some("Evicted") => (
                FailureKind::Infrastructure,
                format!("was evicted: {}", or_none(message)),
            ),
            Some("DeadlineExceeded") => (
                FailureKind::TimedOut,
                format!(
                    "exceeded its activeDeadlineSeconds (max_grading_time) and was stopped by Kubernetes: {}",
                    or_none(message)
                ),
            ),
            reason => match terminated(status.container_statuses.as_deref()) {
                Some((oom, exit)) => (
                    if oom {
                        FailureKind::OutOfMemory
                    } else {
                        FailureKind::ToolExited
                    },
                    format!("failed: {exit}"),
                ),
                None => (
                    FailureKind::Infrastructure,
                    match reason {
                        Some(r) if !message.is_empty() => format!("failed: {r}: {message}"),
                        Some(r) => format!("failed: {r}"),
                        None if !message.is_empty() => format!("failed: {message}"),
                        None => "failed".to_owned(),
                    },
                ),
            },
        };
        return PodState::Failed(kind, text);
    }

    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in statuses {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let Some(reason) = waiting.reason.as_deref() else {
            continue;
        };
        let text = match waiting.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_owned(),
        };
        if FATAL_WAITING.contains(&reason) {
            return PodState::CannotStart(text);
        }
        if STUCK_WAITING.contains(&reason) {
            return PodState::Stuck(text);
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        return PodState::Stuck(match c.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => format!("Unschedulable: {m}"),
            _ => "Unschedulable".to_owned(),
        });
    }
    PodState::Progressing
}

fn or_none(message: &str) -> &str {
    if message.is_empty() {
        "(no message)"
    } else {
        message
    }
}

/// "container autograde exited with code 1 (Error): message" for the grading container (or,
/// failing that, the first terminated container).
/// How the grading container ended: whether it was killed for memory, and a text.
fn terminated(statuses: Option<&[ContainerStatus]>) -> Option<(bool, String)> {
    let statuses = statuses?;
    let (name, t) = statuses
        .iter()
        .filter_map(|cs| Some((cs.name.as_str(), cs.state.as_ref()?.terminated.as_ref()?)))
        .min_by_key(|(name, _)| *name != CONTAINER)?;
    let mut text = format!("container {name} exited with code {}", t.exit_code);
    if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = t
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        text.push_str(&format!(": {message}"));
    }
    Some((t.reason.as_deref() == Some("OOMKilled"), text))
}

/// The time bounds of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTiming {
    /// GET interval while the shared watch is broken.
    pub poll_interval: Duration,
    /// How long a pod may be [`PodState::Stuck`].
    pub unschedulable_grace: Duration,
    /// Bound of the whole wait.
    pub max_grading_time: Duration,
}

/// A created grading pod being waited for through the shared watch (GET polling while the
/// watch is broken).
pub struct GraderPod {
    name: String,
    namespace: String,
    uid: Option<String>,
    initial: Pod,
    api: Arc<dyn PodApi>,
    subscription: Subscription,
    timing: WaitTiming,
    stop: CancellationToken,
}

impl std::fmt::Debug for GraderPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraderPod")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("uid", &self.uid)
            .finish()
    }
}

impl GraderPod {
    /// Wraps `pod` as the API returned it on create (or adoption); `subscription` must be
    /// for its name and taken before it was created.
    pub fn new(
        pod: Pod,
        api: Arc<dyn PodApi>,
        subscription: Subscription,
        timing: WaitTiming,
    ) -> Self {
        GraderPod {
            name: subscription.name().to_owned(),
            namespace: api.namespace().to_owned(),
            uid: pod.metadata.uid.clone(),
            initial: pod,
            api,
            subscription,
            timing,
            stop: CancellationToken::new(),
        }
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pod's uid, when the API gave one.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// Ends a running [`GraderPod::wait`] with [`WaitError::Stopped`] (and any later one).
    pub fn stop_polling(&self) {
        self.stop.cancel();
    }

    /// Makes the wait also stop when `parent` is cancelled (a job's cancellation).
    pub fn stop_on(&mut self, parent: &CancellationToken) {
        let stopped = self.stop.is_cancelled();
        self.stop = parent.child_token();
        if stopped {
            self.stop.cancel();
        }
    }

    fn ours(&self, pod: &Pod) -> bool {
        match (&self.uid, &pod.metadata.uid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// Waits until the pod has `Succeeded` or `Failed`, bounded by `max_grading_time`.
    ///
    /// Ends early with [`WaitError::NotStarted`] for a pod that cannot start (at once for
    /// [`PodState::CannotStart`], after `unschedulable_grace` for [`PodState::Stuck`]), with
    /// [`WaitError::Deleted`] when the pod is deleted by someone else (a watch `Delete`
    /// event, a pod of the same name with another uid, a GET answering 404, or a deletion
    /// timestamp), and with [`WaitError::Stopped`] on [`GraderPod::stop_polling`]. Uses the
    /// tokio clock.
    pub async fn wait(&self) -> Result<PodOutcome, WaitError> {
        let deadline = Instant::now() + self.timing.max_grading_time;
        let mut rx = self.subscription.receiver();
        let mut health = self.subscription.health();
        let mut current: Arc<Pod> = Arc::new(self.initial.clone());
        let mut stuck_since: Option<Instant> = None;
        let mut next_poll: Option<Instant> = None;
        let mut need_get = false;
        let mut gone = false;
        let (mut rx_open, mut health_open) = (true, true);
        rx.mark_changed();
        loop {
            if rx.has_changed().unwrap_or(false) {
                match &*rx.borrow_and_update() {
                    Seen::Nothing => {}
                    Seen::Present(pod) if self.ours(pod) => current = pod.clone(),
                    // Another pod of that name: ours is gone.
                    Seen::Present(_) => gone = true,
                    Seen::Deleted(pod) => gone |= self.ours(pod),
                    Seen::Missing => need_get = true,
                }
            }
            if need_get {
                need_get = false;
                match self.api.get(&self.name).await {
                    Ok(Some(pod)) if self.ours(&pod) => current = Arc::new(pod),
                    Ok(_) => gone = true,
                    Err(e) => tracing::warn!(
                        pod = %self.name, namespace = %self.namespace, error = %e,
                        "cannot read pod status; trying again"
                    ),
                }
            }
            if gone {
                return Err(self.deleted());
            }
            match classify(&current) {
                PodState::Succeeded => {
                    tracing::info!(pod = %self.name, namespace = %self.namespace, "pod succeeded");
                    return Ok(PodOutcome::Succeeded);
                }
                PodState::Failed(kind, text) => {
                    let reason =
                        format!("pod {} in namespace {} {text}", self.name, self.namespace);
                    tracing::warn!(pod = %self.name, namespace = %self.namespace, %reason, "pod failed");
                    return Ok(PodOutcome::Failed { kind, reason });
                }
                PodState::Terminating => return Err(self.deleted()),
                PodState::CannotStart(reason) => return Err(self.not_started(reason)),
                PodState::Stuck(reason) => {
                    let since = *stuck_since.get_or_insert_with(Instant::now);
                    if Instant::now() >= since + self.timing.unschedulable_grace {
                        return Err(self.not_started(format!(
                            "{reason} (for longer than unschedulable_grace of {}s)",
                            self.timing.unschedulable_grace.as_secs()
                        )));
                    }
                }
                PodState::Progressing => stuck_since = None,
            }

            let polling = !health_open || !*health.borrow_and_update();
            if polling {
                next_poll.get_or_insert_with(|| Instant::now() + self.timing.poll_interval);
            } else {
                next_poll = None;
            }
            let grace_end = stuck_since.map(|s| s + self.timing.unschedulable_grace);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    return Err(WaitError::Stopped {
                        name: self.name.clone(),
                        namespace: self.namespace.clone(),
                    });
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(WaitError::TimedOut {
                        name: self.name.clone(),
                        namespace: self.namespace.clone(),
                        secs: self.timing.max_grading_time.as_secs(),
                    });
                }
                changed = rx.changed(), if rx_open => {
                    if changed.is_err() {
                        // Cannot happen while we hold the subscription; poll from now on.
                        rx_open = false;
                        health_open = false;
                    } else {
                        // The loop reads the value; `changed` marked it seen.
                        rx.mark_changed();
                    }
                }
                changed = health.changed(), if health_open => health_open = changed.is_ok(),
                _ = sleep_until_opt(grace_end) => {}
                _ = sleep_until_opt(next_poll) => {
                    next_poll = None;
                    need_get = true;
                }
            }
        }
    }

    fn deleted(&self) -> WaitError {
        tracing::warn!(pod = %self.name, namespace = %self.namespace, "pod was deleted before it finished");
        WaitError::Deleted {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }

    fn not_started(&self, reason: String) -> WaitError {
        tracing::warn!(pod = %self.name, namespace = %self.namespace, %reason, "pod could not start");
        WaitError::NotStarted {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            reason,
        }
    }
}

pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

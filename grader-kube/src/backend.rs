//! [`KubeBackend`]: grading as a pod.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use grader_local::logs::sanitize;
use grader_local::{BackendFailure, BackendOutput, FailureKind, GradingBackend, GradingTask};
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Deletion, KubePodApi, PodApi};
use crate::grader_pod::{GraderPod, PodOutcome, WaitError, WaitTiming, sleep_until_opt};
use crate::image::ImageConfig;
use crate::pod::{
    COMMIT_ANNOTATION, COMPONENT_LABEL, CONTAINER, GRADER_SELECTOR, MANAGED_BY, MANAGED_BY_LABEL,
    SUBMISSION_LABEL, build_pod,
};
use crate::settings::KubeSettings;
use crate::watcher::{PodWatcher, Seen, Subscription};

/// How often creating a pod is tried when a pod of the same name is in the way.
const CREATE_ATTEMPTS: usize = 3;
/// Bound of waiting for a leftover pod to disappear after deleting it. Not forced (grace
/// period 0): its container could still be writing to the shared output directory.
const REPLACE_WAIT: Duration = Duration::from_secs(120);
/// Bound of fetching the logs of an ended pod.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of deleting an ended pod.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most API requests (create, get, logs, delete) one backend has in flight at once. kube's
/// HTTP/1.1 client opens one connection per concurrent request and keeps it pooled, so 200
/// jobs in flight would otherwise hold 200 TLS connections.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

struct Limited {
    inner: Arc<dyn PodApi>,
    permits: tokio::sync::Semaphore,
}

#[async_trait]
impl PodApi for Limited {
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }
    async fn create(&self, pod: &Pod) -> Result<Pod, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        self.inner.create(pod).await
    }
    async fn get(&self, name: &str) -> Result<Option<Pod>, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        self.inner.get(name).await
    }
    async fn delete(&self, name: &str) -> Result<Deletion, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        self.inner.delete(name).await
    }
    async fn logs(
        &self,
        name: &str,
        container: &str,
        cap: usize,
    ) -> Result<String, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        self.inner.logs(name, container, cap).await
    }
    async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        self.inner.list(label_selector).await
    }
    fn watch(
        &self,
        label_selector: &str,
    ) -> futures::stream::BoxStream<
        'static,
        Result<kube::runtime::watcher::Event<Pod>, crate::error::ApiError>,
    > {
        self.inner.watch(label_selector)
    }
}

/// Runs the grading tool as a pod in a Kubernetes namespace.
///
/// Per graded submission it makes three API requests (create, log, delete); pod states come
/// from one shared watch ([`PodWatcher`], one list and one watch request for all jobs,
/// started on the first job), with GET polling only while that watch is broken.
pub struct KubeBackend {
    api: Arc<dyn PodApi>,
    settings: KubeSettings,
    images: ImageConfig,
    watcher: OnceLock<PodWatcher>,
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("namespace", &self.api.namespace())
            .field("settings", &self.settings)
            .finish()
    }
}

impl KubeBackend {
    /// A backend running pods in `namespace` through `client` (see [`crate::connect`]).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        settings: KubeSettings,
        images: ImageConfig,
    ) -> Self {
        KubeBackend::with_api(
            Arc::new(KubePodApi::new(client, namespace)),
            settings,
            images,
        )
    }

    /// A backend over any [`PodApi`] (a mock in tests).
    pub fn with_api(api: Arc<dyn PodApi>, settings: KubeSettings, images: ImageConfig) -> Self {
        KubeBackend {
            api: Arc::new(Limited {
                inner: api,
                permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS),
            }),
            settings,
            images,
            watcher: OnceLock::new(),
        }
    }

    /// The namespace the pods run in.
    pub fn namespace(&self) -> &str {
        self.api.namespace()
    }

    /// The pod API (for [`crate::collect_garbage`]).
    pub fn api(&self) -> Arc<dyn PodApi> {
        self.api.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// The shared watch, started on first use (needs a tokio runtime).
    fn watcher(&self) -> &PodWatcher {
        self.watcher.get_or_init(|| {
            PodWatcher::start(
                self.api.clone(),
                GRADER_SELECTOR,
                self.settings.poll_interval,
            )
        })
    }

    /// The image, built pod and its name for `task`.
    fn prepare(&self, task: &GradingTask) -> Result<Pod, BackendFailure> {
        let image = self.images.resolve(
            &task.lecture.code,
            task.assignment.id,
            &task.assignment.name,
            &self.settings.default_image_name,
        );
        let (pod, _warnings) = build_pod(&self.settings, task, &image).map_err(|e| {
            BackendFailure::new(
                FailureKind::InvalidJob,
                format!(
                    "cannot build the grading pod of submission {}: {e}",
                    task.submission.id
                ),
            )
        })?;
        Ok(pod)
    }

    /// Creates the pod, or adopts / replaces a pod of the same name in the way.
    ///
    /// The error says whether no pod of ours can exist (so none must be deleted).
    async fn create_or_adopt(
        &self,
        pod: &Pod,
        subscription: &Subscription,
        may_adopt: bool,
    ) -> Result<Pod, (String, bool)> {
        let name = subscription.name();
        let ns = self.api.namespace();
        for attempt in 1..=CREATE_ATTEMPTS {
            let err = match self.api.create(pod).await {
                Ok(created) => {
                    tracing::info!(pod = name, namespace = ns, "created grading pod");
                    return Ok(created);
                }
                Err(e) if e.is_already_exists() => e,
                Err(e) => {
                    return Err((format!("creating pod {name} in namespace {ns}: {e}"), true));
                }
            };
            tracing::info!(pod = name, namespace = ns, attempt, error = %err, "a pod of that name exists");
            // Failing here leaves a pod that may not be ours: the guard must not delete it.
            let existing = self.api.get(name).await.map_err(|e| {
                (
                    format!("reading existing pod {name} in namespace {ns}: {e}"),
                    true,
                )
            })?;
            let Some(existing) = existing else {
                continue;
            };
            // Only a run whose work dirs the pipeline kept can be adopted: the mounts of any
            // other pod point at directories that were just prepared anew.
            if may_adopt && adoptable(&existing, pod) {
                tracing::info!(
                    pod = name,
                    namespace = ns,
                    "adopting the running pod of this job"
                );
                return Ok(existing);
            }
            tracing::warn!(
                pod = name,
                namespace = ns,
                "deleting a leftover pod of that name"
            );
            let deletion = self.api.delete(name).await.map_err(|e| {
                (
                    format!("deleting leftover pod {name} in namespace {ns}: {e}"),
                    true,
                )
            })?;
            if deletion == Deletion::Started {
                self.wait_gone(&existing, subscription)
                    .await
                    .map_err(|r| (r, false))?;
            }
        }
        Err((
            format!(
                "creating pod {name} in namespace {ns}: a pod of that name was still in the way after {CREATE_ATTEMPTS} attempts"
            ),
            false,
        ))
    }

    /// Waits (at most [`REPLACE_WAIT`]) until `old` is gone: a watch `Delete` event for it, a
    /// pod of the same name with another uid, or (while the watch is broken) a GET 404.
    async fn wait_gone(&self, old: &Pod, subscription: &Subscription) -> Result<(), String> {
        let name = subscription.name();
        let ns = self.api.namespace();
        let old_uid = old.metadata.uid.as_deref();
        let other = |pod: &Pod| matches!((old_uid, pod.metadata.uid.as_deref()), (Some(a), Some(b)) if a != b);
        let same = |pod: &Pod| !other(pod);
        let watched = old
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .is_some_and(|v| v == MANAGED_BY);
        let deadline = Instant::now() + REPLACE_WAIT;
        let mut rx = subscription.receiver();
        let mut health = subscription.health();
        let (mut rx_open, mut health_open) = (true, true);
        rx.mark_changed();
        let mut next_poll: Option<Instant> = None;
        loop {
            if rx.has_changed().unwrap_or(false) {
                match &*rx.borrow_and_update() {
                    Seen::Deleted(pod) if same(pod) => return Ok(()),
                    Seen::Present(pod) if other(pod) => return Ok(()),
                    _ => {}
                }
            }
            // The shared watch only sees grader-labelled pods: anything else is polled for.
            if watched && health_open && *health.borrow_and_update() {
                next_poll = None;
            } else {
                next_poll.get_or_insert_with(|| Instant::now() + self.settings.poll_interval);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "pod {name} in namespace {ns} was still there {}s after deleting it",
                        REPLACE_WAIT.as_secs()
                    ));
                }
                changed = rx.changed(), if rx_open => {
                    rx_open = changed.is_ok();
                    if rx_open {
                        rx.mark_changed();
                    }
                }
                changed = health.changed(), if health_open => health_open = changed.is_ok(),
                _ = sleep_until_opt(next_poll) => {
                    next_poll = None;
                    match self.api.get(name).await {
                        Ok(None) => return Ok(()),
                        Ok(Some(pod)) if other(&pod) => return Ok(()),
                        Ok(Some(_)) => {}
                        Err(e) => tracing::warn!(pod = name, namespace = ns, error = %e, "cannot read pod"),
                    }
                }
            }
        }
    }

    async fn fetch_logs(&self, name: &str) -> String {
        let cap = self.settings.log_cap_bytes;
        match tokio::time::timeout(LOG_TIMEOUT, self.api.logs(name, CONTAINER, cap)).await {
            Ok(Ok(logs)) => sanitize(&logs, cap),
            Ok(Err(e)) => {
                tracing::warn!(pod = name, namespace = self.api.namespace(), error = %e, "cannot fetch pod logs");
                String::new()
            }
            Err(_) => {
                tracing::warn!(
                    pod = name,
                    namespace = self.api.namespace(),
                    "fetching pod logs timed out"
                );
                String::new()
            }
        }
    }
}

/// Whether a pod found in the way belongs to the same job (submission, kind and commit) and
/// can still be waited for (not finished, not being deleted).
fn adoptable(existing: &Pod, desired: &Pod) -> bool {
    let label = |p: &Pod, k: &str| p.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let annotation = |p: &Pod, k: &str| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
    };
    let phase = existing
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    label(existing, MANAGED_BY_LABEL).as_deref() == Some(MANAGED_BY)
        && label(existing, SUBMISSION_LABEL) == label(desired, SUBMISSION_LABEL)
        && label(existing, COMPONENT_LABEL) == label(desired, COMPONENT_LABEL)
        && annotation(existing, COMMIT_ANNOTATION).is_some()
        && annotation(existing, COMMIT_ANNOTATION) == annotation(desired, COMMIT_ANNOTATION)
        && existing.metadata.deletion_timestamp.is_none()
        && phase != "Succeeded"
        && phase != "Failed"
}

/// Deletes the pod when dropped while armed, so that a dropped `run` future leaves no pod.
struct DeleteGuard {
    api: Arc<dyn PodApi>,
    name: String,
    armed: bool,
}

impl DeleteGuard {
    fn disarm(mut self) {
        self.armed = false;
    }

    /// Deletes the pod now (bounded by [`DELETE_TIMEOUT`]).
    async fn delete(mut self) {
        self.armed = false;
        delete_pod(self.api.clone(), self.name.clone()).await;
    }
}

impl Drop for DeleteGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (api, name) = (self.api.clone(), std::mem::take(&mut self.name));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracing::info!(pod = %name, "grading stopped early; deleting its pod in the background");
                handle.spawn(delete_pod(api, name));
            }
            Err(_) => tracing::error!(
                pod = %name, namespace = api.namespace(),
                "no runtime to delete the pod; collect_garbage will remove it"
            ),
        }
    }
}

async fn delete_pod(api: Arc<dyn PodApi>, name: String) {
    let ns = api.namespace().to_owned();
    match tokio::time::timeout(DELETE_TIMEOUT, api.delete(&name)).await {
        Ok(Ok(Deletion::NotFound)) => {
            tracing::debug!(pod = %name, namespace = %ns, "pod was already gone");
        }
        Ok(Ok(_)) => tracing::info!(pod = %name, namespace = %ns, "deleted grading pod"),
        Ok(Err(e)) => tracing::error!(
            pod = %name, namespace = %ns, error = %e,
            "cannot delete grading pod; collect_garbage will remove it"
        ),
        Err(_) => tracing::error!(
            pod = %name, namespace = %ns,
            "deleting grading pod timed out; collect_garbage will remove it"
        ),
    }
}

#[async_trait]
impl GradingBackend for KubeBackend {
    fn name(&self) -> &str {
        "kube"
    }

    /// A pod of this job (same submission, kind and commit) that is still running, left by a
    /// `grader` that stopped: one GET, asked only when the pipeline found the job's work dirs.
    async fn resumable(&self, task: &GradingTask) -> bool {
        let Ok(desired) = self.prepare(task) else {
            return false;
        };
        let name = desired.metadata.name.clone().unwrap_or_default();
        match self.api.get(&name).await {
            Ok(Some(existing)) => adoptable(&existing, &desired),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(pod = %name, namespace = self.api.namespace(), error = %e, "cannot look for an earlier run");
                false
            }
        }
    }

    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure> {
        let pod = self.prepare(task)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = self.api.namespace().to_owned();
        if cancel.is_cancelled() {
            return Err(BackendFailure::new(
                FailureKind::Cancelled,
                format!("grading was cancelled before pod {name} in namespace {ns} was created"),
            ));
        }
        let subscription = self.watcher().subscribe(&name);
        // Armed before the create request is sent: from then on the pod may exist.
        let guard = DeleteGuard {
            api: self.api.clone(),
            name: name.clone(),
            armed: true,
        };
        let started = tokio::select! {
            started = self.create_or_adopt(&pod, &subscription, task.resume) => started
                .map_err(|(reason, nothing_created)| {
                    (BackendFailure::new(FailureKind::Infrastructure, reason), nothing_created)
                }),
            _ = cancel.cancelled() => Err((
                BackendFailure::new(
                    FailureKind::Cancelled,
                    format!("grading was cancelled before pod {name} in namespace {ns} started"),
                ),
                false,
            )),
        };
        let started = match started {
            Ok(started) => started,
            Err((failure, nothing_created)) => {
                tracing::error!(pod = %name, namespace = %ns, reason = %failure.reason, "cannot start grading pod");
                if nothing_created {
                    guard.disarm();
                } else {
                    guard.delete().await;
                }
                return Err(failure);
            }
        };
        subscription.mark_created();
        // The manifest is not needed any more while the pod runs.
        drop(pod);

        let mut grader_pod = GraderPod::new(
            started,
            self.api.clone(),
            subscription,
            WaitTiming {
                poll_interval: self.settings.poll_interval,
                unschedulable_grace: self.settings.unschedulable_grace,
                max_grading_time: task.max_grading_time,
            },
        );
        grader_pod.stop_on(&cancel);
        tracing::info!(pod = %name, namespace = %ns, "waiting for grading pod");
        let waited = grader_pod.wait().await;

        // A pod that never ran or is gone has no logs worth a request.
        let logs = match &waited {
            Err(WaitError::Deleted { .. } | WaitError::NotStarted { .. }) => String::new(),
            _ => self.fetch_logs(&name).await,
        };
        guard.delete().await;
        match waited {
            Ok(PodOutcome::Succeeded) => Ok(BackendOutput { logs }),
            Ok(PodOutcome::Failed { kind, reason }) => {
                Err(BackendFailure::new(kind, reason).with_logs(logs))
            }
            Err(e) => Err(BackendFailure::new(e.kind(), e.to_string()).with_logs(logs)),
        }
    }
}

//! [`KubeBackend`]: grading as a pod.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use grader_local::logs::sanitize;
use grader_local::{BackendFailure, BackendOutput, FailureKind, GradingBackend, GradingTask};
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Deletion, KubePodApi, PodApi};
use crate::error::CreateError;
use crate::grader_pod::{GraderPod, PodOutcome, WaitError, WaitTiming, sleep_until_opt};
use crate::image::ImageConfig;
use crate::pod::{
    COMMIT_ANNOTATION, COMPONENT_LABEL, CONTAINER, GRADER_SELECTOR, MANAGED_BY, MANAGED_BY_LABEL,
    SUBMISSION_LABEL, build_pod, job_annotations, job_labels, job_pod_name,
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
    counts: Arc<Counts>,
}

/// Requests sent and pods in flight, counted as they happen (read by [`KubeBackend::stats`]).
#[derive(Debug, Default)]
struct Counts {
    create: AtomicU64,
    get: AtomicU64,
    delete: AtomicU64,
    logs: AtomicU64,
    list: AtomicU64,
    watch: AtomicU64,
    pods_in_flight: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What one backend did so far, for metrics: API requests by verb since it was built, and
/// the grading pods it has created (or is creating) and not yet finished with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubeStats {
    /// Pods created (or being created) by a job still running in this backend.
    pub pods_in_flight: u64,
    /// Pod create requests.
    pub create: u64,
    /// Pod get requests (looking for an earlier run, polling while the watch is broken).
    pub get: u64,
    /// Pod delete requests.
    pub delete: u64,
    /// Log requests.
    pub logs: u64,
    /// List requests (garbage collection).
    pub list: u64,
    /// Watch streams opened (one per shared watch, plus one per restart).
    pub watch: u64,
}

impl KubeStats {
    /// The request counts by verb, in a fixed order.
    pub fn requests(&self) -> [(&'static str, u64); 6] {
        [
            ("create", self.create),
            ("get", self.get),
            ("delete", self.delete),
            ("logs", self.logs),
            ("list", self.list),
            ("watch", self.watch),
        ]
    }
}

/// Counts one pod in flight for as long as it lives.
struct InFlight(Arc<Counts>);

impl InFlight {
    fn new(counts: &Arc<Counts>) -> Self {
        bump(&counts.pods_in_flight);
        InFlight(counts.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.pods_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl PodApi for Limited {
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }
    async fn create(&self, pod: &Pod) -> Result<Pod, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        bump(&self.counts.create);
        self.inner.create(pod).await
    }
    async fn get(&self, name: &str) -> Result<Option<Pod>, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        bump(&self.counts.get);
        self.inner.get(name).await
    }
    async fn delete(&self, name: &str) -> Result<Deletion, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        bump(&self.counts.delete);
        self.inner.delete(name).await
    }
    async fn logs(
        &self,
        name: &str,
        container: &str,
        cap: usize,
    ) -> Result<String, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        bump(&self.counts.logs);
        self.inner.logs(name, container, cap).await
    }
    async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, crate::error::ApiError> {
        let _permit = self.permits.acquire().await.ok();
        bump(&self.counts.list);
        self.inner.list(label_selector).await
    }
    fn watch(
        &self,
        label_selector: &str,
    ) -> futures::stream::BoxStream<
        'static,
        Result<kube::runtime::watcher::Event<Pod>, crate::error::ApiError>,
    > {
        bump(&self.counts.watch);
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
    counts: Arc<Counts>,
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
        let counts = Arc::new(Counts::default());
        KubeBackend {
            api: Arc::new(Limited {
                inner: api,
                permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS),
                counts: counts.clone(),
            }),
            settings,
            images,
            watcher: OnceLock::new(),
            counts,
        }
    }

    /// API requests sent and pods in flight so far.
    pub fn stats(&self) -> KubeStats {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KubeStats {
            pods_in_flight: n(&c.pods_in_flight),
            create: n(&c.create),
            get: n(&c.get),
            delete: n(&c.delete),
            logs: n(&c.logs),
            list: n(&c.list),
            watch: n(&c.watch),
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

    /// The pod of `task` with its image. Built once per job, in [`GradingBackend::run`]:
    /// [`GradingBackend::resumable`] needs only the name and the job's identity.
    fn build(&self, task: &GradingTask) -> Result<Pod, BackendFailure> {
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

    /// Creates the pod of `task`, or adopts / replaces a pod of the same name in the way.
    ///
    /// The error says what failed and whether a pod may be left to delete
    /// ([`CreateError::needs_cleanup`]).
    async fn create_or_adopt(
        &self,
        pod: &Pod,
        task: &GradingTask,
        subscription: &Subscription,
    ) -> Result<Pod, CreateError> {
        let name = subscription.name();
        let ns = self.api.namespace();
        let names = || (name.to_owned(), ns.to_owned());
        for attempt in 1..=CREATE_ATTEMPTS {
            let err = match self.api.create(pod).await {
                Ok(created) => {
                    tracing::info!(pod = name, namespace = ns, "created grading pod");
                    return Ok(created);
                }
                Err(e) if e.is_already_exists() => e,
                Err(source) => {
                    let (name, namespace) = names();
                    return Err(CreateError::Create {
                        name,
                        namespace,
                        source,
                    });
                }
            };
            tracing::info!(pod = name, namespace = ns, attempt, error = %err, "a pod of that name exists");
            // Failing here leaves a pod that may not be ours: the guard must not delete it.
            let existing = self.api.get(name).await.map_err(|source| {
                let (name, namespace) = names();
                CreateError::ReadExisting {
                    name,
                    namespace,
                    source,
                }
            })?;
            let Some(existing) = existing else {
                continue;
            };
            // Only a run whose work dirs the pipeline kept can be adopted: the mounts of any
            // other pod point at directories that were just prepared anew.
            if task.resume && adoptable(&existing, task) {
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
            let deletion = self.api.delete(name).await.map_err(|source| {
                let (name, namespace) = names();
                CreateError::DeleteLeftover {
                    name,
                    namespace,
                    source,
                }
            })?;
            if deletion == Deletion::Started {
                self.wait_gone(&existing, subscription).await?;
            }
        }
        let (name, namespace) = names();
        Err(CreateError::StillInTheWay {
            name,
            namespace,
            attempts: CREATE_ATTEMPTS,
        })
    }

    /// Waits (at most [`REPLACE_WAIT`]) until `old` is gone: a watch `Delete` event for it, a
    /// pod of the same name with another uid, or (while the watch is broken) a GET 404.
    async fn wait_gone(&self, old: &Pod, subscription: &Subscription) -> Result<(), CreateError> {
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
                    return Err(CreateError::LeftoverStayed {
                        name: name.to_owned(),
                        namespace: ns.to_owned(),
                        secs: REPLACE_WAIT.as_secs(),
                    });
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

/// Whether a pod found in the way belongs to the job of `task` (submission, kind and commit,
/// as [`job_labels`] and [`job_annotations`] put them on its pod) and can still be waited for
/// (not finished, not being deleted).
fn adoptable(existing: &Pod, task: &GradingTask) -> bool {
    let (labels, annotations) = (job_labels(task), job_annotations(task));
    let label = |k: &str| existing.metadata.labels.as_ref().and_then(|l| l.get(k));
    let annotation = |k: &str| {
        existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
    };
    let phase = existing
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    label(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && label(SUBMISSION_LABEL) == labels.get(SUBMISSION_LABEL)
        && label(COMPONENT_LABEL) == labels.get(COMPONENT_LABEL)
        && annotation(COMMIT_ANNOTATION).is_some()
        && annotation(COMMIT_ANNOTATION) == annotations.get(COMMIT_ANNOTATION)
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
    /// Needs only the pod's name and the job's identity: the pod is built in `run`.
    async fn resumable(&self, task: &GradingTask) -> bool {
        let name = job_pod_name(task);
        match self.api.get(&name).await {
            Ok(Some(existing)) => adoptable(&existing, task),
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
        let pod = self.build(task)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = self.api.namespace().to_owned();
        if cancel.is_cancelled() {
            let e = CreateError::CancelledBeforeCreate {
                name,
                namespace: ns,
            };
            return Err(BackendFailure::new(e.kind(), e.to_string()));
        }
        let subscription = self.watcher().subscribe(&name);
        let _in_flight = InFlight::new(&self.counts);
        // Armed before the create request is sent: from then on the pod may exist.
        let guard = DeleteGuard {
            api: self.api.clone(),
            name: name.clone(),
            armed: true,
        };
        let started = tokio::select! {
            started = self.create_or_adopt(&pod, task, &subscription) => started,
            _ = cancel.cancelled() => Err(CreateError::Cancelled {
                name: name.clone(),
                namespace: ns.clone(),
            }),
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(pod = %name, namespace = %ns, error = %e, "cannot start grading pod");
                if e.needs_cleanup() {
                    guard.delete().await;
                } else {
                    guard.disarm();
                }
                return Err(BackendFailure::new(e.kind(), e.to_string()));
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

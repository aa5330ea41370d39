//! The controller loop: watches pods, binds pending ones to the node (as the scheduler
//! would), starts one worker per pod, and completes graceful deletions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::pod;
use super::shared::{Shared, stopped};

struct Worker {
    /// Latest version of the pod; dropping it tells the worker the pod is gone.
    tx: watch::Sender<Pod>,
}

/// Watches pods and dispatches them to per-pod workers.
pub(super) struct Controller {
    shared: Arc<Shared>,
    workers: HashMap<String, Worker>,
    /// Pods (by UID) whose container was ever started: never run twice.
    started: HashSet<String>,
    /// Pods (by UID) whose bind was requested.
    binding: HashSet<String>,
    /// Pods (by UID) whose final delete was requested.
    finalizing: HashSet<String>,
    /// UIDs seen since the watcher's last `Init`, while re-listing.
    relisted: Option<HashSet<String>>,
    done_tx: mpsc::UnboundedSender<String>,
    done_rx: mpsc::UnboundedReceiver<String>,
    worker_tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    pub(super) fn new(shared: Arc<Shared>) -> Controller {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Controller {
            shared,
            workers: HashMap::new(),
            started: HashSet::new(),
            binding: HashSet::new(),
            finalizing: HashSet::new(),
            relisted: None,
            done_tx,
            done_rx,
            worker_tasks: Vec::new(),
        }
    }

    pub(super) async fn run(mut self) {
        let pods: Api<Pod> = Api::all(self.shared.client.clone());
        let mut events = watcher(pods, watcher::Config::default()).boxed();
        let mut shutdown = self.shared.shutdown.clone();
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                Some(uid) = self.done_rx.recv() => self.worker_done(&uid),
                event = events.next() => match event {
                    None => break,
                    Some(Err(e)) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %e, "test node agent: pod watch failed; retrying");
                        } else {
                            tracing::debug!(error = %e, "test node agent: pod watch failed again");
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Some(Ok(event)) => {
                        failures = 0;
                        self.on_event(event);
                    }
                },
            }
            self.worker_tasks.retain(|task| !task.is_finished());
        }
        // Stopping: tell every worker its pod is gone (they kill their processes), then wait.
        self.workers.clear();
        for task in self.worker_tasks.drain(..) {
            let _ = task.await;
        }
    }

    fn on_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(HashSet::new());
                // Re-listing: retry what may have failed while the API server was away.
                self.binding.clear();
                self.finalizing.clear();
            }
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => self.on_pod(pod),
            watcher::Event::InitDone => {
                // Pods deleted while the watch was down never get a Delete event.
                if let Some(seen) = self.relisted.take() {
                    let gone: Vec<String> = self
                        .workers
                        .keys()
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.pod_gone(&uid);
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.pod_gone(uid);
                }
            }
        }
    }

    fn pod_gone(&mut self, uid: &str) {
        self.workers.remove(uid);
        self.binding.remove(uid);
        self.finalizing.remove(uid);
        self.shared.logs.forget_pod(uid);
    }

    fn on_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let namespaces = &self.shared.config.namespaces;
        if !namespaces.is_empty()
            && !namespaces
                .iter()
                .any(|ns| pod.metadata.namespace.as_ref() == Some(ns))
        {
            return;
        }
        if let Some(seen) = self.relisted.as_mut() {
            seen.insert(uid.clone());
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        if node.is_empty() {
            if pod.metadata.deletion_timestamp.is_none() && self.binding.insert(uid.clone()) {
                tokio::spawn(bind(self.shared.clone(), pod));
            }
            return;
        }
        if node != self.shared.config.node_name {
            return;
        }
        if let Some(worker) = self.workers.get(&uid) {
            worker.tx.send_replace(pod);
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            // Nothing (any more) runs for it: complete the deletion.
            self.finalize(pod);
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.started.contains(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        self.started.insert(uid.clone());
        let (tx, rx) = watch::channel(pod);
        let shared = self.shared.clone();
        let done = self.done_tx.clone();
        let task_uid = uid.clone();
        self.worker_tasks.push(tokio::spawn(async move {
            pod::run(shared, rx).await;
            let _ = done.send(task_uid);
        }));
        self.workers.insert(uid, Worker { tx });
    }

    fn worker_done(&mut self, uid: &str) {
        if let Some(worker) = self.workers.remove(uid) {
            let pod = worker.tx.borrow().clone();
            if pod.metadata.deletion_timestamp.is_some() {
                self.finalize(pod);
            }
        }
    }

    /// Deletes a pod whose containers are all stopped with `gracePeriodSeconds=0` and a UID
    /// precondition, as the kubelet does to finish a graceful deletion.
    fn finalize(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if !self.finalizing.insert(uid.clone()) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let name = pod.name_any();
        let mut shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            retry(&mut shutdown, &name, "final delete", || {
                api.delete(&name, &params)
            })
            .await;
        });
    }
}

/// Binds `pod` to this node (`pods/binding`), as the scheduler would.
async fn bind(shared: Arc<Shared>, pod: Pod) {
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(shared.config.node_name.clone()),
            ..Default::default()
        },
    };
    let mut shutdown = shared.shutdown.clone();
    let pod_ref = format!("{namespace}/{name}");
    let params = PostParams::default();
    // 404/409: already bound, or gone.
    retry(&mut shutdown, &pod_ref, "bind", || {
        api.create_subresource::<_, serde_json::Value>("binding", &name, &params, &binding)
    })
    .await;
}

/// Sends `request` until it succeeds or answers 404/409 (the pod is gone, or it is done
/// already), every 250 ms for a minute at most, or until the agent stops. Warns once, on the
/// first failure.
async fn retry<T, F, R>(shutdown: &mut watch::Receiver<bool>, pod: &str, what: &str, request: F)
where
    F: Fn() -> R,
    R: Future<Output = kube::Result<T>>,
{
    for attempt in 0..240 {
        match request().await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) if attempt == 0 => {
                tracing::warn!(pod = %pod, error = %e, "{what} failed; retrying")
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = stopped(shutdown) => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

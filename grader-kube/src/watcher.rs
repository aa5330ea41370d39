//! One shared watch over all grading pods, dispatching pod states to per-pod waiters.
//!
//! A poll loop per pod costs one request per `poll_interval` per job; the shared watch costs
//! one list and one long-lived watch request for all jobs together, so a graded submission
//! needs only its own create, log and delete requests. Waiters subscribe to a pod name
//! *before* the pod is created so that no event is missed, and receive the latest state of
//! the pod through a `tokio::sync::watch` channel.
//!
//! When the watch stream yields an error it is marked unhealthy and waiters fall back to
//! GETting their pod every `poll_interval`; the stream recovers by itself (kube's watcher
//! with its default backoff) and is marked healthy again on its next event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::PodApi;

/// The latest the watch knows about one pod name.
#[derive(Debug, Clone, Default)]
pub enum Seen {
    /// Nothing yet.
    #[default]
    Nothing,
    /// The pod as last added or modified.
    Present(Arc<Pod>),
    /// The pod was deleted (its last state).
    Deleted(Arc<Pod>),
    /// A re-list after the watch was down did not contain the pod, though it had been
    /// created before the re-list began: it was probably deleted meanwhile. A waiter
    /// confirms with one GET.
    Missing,
}

struct Entry {
    tx: watch::Sender<Seen>,
    subscribers: usize,
    /// The pod has been created (or adopted), so a full list must contain it.
    created: bool,
}

struct Shared {
    entries: Mutex<HashMap<String, Entry>>,
    healthy: watch::Sender<bool>,
}

impl Shared {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, name: &str, seen: Seen) {
        if let Some(entry) = self.entries().get(name) {
            entry.tx.send_replace(seen);
        }
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.send_if_modified(|h| {
            let changed = *h != healthy;
            *h = healthy;
            changed
        });
    }
}

/// The shared watch over the grading pods of one namespace. Dropping it stops the watch.
pub struct PodWatcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for PodWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWatcher")
            .field("healthy", &*self.shared.healthy.borrow())
            .field("subscribed", &self.shared.entries().len())
            .finish()
    }
}

impl PodWatcher {
    /// Starts watching the pods matching `label_selector` through `api` (on the current
    /// tokio runtime). Should the stream ever end, it is opened again after `restart_delay`.
    pub fn start(api: Arc<dyn PodApi>, label_selector: &str, restart_delay: Duration) -> Self {
        let (healthy, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            entries: Mutex::new(HashMap::new()),
            healthy,
        });
        let task = tokio::spawn(run(
            api,
            label_selector.to_owned(),
            restart_delay,
            shared.clone(),
        ));
        PodWatcher { shared, task }
    }

    /// Subscribes to the states of the pod `name`; do this before creating the pod.
    pub fn subscribe(&self, name: &str) -> Subscription {
        let mut entries = self.shared.entries();
        let entry = entries.entry(name.to_owned()).or_insert_with(|| Entry {
            tx: watch::channel(Seen::Nothing).0,
            subscribers: 0,
            created: false,
        });
        entry.subscribers += 1;
        let rx = entry.tx.subscribe();
        Subscription {
            shared: self.shared.clone(),
            name: name.to_owned(),
            rx,
        }
    }

    /// Whether the watch is healthy (`false` after a stream error until the next event).
    pub fn health(&self) -> watch::Receiver<bool> {
        self.shared.healthy.subscribe()
    }
}

impl Drop for PodWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A waiter's view of one pod name. Dropping it unsubscribes.
pub struct Subscription {
    shared: Arc<Shared>,
    name: String,
    rx: watch::Receiver<Seen>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .finish()
    }
}

impl Subscription {
    /// The pod name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records that the pod now exists (created or adopted), so that a re-list without it
    /// means it was deleted.
    pub fn mark_created(&self) {
        if let Some(entry) = self.shared.entries().get_mut(&self.name) {
            entry.created = true;
        }
    }

    /// A receiver of the pod's states.
    pub fn receiver(&self) -> watch::Receiver<Seen> {
        self.rx.clone()
    }

    /// Whether the watch is healthy.
    pub fn health(&self) -> watch::Receiver<bool> {
        self.shared.healthy.subscribe()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut entries = self.shared.entries();
        if let Some(entry) = entries.get_mut(&self.name) {
            entry.subscribers = entry.subscribers.saturating_sub(1);
            if entry.subscribers == 0 {
                entries.remove(&self.name);
            }
        }
    }
}

/// Pods expected in the current (re-)list and those it contained so far.
struct InitCycle {
    expected: HashSet<String>,
    seen: HashSet<String>,
}

async fn run(api: Arc<dyn PodApi>, selector: String, restart_delay: Duration, shared: Arc<Shared>) {
    loop {
        tracing::debug!(namespace = api.namespace(), %selector, "starting the shared pod watch");
        let mut stream = api.watch(&selector);
        let mut init: Option<InitCycle> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if !*shared.healthy.borrow() {
                        tracing::info!(namespace = api.namespace(), "pod watch is healthy again");
                    }
                    shared.set_healthy(true);
                    handle(&shared, &mut init, event);
                }
                Err(e) => {
                    tracing::warn!(
                        namespace = api.namespace(),
                        error = %e,
                        "pod watch failed; waiters poll until it recovers"
                    );
                    shared.set_healthy(false);
                }
            }
        }
        tracing::warn!(
            namespace = api.namespace(),
            "pod watch ended; restarting it"
        );
        shared.set_healthy(false);
        tokio::time::sleep(restart_delay).await;
    }
}

fn handle(shared: &Shared, init: &mut Option<InitCycle>, event: Event<Pod>) {
    match event {
        Event::Apply(pod) => {
            if let Some(name) = pod.metadata.name.clone() {
                shared.dispatch(&name, Seen::Present(Arc::new(pod)));
            }
        }
        Event::Delete(pod) => {
            if let Some(name) = pod.metadata.name.clone() {
                shared.dispatch(&name, Seen::Deleted(Arc::new(pod)));
            }
        }
        Event::Init => {
            let expected = shared
                .entries()
                .iter()
                .filter(|(_, e)| e.created)
                .map(|(n, _)| n.clone())
                .collect();
            *init = Some(InitCycle {
                expected,
                seen: HashSet::new(),
            });
        }
        Event::InitApply(pod) => {
            if let Some(name) = pod.metadata.name.clone() {
                if let Some(cycle) = init.as_mut() {
                    cycle.seen.insert(name.clone());
                }
                shared.dispatch(&name, Seen::Present(Arc::new(pod)));
            }
        }
        Event::InitDone => {
            if let Some(cycle) = init.take() {
                for name in cycle.expected.difference(&cycle.seen) {
                    tracing::debug!(pod = %name, "pod missing from re-list");
                    shared.dispatch(name, Seen::Missing);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Deletion;
    use crate::error::ApiError;
    use async_trait::async_trait;
    use futures::stream::BoxStream;

    struct Quiet;

    #[async_trait]
    impl PodApi for Quiet {
        fn namespace(&self) -> &str {
            "ns"
        }
        async fn create(&self, pod: &Pod) -> Result<Pod, ApiError> {
            Ok(pod.clone())
        }
        async fn get(&self, _: &str) -> Result<Option<Pod>, ApiError> {
            Ok(None)
        }
        async fn delete(&self, _: &str) -> Result<Deletion, ApiError> {
            Ok(Deletion::NotFound)
        }
        async fn logs(&self, _: &str, _: &str, _: usize) -> Result<String, ApiError> {
            Ok(String::new())
        }
        async fn list(&self, _: &str) -> Result<Vec<Pod>, ApiError> {
            Ok(Vec::new())
        }
        fn watch(&self, _: &str) -> BoxStream<'static, Result<Event<Pod>, ApiError>> {
            futures::stream::pending().boxed()
        }
    }

    #[tokio::test]
    async fn subscriptions_share_a_channel_and_clean_up() {
        let watcher = PodWatcher::start(Arc::new(Quiet), "a=b", Duration::from_secs(1));
        let a = watcher.subscribe("p");
        let b = watcher.subscribe("p");
        let other = watcher.subscribe("q");
        watcher.shared.dispatch("p", Seen::Missing);
        assert!(matches!(*b.receiver().borrow(), Seen::Missing));
        assert!(matches!(*other.receiver().borrow(), Seen::Nothing));
        drop(a);
        assert_eq!(watcher.shared.entries().len(), 2);
        drop(b);
        drop(other);
        assert!(watcher.shared.entries().is_empty());
        assert!(*watcher.health().borrow());
    }

    #[tokio::test]
    async fn a_relist_reports_created_pods_it_lacks() {
        let watcher = PodWatcher::start(Arc::new(Quiet), "a=b", Duration::from_secs(1));
        let created = watcher.subscribe("created");
        let listed = watcher.subscribe("listed");
        let pending = watcher.subscribe("pending");
        created.mark_created();
        listed.mark_created();
        let mut init = None;
        handle(&watcher.shared, &mut init, Event::Init);
        // Created after the list began: may be missing from it without being deleted.
        pending.mark_created();
        let mut pod = Pod::default();
        pod.metadata.name = Some("listed".into());
        handle(&watcher.shared, &mut init, Event::InitApply(pod));
        handle(&watcher.shared, &mut init, Event::InitDone);
        assert!(matches!(*created.receiver().borrow(), Seen::Missing));
        assert!(matches!(*listed.receiver().borrow(), Seen::Present(_)));
        assert!(matches!(*pending.receiver().borrow(), Seen::Nothing));
    }
}

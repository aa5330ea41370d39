//! The test control plane with a test node agent, and an admin-side watch that timestamps
//! what the API server reports about the grading pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube_testkit::{ControlPlane, NodeAgent, NodeAgentConfig};

/// The namespace the grading pods run in (Pod Security `restricted`, as in production).
pub const NAMESPACE: &str = "grading";
/// The claim name of the default `kube.volume`.
pub const CLAIM: &str = "grader-data";

/// A control plane, a node agent and the admin watch.
pub struct Cluster {
    pub cp: ControlPlane,
    agent: Option<NodeAgent>,
    pub tracker: PodTracker,
}

impl Cluster {
    /// Starts etcd + kube-apiserver, creates [`NAMESPACE`], and starts a node agent that backs
    /// the claim [`CLAIM`] with `service_dir` and runs `executables` (pod `args[0]` → host
    /// program) instead of the image's programs.
    pub async fn start(
        service_dir: &Path,
        executables: BTreeMap<String, PathBuf>,
    ) -> anyhow::Result<Cluster> {
        let cp = ControlPlane::start().await?.ok_or_else(|| {
            anyhow!(
                "the test control plane binaries are missing: run `bash e2e/control-plane/build.sh`"
            )
        })?;
        cp.create_namespace(NAMESPACE, true).await?;
        let agent = NodeAgent::start(
            cp.client().await?,
            NodeAgentConfig {
                claim_dirs: BTreeMap::from([(CLAIM.to_string(), service_dir.to_path_buf())]),
                executables,
                namespaces: vec![NAMESPACE.to_string()],
                ..NodeAgentConfig::default()
            },
        )
        .await?;
        let tracker = PodTracker::start(cp.client().await?);
        tracker.wait_synced(Duration::from_secs(30)).await?;
        Ok(Cluster {
            cp,
            agent: Some(agent),
            tracker,
        })
    }

    /// Waits until no pod is left in the namespace.
    pub async fn wait_empty(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.tracker.present() > 0 {
            if Instant::now() > deadline {
                bail!(
                    "{} pod(s) still in namespace {NAMESPACE} after {timeout:?}",
                    self.tracker.present()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops the admin watch and the node agent (the control plane stops on drop).
    pub async fn stop(mut self) {
        self.tracker.task.abort();
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
    }
}

#[derive(Default)]
struct State {
    synced: bool,
    /// Pods in the namespace (by uid).
    present: HashSet<String>,
    /// Pods not yet Succeeded/Failed and not being deleted (by uid).
    active: HashSet<String>,
    max_present: usize,
    max_active: usize,
    /// When the watch first reported each pod name `Succeeded`.
    succeeded: HashMap<String, Instant>,
}

/// The admin-side watch of [`NAMESPACE`]: when each pod turned `Succeeded` in the API server
/// (as its watch delivers it), and how many pods were in flight at most.
#[derive(Clone)]
pub struct PodTracker {
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for PodTracker {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl PodTracker {
    fn start(client: kube::Client) -> PodTracker {
        let state = Arc::new(Mutex::new(State::default()));
        let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let Ok(event) = event else { continue };
                let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Event::Init => {}
                    Event::InitDone => st.synced = true,
                    Event::InitApply(pod) | Event::Apply(pod) => st.apply(&pod, now),
                    Event::Delete(pod) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            st.present.remove(uid);
                            st.active.remove(uid);
                        }
                    }
                }
            }
        });
        PodTracker {
            state,
            task: Arc::new(task),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_synced(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.lock().synced {
            if Instant::now() > deadline {
                bail!("the admin pod watch did not sync within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// When the pod `name` was first reported `Succeeded`.
    pub fn succeeded_at(&self, name: &str) -> Option<Instant> {
        self.lock().succeeded.get(name).copied()
    }

    /// Pods in the namespace now.
    pub fn present(&self) -> usize {
        self.lock().present.len()
    }

    /// Most pods present at once, and most pods not yet finished at once, since the last
    /// [`PodTracker::reset_peaks`].
    pub fn peaks(&self) -> (usize, usize) {
        let st = self.lock();
        (st.max_present, st.max_active)
    }

    pub fn reset_peaks(&self) {
        let mut st = self.lock();
        st.max_present = st.present.len();
        st.max_active = st.active.len();
        st.succeeded.clear();
    }
}

impl State {
    fn apply(&mut self, pod: &Pod, now: Instant) {
        let (Some(uid), Some(name)) = (pod.metadata.uid.clone(), pod.metadata.name.clone()) else {
            return;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        self.present.insert(uid.clone());
        let finished = matches!(phase, "Succeeded" | "Failed");
        if finished || pod.metadata.deletion_timestamp.is_some() {
            self.active.remove(&uid);
        } else {
            self.active.insert(uid);
        }
        if phase == "Succeeded" {
            self.succeeded.entry(name).or_insert(now);
        }
        self.max_present = self.max_present.max(self.present.len());
        self.max_active = self.max_active.max(self.active.len());
    }
}

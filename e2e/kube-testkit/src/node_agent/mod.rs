//! The test node agent: a stand-in kubelet (and scheduler) for tests. It knows nothing about
//! grader.

mod logs;
mod pod;
mod process;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, ObjectReference, Pod,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::logs::LogRegistry;

/// The node agent's `kubeletVersion` (its API is the one of `KUBE_APISERVER_VERSION`).
const KUBELET_VERSION: &str = "v1.34.4-testkit";

/// Configuration of a [`NodeAgent`].
#[derive(Clone, Debug)]
pub struct NodeAgentConfig {
    /// Name of the Node the agent registers and binds pods to.
    pub node_name: String,
    /// Host directory backing each PersistentVolumeClaim, by claim name (the "PVC" a pod
    /// mounts). A pod mounting a claim missing here stays `Pending` with the waiting reason
    /// `CreateContainerConfigError`.
    pub claim_dirs: BTreeMap<String, PathBuf>,
    /// Host directory backing a volume by *volume* name, whatever its type (optional;
    /// overrides the rules below). Without it: `persistentVolumeClaim` → `claim_dirs`,
    /// `hostPath` → its path, `emptyDir` → a fresh per-pod directory, `configMap`/`secret`/
    /// `projected`/`downwardAPI` → files written from the API objects into a per-pod directory.
    pub volume_dirs: BTreeMap<String, PathBuf>,
    /// Map from a container's `command[0]` (or `args[0]` when `command` is empty, e.g.
    /// `"grader-convert"`) to the host executable to run instead, so a pod whose image would
    /// contain the tool runs the host's copy; other commands run as given (looked up in the
    /// agent's `PATH`).
    pub executables: BTreeMap<String, PathBuf>,
    /// Images that "fail to pull": a container with such an image waits forever with reason
    /// `ErrImagePull`, then `ImagePullBackOff` (until deleted or its `activeDeadlineSeconds`
    /// pass), to test image-pull failures. An entry ending in `*` matches by prefix.
    pub pull_fail_images: Vec<String>,
    /// Only bind and run pods in these namespaces (all namespaces when empty), so that several
    /// agents can share one control plane.
    pub namespaces: Vec<String>,
}

impl Default for NodeAgentConfig {
    fn default() -> Self {
        NodeAgentConfig {
            node_name: "testkit-node".into(),
            claim_dirs: BTreeMap::new(),
            volume_dirs: BTreeMap::new(),
            executables: BTreeMap::new(),
            pull_fail_images: Vec::new(),
            namespaces: Vec::new(),
        }
    }
}

/// The **test node agent**: plays a kubelet for tests. Knows nothing about grader.
///
/// * Registers a Ready `Node` (InternalIP 127.0.0.1, `daemonEndpoints.kubeletEndpoint.port` =
///   its HTTPS log server, allocatable cpu/memory/pods) and removes the `not-ready` taint.
///   No node-lifecycle controller runs, so it needs no heartbeat to stay Ready.
/// * Watches all pods; binds pending pods without `nodeName` to itself (`pods/binding`), as
///   the scheduler would (ignoring resources, taints and affinity).
/// * Runs each bound pod's single container as a local child process (no shell, its own
///   process group): `command` + `args`, or — image entrypoint semantics — `args[0]` with
///   `args[1..]` when `command` is empty, after `$(VAR)` expansion; `argv[0]` is mapped through
///   [`NodeAgentConfig::executables`]. The environment is the container's `env`/`envFrom`
///   (values, `fieldRef`, `configMapKeyRef`, `secretKeyRef`) plus the agent's `PATH` and `HOME`
///   and `HOSTNAME` = pod name. The working directory is `workingDir` (default `/`).
/// * Volumes: see [`NodeAgentConfig::volume_dirs`]; `subPath`/`subPathExpr` are honoured
///   (created when missing) and `readOnly` too. When the agent can (root), the process runs in
///   a private mount namespace where each host directory is bind-mounted onto its
///   `mountPath` (mount points are created on the host if missing), so the container sees its
///   mounts at their paths. Otherwise every mount's host directory must *be* its `mountPath`
///   (the auto-mounted `kube-api-access-*` token volume is then skipped), or the pod fails.
/// * Writes real pod status through `pods/status`: `Pending` (ContainerCreating), `Running`
///   (container running, `Ready`), then `Succeeded`/`Failed` with the container's terminated
///   state (`exitCode`, reason `Completed`/`Error`/`StartError`, `startedAt`/`finishedAt`).
/// * Enforces `activeDeadlineSeconds` (kill, phase `Failed`, reason `DeadlineExceeded`).
/// * Captures stdout+stderr in a per-container log file served by a kubelet-style HTTPS
///   endpoint `GET /containerLogs/{ns}/{pod}/{container}` (`tailLines`, `limitBytes` and
///   `follow` honoured), so `pods/log` goes through the API server as in a cluster.
/// * Completes graceful deletion as containerd + kubelet do: SIGTERM to the container's main
///   process, SIGKILL to its whole process group once the main process exits or the grace
///   period ends, then deletes the pod with `gracePeriodSeconds=0` and a UID precondition.
/// * Survives API-server restarts: the watch re-lists and status writes are retried.
/// * Failures as a kubelet reports them: a claim without a host directory, a missing
///   ConfigMap/Secret or an unsupported volume/env source keeps the pod `Pending` with the
///   waiting reason `CreateContainerConfigError` (the message says why); a program that cannot
///   be started fails the pod (terminated, exit code 128, reason `StartError`).
///
/// Give each agent sharing a control plane its own `node_name` and
/// [`NodeAgentConfig::namespaces`].
///
/// Not done: securityContext (processes run as the agent's user; PodSecurity is checked by
/// the API server only), resource limits, probes, restarts (`restartPolicy` is treated as
/// `Never`), init/sidecar/multiple containers (such pods fail with reason
/// `UnsupportedByTestNodeAgent`), images (any image "exists" unless listed in
/// `pull_fail_images`), networking (pods share the host network; `podIP` is 127.0.0.1),
/// exec/attach/port-forward.
pub struct NodeAgent {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    controller: Option<JoinHandle<()>>,
    log_server: Option<JoinHandle<()>>,
}

/// State shared by the controller, the pod workers and the log server.
pub(crate) struct Shared {
    pub client: Client,
    pub config: NodeAgentConfig,
    /// Per-pod directories: logs, emptyDirs, materialized configMap/secret volumes.
    pub work_dir: tempfile::TempDir,
    pub logs: LogRegistry,
    /// Process group of each running container, by pod UID (killed on drop).
    pub running: Mutex<HashMap<String, i32>>,
    /// Whether containers get a private mount namespace with bind mounts.
    pub private_mounts: bool,
    pub shutdown: watch::Receiver<bool>,
}

impl NodeAgent {
    /// Registers the Node, starts the log server and the pod controller.
    pub async fn start(client: Client, config: NodeAgentConfig) -> Result<NodeAgent> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let private_mounts = process::private_mounts_available();
        if !private_mounts {
            tracing::warn!(
                "test node agent: no private mount namespaces (not root?): every volume's host \
                 directory must equal its mountPath"
            );
        }
        let (listener, acceptor) = logs::bind().await?;
        let log_port = listener.local_addr()?.port();
        crate::spawn::reap_stale_dirs();
        let work_dir = tempfile::Builder::new()
            .prefix("kube-testkit-node-")
            .tempdir()?;
        crate::spawn::mark_owned(work_dir.path())?;
        let shared = Arc::new(Shared {
            client: client.clone(),
            config,
            work_dir,
            logs: LogRegistry::default(),
            running: Mutex::new(HashMap::new()),
            private_mounts,
            shutdown: shutdown_rx.clone(),
        });
        register_node(&client, &shared.config.node_name, log_port)
            .await
            .with_context(|| format!("register Node {}", shared.config.node_name))?;
        let log_server = tokio::spawn(logs::serve(listener, acceptor, shared.clone()));
        let controller = tokio::spawn(Controller::new(shared.clone()).run());
        Ok(NodeAgent {
            shared,
            shutdown: shutdown_tx,
            controller: Some(controller),
            log_server: Some(log_server),
        })
    }

    /// The name of the agent's Node.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// Graceful stop: stops watching and kills running containers (their pods keep their last
    /// status). Also done, less gracefully, on drop.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(controller) = self.controller.take() {
            let _ = controller.await;
        }
        if let Some(server) = self.log_server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in [self.controller.take(), self.log_server.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        for (_, pgid) in self
            .shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            process::kill_group(pgid, libc::SIGKILL);
        }
    }
}

/// Creates (or updates) the Node object and makes it Ready and schedulable.
async fn register_node(client: &Client, name: &str, log_port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
    ]);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let now = Time(Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity("8".into())),
        ("memory".to_string(), Quantity("16Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    let status = NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        allocatable: Some(resources.clone()),
        capacity: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "test node agent",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "test node agent",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "test node agent",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "test node agent is posting ready status",
            ),
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(log_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch.into(),
            boot_id: String::new(),
            container_runtime_version: "kube-testkit://0.1".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: String::new(),
            operating_system: "linux".into(),
            os_image: "kube-testkit node agent".into(),
            system_uuid: String::new(),
            swap: None,
        }),
        ..Default::default()
    };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    // TaintNodesByCondition adds node.kubernetes.io/not-ready on creation; no node-lifecycle
    // controller runs to remove it.
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": null } })),
        )
        .await?;
    Ok(())
}

struct Worker {
    /// Latest version of the pod; dropping it tells the worker the pod is gone.
    tx: watch::Sender<Pod>,
}

/// Watches pods and dispatches them to per-pod workers.
struct Controller {
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
    fn new(shared: Arc<Shared>) -> Controller {
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

    async fn run(mut self) {
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
            for attempt in 0..240 {
                match api.delete(&name, &params).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                    Err(e) if attempt == 0 => {
                        tracing::warn!(pod = %name, error = %e, "final delete failed; retrying")
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    _ = stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
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
    for attempt in 0..240 {
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => return,
            // Already bound, or gone.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) if attempt == 0 => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "bind failed; retrying")
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Resolves once the agent is stopping (or the agent is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

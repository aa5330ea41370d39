//! The [`NodeAgent`] handle: starts the parts of the agent and stops them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::NodeAgentConfig;
use super::controller::Controller;
use super::logs::{self, LogRegistry};
use super::node::register_node;
use super::process;
use super::shared::Shared;

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

//! The state the agent's tasks share, and the signal that stops them.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Client;
use tokio::sync::watch;

use super::config::NodeAgentConfig;
use super::logs::LogRegistry;

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

/// Resolves once the agent is stopping (or the agent is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

//! From a pod's container spec to a [`Launch`]: argv, program, working directory,
//! environment and mounts, or why the container cannot be created.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use super::env::expand;
use super::process::Launch;
use super::shared::Shared;

/// Why a pod's container cannot be started.
pub(super) enum PrepareError {
    /// A configuration problem: the kubelet keeps such a pod `Pending` with the waiting reason
    /// `CreateContainerConfigError`.
    Config(String),
    /// The runtime failed to start the container: terminated with reason `StartError`.
    Start(String),
}

/// What preparing a pod's container needs: the agent's state and the pod, with its
/// namespace, name, UID and host directory.
pub(super) struct Setup<'a> {
    pub shared: &'a Shared,
    /// The pod as the worker first saw it.
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The pod's own directory on the host (logs, emptyDirs, materialized volumes).
    pub pod_dir: &'a Path,
}

impl Setup<'_> {
    /// Turns the container spec into a process to start.
    pub(super) async fn prepare(
        &self,
        spec: &PodSpec,
        container: &Container,
    ) -> Result<Launch, PrepareError> {
        let env = self.environment(container).await?;
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let argv: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|arg| expand(arg, &vars))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            return Err(PrepareError::Start(
                "no command and no args: the test node agent has no image entrypoint to run".into(),
            ));
        };
        let program = self
            .shared
            .config
            .executables
            .get(program)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(program));
        let working_dir = PathBuf::from(
            container
                .working_dir
                .as_deref()
                .filter(|d| !d.is_empty())
                .unwrap_or("/"),
        );

        let mounts = self.mounts(spec, container, &vars).await?;
        Ok(Launch {
            program,
            args: args.to_vec(),
            env,
            working_dir,
            mounts,
            private_mounts: self.shared.private_mounts,
        })
    }
}

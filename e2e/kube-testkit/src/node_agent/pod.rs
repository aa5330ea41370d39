//! One pod's life on the test node: status, volumes, environment, process, deadline, deletion.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Pod, PodSpec, Secret, ServiceAccount, Volume,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use super::logs::LogEntry;
use super::process::{self, Launch, Mount, expand};
use super::status::{State, StatusBuilder};

/// Why a pod's container cannot be started.
enum PrepareError {
    /// A configuration problem: the kubelet keeps such a pod `Pending` with the waiting reason
    /// `CreateContainerConfigError`.
    Config(String),
    /// The runtime failed to start the container: terminated with reason `StartError`.
    Start(String),
}

/// What ended the wait for a running (or stuck) container.
enum Interrupt {
    /// The pod got a deletionTimestamp; the grace period to give the process.
    Deleted(Duration),
    /// The pod disappeared from the API, or the agent stops: kill without status.
    Gone,
    /// `activeDeadlineSeconds` passed.
    Deadline,
}

const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Runs one pod to completion. `rx` carries the latest version of the pod; its sender is
/// dropped when the pod is gone or the agent stops.
pub(crate) async fn run(shared: Arc<Shared>, rx: watch::Receiver<Pod>) {
    let pod = rx.borrow().clone();
    let spec = pod.spec.clone().unwrap_or_default();
    let first = spec.containers.first().cloned().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let status = StatusBuilder::new(
        &first.name,
        first.image.as_deref().unwrap_or_default(),
        &uid,
    );
    // Counted from the status.startTime written now, as the kubelet does.
    let deadline = spec
        .active_deadline_seconds
        .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
    let pod_dir = shared.work_dir.path().join("pods").join(&uid);
    let mut run = PodRun {
        api: Api::namespaced(shared.client.clone(), &namespace),
        name: pod.name_any(),
        namespace,
        uid,
        shutdown: shared.shutdown.clone(),
        shared,
        status,
        deadline,
        rx,
        pod_dir,
    };
    run.run(pod, spec, first).await;
}

struct PodRun {
    shared: Arc<Shared>,
    api: Api<Pod>,
    name: String,
    namespace: String,
    uid: String,
    status: StatusBuilder,
    deadline: Option<Instant>,
    rx: watch::Receiver<Pod>,
    shutdown: watch::Receiver<bool>,
    pod_dir: PathBuf,
}

fn waiting(reason: &str, message: Option<String>) -> State {
    State::Waiting {
        reason: reason.into(),
        message,
    }
}

fn exit_code(status: &ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl PodRun {
    async fn run(&mut self, pod: Pod, spec: PodSpec, container: Container) {
        let creating = waiting("ContainerCreating", None);
        if !self.write("Pending", &creating, None).await {
            return;
        }
        if let Some(why) = unsupported(&spec) {
            let state = waiting("ContainerCreating", None);
            self.write("Failed", &state, Some(("UnsupportedByTestNodeAgent", &why)))
                .await;
            return;
        }
        let image = container.image.clone().unwrap_or_default();
        if self.pull_fails(&image) {
            let message = format!(
                "kube-testkit: pulling image \"{image}\" fails (NodeAgentConfig::pull_fail_images)"
            );
            let mut state = waiting("ErrImagePull", Some(message.clone()));
            self.write("Pending", &state, None).await;
            let backoff = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(backoff);
            let mut backed_off = false;
            let interrupt = loop {
                tokio::select! {
                    interrupt = self.interrupted() => break interrupt,
                    _ = &mut backoff, if !backed_off => {
                        backed_off = true;
                        state = waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\": {message}")));
                        self.write("Pending", &state, None).await;
                    }
                }
            };
            self.end_unstarted(interrupt, &state).await;
            return;
        }
        // Like the kubelet's sync loop, retry a container that cannot be configured yet (a
        // missing ConfigMap may appear; the API server may be restarting).
        let mut reported: Option<String> = None;
        let launch = loop {
            match self.prepare(&pod, &spec, &container).await {
                Ok(launch) => break launch,
                Err(PrepareError::Config(message)) => {
                    let state = waiting("CreateContainerConfigError", Some(message.clone()));
                    if reported.as_ref() != Some(&message) {
                        tracing::warn!(pod = %self.pod_ref(), %message, "test node agent: cannot create container");
                        self.write("Pending", &state, None).await;
                        reported = Some(message);
                    }
                    tokio::select! {
                        interrupt = self.interrupted() => {
                            self.end_unstarted(interrupt, &state).await;
                            return;
                        }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(PrepareError::Start(message)) => {
                    self.start_failed(message, None).await;
                    return;
                }
            }
        };
        self.run_process(&container.name, launch, &spec).await;
    }

    fn pod_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn pull_fails(&self, image: &str) -> bool {
        self.shared
            .config
            .pull_fail_images
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == pattern,
            })
    }

    async fn start_failed(&mut self, message: String, started_at: Option<Timestamp>) {
        tracing::warn!(pod = %self.pod_ref(), %message, "test node agent: container failed to start");
        let state = State::Terminated {
            exit_code: 128,
            signal: None,
            reason: "StartError".into(),
            message: Some(message),
            started_at,
            finished_at: Timestamp::now(),
        };
        self.write("Failed", &state, None).await;
    }

    /// A container that never started: only the deadline leaves a status to write.
    async fn end_unstarted(&mut self, interrupt: Interrupt, state: &State) {
        if let Interrupt::Deadline = interrupt {
            self.write(
                "Failed",
                state,
                Some(("DeadlineExceeded", DEADLINE_MESSAGE)),
            )
            .await;
        }
    }

    async fn run_process(&mut self, container: &str, launch: Launch, spec: &PodSpec) {
        if let Err(e) = std::fs::create_dir_all(&self.pod_dir) {
            return self
                .start_failed(format!("create {}: {e}", self.pod_dir.display()), None)
                .await;
        }
        let log_path = self.pod_dir.join(format!("{container}.log"));
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(log) => log,
            Err(e) => {
                return self
                    .start_failed(format!("create {}: {e}", log_path.display()), None)
                    .await;
            }
        };
        let (finished_tx, finished_rx) = watch::channel(false);
        self.shared.logs.register(
            &self.namespace,
            &self.name,
            container,
            LogEntry {
                uid: self.uid.clone(),
                path: log_path,
                finished: finished_rx,
            },
        );
        let started_at = Timestamp::now();
        let mut child = match process::spawn(&launch, &log) {
            Ok(child) => child,
            Err(e) => {
                let _ = finished_tx.send(true);
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    " (executable or working directory not found; see NodeAgentConfig::executables)"
                } else {
                    ""
                };
                let message = format!(
                    "failed to start {} in {}: {e}{hint}",
                    launch.program.display(),
                    launch.working_dir.display()
                );
                return self.start_failed(message, Some(started_at)).await;
            }
        };
        let pgid = child.id().map_or(0, |id| id as i32);
        self.running(pgid, true);
        tracing::debug!(pod = %self.pod_ref(), pid = pgid, program = %launch.program.display(), "test node agent: started");

        let running = State::Running { started_at };
        let outcome = if self.write("Running", &running, None).await {
            tokio::select! {
                status = child.wait() => Ok(status),
                interrupt = self.interrupted() => Err(interrupt),
            }
        } else {
            Err(Interrupt::Gone)
        };
        let grace =
            Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
        let (status, pod_reason) = match outcome {
            Ok(status) => {
                // The container is its process group: nothing outlives the main process.
                process::kill_group(pgid, libc::SIGKILL);
                (status, None)
            }
            Err(Interrupt::Gone) => {
                process::kill_group(pgid, libc::SIGKILL);
                let _ = child.wait().await;
                self.running(pgid, false);
                let _ = finished_tx.send(true);
                return;
            }
            Err(Interrupt::Deleted(grace)) => (terminate(&mut child, pgid, grace).await, None),
            Err(Interrupt::Deadline) => (
                terminate(&mut child, pgid, grace).await,
                Some(("DeadlineExceeded", DEADLINE_MESSAGE)),
            ),
        };
        self.running(pgid, false);
        let _ = finished_tx.send(true);
        let (exit_code, message) = match status {
            Ok(status) => (exit_code(&status), None),
            Err(e) => (137, Some(format!("waiting for the process failed: {e}"))),
        };
        let state = State::Terminated {
            exit_code,
            signal: None,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message,
            started_at: Some(started_at),
            finished_at: Timestamp::now(),
        };
        let phase = if exit_code == 0 && pod_reason.is_none() {
            "Succeeded"
        } else {
            "Failed"
        };
        self.write(phase, &state, pod_reason).await;
    }

    fn running(&self, pgid: i32, running: bool) {
        let mut map = self
            .shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if running {
            map.insert(self.uid.clone(), pgid);
        } else {
            map.remove(&self.uid);
        }
    }

    /// Waits for deletion, disappearance, agent stop or the deadline.
    async fn interrupted(&mut self) -> Interrupt {
        loop {
            let grace = {
                let pod = self.rx.borrow_and_update();
                pod.metadata.deletion_timestamp.as_ref().map(|_| {
                    Duration::from_secs(
                        pod.metadata
                            .deletion_grace_period_seconds
                            .unwrap_or(30)
                            .max(0) as u64,
                    )
                })
            };
            if let Some(grace) = grace {
                return Interrupt::Deleted(grace);
            }
            tokio::select! {
                changed = self.rx.changed() => if changed.is_err() { return Interrupt::Gone },
                _ = super::stopped(&mut self.shutdown) => return Interrupt::Gone,
                _ = sleep_until(self.deadline) => return Interrupt::Deadline,
            }
        }
    }

    /// Writes the pod status (merge patch of `status`, UID as precondition), retrying while
    /// the API server is unavailable. False when the pod is gone or the agent stops.
    async fn write(
        &mut self,
        phase: &str,
        state: &State,
        pod_reason: Option<(&str, &str)>,
    ) -> bool {
        let status = self.status.build(phase, state, pod_reason);
        let patch = Patch::Merge(json!({ "metadata": { "uid": self.uid }, "status": status }));
        for attempt in 0u32.. {
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return true,
                // Gone, or replaced by a pod with the same name.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return false,
                Err(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429 => {
                    tracing::error!(pod = %self.pod_ref(), error = %e, "test node agent: pod status rejected");
                    return false;
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!(pod = %self.pod_ref(), error = %e, "test node agent: status write failed; retrying")
                }
                Err(_) if attempt > 4 * 180 => return false,
                Err(_) => {}
            }
            tokio::select! {
                _ = super::stopped(&mut self.shutdown) => return false,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        unreachable!()
    }

    /// Turns the container spec into a process to start.
    async fn prepare(
        &self,
        pod: &Pod,
        spec: &PodSpec,
        container: &Container,
    ) -> Result<Launch, PrepareError> {
        let env = self.environment(pod, container).await?;
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

        let mut sources: HashMap<String, PathBuf> = HashMap::new();
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            // Without bind mounts the service-account token volume cannot be mounted anyway.
            if !self.shared.private_mounts && vm.name.starts_with("kube-api-access-") {
                continue;
            }
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == vm.name)
                .ok_or_else(|| {
                    PrepareError::Config(format!(
                        "volumeMount \"{}\" names no volume of the pod",
                        vm.name
                    ))
                })?;
            let source = match sources.get(&vm.name) {
                Some(source) => source.clone(),
                None => {
                    let source = self.volume_source(pod, volume).await?;
                    sources.insert(vm.name.clone(), source.clone());
                    source
                }
            };
            let sub_path = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(sub), _) if !sub.is_empty() => sub.clone(),
                (_, Some(expr)) if !expr.is_empty() => expand(expr, &vars),
                _ => String::new(),
            };
            let source = if sub_path.is_empty() {
                source
            } else {
                let relative = Path::new(&sub_path);
                if relative
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(PrepareError::Config(format!(
                        "subPath \"{sub_path}\" must be a relative path without '..'"
                    )));
                }
                let source = source.join(relative);
                if !source.exists() {
                    std::fs::create_dir_all(&source).map_err(|e| {
                        PrepareError::Start(format!("create subPath {}: {e}", source.display()))
                    })?;
                }
                source
            };
            let target = PathBuf::from(&vm.mount_path);
            if !self.shared.private_mounts {
                let same = match (source.canonicalize(), target.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => source == target,
                };
                if !same {
                    return Err(PrepareError::Start(format!(
                        "volumeMount \"{}\": mountPath {} is not its host directory {}; without root the test \
                         node agent cannot bind-mount, so the paths must be equal",
                        vm.name,
                        target.display(),
                        source.display()
                    )));
                }
                continue;
            }
            mounts.push(Mount {
                source,
                target,
                read_only: vm.read_only.unwrap_or(false),
            });
        }
        if self.shared.private_mounts {
            process::prepare_mount_points(&mut mounts)
                .map_err(|e| PrepareError::Start(format!("create mount points: {e}")))?;
        }
        Ok(Launch {
            program,
            args: args.to_vec(),
            env,
            working_dir,
            mounts,
            private_mounts: self.shared.private_mounts,
        })
    }

    /// The container's environment: PATH, HOME (the agent's), HOSTNAME, then `envFrom`, then
    /// `env` (later entries override earlier ones; `$(VAR)` refers to earlier entries).
    async fn environment(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<Vec<(String, String)>, PrepareError> {
        let mut env: Vec<(String, String)> = Vec::new();
        let set = |env: &mut Vec<(String, String)>, key: String, value: String| match env
            .iter_mut()
            .find(|(k, _)| *k == key)
        {
            Some(entry) => entry.1 = value,
            None => env.push((key, value)),
        };
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        set(&mut env, "PATH".into(), path);
        if let Ok(home) = std::env::var("HOME") {
            set(&mut env, "HOME".into(), home);
        }
        set(&mut env, "HOSTNAME".into(), self.name.clone());
        for source in container.env_from.iter().flatten() {
            let prefix = source.prefix.clone().unwrap_or_default();
            let data = if let Some(cm) = &source.config_map_ref {
                self.config_map_data(&cm.name, cm.optional.unwrap_or(false))
                    .await?
            } else if let Some(secret) = &source.secret_ref {
                self.secret_data(&secret.name, secret.optional.unwrap_or(false))
                    .await?
            } else {
                BTreeMap::new()
            };
            for (key, value) in data {
                set(
                    &mut env,
                    format!("{prefix}{key}"),
                    String::from_utf8_lossy(&value).into_owned(),
                );
            }
        }
        for var in container.env.iter().flatten() {
            let value = if let Some(source) = &var.value_from {
                if let Some(field) = &source.field_ref {
                    field_value(pod, &field.field_path).ok_or_else(|| {
                        PrepareError::Config(format!(
                            "env {}: fieldRef {} is not supported",
                            var.name, field.field_path
                        ))
                    })?
                } else if let Some(key) = &source.config_map_key_ref {
                    let optional = key.optional.unwrap_or(false);
                    let data = self.config_map_data(&key.name, optional).await?;
                    match self.data_key(&data, &key.key, optional, "ConfigMap", &key.name)? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(key) = &source.secret_key_ref {
                    let optional = key.optional.unwrap_or(false);
                    let data = self.secret_data(&key.name, optional).await?;
                    match self.data_key(&data, &key.key, optional, "Secret", &key.name)? {
                        Some(v) => v,
                        None => continue,
                    }
                } else {
                    return Err(PrepareError::Config(format!(
                        "env {}: this valueFrom is not supported by the test node agent",
                        var.name
                    )));
                }
            } else {
                let vars: HashMap<String, String> = env.iter().cloned().collect();
                expand(var.value.as_deref().unwrap_or_default(), &vars)
            };
            set(&mut env, var.name.clone(), value);
        }
        Ok(env)
    }

    /// `key` of the data of `kind` `name` (a `configMapKeyRef` / `secretKeyRef`); `None`
    /// when it is missing and `optional`.
    fn data_key(
        &self,
        data: &BTreeMap<String, Vec<u8>>,
        key: &str,
        optional: bool,
        kind: &str,
        name: &str,
    ) -> Result<Option<String>, PrepareError> {
        match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(PrepareError::Config(format!(
                "couldn't find key {key} in {kind} {}/{name}",
                self.namespace
            ))),
        }
    }

    async fn config_map_data(
        &self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, PrepareError> {
        let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(cm)) => {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, ByteString(v))| (k, v)),
                );
                Ok(data)
            }
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(PrepareError::Config(format!(
                "configmap \"{name}\" not found"
            ))),
            Err(e) => Err(PrepareError::Config(format!(
                "get configmap \"{name}\": {e}"
            ))),
        }
    }

    async fn secret_data(
        &self,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, PrepareError> {
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(secret)) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, ByteString(v))| (k, v))
                .collect()),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(PrepareError::Config(format!("secret \"{name}\" not found"))),
            Err(e) => Err(PrepareError::Config(format!("get secret \"{name}\": {e}"))),
        }
    }

    /// The host directory backing `volume` (see `NodeAgentConfig::volume_dirs`).
    async fn volume_source(&self, pod: &Pod, volume: &Volume) -> Result<PathBuf, PrepareError> {
        let config = &self.shared.config;
        if let Some(dir) = config.volume_dirs.get(&volume.name) {
            return Ok(dir.clone());
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            return config.claim_dirs.get(&claim.claim_name).cloned().ok_or_else(|| {
                PrepareError::Config(format!(
                    "persistentVolumeClaim \"{}\" (volume \"{}\") has no host directory in NodeAgentConfig::claim_dirs",
                    claim.claim_name, volume.name
                ))
            });
        }
        if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            if host_path.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&path).map_err(|e| {
                    PrepareError::Start(format!("create hostPath {}: {e}", path.display()))
                })?;
            }
            return Ok(path);
        }
        let dir = self.pod_dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| PrepareError::Start(format!("create {}: {e}", dir.display())))?;
        if volume.empty_dir.is_some() {
            return Ok(dir);
        }
        if let Some(cm) = &volume.config_map {
            let data = self
                .config_map_data(&cm.name, cm.optional.unwrap_or(false))
                .await?;
            write_items(&dir, &data, cm.items.as_deref())?;
            return Ok(dir);
        }
        if let Some(secret) = &volume.secret {
            let data = self
                .secret_data(
                    secret.secret_name.as_deref().unwrap_or_default(),
                    secret.optional.unwrap_or(false),
                )
                .await?;
            write_items(&dir, &data, secret.items.as_deref())?;
            return Ok(dir);
        }
        if let Some(downward) = &volume.downward_api {
            for item in downward.items.iter().flatten() {
                self.write_downward(
                    pod,
                    &dir,
                    &item.path,
                    item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                )?;
            }
            return Ok(dir);
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let data = self
                        .config_map_data(&cm.name, cm.optional.unwrap_or(false))
                        .await?;
                    write_items(&dir, &data, cm.items.as_deref())?;
                } else if let Some(secret) = &source.secret {
                    let data = self
                        .secret_data(&secret.name, secret.optional.unwrap_or(false))
                        .await?;
                    write_items(&dir, &data, secret.items.as_deref())?;
                } else if let Some(downward) = &source.downward_api {
                    for item in downward.items.iter().flatten() {
                        self.write_downward(
                            pod,
                            &dir,
                            &item.path,
                            item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                        )?;
                    }
                } else if let Some(token) = &source.service_account_token {
                    let value = self
                        .service_account_token(
                            pod,
                            token.audience.clone(),
                            token.expiration_seconds,
                        )
                        .await?;
                    write_file(&dir, &token.path, value.as_bytes())?;
                } else {
                    return Err(PrepareError::Config(format!(
                        "volume \"{}\": this projected source is not supported by the test node agent",
                        volume.name
                    )));
                }
            }
            return Ok(dir);
        }
        Err(PrepareError::Config(format!(
            "volume \"{}\": this volume type is not supported by the test node agent",
            volume.name
        )))
    }

    fn write_downward(
        &self,
        pod: &Pod,
        dir: &Path,
        path: &str,
        field: Option<&str>,
    ) -> Result<(), PrepareError> {
        let value = field.and_then(|f| field_value(pod, f)).ok_or_else(|| {
            PrepareError::Config(format!(
                "downwardAPI item {path}: only supported fieldRefs are allowed"
            ))
        })?;
        write_file(dir, path, value.as_bytes())
    }

    /// A token bound to the pod, for its service account (TokenRequest API).
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<String>,
        expiration: Option<i64>,
    ) -> Result<String, PrepareError> {
        let spec = pod.spec.as_ref();
        let account = spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().filter(|a| !a.is_empty()).collect(),
                expiration_seconds: Some(expiration.unwrap_or(3607)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.name.clone()),
                    uid: Some(self.uid.clone()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        match api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
        {
            Ok(TokenRequest {
                status: Some(status),
                ..
            }) => Ok(status.token),
            Ok(_) => Err(PrepareError::Config(
                "TokenRequest returned no token".into(),
            )),
            Err(e) => Err(PrepareError::Config(format!(
                "token for serviceaccount {account}: {e}"
            ))),
        }
    }
}

/// Why the agent does not run this pod, if it does not.
fn unsupported(spec: &PodSpec) -> Option<String> {
    if spec.containers.len() != 1 {
        return Some(format!(
            "the test node agent runs pods with exactly one container, not {}",
            spec.containers.len()
        ));
    }
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("the test node agent does not run init containers".into());
    }
    None
}

/// The value of a downward-API field path, for the supported ones.
fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    let map_lines = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "metadata.labels" => map_lines(&meta.labels),
        "metadata.annotations" => map_lines(&meta.annotations),
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
        other => {
            if let Some(rest) = other.strip_prefix("metadata.labels") {
                map_entry(&meta.labels, rest)?
            } else if let Some(rest) = other.strip_prefix("metadata.annotations") {
                map_entry(&meta.annotations, rest)?
            } else {
                return None;
            }
        }
    })
}

fn write_file(dir: &Path, relative: &str, contents: &[u8]) -> Result<(), PrepareError> {
    let relative_path = Path::new(relative);
    if relative_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(PrepareError::Config(format!(
            "volume file path \"{relative}\" must be relative without '..'"
        )));
    }
    let path = dir.join(relative_path);
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, contents));
    result.map_err(|e| PrepareError::Start(format!("write {}: {e}", path.display())))
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> Result<(), PrepareError> {
    match items {
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    PrepareError::Config(format!("key \"{}\" not found", item.key))
                })?;
                write_file(dir, &item.path, value)?;
            }
        }
        None => {
            for (key, value) in data {
                write_file(dir, key, value)?;
            }
        }
    }
    Ok(())
}

/// Stops a container as containerd does: SIGTERM to its main process only (a container's
/// PID 1), then — when the main process has exited or after `grace` (at once for a zero
/// grace) — SIGKILL to everything left in its process group.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: i32,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if !grace.is_zero() {
        if let Some(pid) = child.id() {
            // SAFETY: plain syscall.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            process::kill_group(pgid, libc::SIGKILL);
            return status;
        }
    }
    process::kill_group(pgid, libc::SIGKILL);
    child.wait().await
}

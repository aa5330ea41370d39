//! One pod's life on the test node: status from `Pending` to `Succeeded`/`Failed`, the retry
//! of a container that cannot be created yet, image-pull failures, the process, its deadline
//! and its deletion.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::watch;
use tokio::time::Instant;

use super::logs::LogEntry;
use super::prepare::{PrepareError, Setup};
use super::process::{self, Launch, exit_code, terminate};
use super::shared::{Shared, stopped};
use super::status::{State, StatusBuilder, StatusWriter};

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
    let builder = StatusBuilder::new(
        &first.name,
        first.image.as_deref().unwrap_or_default(),
        &uid,
    );
    // Counted from the status.startTime written now, as the kubelet does.
    let deadline = spec
        .active_deadline_seconds
        .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
    let pod_dir = shared.work_dir.path().join("pods").join(&uid);
    let name = pod.name_any();
    let status = StatusWriter::new(
        Api::namespaced(shared.client.clone(), &namespace),
        &namespace,
        &name,
        &uid,
        builder,
        shared.shutdown.clone(),
    );
    let mut run = PodRun {
        name,
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
    name: String,
    namespace: String,
    uid: String,
    status: StatusWriter,
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl PodRun {
    async fn run(&mut self, pod: Pod, spec: PodSpec, container: Container) {
        let creating = waiting("ContainerCreating", None);
        if !self.status.write("Pending", &creating, None).await {
            return;
        }
        if let Some(why) = unsupported(&spec) {
            let state = waiting("ContainerCreating", None);
            self.status
                .write("Failed", &state, Some(("UnsupportedByTestNodeAgent", &why)))
                .await;
            return;
        }
        let image = container.image.clone().unwrap_or_default();
        if self.pull_fails(&image) {
            let message = format!(
                "kube-testkit: pulling image \"{image}\" fails (NodeAgentConfig::pull_fail_images)"
            );
            let mut state = waiting("ErrImagePull", Some(message.clone()));
            self.status.write("Pending", &state, None).await;
            let backoff = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(backoff);
            let mut backed_off = false;
            let interrupt = loop {
                tokio::select! {
                    interrupt = self.interrupted() => break interrupt,
                    _ = &mut backoff, if !backed_off => {
                        backed_off = true;
                        state = waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\": {message}")));
                        self.status.write("Pending", &state, None).await;
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
            match self.setup(&pod).prepare(&spec, &container).await {
                Ok(launch) => break launch,
                Err(PrepareError::Config(message)) => {
                    let state = waiting("CreateContainerConfigError", Some(message.clone()));
                    if reported.as_ref() != Some(&message) {
                        tracing::warn!(pod = %self.pod_ref(), %message, "test node agent: cannot create container");
                        self.status.write("Pending", &state, None).await;
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

    /// What preparing the container needs, for `pod`.
    fn setup<'a>(&'a self, pod: &'a Pod) -> Setup<'a> {
        Setup {
            shared: &self.shared,
            pod,
            namespace: &self.namespace,
            name: &self.name,
            uid: &self.uid,
            pod_dir: &self.pod_dir,
        }
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
        self.status.write("Failed", &state, None).await;
    }

    /// A container that never started: only the deadline leaves a status to write.
    async fn end_unstarted(&mut self, interrupt: Interrupt, state: &State) {
        if let Interrupt::Deadline = interrupt {
            self.status
                .write(
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
        let outcome = if self.status.write("Running", &running, None).await {
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
        self.status.write(phase, &state, pod_reason).await;
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
                _ = stopped(&mut self.shutdown) => return Interrupt::Gone,
                _ = sleep_until(self.deadline) => return Interrupt::Deadline,
            }
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

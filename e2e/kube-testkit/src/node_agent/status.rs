//! Pod status as a kubelet writes it: built from the container's state, written through
//! `pods/status`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

use super::shared::stopped;

/// What the single container is doing.
#[derive(Clone, Debug)]
pub(crate) enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

/// Builds successive statuses of one pod, keeping condition transition times.
pub(crate) struct StatusBuilder {
    container: String,
    image: String,
    container_id: String,
    start_time: Timestamp,
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

pub(crate) fn time(t: Timestamp) -> Time {
    Time(t)
}

impl StatusBuilder {
    pub(crate) fn new(container: &str, image: &str, uid: &str) -> StatusBuilder {
        StatusBuilder {
            container: container.into(),
            image: image.into(),
            container_id: format!("kube-testkit://{uid}"),
            start_time: Timestamp::now(),
            transitions: BTreeMap::new(),
        }
    }

    fn condition(
        &mut self,
        type_: &'static str,
        value: bool,
        reason: Option<&str>,
    ) -> PodCondition {
        let now = Timestamp::now();
        let entry = self.transitions.entry(type_).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        PodCondition {
            type_: type_.into(),
            status: if value { "True" } else { "False" }.into(),
            reason: reason.map(Into::into),
            last_transition_time: Some(time(entry.1)),
            ..Default::default()
        }
    }

    /// The pod status for `phase` with the container in `state`; `reason`/`message` are the
    /// pod-level ones (e.g. `DeadlineExceeded`).
    pub(crate) fn build(
        &mut self,
        phase: &str,
        state: &State,
        pod_reason: Option<(&str, &str)>,
    ) -> PodStatus {
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let running = matches!(state, State::Running { .. });
        let not_ready = if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", !terminal, None),
            self.condition("Initialized", true, None),
            self.condition("Ready", running, (!running).then_some(not_ready)),
            self.condition("ContainersReady", running, (!running).then_some(not_ready)),
            self.condition("PodScheduled", true, None),
        ];
        let container_state = match state.clone() {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason),
                    message,
                }),
                ..Default::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(started_at)),
                }),
                ..Default::default()
            },
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(self.container_id.clone()),
                    exit_code,
                    signal,
                    reason: Some(reason),
                    message,
                    started_at: started_at.map(time),
                    finished_at: Some(time(finished_at)),
                }),
                ..Default::default()
            },
        };
        let has_run = !matches!(state, State::Waiting { .. });
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some("127.0.0.1".into()),
            host_ips: Some(vec![HostIP {
                ip: "127.0.0.1".into(),
            }]),
            pod_ip: Some("127.0.0.1".into()),
            pod_ips: Some(vec![PodIP {
                ip: "127.0.0.1".into(),
            }]),
            start_time: Some(time(self.start_time)),
            reason: pod_reason.map(|(reason, _)| reason.into()),
            message: pod_reason.map(|(_, message)| message.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: self.container.clone(),
                image: self.image.clone(),
                image_id: if has_run {
                    format!("kube-testkit://{}", self.image)
                } else {
                    String::new()
                },
                container_id: has_run.then(|| self.container_id.clone()),
                ready: running,
                started: Some(running),
                restart_count: 0,
                state: Some(container_state),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }
}

/// Writes one pod's successive statuses, built by its [`StatusBuilder`].
pub(crate) struct StatusWriter {
    api: Api<Pod>,
    name: String,
    uid: String,
    /// `namespace/name`, for logs.
    pod_ref: String,
    builder: StatusBuilder,
    shutdown: watch::Receiver<bool>,
}

impl StatusWriter {
    pub(crate) fn new(
        api: Api<Pod>,
        namespace: &str,
        name: &str,
        uid: &str,
        builder: StatusBuilder,
        shutdown: watch::Receiver<bool>,
    ) -> StatusWriter {
        StatusWriter {
            api,
            name: name.into(),
            uid: uid.into(),
            pod_ref: format!("{namespace}/{name}"),
            builder,
            shutdown,
        }
    }

    /// Writes the pod status (merge patch of `status`, UID as precondition), retrying while
    /// the API server is unavailable. False when the pod is gone or the agent stops.
    pub(crate) async fn write(
        &mut self,
        phase: &str,
        state: &State,
        pod_reason: Option<(&str, &str)>,
    ) -> bool {
        let status = self.builder.build(phase, state, pod_reason);
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
                    tracing::error!(pod = %self.pod_ref, error = %e, "test node agent: pod status rejected");
                    return false;
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!(pod = %self.pod_ref, error = %e, "test node agent: status write failed; retrying")
                }
                Err(_) if attempt > 4 * 180 => return false,
                Err(_) => {}
            }
            tokio::select! {
                _ = stopped(&mut self.shutdown) => return false,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        unreachable!()
    }
}

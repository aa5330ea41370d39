//! The autograding pod, as Grader Service's `make_pod` builds it, plus optional hardening.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, LocalObjectReference, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::k8s::{K8sModel, ModelError, get_k8s_model};

/// Name of the single container of an autograding pod.
pub const CONTAINER_NAME: &str = "autograde";

/// Everything [`make_pod`] needs; with `hardening` left at its default the pod is exactly the
/// reference's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodParams {
    /// `metadata.name`.
    pub name: String,
    /// Container `args` (the reference's `cmd`); the image's entrypoint stays in effect.
    pub args: Vec<String>,
    /// Container `env`, always present (`[]` when empty).
    pub env: Vec<EnvVar>,
    pub image: String,
    pub image_pull_policy: String,
    /// `spec.imagePullSecrets` as given: `None` leaves the field out, `Some(vec![])` keeps `[]`.
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    pub working_dir: Option<String>,
    /// Volume objects; top-level keys may be API or attribute names. Empty: no `volumes`.
    pub volumes: Vec<Value>,
    /// VolumeMount objects, keys as for `volumes`. Always present (`[]` when empty).
    pub volume_mounts: Vec<Value>,
    /// `metadata.labels`, always present (`{}` when empty).
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`, always present (`{}` when empty).
    pub annotations: BTreeMap<String, String>,
    /// Toleration objects, keys as for `volumes`. Empty: no `tolerations`.
    pub tolerations: Vec<Value>,
    /// `spec.nodeSelector` (not in the reference). Empty: no `nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Container `securityContext.runAsUser`.
    pub run_as_user: Option<i64>,
    pub hardening: Hardening,
}

/// Security and resource settings beyond the reference pod; each is off (`None`, `false`,
/// empty) by default so that the default pod matches the reference exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hardening {
    /// Pod `securityContext.runAsNonRoot`: the kubelet refuses to start a container as root.
    pub run_as_non_root: Option<bool>,
    /// Container `securityContext.allowPrivilegeEscalation` (no setuid gains when `false`).
    pub allow_privilege_escalation: Option<bool>,
    /// Container `securityContext.capabilities.drop: ["ALL"]`.
    pub drop_all_capabilities: bool,
    /// Pod `securityContext.seccompProfile.type: RuntimeDefault`.
    pub seccomp_runtime_default: bool,
    /// `spec.automountServiceAccountToken`; `false` keeps API credentials out of student code.
    pub automount_service_account_token: Option<bool>,
    /// Container `resources.requests` (quantities such as `"500m"`, `"1Gi"`).
    pub resource_requests: BTreeMap<String, String>,
    /// Container `resources.limits`.
    pub resource_limits: BTreeMap<String, String>,
    /// `spec.activeDeadlineSeconds`: the kubelet kills the pod after this long.
    pub active_deadline_seconds: Option<i64>,
}

impl Hardening {
    /// Everything on that the `restricted` Pod Security Standard asks for: non-root, no
    /// privilege escalation, all capabilities dropped, RuntimeDefault seccomp, and no service
    /// account token. Resources and the deadline stay unset; they depend on the course.
    pub fn restricted() -> Self {
        Hardening {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            drop_all_capabilities: true,
            seccomp_runtime_default: true,
            automount_service_account_token: Some(false),
            ..Hardening::default()
        }
    }
}

/// Builds the autograding pod: one container named [`CONTAINER_NAME`], `restartPolicy: Never`.
///
/// Fails when a volume, volume mount or toleration object has an unknown key or a bad value.
pub fn make_pod(params: &PodParams) -> Result<Pod, ModelError> {
    let hardening = &params.hardening;

    let capabilities = hardening.drop_all_capabilities.then(|| Capabilities {
        drop: Some(vec!["ALL".to_owned()]),
        ..Capabilities::default()
    });
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(params.image.clone()),
        working_dir: params.working_dir.clone(),
        args: Some(params.args.clone()),
        env: Some(params.env.clone()),
        image_pull_policy: Some(params.image_pull_policy.clone()),
        resources: Some(ResourceRequirements {
            requests: quantities(&hardening.resource_requests),
            limits: quantities(&hardening.resource_limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: params.run_as_user,
            allow_privilege_escalation: hardening.allow_privilege_escalation,
            capabilities,
            ..SecurityContext::default()
        }),
        volume_mounts: Some(models::<VolumeMount>(
            "volume_mounts",
            &params.volume_mounts,
        )?),
        ..Container::default()
    };

    let seccomp_profile = hardening.seccomp_runtime_default.then(|| SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    });
    let spec = PodSpec {
        containers: vec![container],
        security_context: Some(PodSecurityContext {
            run_as_non_root: hardening.run_as_non_root,
            seccomp_profile,
            ..PodSecurityContext::default()
        }),
        image_pull_secrets: params.image_pull_secrets.clone(),
        restart_policy: Some("Never".to_owned()),
        tolerations: non_empty(models::<Toleration>("tolerations", &params.tolerations)?),
        volumes: non_empty(models::<Volume>("volumes", &params.volumes)?),
        node_selector: (!params.node_selector.is_empty()).then(|| params.node_selector.clone()),
        automount_service_account_token: hardening.automount_service_account_token,
        active_deadline_seconds: hardening.active_deadline_seconds,
        ..PodSpec::default()
    };

    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(params.name.clone()),
            labels: Some(params.labels.clone()),
            annotations: Some(params.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

fn models<T: K8sModel>(list: &'static str, values: &[Value]) -> Result<Vec<T>, ModelError> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            get_k8s_model(value).map_err(|source| ModelError::InItem {
                list,
                index,
                source: Box::new(source),
            })
        })
        .collect()
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

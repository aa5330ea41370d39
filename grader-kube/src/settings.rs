//! [`KubeSettings`]: everything the Kubernetes backend can be configured with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use grader_model::ImageNameTemplate;
use serde_json::{Value, json};

/// Settings of the Kubernetes backend: the keys of the `[kube]` table plus the two top-level
/// settings the pod needs (`convert_executable`, `log_cap_bytes`).
///
/// A plain struct so that this crate does not depend on the configuration loader; the binary
/// maps its configuration onto it. [`Default`] gives the reference's defaults (and this
/// project's for the keys the reference lacks).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeSettings {
    /// Namespace of the grading pods; `None`: see [`crate::resolve_namespace`].
    pub namespace: Option<String>,
    /// kubeconfig context; `None`: in-cluster configuration, else the default kubeconfig.
    pub context: Option<String>,
    /// JSON or YAML file mapping lecture codes to images (see [`crate::ImageConfig`]).
    pub image_config_path: Option<PathBuf>,
    /// Image of lectures the image config does not name (a checked template).
    pub default_image_name: ImageNameTemplate,
    /// The Volume (API JSON) holding the service directory; its `name` is used by the input
    /// and output mounts.
    pub volume: Value,
    /// Further Volumes (API JSON).
    pub extra_volumes: Vec<Value>,
    /// Further VolumeMounts of the grading container (API JSON).
    pub extra_volume_mounts: Vec<Value>,
    /// Labels added to every pod (the grader's own labels win on a clash).
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every pod (the grader's own annotations win on a clash).
    pub annotations: BTreeMap<String, String>,
    /// `imagePullPolicy` of the grading container.
    pub image_pull_policy: String,
    /// Names of image pull secrets.
    pub image_pull_secrets: Vec<String>,
    /// Tolerations (API JSON).
    pub tolerations: Vec<Value>,
    /// `nodeSelector` of the pod.
    pub node_selector: BTreeMap<String, String>,
    /// `runAsUser` of the grading container; `None` keeps the image's user.
    pub uid: Option<i64>,
    /// Resource requests and limits of the grading container.
    pub resources: Resources,
    /// Fields merged into `pod.spec` after it is built (API JSON object); the Rust answer to
    /// the reference's pre-spawn hook.
    pub extra_pod_config: Value,
    /// Fields merged into the grading container after it is built (API JSON object).
    pub extra_container_config: Value,
    /// How often a waiter GETs its pod while the shared watch is broken.
    pub poll_interval: Duration,
    /// How long a pod may stay unschedulable or fail to pull its image before the job fails.
    pub unschedulable_grace: Duration,
    /// Make the pod pass the `restricted` Pod Security Standard (non-root, no privilege
    /// escalation, all capabilities dropped, RuntimeDefault seccomp, no service account token).
    pub hardening: bool,
    /// The grading tool run in the pod (first element of the container's `args`).
    pub convert_executable: String,
    /// Most bytes of the pod's log kept in the outcome (head and tail, marker in between).
    pub log_cap_bytes: usize,
}

/// Resource requests and limits (quantities as text, e.g. `"500m"`, `"1Gi"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// `resources.requests`.
    pub requests: BTreeMap<String, String>,
    /// `resources.limits`.
    pub limits: BTreeMap<String, String>,
}

impl Default for Resources {
    /// The project's defaults: requests `cpu: 500m, memory: 512Mi`, limits `cpu: 2,
    /// memory: 2Gi` (the reference sets none).
    fn default() -> Self {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Resources {
            requests: map(&[("cpu", "500m"), ("memory", "512Mi")]),
            limits: map(&[("cpu", "2"), ("memory", "2Gi")]),
        }
    }
}

/// Name of the default data volume.
pub const DEFAULT_VOLUME_NAME: &str = "data";
/// Claim of the default data volume.
pub const DEFAULT_VOLUME_CLAIM: &str = "grader-data";
/// Default `runAsUser` of the grading container.
pub const DEFAULT_UID: i64 = 1000;
/// Default seconds between GETs while the shared watch is broken.
pub const DEFAULT_POLL_INTERVAL: u64 = 5;
/// Default seconds a pod may stay unschedulable or fail to pull its image.
pub const DEFAULT_UNSCHEDULABLE_GRACE: u64 = 300;
/// Default `imagePullPolicy` of the grading container (the reference's).
pub const DEFAULT_IMAGE_PULL_POLICY: &str = "Always";

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            namespace: None,
            context: None,
            image_config_path: None,
            default_image_name: ImageNameTemplate::default(),
            volume: json!({
                "name": DEFAULT_VOLUME_NAME,
                "persistentVolumeClaim": {"claimName": DEFAULT_VOLUME_CLAIM},
            }),
            extra_volumes: Vec::new(),
            extra_volume_mounts: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            image_pull_policy: DEFAULT_IMAGE_PULL_POLICY.to_owned(),
            image_pull_secrets: Vec::new(),
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            uid: Some(DEFAULT_UID),
            resources: Resources::default(),
            extra_pod_config: Value::Object(serde_json::Map::new()),
            extra_container_config: Value::Object(serde_json::Map::new()),
            poll_interval: Duration::from_secs(DEFAULT_POLL_INTERVAL),
            unschedulable_grace: Duration::from_secs(DEFAULT_UNSCHEDULABLE_GRACE),
            hardening: true,
            convert_executable: grader_model::DEFAULT_CONVERT_EXECUTABLE.to_owned(),
            log_cap_bytes: usize::try_from(grader_local::DEFAULT_LOG_CAP_BYTES)
                .unwrap_or(usize::MAX),
        }
    }
}

impl KubeSettings {
    /// The keys of the `[kube]` table these settings come from (for checking example configs).
    pub const TABLE_KEYS: &'static [&'static str] = &[
        "namespace",
        "context",
        "image_config_path",
        "default_image_name",
        "volume",
        "extra_volumes",
        "extra_volume_mounts",
        "labels",
        "annotations",
        "image_pull_policy",
        "image_pull_secrets",
        "tolerations",
        "node_selector",
        "uid",
        "resources",
        "extra_pod_config",
        "extra_container_config",
        "poll_interval",
        "unschedulable_grace",
        "hardening",
    ];
}

//! The typed configuration tree: [`GraderConfig`] and its parts.
//!
//! Every struct rejects unknown keys (`deny_unknown_fields`) and fills keys
//! that no layer sets from its [`Default`] implementation, whose values are the
//! documented defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

pub use grader_model::image_name::{IMAGE_NAME_PLACEHOLDERS, ImageNameTemplate, TemplateError};

// The defaults belong to the settings they configure (the pipeline's, the warm pool's, the
// kube backend's); the configuration shows them under the names it documents.
pub use grader_kube::settings::{
    DEFAULT_POLL_INTERVAL, DEFAULT_UID, DEFAULT_UNSCHEDULABLE_GRACE, DEFAULT_VOLUME_CLAIM,
    DEFAULT_VOLUME_NAME,
};
pub use grader_local::warm::{
    DEFAULT_MAX_RSS_GROWTH_MIB as DEFAULT_WARM_MAX_RSS_GROWTH_MIB,
    DEFAULT_PRESTART_KERNELS as DEFAULT_WARM_PRESTART_KERNELS,
    DEFAULT_RECYCLE_AFTER_JOBS as DEFAULT_WARM_RECYCLE_AFTER,
    DEFAULT_START_TIMEOUT as DEFAULT_WARM_START_TIMEOUT, MAX_WORKERS as MAX_WARM_WORKERS,
};
pub use grader_local::{
    DEFAULT_GIT_EXECUTABLE, DEFAULT_LOG_CAP_BYTES, DEFAULT_MAX_GRADING_TIME,
    DEFAULT_RELATIVE_INPUT_PATH, DEFAULT_RELATIVE_OUTPUT_PATH, DEFAULT_SERVICE_DIR,
};
pub use grader_model::DEFAULT_CONVERT_EXECUTABLE;
pub use grader_model::timeouts::{
    DEFAULT_CELL_TIMEOUT, DEFAULT_MAX_CELL_TIMEOUT, DEFAULT_MIN_CELL_TIMEOUT,
};

/// The whole grader configuration (the root of `grader.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraderConfig {
    /// Root directory of the grader's data: submissions, assignments and work
    /// directories live below it (reference: `GraderService.grader_service_dir`).
    /// Must be absolute: the grading tool runs in a work dir, not where `grader` started.
    pub service_dir: PathBuf,
    /// Directory, relative to a grading job's work directory, into which the
    /// submission is placed for the grading tool (reference:
    /// `LocalAutogradeExecutor.relative_input_path`).
    pub relative_input_path: PathBuf,
    /// Directory, relative to a grading job's work directory, into which the
    /// grading tool writes its results (reference:
    /// `LocalAutogradeExecutor.relative_output_path`).
    pub relative_output_path: PathBuf,
    /// The `git` program used to fetch submissions and push results; a name
    /// looked up on `PATH` or a path (reference: `git_executable`).
    pub git_executable: PathBuf,
    /// The course's grading tool run on a submission; a name looked up on
    /// `PATH` or a path (reference: `convert_executable`).
    pub convert_executable: PathBuf,
    /// Cell timeout in seconds used when an assignment sets none (reference:
    /// `default_cell_timeout`). Must satisfy `min < default < max`.
    pub default_cell_timeout: u64,
    /// Smallest cell timeout in seconds an assignment may ask for (reference:
    /// `min_cell_timeout`). Must be greater than zero.
    pub min_cell_timeout: u64,
    /// Largest cell timeout in seconds an assignment may ask for (reference:
    /// `max_cell_timeout`).
    pub max_cell_timeout: u64,
    /// Wall-clock limit in seconds for one whole grading job; the job is killed
    /// and failed when it is exceeded. Must be greater than zero.
    pub max_grading_time: u64,
    /// Most bytes of the grading tool's output kept in the job's log; the rest
    /// is dropped with a marker. Must be greater than zero.
    pub log_cap_bytes: u64,
    /// Keep a job's work directory after it finishes (for debugging) instead
    /// of deleting it.
    pub keep_workdirs: bool,
    /// Where grading runs: `local` (a local process) or `kube` (a pod in
    /// Kubernetes).
    pub backend: Backend,
    /// Settings of the local backend (`[local]` table).
    pub local: LocalConfig,
    /// Settings of the Kubernetes backend (`[kube]` table); read but unused
    /// when `backend = "local"`.
    pub kube: KubeConfig,
    /// Settings of `grader serve` and `grader submit` (`[serve]` table).
    pub serve: ServeConfig,
}

impl Default for GraderConfig {
    fn default() -> Self {
        GraderConfig {
            service_dir: PathBuf::from(DEFAULT_SERVICE_DIR),
            relative_input_path: PathBuf::from(DEFAULT_RELATIVE_INPUT_PATH),
            relative_output_path: PathBuf::from(DEFAULT_RELATIVE_OUTPUT_PATH),
            git_executable: PathBuf::from(DEFAULT_GIT_EXECUTABLE),
            convert_executable: PathBuf::from(DEFAULT_CONVERT_EXECUTABLE),
            default_cell_timeout: DEFAULT_CELL_TIMEOUT,
            min_cell_timeout: DEFAULT_MIN_CELL_TIMEOUT,
            max_cell_timeout: DEFAULT_MAX_CELL_TIMEOUT,
            max_grading_time: DEFAULT_MAX_GRADING_TIME,
            log_cap_bytes: DEFAULT_LOG_CAP_BYTES,
            keep_workdirs: false,
            backend: Backend::default(),
            local: LocalConfig::default(),
            kube: KubeConfig::default(),
            serve: ServeConfig::default(),
        }
    }
}

/// Which executor grades submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Run the grading tool as a local process (reference:
    /// `LocalAutogradeExecutor`).
    #[default]
    Local,
    /// Run the grading tool in a Kubernetes pod (reference:
    /// `KubeAutogradeExecutor`).
    Kube,
}

impl Backend {
    /// The accepted spellings, in documentation order.
    pub const NAMES: &'static [&'static str] = &["local", "kube"];

    /// The configuration spelling of this backend.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Kube => "kube",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Backend::from_str`] and [`ImagePullPolicy::from_str`]: the value
/// is not one of the allowed names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {value:?}, expected one of: {}", allowed.join(", "))]
pub struct UnknownVariant {
    /// The rejected value.
    pub value: String,
    /// The accepted values.
    pub allowed: &'static [&'static str],
}

impl FromStr for Backend {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Backend::Local),
            "kube" => Ok(Backend::Kube),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                allowed: Backend::NAMES,
            }),
        }
    }
}

/// The pod's `imagePullPolicy` (Kubernetes spelling, case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    /// Always pull (the reference's default).
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl Default for ImagePullPolicy {
    /// The kube backend's default ([`grader_kube::settings::DEFAULT_IMAGE_PULL_POLICY`]).
    fn default() -> Self {
        grader_kube::settings::DEFAULT_IMAGE_PULL_POLICY
            .parse()
            .expect("the default pull policy is valid")
    }
}

impl ImagePullPolicy {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["Always", "IfNotPresent", "Never"];

    /// The Kubernetes spelling of this policy.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

impl fmt::Display for ImagePullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImagePullPolicy {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Always" => Ok(ImagePullPolicy::Always),
            "IfNotPresent" => Ok(ImagePullPolicy::IfNotPresent),
            "Never" => Ok(ImagePullPolicy::Never),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                allowed: ImagePullPolicy::NAMES,
            }),
        }
    }
}

/// Settings of the local backend (the `[local]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Warm workers that import the grading tool once and fork a child per
    /// job; 0 runs the tool as a plain process per job. Jobs beyond this many
    /// wait for a free worker.
    pub warm_workers: u32,
    /// Replace a warm worker after this many jobs (0: never).
    pub warm_recycle_after: u64,
    /// Replace a warm worker whose resident memory grew by more than this
    /// many MiB since it started (0: never).
    pub warm_max_rss_growth_mib: u64,
    /// Seconds a warm worker may take to import the tool; past it, jobs run
    /// as plain processes.
    pub warm_start_timeout: u64,
    /// Warm workers start each job's kernels ahead of need (a kernel zygote
    /// per job); off, the tool launches each kernel as in a plain run.
    pub warm_prestart_kernels: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            warm_workers: 0,
            warm_recycle_after: DEFAULT_WARM_RECYCLE_AFTER,
            warm_max_rss_growth_mib: DEFAULT_WARM_MAX_RSS_GROWTH_MIB,
            warm_start_timeout: DEFAULT_WARM_START_TIMEOUT,
            warm_prestart_kernels: DEFAULT_WARM_PRESTART_KERNELS,
        }
    }
}

/// Default for [`ServeConfig::socket`].
pub const DEFAULT_SERVE_SOCKET: &str = "/run/grader/grader.sock";
/// Default for [`ServeConfig::concurrency`].
pub const DEFAULT_SERVE_CONCURRENCY: u32 = 4;
/// Most jobs [`ServeConfig::concurrency`] may ask for (one warm worker each).
pub const MAX_SERVE_CONCURRENCY: u32 = MAX_WARM_WORKERS;
/// Default for [`ServeConfig::queue_limit`].
pub const DEFAULT_SERVE_QUEUE_LIMIT: u32 = 100;
/// Default for [`ServeConfig::max_request_bytes`] (8 MiB: a job with its gradebooks inline).
pub const DEFAULT_SERVE_MAX_REQUEST_BYTES: u64 = 8 * 1024 * 1024;
/// Default for [`ServeConfig::shutdown_grace`], in seconds.
pub const DEFAULT_SERVE_SHUTDOWN_GRACE: u64 = 30;
/// Default for [`ServeConfig::retain`], in seconds (one hour).
pub const DEFAULT_SERVE_RETAIN: u64 = 3_600;
/// Longest path a Unix socket may have (`sun_path` holds 108 bytes with the NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// Settings of the grading service (the `[serve]` table): where `grader serve` listens, how
/// much it grades at once and how long it keeps outcomes; `grader submit` reads `socket` and
/// `token_file` from it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The Unix socket the service listens on (created with mode 0660; a stale socket is
    /// replaced, any other file there is refused).
    pub socket: PathBuf,
    /// A TCP address (`ip:port`) to listen on as well; unset: none. Needs `token_file`.
    pub listen: Option<String>,
    /// File holding the bearer token TCP clients must send (`Authorization: Bearer ...`).
    pub token_file: Option<PathBuf>,
    /// Jobs graded at the same time (and warm workers, when `local.warm_workers` is not set).
    pub concurrency: u32,
    /// Jobs that may wait for a free slot; more are refused with 429.
    pub queue_limit: u32,
    /// Largest request body in bytes; larger ones are refused with 413.
    pub max_request_bytes: u64,
    /// Seconds running jobs may take to finish after SIGTERM/SIGINT before they are cancelled.
    pub shutdown_grace: u64,
    /// Seconds a finished job's outcome stays available from the API.
    pub retain: u64,
    /// Directory where each finished job's outcome is also written (as `grader batch`
    /// does); unset: outcomes stay in memory only.
    pub results_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            socket: PathBuf::from(DEFAULT_SERVE_SOCKET),
            listen: None,
            token_file: None,
            concurrency: DEFAULT_SERVE_CONCURRENCY,
            queue_limit: DEFAULT_SERVE_QUEUE_LIMIT,
            max_request_bytes: DEFAULT_SERVE_MAX_REQUEST_BYTES,
            shutdown_grace: DEFAULT_SERVE_SHUTDOWN_GRACE,
            retain: DEFAULT_SERVE_RETAIN,
            results_dir: None,
        }
    }
}

/// Settings of the Kubernetes backend (the `[kube]` table). Key names follow
/// the reference's `KubeAutogradeExecutor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// kubeconfig context to use; unset uses the current context, or the
    /// in-cluster service account when running inside a pod.
    pub context: Option<String>,
    /// Namespace the grading pods run in; unset uses the context's namespace
    /// (in-cluster: the pod's own namespace). Must be a DNS-1123 label.
    pub namespace: Option<String>,
    /// YAML/JSON file mapping lecture codes (or lecture code → assignment name) to
    /// images; lectures it does not name use `default_image_name`
    /// (reference: `kube_image_config_path`).
    pub image_config_path: Option<PathBuf>,
    /// Template for the image of lectures the image config does not name;
    /// placeholders `{lecture}`, `{assignment_id}`, `{assignment_name}`, and
    /// `{{` / `}}` for literal braces.
    pub default_image_name: ImageNameTemplate,
    /// The Kubernetes `Volume` (API form, camelCase keys) holding
    /// `service_dir`, mounted into every grading pod.
    pub volume: JsonValue,
    /// Further `Volume`s added to the pod (API form).
    pub extra_volumes: Vec<JsonValue>,
    /// Further `VolumeMount`s added to the grading container (API form).
    pub extra_volume_mounts: Vec<JsonValue>,
    /// Labels put on every grading pod, in addition to the grader's own.
    pub labels: BTreeMap<String, String>,
    /// Annotations put on every grading pod.
    pub annotations: BTreeMap<String, String>,
    /// The grading container's `imagePullPolicy`: `Always`, `IfNotPresent` or
    /// `Never`.
    pub image_pull_policy: ImagePullPolicy,
    /// Names of the secrets in the namespace used to pull images.
    pub image_pull_secrets: Vec<String>,
    /// The pod's `tolerations` (API form).
    pub tolerations: Vec<JsonValue>,
    /// The pod's `nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `runAsUser` of the grading container; `"none"` leaves it unset so the
    /// image's `USER` applies. Must not be 0 while `hardening` is on.
    #[serde(with = "uid_serde")]
    pub uid: Option<i64>,
    /// The grading container's resource requests and limits.
    pub resources: Resources,
    /// Extra fields merged into the pod spec (API form, camelCase keys).
    pub extra_pod_config: JsonValue,
    /// Extra fields merged into the grading container (API form).
    pub extra_container_config: JsonValue,
    /// Seconds between two looks at a running pod's status. Must be greater
    /// than zero.
    pub poll_interval: u64,
    /// Seconds a pod may stay unschedulable or failing to pull its image
    /// before the job is failed.
    pub unschedulable_grace: u64,
    /// Apply the restricted Pod Security Standard to the grading container
    /// (non-root, no privilege escalation, all capabilities dropped,
    /// `RuntimeDefault` seccomp profile).
    pub hardening: bool,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            context: None,
            namespace: None,
            image_config_path: None,
            default_image_name: ImageNameTemplate::default(),
            volume: serde_json::json!({
                "name": DEFAULT_VOLUME_NAME,
                "persistentVolumeClaim": { "claimName": DEFAULT_VOLUME_CLAIM },
            }),
            extra_volumes: Vec::new(),
            extra_volume_mounts: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            image_pull_policy: ImagePullPolicy::default(),
            image_pull_secrets: Vec::new(),
            tolerations: Vec::new(),
            node_selector: BTreeMap::new(),
            uid: Some(DEFAULT_UID),
            resources: Resources::default(),
            extra_pod_config: JsonValue::Object(serde_json::Map::new()),
            extra_container_config: JsonValue::Object(serde_json::Map::new()),
            poll_interval: DEFAULT_POLL_INTERVAL,
            unschedulable_grace: DEFAULT_UNSCHEDULABLE_GRACE,
            hardening: true,
        }
    }
}

/// Serde for `uid`: an integer, or the string `"none"` for unset (TOML has no
/// null).
mod uid_serde {
    use serde::{Deserializer, Serializer, de};
    use std::fmt;

    pub fn serialize<S: Serializer>(uid: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match uid {
            Some(v) => s.serialize_i64(*v),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer user id or \"none\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(Some)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "none" {
                    Ok(None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }
}

/// Resource requests and limits of the grading container (the
/// `[kube.resources]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// `resources.requests`: resource name → quantity. Default `cpu = "500m"`,
    /// `memory = "512Mi"`. Replaced as a whole by a layer that sets it.
    pub requests: BTreeMap<String, Quantity>,
    /// `resources.limits`: resource name → quantity. Default `cpu = "2"`,
    /// `memory = "2Gi"`. Replaced as a whole by a layer that sets it.
    pub limits: BTreeMap<String, Quantity>,
}

impl Default for Resources {
    /// The kube backend's defaults ([`grader_kube::Resources::default`]).
    fn default() -> Self {
        let quantities = |m: BTreeMap<String, String>| {
            m.into_iter()
                .map(|(k, v)| (k, Quantity::parse(&v).expect("a default quantity is valid")))
                .collect()
        };
        let defaults = grader_kube::Resources::default();
        Resources {
            requests: quantities(defaults.requests),
            limits: quantities(defaults.limits),
        }
    }
}

/// A Kubernetes resource quantity such as `"500m"`, `"2"` or `"512Mi"`.
/// Accepts a string or a number in the configuration; always held as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Quantity(String);

impl Quantity {
    /// Parses and checks a quantity (`digits[.digits][suffix]`, suffix one of
    /// `n u m k M G T P E Ki Mi Gi Ti Pi Ei` or an exponent `e<n>`).
    pub fn parse(s: &str) -> Result<Self, InvalidQuantity> {
        if is_quantity(s) {
            Ok(Quantity(s.to_owned()))
        } else {
            Err(InvalidQuantity(s.to_owned()))
        }
    }

    /// The quantity's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Quantity> for String {
    fn from(q: Quantity) -> String {
        q.0
    }
}

/// Error of [`Quantity::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {0:?} (expected a Kubernetes quantity such as \"500m\", \"2\", \"512Mi\")"
)]
pub struct InvalidQuantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes quantity (string or number)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(digits_end);
    let dots = number.matches('.').count();
    let has_digit = number.chars().any(|c| c.is_ascii_digit());
    if !has_digit || dots > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        _ => {
            let Some(exp) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
        }
    }
}

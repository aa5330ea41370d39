//! The list of configuration keys: what each one holds, how an environment
//! variable or a flag's text is read for it, and its documentation (the source
//! of `CONFIG.md`).

use crate::model::GraderConfig;
use crate::render;

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "GRADER_";

/// How a text value (environment variable, `--set` flag) is read for a key,
/// and how layers combine for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Taken verbatim as a string (strings, paths, names, templates).
    Text,
    /// Read as a scalar: `600` is an integer, `true`/`false` a boolean,
    /// anything else a string.
    Scalar,
    /// A table given whole as JSON or as a TOML inline table; a later layer
    /// that sets it replaces it as a whole.
    Table,
    /// A list given whole as a JSON or TOML array.
    List,
}

/// One configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// Dotted key, e.g. `kube.namespace`.
    pub key: &'static str,
    /// Type as documented, e.g. `integer (seconds)`.
    pub ty: &'static str,
    /// One-line meaning.
    pub doc: &'static str,
    /// How text values are read for it.
    pub kind: KeyKind,
}

impl KeyInfo {
    /// The environment variable that sets this key, e.g.
    /// `GRADER_KUBE__NAMESPACE`.
    pub fn env_var(&self) -> String {
        env_var_for(self.key)
    }

    /// The section the key lives in (`""` for top level, `kube`,
    /// `kube.resources`) and its last segment.
    pub fn split(&self) -> (&'static str, &'static str) {
        match self.key.rfind('.') {
            Some(i) => (&self.key[..i], &self.key[i + 1..]),
            None => ("", self.key),
        }
    }
}

/// The environment variable name for a dotted key.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// The typed tables (sections); every other key is a leaf in [`KEYS`].
pub const SECTIONS: &[&str] = &["local", "kube", "kube.resources", "serve"];

use KeyKind::{List, Scalar, Table, Text};

/// Every configuration key, in the order `grader config` prints them.
pub const KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "service_dir",
        ty: "path",
        doc: "Root directory of the grader's data (submissions, assignments, work directories); an absolute path.",
        kind: Text,
    },
    KeyInfo {
        key: "relative_input_path",
        ty: "relative path",
        doc: "Parent of the input work dirs, relative to `service_dir`: a submission is fetched into `{service_dir}/{relative_input_path}/submission_{id}`.",
        kind: Text,
    },
    KeyInfo {
        key: "relative_output_path",
        ty: "relative path",
        doc: "Parent of the output work dirs, relative to `service_dir`: the grading tool writes to `{service_dir}/{relative_output_path}/submission_{id}`.",
        kind: Text,
    },
    KeyInfo {
        key: "git_executable",
        ty: "program",
        doc: "The `git` program (name on `PATH` or path); checked before any job is graded.",
        kind: Text,
    },
    KeyInfo {
        key: "convert_executable",
        ty: "program",
        doc: "The course's grading tool (name on `PATH` or path); the local backend checks it before any job is graded.",
        kind: Text,
    },
    KeyInfo {
        key: "default_cell_timeout",
        ty: "integer (seconds)",
        doc: "Cell timeout when the assignment sets none; `min_cell_timeout < default_cell_timeout < max_cell_timeout`.",
        kind: Scalar,
    },
    KeyInfo {
        key: "min_cell_timeout",
        ty: "integer (seconds)",
        doc: "Smallest cell timeout an assignment may ask for; greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "max_cell_timeout",
        ty: "integer (seconds)",
        doc: "Largest cell timeout an assignment may ask for.",
        kind: Scalar,
    },
    KeyInfo {
        key: "max_grading_time",
        ty: "integer (seconds)",
        doc: "Wall-clock limit of one grading job; the job is killed and failed past it. Greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "log_cap_bytes",
        ty: "integer (bytes)",
        doc: "Most bytes of the grading tool's output kept in the job log. Greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "keep_workdirs",
        ty: "boolean",
        doc: "Keep a job's work directory after it finishes, for debugging.",
        kind: Scalar,
    },
    KeyInfo {
        key: "backend",
        ty: "`local` or `kube`",
        doc: "Where grading runs: a local process or a Kubernetes pod.",
        kind: Text,
    },
    KeyInfo {
        key: "local.warm_workers",
        ty: "integer",
        doc: "Warm workers that import the grading tool once and fork a fresh child per job (0: a plain process per job). Jobs beyond this many wait for a free worker. At most 256.",
        kind: Scalar,
    },
    KeyInfo {
        key: "local.warm_recycle_after",
        ty: "integer (jobs)",
        doc: "Replace a warm worker after this many jobs (0: never).",
        kind: Scalar,
    },
    KeyInfo {
        key: "local.warm_max_rss_growth_mib",
        ty: "integer (MiB)",
        doc: "Replace a warm worker whose resident memory grew by more than this since it started (0: never).",
        kind: Scalar,
    },
    KeyInfo {
        key: "local.warm_start_timeout",
        ty: "integer (seconds)",
        doc: "How long a warm worker may take to import the tool; jobs run as plain processes when no worker starts. Greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "local.warm_prestart_kernels",
        ty: "boolean",
        doc: "Warm workers start each job's kernels ahead of need: a kernel zygote per job forks each notebook's fresh kernel. Off: the tool launches each kernel as in a plain run.",
        kind: Scalar,
    },
    KeyInfo {
        key: "kube.context",
        ty: "string, optional",
        doc: "kubeconfig context; unset: the current context, or in-cluster config inside a pod.",
        kind: Text,
    },
    KeyInfo {
        key: "kube.namespace",
        ty: "string, optional",
        doc: "Namespace of the grading pods (DNS-1123 label); unset: the context's namespace.",
        kind: Text,
    },
    KeyInfo {
        key: "kube.image_config_path",
        ty: "path, optional",
        doc: "YAML/JSON file mapping a lecture code to an image, or to a map from assignment name to image.",
        kind: Text,
    },
    KeyInfo {
        key: "kube.default_image_name",
        ty: "template",
        doc: "Image of lectures the image config does not name; placeholders `{lecture}`, `{assignment_id}`, `{assignment_name}`; `{{`/`}}` for literal braces.",
        kind: Text,
    },
    KeyInfo {
        key: "kube.volume",
        ty: "table (k8s `Volume`)",
        doc: "Volume holding `service_dir`, mounted into every grading pod (API form, camelCase keys).",
        kind: Table,
    },
    KeyInfo {
        key: "kube.extra_volumes",
        ty: "list of tables (k8s `Volume`)",
        doc: "Further volumes added to the pod.",
        kind: List,
    },
    KeyInfo {
        key: "kube.extra_volume_mounts",
        ty: "list of tables (k8s `VolumeMount`)",
        doc: "Further volume mounts added to the grading container.",
        kind: List,
    },
    KeyInfo {
        key: "kube.labels",
        ty: "table of strings",
        doc: "Labels put on every grading pod, besides the grader's own.",
        kind: Table,
    },
    KeyInfo {
        key: "kube.annotations",
        ty: "table of strings",
        doc: "Annotations put on every grading pod.",
        kind: Table,
    },
    KeyInfo {
        key: "kube.image_pull_policy",
        ty: "`Always`, `IfNotPresent` or `Never`",
        doc: "The grading container's `imagePullPolicy`.",
        kind: Text,
    },
    KeyInfo {
        key: "kube.image_pull_secrets",
        ty: "list of strings",
        doc: "Names of the secrets used to pull images.",
        kind: List,
    },
    KeyInfo {
        key: "kube.tolerations",
        ty: "list of tables (k8s `Toleration`)",
        doc: "The pod's tolerations.",
        kind: List,
    },
    KeyInfo {
        key: "kube.node_selector",
        ty: "table of strings",
        doc: "The pod's `nodeSelector`.",
        kind: Table,
    },
    KeyInfo {
        key: "kube.uid",
        ty: "integer or `\"none\"`",
        doc: "`runAsUser` of the grading container; `\"none\"` leaves it to the image. Not 0 while `hardening` is on.",
        kind: Scalar,
    },
    KeyInfo {
        key: "kube.resources.requests",
        ty: "table of quantities",
        doc: "Resource requests of the grading container.",
        kind: Table,
    },
    KeyInfo {
        key: "kube.resources.limits",
        ty: "table of quantities",
        doc: "Resource limits of the grading container.",
        kind: Table,
    },
    KeyInfo {
        key: "kube.extra_pod_config",
        ty: "table",
        doc: "Extra fields merged into the pod spec (API form).",
        kind: Table,
    },
    KeyInfo {
        key: "kube.extra_container_config",
        ty: "table",
        doc: "Extra fields merged into the grading container (API form).",
        kind: Table,
    },
    KeyInfo {
        key: "kube.poll_interval",
        ty: "integer (seconds)",
        doc: "Polling interval used only while the shared pod watch is broken (pods are watched, not polled). Greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "kube.unschedulable_grace",
        ty: "integer (seconds)",
        doc: "How long a pod may stay unschedulable or failing to pull its image before the job fails.",
        kind: Scalar,
    },
    KeyInfo {
        key: "kube.hardening",
        ty: "boolean",
        doc: "Apply the restricted Pod Security Standard (non-root, no privilege escalation, no capabilities, `RuntimeDefault` seccomp).",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.socket",
        ty: "path",
        doc: "Unix socket `grader serve` listens on and `grader submit` talks to; created with mode 0660 (its directory is created if missing); a stale socket is replaced, any other file there is refused. At most 107 bytes.",
        kind: Text,
    },
    KeyInfo {
        key: "serve.listen",
        ty: "string (`ip:port`), optional",
        doc: "TCP address `grader serve` also listens on; unset: the Unix socket only. Needs `serve.token_file`.",
        kind: Text,
    },
    KeyInfo {
        key: "serve.token_file",
        ty: "path, optional",
        doc: "File holding the bearer token TCP clients must send (`Authorization: Bearer TOKEN`); required with `serve.listen`.",
        kind: Text,
    },
    KeyInfo {
        key: "serve.concurrency",
        ty: "integer",
        doc: "Jobs `grader serve` grades at the same time; also its warm workers when `local.warm_workers` is not set. 1 to 256.",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.queue_limit",
        ty: "integer",
        doc: "Jobs that may wait for a free slot; further submissions are refused with 429.",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.max_request_bytes",
        ty: "integer (bytes)",
        doc: "Largest request body; larger ones are refused with 413. Greater than 0.",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.shutdown_grace",
        ty: "integer (seconds)",
        doc: "On SIGTERM/SIGINT, how long running jobs may take to finish before they are cancelled.",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.retain",
        ty: "integer (seconds)",
        doc: "How long a finished job's outcome stays available from the API.",
        kind: Scalar,
    },
    KeyInfo {
        key: "serve.results_dir",
        ty: "path, optional",
        doc: "Directory where each graded job's outcome is also written (`submission_{id}.json`, `feedback_{id}.json`, as `grader batch`); unset: memory only.",
        kind: Text,
    },
];

/// Looks a dotted key up in [`KEYS`].
pub fn key_info(key: &str) -> Option<&'static KeyInfo> {
    KEYS.iter().find(|k| k.key == key)
}

/// The names directly below `section` (`""` for the top level): leaf keys and
/// sub-sections, in documentation order.
pub fn children(section: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let all = KEYS.iter().map(|k| k.key).chain(SECTIONS.iter().copied());
    for key in all {
        let rest = if section.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(section).and_then(|r| r.strip_prefix('.'))
        };
        if let Some(rest) = rest {
            let name = rest.split('.').next().unwrap_or(rest);
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Whether `key` is a typed table ([`SECTIONS`]).
pub fn is_section(key: &str) -> bool {
    SECTIONS.contains(&key)
}

/// The configuration reference as a Markdown table: key, type, default,
/// environment variable, meaning. `CONFIG.md` embeds it.
pub fn reference_markdown() -> String {
    let defaults = serde_json::to_value(GraderConfig::default()).unwrap_or_default();
    let mut out = String::from(
        "| Key | Type | Default | Environment variable | Meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for info in KEYS {
        let default = match render::lookup(&defaults, info.key) {
            Some(v) if !v.is_null() => format!("`{}`", render::toml_value(v)),
            _ => "unset".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            info.key,
            info.ty,
            default.replace('|', "\\|"),
            info.env_var(),
            info.doc.replace('|', "\\|"),
        ));
    }
    out
}

//! Errors of the Kubernetes backend.
//!
//! [`ApiError`] is what one call to the API server can fail with, reduced to what an operator
//! needs to read (the API's reason and message, or why the server could not be reached).
//! [`KubeError`] is what the crate's fallible functions return; its messages name the file,
//! key, pod or namespace concerned.

use std::path::PathBuf;

use grader_local::FailureKind;
use grader_model::ModelError;

/// A failed call to the Kubernetes API server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status (`403 Forbidden`, `409 AlreadyExists`, ...).
    #[error("{}: {message}", describe_reason(*code, reason))]
    Status {
        /// HTTP status code.
        code: u16,
        /// The API's machine-readable reason, e.g. `Forbidden`, `AlreadyExists`.
        reason: String,
        /// The API's human-readable message.
        message: String,
    },
    /// The server could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
    /// Anything else: an undecodable answer, a failed authentication plugin, ...
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// An error status as the API server sends it.
    pub fn status(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Status {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The HTTP status code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether an object of that name already exists (409 with reason `AlreadyExists`, or a
    /// bare 409 on create).
    pub fn is_already_exists(&self) -> bool {
        match self {
            ApiError::Status { code, reason, .. } => {
                *code == 409 && (reason.is_empty() || reason == "AlreadyExists")
            }
            _ => false,
        }
    }
}

/// `Forbidden` → `forbidden`, `AlreadyExists` → `already exists`; the code when no reason.
fn describe_reason(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        return format!("HTTP {code}");
    }
    let mut out = String::with_capacity(reason.len() + 4);
    for (i, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The message of `err` followed by those of its sources, as `a: b: c` (sources whose text
/// the previous message already holds are left out).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<kube::Error> for ApiError {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => ApiError::Status {
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            kube::Error::HyperError(e) => ApiError::Unreachable(chain(&e)),
            kube::Error::Service(e) => ApiError::Unreachable(chain(&*e)),
            other => ApiError::Other(chain(&other)),
        }
    }
}

impl From<kube::runtime::watcher::Error> for ApiError {
    fn from(err: kube::runtime::watcher::Error) -> Self {
        use kube::runtime::watcher::Error as W;
        match err {
            W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => e.into(),
            W::WatchError(status) => ApiError::Status {
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            W::NoResourceVersion => ApiError::Other(W::NoResourceVersion.to_string()),
        }
    }
}

/// An error of this crate's fallible functions.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig (or the named context in it) could not be loaded.
    #[error("cannot load kubeconfig{}: {message}", context.as_ref().map(|c| format!(" context {c:?}")).unwrap_or_default())]
    Kubeconfig {
        /// The context asked for, if any.
        context: Option<String>,
        /// Why.
        message: String,
    },
    /// Neither in-cluster configuration nor a kubeconfig is available.
    #[error(
        "no Kubernetes configuration: not running in a cluster ({in_cluster}) and no usable kubeconfig ({kubeconfig})"
    )]
    NoConfig {
        /// Why the in-cluster configuration failed.
        in_cluster: String,
        /// Why the kubeconfig failed.
        kubeconfig: String,
    },
    /// The client could not be built from a loaded configuration (TLS, auth plugin).
    #[error("cannot create Kubernetes client: {0}")]
    Client(String),
    /// The image config file could not be read or parsed.
    #[error("image config {}: {message}", path.display())]
    ImageConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key where the shape is wrong.
        message: String,
    },
    /// A setting cannot be turned into the pod (a bad volume, toleration, extra config, ...).
    #[error("invalid kube setting {key}: {message}")]
    Setting {
        /// The setting, e.g. `kube.extra_pod_config`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A grader-model object was rejected.
    #[error("invalid kube setting {key}: {source}")]
    Model {
        /// The setting, e.g. `kube.extra_volumes`.
        key: &'static str,
        /// The model error.
        #[source]
        source: ModelError,
    },
    /// A call to the API server failed; `action` says what was being done, e.g.
    /// `creating pod autograde-job-alice-42 in namespace grading`.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, naming the pod and the namespace.
        action: String,
        /// The API's error.
        #[source]
        source: ApiError,
    },
}

impl KubeError {
    /// An API error with what was being done.
    pub fn api(action: impl Into<String>, source: ApiError) -> Self {
        KubeError::Api {
            action: action.into(),
            source,
        }
    }
}

/// Why a grading pod could not be started: from the moment the job asks for its pod until
/// the API server has created it (or an earlier run's pod is adopted).
///
/// Each variant says what failed; [`CreateError::needs_cleanup`] says whether a pod under the
/// job's name may be left that the job must delete, and [`CreateError::kind`] what kind of
/// failure the job ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    /// The job was cancelled before any request was sent.
    #[error("grading was cancelled before pod {name} in namespace {namespace} was created")]
    CancelledBeforeCreate {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// The job was cancelled while the pod was being created (or a leftover replaced).
    #[error("grading was cancelled before pod {name} in namespace {namespace} started")]
    Cancelled {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
    },
    /// The API server refused or did not answer the create request (other than "already
    /// exists").
    #[error("creating pod {name} in namespace {namespace}: {source}")]
    Create {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The API's error.
        #[source]
        source: ApiError,
    },
    /// A pod of that name was in the way and could not be read: it may not be ours.
    #[error("reading existing pod {name} in namespace {namespace}: {source}")]
    ReadExisting {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The API's error.
        #[source]
        source: ApiError,
    },
    /// A leftover pod in the way could not be deleted.
    #[error("deleting leftover pod {name} in namespace {namespace}: {source}")]
    DeleteLeftover {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The API's error.
        #[source]
        source: ApiError,
    },
    /// A leftover pod was deleted but did not go away in time.
    #[error("pod {name} in namespace {namespace} was still there {secs}s after deleting it")]
    LeftoverStayed {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// How long it was waited for, in seconds.
        secs: u64,
    },
    /// Every create attempt met a pod of that name (each replaced in turn).
    #[error(
        "creating pod {name} in namespace {namespace}: a pod of that name was still in the way after {attempts} attempts"
    )]
    StillInTheWay {
        /// Pod name.
        name: String,
        /// Namespace.
        namespace: String,
        /// Create requests made.
        attempts: usize,
    },
}

impl CreateError {
    /// What kind of failure ends the job: cancellations are [`FailureKind::Cancelled`],
    /// everything else is the API server or the cluster ([`FailureKind::Infrastructure`]).
    pub fn kind(&self) -> FailureKind {
        match self {
            CreateError::CancelledBeforeCreate { .. } | CreateError::Cancelled { .. } => {
                FailureKind::Cancelled
            }
            CreateError::Create { .. }
            | CreateError::ReadExisting { .. }
            | CreateError::DeleteLeftover { .. }
            | CreateError::LeftoverStayed { .. }
            | CreateError::StillInTheWay { .. } => FailureKind::Infrastructure,
        }
    }

    /// Whether a pod under the job's name may be left that the job must delete: its create
    /// request may have gone through (cancelled midway, a later attempt), or the leftover
    /// it set out to replace is still there. False when nothing was created and any pod in
    /// the way is not known to be ours.
    pub fn needs_cleanup(&self) -> bool {
        match self {
            CreateError::CancelledBeforeCreate { .. }
            | CreateError::Create { .. }
            | CreateError::ReadExisting { .. }
            | CreateError::DeleteLeftover { .. } => false,
            CreateError::Cancelled { .. }
            | CreateError::LeftoverStayed { .. }
            | CreateError::StillInTheWay { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_read_like_sentences() {
        let e = ApiError::status(403, "Forbidden", "pods is forbidden: no");
        assert_eq!(e.to_string(), "forbidden: pods is forbidden: no");
        let e = ApiError::status(409, "AlreadyExists", "pods \"x\" already exists");
        assert_eq!(e.to_string(), "already exists: pods \"x\" already exists");
        assert!(e.is_already_exists());
        let e = ApiError::status(500, "", "boom");
        assert_eq!(e.to_string(), "HTTP 500: boom");
        assert!(!e.is_not_found());
        assert!(ApiError::status(404, "NotFound", "gone").is_not_found());
        assert!(!ApiError::status(409, "Conflict", "rv").is_already_exists());
    }

    #[test]
    fn create_errors_say_their_kind_and_whether_a_pod_may_be_left() {
        let (name, namespace) = ("p".to_owned(), "n".to_owned());
        let api = ApiError::status(403, "Forbidden", "no");
        let cases = [
            (
                CreateError::CancelledBeforeCreate {
                    name: name.clone(),
                    namespace: namespace.clone(),
                },
                FailureKind::Cancelled,
                false,
                "grading was cancelled before pod p in namespace n was created",
            ),
            (
                CreateError::Cancelled {
                    name: name.clone(),
                    namespace: namespace.clone(),
                },
                FailureKind::Cancelled,
                true,
                "grading was cancelled before pod p in namespace n started",
            ),
            (
                CreateError::Create {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    source: api.clone(),
                },
                FailureKind::Infrastructure,
                false,
                "creating pod p in namespace n: forbidden: no",
            ),
            (
                CreateError::ReadExisting {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    source: api.clone(),
                },
                FailureKind::Infrastructure,
                false,
                "reading existing pod p in namespace n: forbidden: no",
            ),
            (
                CreateError::DeleteLeftover {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    source: api,
                },
                FailureKind::Infrastructure,
                false,
                "deleting leftover pod p in namespace n: forbidden: no",
            ),
            (
                CreateError::LeftoverStayed {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    secs: 120,
                },
                FailureKind::Infrastructure,
                true,
                "pod p in namespace n was still there 120s after deleting it",
            ),
            (
                CreateError::StillInTheWay {
                    name,
                    namespace,
                    attempts: 3,
                },
                FailureKind::Infrastructure,
                true,
                "creating pod p in namespace n: a pod of that name was still in the way after 3 attempts",
            ),
        ];
        for (e, kind, cleanup, text) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.needs_cleanup(), cleanup, "{e}");
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn kube_api_errors_keep_reason_and_message() {
        let status = kube::core::Status::failure("pods is forbidden", "Forbidden").with_code(403);
        let e = ApiError::from(kube::Error::Api(status.boxed()));
        assert_eq!(e, ApiError::status(403, "Forbidden", "pods is forbidden"));
        let e = KubeError::api("creating pod p in namespace n", e);
        assert_eq!(
            e.to_string(),
            "creating pod p in namespace n: forbidden: pods is forbidden"
        );
    }
}

//! The grading pod of a task, built with grader-model's `make_pod`.

use std::collections::BTreeMap;

use grader_local::{GradingTask, JobKind};
use grader_model::pod::CONTAINER_NAME;
use grader_model::{Changes, Hardening, PodParams, hashed_slug, make_pod, pod_name, sha256_hex};
use k8s_openapi::api::core::v1::{EnvVar, LocalObjectReference, Pod};
use serde_json::{Value, json};

use crate::error::KubeError;
use crate::settings::KubeSettings;

/// Label every grading pod carries; the watch, the garbage collector and the RBAC example
/// select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "grader";
/// Label selector of all grading pods.
pub const GRADER_SELECTOR: &str = "app.kubernetes.io/managed-by=grader";
/// Label: `autograde` or `feedback`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label: the submission id.
pub const SUBMISSION_LABEL: &str = "grader.io/submission-id";
/// Label: the assignment id.
pub const ASSIGNMENT_LABEL: &str = "grader.io/assignment-id";
/// Label: the lecture code, made a valid label value (see [`label_value`]).
pub const LECTURE_LABEL: &str = "grader.io/lecture";
/// Annotation: the graded commit.
pub const COMMIT_ANNOTATION: &str = "grader.io/commit";
/// Annotation: the student's username.
pub const USERNAME_ANNOTATION: &str = "grader.io/username";
/// Annotation: the lecture code as given.
pub const LECTURE_ANNOTATION: &str = "grader.io/lecture";
/// Annotation: the assignment id.
pub const ASSIGNMENT_ANNOTATION: &str = "grader.io/assignment-id";
/// Name of the grading container (whose logs are collected).
pub const CONTAINER: &str = CONTAINER_NAME;

/// The pod name of a task: grader-model's `pod_name(username, submission id)`
/// (`autograde-job-alice-42`) for autograding; feedback pods use the prefix `feedback-job-`
/// instead (`feedback-job-alice-42`, one character shorter, so still a valid name) so that
/// feedback and autograding of one submission never collide.
pub fn job_pod_name(task: &GradingTask) -> String {
    let name = pod_name(&task.submission.username, task.submission.id);
    match task.kind {
        JobKind::Autograde => name,
        JobKind::Feedback => name.replacen("autograde-job-", "feedback-job-", 1),
    }
}

/// `autograde` or `feedback`: the value of [`COMPONENT_LABEL`].
pub fn component(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Autograde => "autograde",
        JobKind::Feedback => "feedback",
    }
}

/// The labels identifying a task's pod.
pub fn job_labels(task: &GradingTask) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (COMPONENT_LABEL.to_owned(), component(task.kind).to_owned()),
        (SUBMISSION_LABEL.to_owned(), task.submission.id.to_string()),
        (ASSIGNMENT_LABEL.to_owned(), task.assignment.id.to_string()),
        (LECTURE_LABEL.to_owned(), label_value(&task.lecture.code)),
    ])
}

/// The annotations describing a task's pod (free-form values, kept as they are).
pub fn job_annotations(task: &GradingTask) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            COMMIT_ANNOTATION.to_owned(),
            task.submission.commit_hash.clone(),
        ),
        (
            USERNAME_ANNOTATION.to_owned(),
            task.submission.username.clone(),
        ),
        (LECTURE_ANNOTATION.to_owned(), task.lecture.code.clone()),
        (
            ASSIGNMENT_ANNOTATION.to_owned(),
            task.assignment.id.to_string(),
        ),
    ])
}

/// Whether `s` is a valid label value: at most 63 characters from `[A-Za-z0-9-_.]`, starting
/// and ending alphanumeric (or empty).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    b.is_empty()
        || (b.len() <= 63
            && b.first().is_some_and(alnum)
            && b.last().is_some_and(alnum)
            && b.iter()
                .all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.')))
}

/// A valid label value for free-form text: `raw` itself when valid; a hashed slug
/// (grader-model's `hashed_slug`) when it is only too long; otherwise the text with runs of
/// other characters replaced by `-`, cut, and suffixed with 8 hex digits of SHA-256 of `raw`,
/// so distinct inputs stay distinct.
pub fn label_value(raw: &str) -> String {
    if is_label_value(raw) {
        return raw.to_owned();
    }
    if raw
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && raw
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && let Ok(slug) = hashed_slug(raw, 63, 6)
        && is_label_value(&slug)
    {
        return slug;
    }
    let mut sanitized = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.') {
            sanitized.push(c);
        } else if !sanitized.ends_with('-') {
            sanitized.push('-');
        }
    }
    let hash = sha256_hex(raw)[..8].to_string();
    let head: &str = sanitized.get(..63 - 9).unwrap_or(&sanitized);
    let head = head.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Builds the pod grading `task` with `image`, and returns it with the warnings about fields
/// that `extra_pod_config` / `extra_container_config` overrode (each also logged).
///
/// The container runs `convert_executable` followed by `task.tool_args(input, output, true,
/// /tmp/{pod name}.json)`, all in `args` as the reference does. The input and output directories are mounted from the
/// data volume at the same absolute paths as in the grader, by `subPath` (the task's relative
/// directories). The grader's labels and annotations win over configured ones.
/// `activeDeadlineSeconds` (at least 1) and the resources are always set; with `hardening`
/// the pod also passes the `restricted` Pod Security Standard. Then `extra_pod_config` is
/// merged into `pod.spec` and `extra_container_config` into the container.
pub fn build_pod(
    settings: &KubeSettings,
    task: &GradingTask,
    image: &str,
) -> Result<(Pod, Vec<String>), KubeError> {
    let name = job_pod_name(task);
    let input = task.input_dir.to_string_lossy().into_owned();
    let output = task.output_dir.to_string_lossy().into_owned();

    let mut args = vec![settings.convert_executable.clone()];
    // The container's own /tmp (the pod name keeps pods apart where they share one, as on a
    // test node that runs them as host processes).
    let connection_file = format!("/tmp/{name}.json");
    args.extend(task.tool_args(&input, &output, true, &connection_file));

    let volume_name = settings
        .volume
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or(KubeError::Setting {
            key: "kube.volume",
            message: "must be an object with a non-empty \"name\"".into(),
        })?
        .to_owned();
    let mut volumes = vec![settings.volume.clone()];
    volumes.extend(settings.extra_volumes.iter().cloned());
    let mut volume_mounts = vec![
        json!({"name": volume_name, "mountPath": input, "subPath": task.relative_input_dir}),
        json!({"name": volume_name, "mountPath": output, "subPath": task.relative_output_dir}),
    ];
    volume_mounts.extend(settings.extra_volume_mounts.iter().cloned());

    let mut labels = settings.labels.clone();
    merge_own(&mut labels, job_labels(task), "label");
    let mut annotations = settings.annotations.clone();
    merge_own(&mut annotations, job_annotations(task), "annotation");

    let mut hardening = if settings.hardening {
        Hardening::restricted()
    } else {
        Hardening::default()
    };
    hardening.resource_requests = settings.resources.requests.clone();
    hardening.resource_limits = settings.resources.limits.clone();
    hardening.active_deadline_seconds = Some(deadline_seconds(task));

    let params = PodParams {
        name: name.clone(),
        args,
        env: vec![EnvVar {
            name: "ASSIGNMENT_SETTINGS".into(),
            value: Some(task.settings_json()),
            value_from: None,
        }],
        image: image.to_owned(),
        image_pull_policy: settings.image_pull_policy.clone(),
        image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
            settings
                .image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        working_dir: Some("/".into()),
        volumes,
        volume_mounts,
        labels,
        annotations,
        tolerations: settings.tolerations.clone(),
        node_selector: settings.node_selector.clone(),
        run_as_user: settings.uid,
        hardening,
    };
    let mut pod = make_pod(&params).map_err(|source| KubeError::Model {
        key: model_key(&source),
        source,
    })?;

    let mut warnings = Vec::new();
    let Some(spec) = pod.spec.as_mut() else {
        return Err(KubeError::Setting {
            key: "kube",
            message: "built pod has no spec".into(),
        });
    };
    if let Some(changes) = changes("kube.extra_pod_config", &settings.extra_pod_config)? {
        let overrides =
            grader_model::update_k8s_model(spec, changes).map_err(|source| KubeError::Model {
                key: "kube.extra_pod_config",
                source,
            })?;
        for o in overrides {
            warnings.push(format!(
                "pod.spec.{} overridden by extra_pod_config",
                o.attribute
            ));
        }
    }
    if let Some(changes) = changes(
        "kube.extra_container_config",
        &settings.extra_container_config,
    )? {
        let container = spec
            .containers
            .iter_mut()
            .find(|c| c.name == CONTAINER)
            .ok_or(KubeError::Setting {
                key: "kube.extra_container_config",
                message: format!(
                    "the pod has no container {CONTAINER:?} (did extra_pod_config replace containers?)"
                ),
            })?;
        let overrides = grader_model::update_k8s_model(container, changes).map_err(|source| {
            KubeError::Model {
                key: "kube.extra_container_config",
                source,
            }
        })?;
        for o in overrides {
            warnings.push(format!(
                "pod.spec.containers[{CONTAINER}].{} overridden by extra_container_config",
                o.attribute
            ));
        }
    }
    for w in &warnings {
        tracing::warn!(pod = %name, "{w}");
    }
    Ok((pod, warnings))
}

/// `max_grading_time` in whole seconds, rounded up, at least 1.
pub(crate) fn deadline_seconds(task: &GradingTask) -> i64 {
    let t = task.max_grading_time;
    let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

fn merge_own(target: &mut BTreeMap<String, String>, own: BTreeMap<String, String>, what: &str) {
    for (k, v) in own {
        if let Some(previous) = target.get(&k)
            && *previous != v
        {
            tracing::warn!(key = %k, configured = %previous, "configured {what} replaced by the grader's own");
        }
        target.insert(k, v);
    }
}

fn changes<T>(key: &'static str, value: &Value) -> Result<Option<Changes<T>>, KubeError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) if map.is_empty() => Ok(None),
        Value::Object(map) => Ok(Some(Changes::Map(map.clone()))),
        _ => Err(KubeError::Setting {
            key,
            message: "must be a table (JSON object)".into(),
        }),
    }
}

fn model_key(err: &grader_model::ModelError) -> &'static str {
    match err {
        grader_model::ModelError::InItem { list, .. } => match *list {
            "volumes" => "kube.volume / kube.extra_volumes",
            "volume_mounts" => "kube.extra_volume_mounts",
            "tolerations" => "kube.tolerations",
            _ => "kube",
        },
        _ => "kube",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values() {
        assert_eq!(label_value("cs101"), "cs101");
        assert_eq!(label_value("CS-101_a.b"), "CS-101_a.b");
        assert_eq!(label_value(""), "");
        let long = "a".repeat(80);
        let v = label_value(&long);
        assert!(is_label_value(&v) && v.len() == 63, "{v}");
        for raw in [
            "Data Science 1",
            "-x-",
            "ÄÖÜ",
            "日本",
            "a/b",
            &"x y".repeat(40),
            "a_",
        ] {
            let v = label_value(raw);
            assert!(is_label_value(&v), "{raw:?} -> {v:?}");
        }
        assert_ne!(label_value("a b"), label_value("a/b"));
        assert_ne!(label_value("ä"), label_value("ö"));
    }

    #[test]
    fn label_value_checks() {
        for ok in ["", "a", "a.b-c_d", &"z".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "ä", &"z".repeat(64), "_"] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn label_value_is_always_valid(raw in "\\PC{0,100}") {
            let v = label_value(&raw);
            proptest::prop_assert!(is_label_value(&v), "{:?} -> {:?}", raw, v);
        }
    }
}

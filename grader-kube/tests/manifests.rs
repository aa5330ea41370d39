//! The grading pod's full manifest for a few configurations, compared with snapshots in
//! `tests/snapshots/` (run with `UPDATE_SNAPSHOTS=1` to rewrite them), and the `restricted`
//! Pod Security Standard checks on the default pod.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::pss::restricted_violations;
use common::*;
use grader_kube::{KubeSettings, build_pod};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

/// Compares `actual` with `tests/snapshots/<name>.yaml`, or writes it with
/// `UPDATE_SNAPSHOTS=1`.
fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  - {e}\n  + {a}", i + 1))
            .collect();
        panic!(
            "snapshot {} differs (run with UPDATE_SNAPSHOTS=1 to accept):\n{}\n(expected {} lines, got {})\n--- actual ---\n{actual}",
            path.display(),
            diff.join("\n"),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

fn manifest(settings: &KubeSettings) -> (Pod, Vec<String>, String) {
    let (pod, warnings) = build_pod(settings, &task(), "registry.example/cs101:2026").unwrap();
    let yaml = serde_yaml::to_string(&pod).unwrap();
    (pod, warnings, yaml)
}

#[test]
fn default_pod() {
    let (pod, warnings, yaml) = manifest(&KubeSettings::default());
    assert!(warnings.is_empty());
    assert_snapshot("default", &yaml);
    assert_eq!(pod.metadata.name.as_deref(), Some(POD));
    let c = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "grader-convert",
            "autograde",
            "-i",
            "/var/lib/grader/convert_in/submission_42",
            "-o",
            "/var/lib/grader/convert_out/submission_42",
            "-p",
            "*.ipynb",
            "--log-level=INFO",
            "--ExecutePreprocessor.timeout=120",
            "--KernelManager.transport=ipc",
            &format!("--KernelManager.connection_file=/tmp/{POD}.json"),
        ]
    );
    assert_eq!(
        pod.spec.as_ref().unwrap().active_deadline_seconds,
        Some(3600)
    );
}

#[test]
fn hardening_off() {
    let settings = KubeSettings {
        hardening: false,
        uid: None,
        ..KubeSettings::default()
    };
    let (pod, warnings, yaml) = manifest(&settings);
    assert!(warnings.is_empty());
    assert_snapshot("hardening_off", &yaml);
    assert!(!restricted_violations(&pod).is_empty());
}

fn with_extras() -> KubeSettings {
    KubeSettings {
        volume: json!({"name": "service", "persistentVolumeClaim": {"claimName": "course-data"}}),
        extra_volumes: vec![
            json!({"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": true}}),
        ],
        extra_volume_mounts: vec![
            json!({"name": "datasets", "mountPath": "/data", "readOnly": true}),
        ],
        tolerations: vec![
            json!({"key": "grading", "operator": "Equal", "value": "true", "effect": "NoSchedule"}),
        ],
        node_selector: BTreeMap::from([("node-role/grading".into(), "true".into())]),
        image_pull_secrets: vec!["registry-cred".into()],
        image_pull_policy: "IfNotPresent".into(),
        labels: BTreeMap::from([
            ("team".into(), "teaching".into()),
            // The grader's own label wins.
            ("app.kubernetes.io/managed-by".into(), "someone-else".into()),
        ]),
        annotations: BTreeMap::from([("example.com/owner".into(), "course-admins".into())]),
        convert_executable: "/opt/conda/bin/grader-convert".into(),
        ..KubeSettings::default()
    }
}

#[test]
fn extra_volumes_mounts_tolerations_node_selector_and_pull_secrets() {
    let (pod, warnings, yaml) = manifest(&with_extras());
    assert!(warnings.is_empty());
    assert_snapshot("extras", &yaml);
    let mounts = pod.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .clone()
        .unwrap();
    assert!(
        mounts[..2].iter().all(|m| m.name == "service"),
        "mounts use the configured volume name"
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
        "grader"
    );
    assert!(
        restricted_violations(&pod).is_empty(),
        "{:?}",
        restricted_violations(&pod)
    );
}

#[test]
fn extra_pod_and_container_config_override_with_warnings() {
    let settings = KubeSettings {
        node_selector: BTreeMap::from([("pool".into(), "default".into())]),
        extra_pod_config: json!({
            "nodeSelector": {"pool": "gpu"},
            "priorityClassName": "grading",
        }),
        extra_container_config: json!({
            "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "8Gi"}, "requests": {"memory": "4Gi"}},
            "workingDir": "/home/jovyan",
        }),
        ..KubeSettings::default()
    };
    let (pod, warnings, yaml) = manifest(&settings);
    assert_eq!(
        warnings,
        [
            "pod.spec.node_selector overridden by extra_pod_config",
            "pod.spec.containers[autograde].resources overridden by extra_container_config",
            "pod.spec.containers[autograde].working_dir overridden by extra_container_config",
        ]
    );
    assert_snapshot("overrides", &yaml);
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_selector.unwrap()["pool"], "gpu");
    assert_eq!(spec.priority_class_name.as_deref(), Some("grading"));
}

#[test]
fn bad_settings_name_their_key() {
    let cases = [
        (
            KubeSettings {
                volume: json!({"persistentVolumeClaim": {"claimName": "x"}}),
                ..KubeSettings::default()
            },
            "kube.volume",
        ),
        (
            KubeSettings {
                extra_volumes: vec![json!({"name": "v", "hostPth": {}})],
                ..KubeSettings::default()
            },
            "kube.volume / kube.extra_volumes",
        ),
        (
            KubeSettings {
                tolerations: vec![json!("x")],
                ..KubeSettings::default()
            },
            "kube.tolerations",
        ),
        (
            KubeSettings {
                extra_pod_config: json!([1]),
                ..KubeSettings::default()
            },
            "kube.extra_pod_config",
        ),
        (
            KubeSettings {
                extra_container_config: json!({"resources": {"limit": {}}}),
                ..KubeSettings::default()
            },
            "kube.extra_container_config",
        ),
        (
            KubeSettings {
                extra_pod_config: json!({"containers": []}),
                extra_container_config: json!({"tty": true}),
                ..KubeSettings::default()
            },
            "kube.extra_container_config",
        ),
    ];
    for (settings, key) in cases {
        let err = build_pod(&settings, &task(), "img")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("invalid kube setting {key}:")),
            "{key}: {err}"
        );
    }
}

#[test]
fn labels_are_valid_for_any_lecture_code() {
    let mut t = task();
    t.lecture.code = "Data Science: Übung 1 (WS 2026/27)".into();
    t.max_grading_time = std::time::Duration::from_millis(1500);
    let (pod, _) = build_pod(&KubeSettings::default(), &t, "img").unwrap();
    let labels = pod.metadata.labels.unwrap();
    assert!(
        grader_kube::is_label_value(&labels["grader.io/lecture"]),
        "{}",
        labels["grader.io/lecture"]
    );
    assert_eq!(
        pod.metadata.annotations.unwrap()["grader.io/lecture"],
        t.lecture.code
    );
    assert_eq!(
        pod.spec.unwrap().active_deadline_seconds,
        Some(2),
        "rounded up"
    );
    t.max_grading_time = std::time::Duration::ZERO;
    let (pod, _) = build_pod(&KubeSettings::default(), &t, "img").unwrap();
    assert_eq!(
        pod.spec.unwrap().active_deadline_seconds,
        Some(1),
        "at least 1"
    );
}

#[test]
fn the_default_pod_is_restricted() {
    let (pod, _, _) = manifest(&KubeSettings::default());
    assert_eq!(restricted_violations(&pod), Vec::<String>::new());
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert!(spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none());
    assert!(spec.volumes.iter().flatten().all(|v| v.host_path.is_none()));
}

#[test]
fn hardening_off_fails_the_checks_it_should() {
    let settings = KubeSettings {
        hardening: false,
        ..KubeSettings::default()
    };
    let (pod, _, _) = manifest(&settings);
    let v = restricted_violations(&pod);
    for expected in [
        "autograde: allowPrivilegeEscalation is not false",
        "autograde: capabilities do not drop ALL",
        "autograde: runAsNonRoot is not true",
        "autograde: seccomp profile is not RuntimeDefault",
        "service account token is mounted",
    ] {
        assert!(
            v.iter().any(|x| x == expected),
            "{expected} missing from {v:?}"
        );
    }
}

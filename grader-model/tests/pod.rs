//! Pod building beyond the reference vectors: hardening, node selector, bad inputs.

use std::collections::BTreeMap;

use grader_model::{Hardening, ModelError, PodParams, make_pod};
use serde_json::{Value, json};

fn params() -> PodParams {
    PodParams {
        name: "autograde-job-alice-1".into(),
        args: vec!["grader-convert".into(), "autograde".into()],
        image: "cs101_image".into(),
        image_pull_policy: "Always".into(),
        run_as_user: Some(1000),
        ..PodParams::default()
    }
}

fn pod_json(params: &PodParams) -> Value {
    let pod = make_pod(params).expect("valid params");
    serde_json::to_value(pod).expect("serializes")
}

#[test]
fn default_pod_has_the_reference_shape() {
    let pod = pod_json(&params());
    assert_eq!(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "autograde-job-alice-1", "labels": {}, "annotations": {}},
            "spec": {
                "containers": [{
                    "name": "autograde",
                    "image": "cs101_image",
                    "imagePullPolicy": "Always",
                    "args": ["grader-convert", "autograde"],
                    "env": [],
                    "resources": {},
                    "securityContext": {"runAsUser": 1000},
                    "volumeMounts": [],
                }],
                "restartPolicy": "Never",
                "securityContext": {},
            },
        })
    );
}

#[test]
fn restricted_hardening_meets_the_restricted_standard() {
    let mut p = params();
    p.hardening = Hardening::restricted();
    let pod = pod_json(&p);
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        spec["securityContext"]["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );
    assert_eq!(spec["automountServiceAccountToken"], json!(false));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        json!(false)
    );
    assert_eq!(
        container["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
    assert_eq!(container["securityContext"]["runAsUser"], json!(1000));
    assert_eq!(container["resources"], json!({}));
    assert!(spec.get("activeDeadlineSeconds").is_none());
}

#[test]
fn resources_deadline_and_node_selector_are_applied() {
    let mut p = params();
    p.hardening.resource_requests = BTreeMap::from([("cpu".into(), "500m".into())]);
    p.hardening.resource_limits =
        BTreeMap::from([("cpu".into(), "1".into()), ("memory".into(), "1Gi".into())]);
    p.hardening.active_deadline_seconds = Some(3600);
    p.node_selector = BTreeMap::from([("pool".into(), "grading".into())]);
    let pod = pod_json(&p);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    );
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], json!(3600));
    assert_eq!(pod["spec"]["nodeSelector"], json!({"pool": "grading"}));
    assert_eq!(pod["spec"]["securityContext"], json!({}));
}

#[test]
fn list_parameters_accept_attribute_names() {
    let mut p = params();
    p.volumes = vec![json!({"name": "data", "persistent_volume_claim": {"claimName": "pvc"}})];
    p.volume_mounts = vec![json!({"name": "data", "mount_path": "/in", "sub_path": "x"})];
    p.tolerations = vec![json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})];
    let pod = pod_json(&p);
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/in", "subPath": "x"}])
    );
    assert_eq!(pod["spec"]["tolerations"][0]["operator"], json!("Exists"));
}

#[test]
fn bad_list_items_name_list_index_and_key() {
    let mut p = params();
    p.volume_mounts = vec![
        json!({"name": "a", "mountPath": "/a"}),
        json!({"name": "b", "mountPth": "/b"}),
    ];
    let err = make_pod(&p).expect_err("unknown key");
    assert!(
        matches!(
            &err,
            ModelError::InItem {
                list: "volume_mounts",
                index: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "volume_mounts[1]: 'VolumeMount' has no field 'mountPth'"
    );

    let mut p = params();
    p.volumes = vec![json!("data")];
    let err = make_pod(&p).expect_err("not an object");
    assert_eq!(
        err.to_string(),
        "volumes[0]: expected a JSON object for 'Volume', got a string"
    );

    let mut p = params();
    p.tolerations = vec![json!({"tolerationSeconds": "soon"})];
    assert!(make_pod(&p).is_err());
}

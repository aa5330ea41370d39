//! Typed models from JSON and merging: key spellings, errors, truthiness.

use grader_model::{Changes, FieldKind, K8sModel, ModelError, get_k8s_model, update_k8s_model};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, PodStatus, Probe, SeccompProfile, Toleration,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

fn changes<T>(value: Value) -> Changes<T> {
    Changes::try_from(value).expect("changes are an object")
}

fn spec(value: Value) -> PodSpec {
    get_k8s_model(&value).expect("valid pod spec")
}

#[test]
fn api_and_attribute_names_build_the_same_model() {
    let camel: PodSpec = spec(json!({
        "containers": [{"name": "c"}],
        "nodeSelector": {"disk": "ssd"},
        "hostIPC": true,
        "setHostnameAsFQDN": true,
        "terminationGracePeriodSeconds": 5,
    }));
    let snake: PodSpec = spec(json!({
        "containers": [{"name": "c"}],
        "node_selector": {"disk": "ssd"},
        "host_ipc": true,
        "set_hostname_as_fqdn": true,
        "termination_grace_period_seconds": 5,
    }));
    assert_eq!(camel, snake);
    assert_eq!(camel.host_ipc, Some(true));
    assert_eq!(camel.termination_grace_period_seconds, Some(5));
}

#[test]
fn attribute_names_follow_the_python_client() {
    let attr = |fields: &[grader_model::Field], api: &str| {
        fields
            .iter()
            .find(|f| f.api_name == api)
            .map(|f| f.attribute)
    };
    assert_eq!(attr(PodSpec::FIELDS, "hostIPC"), Some("host_ipc"));
    assert_eq!(attr(PodSpec::FIELDS, "hostPID"), Some("host_pid"));
    assert_eq!(
        attr(PodSpec::FIELDS, "setHostnameAsFQDN"),
        Some("set_hostname_as_fqdn")
    );
    assert_eq!(attr(PodStatus::FIELDS, "podIP"), Some("pod_ip"));
    assert_eq!(attr(PodStatus::FIELDS, "podIPs"), Some("pod_ips"));
    assert_eq!(attr(Probe::FIELDS, "exec"), Some("_exec"));
    assert_eq!(attr(SeccompProfile::FIELDS, "type"), Some("type"));
    assert_eq!(attr(Pod::FIELDS, "apiVersion"), Some("api_version"));
    let seccomp: SeccompProfile =
        get_k8s_model(&json!({"type": "RuntimeDefault"})).expect("valid profile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
}

#[test]
fn field_lists_have_unique_names() {
    fn check<T: K8sModel>() {
        let mut api: Vec<_> = T::FIELDS.iter().map(|f| f.api_name).collect();
        let mut attr: Vec<_> = T::FIELDS.iter().map(|f| f.attribute).collect();
        api.sort_unstable();
        attr.sort_unstable();
        let (n_api, n_attr) = (api.len(), attr.len());
        api.dedup();
        attr.dedup();
        assert!(n_api > 0, "{}", T::TYPE_NAME);
        assert_eq!((api.len(), attr.len()), (n_api, n_attr), "{}", T::TYPE_NAME);
    }
    check::<Pod>();
    check::<PodSpec>();
    check::<Container>();
    check::<ObjectMeta>();
    check::<Volume>();
    check::<Toleration>();
    assert_eq!(PodSpec::TYPE_NAME, "PodSpec");
    assert_eq!(
        PodSpec::field("securityContext").map(|f| f.kind),
        Some(FieldKind::Model)
    );
    assert_eq!(
        PodSpec::field("node_selector").map(|f| f.kind),
        Some(FieldKind::Value)
    );
}

#[test]
fn unknown_top_level_key_names_type_and_key() {
    let err = get_k8s_model::<PodSpec>(&json!({"containers": [], "nodeSelektor": {}}))
        .expect_err("unknown key");
    assert!(
        matches!(&err, ModelError::UnknownField { type_name: "PodSpec", key } if key == "nodeSelektor"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "'PodSpec' has no field 'nodeSelektor'");

    let mut target = spec(json!({"containers": [{"name": "c"}]}));
    let before = target.clone();
    let err = update_k8s_model(
        &mut target,
        changes(json!({"restartPolicy": "Never", "imagePullPolicy": "Always"})),
    )
    .expect_err("imagePullPolicy is a container field");
    assert_eq!(err.to_string(), "'PodSpec' has no field 'imagePullPolicy'");
    assert_eq!(target, before);
}

#[test]
fn unknown_nested_key_is_an_error_with_its_path() {
    let err = get_k8s_model::<PodSpec>(&json!({
        "containers": [{"name": "c", "securityContext": {"runAsUsr": 1}}],
    }))
    .expect_err("unknown nested key");
    assert_eq!(
        err.to_string(),
        "'PodSpec' has no field 'containers[0].securityContext.runAsUsr'"
    );

    let err = get_k8s_model::<Volume>(&json!({
        "name": "data",
        "persistentVolumeClaim": {"claim_name": "x"},
    }))
    .expect_err("nested keys must be API names");
    assert!(
        matches!(&err, ModelError::UnknownNestedField { type_name: "Volume", path } if path == "persistentVolumeClaim.claim_name"),
        "{err:?}"
    );

    let mut target = spec(json!({"containers": [{"name": "c"}]}));
    let before = target.clone();
    let err = update_k8s_model(
        &mut target,
        changes(json!({"securityContext": {"fsGroupp": 1}})),
    )
    .expect_err("unknown nested key in changes");
    assert_eq!(
        err.to_string(),
        "'PodSpec' has no field 'securityContext.fsGroupp'"
    );
    assert_eq!(target, before);
}

#[test]
fn null_nested_values_and_maps_are_accepted() {
    let meta: ObjectMeta = get_k8s_model(&json!({
        "name": "x",
        "labels": {"any-key": "v", "other/key": "w"},
        "namespace": null,
    }))
    .expect("valid meta");
    assert_eq!(meta.labels.map(|l| l.len()), Some(2));
    let c: Container = get_k8s_model(&json!({"name": "c", "securityContext": {"runAsUser": null}}))
        .expect("valid");
    assert_eq!(c.security_context.and_then(|s| s.run_as_user), None);
}

#[test]
fn wrong_shapes_are_errors() {
    assert!(matches!(
        get_k8s_model::<PodSpec>(&json!([1, 2])),
        Err(ModelError::NotAnObject {
            type_name: "PodSpec",
            found: "an array"
        })
    ));
    assert!(matches!(
        get_k8s_model::<PodSpec>(&json!({"containers": [], "priority": "high"})),
        Err(ModelError::InvalidValue {
            type_name: "PodSpec",
            ..
        })
    ));
    assert!(Changes::<PodSpec>::try_from(json!("x")).is_err());
    let mut target = spec(json!({"containers": [{"name": "c"}]}));
    let before = target.clone();
    let err = update_k8s_model(&mut target, changes(json!({"containers": null})))
        .expect_err("containers is required");
    assert_eq!(err.to_string(), "'PodSpec' requires field 'containers'");
    assert_eq!(target, before);
    let err = get_k8s_model::<Pod>(&json!({"kind": "Service"})).expect_err("wrong kind");
    assert!(
        matches!(
            err,
            ModelError::InvalidValue {
                type_name: "Pod",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn required_fields_must_be_present() {
    let err = get_k8s_model::<PodSpec>(&json!({"nodeName": "n"})).expect_err("no containers");
    assert!(
        matches!(
            err,
            ModelError::MissingField {
                type_name: "PodSpec",
                field: "containers"
            }
        ),
        "{err:?}"
    );
    let err =
        get_k8s_model::<Volume>(&json!({"name": null, "emptyDir": {}})).expect_err("null name");
    assert_eq!(err.to_string(), "'Volume' requires field 'name'");
    let err = get_k8s_model::<k8s_openapi::api::core::v1::VolumeMount>(&json!({"name": "n"}))
        .expect_err("no mountPath");
    assert_eq!(err.to_string(), "'VolumeMount' requires field 'mountPath'");
    // Optional in the Python client although k8s-openapi has no Option for it.
    assert!(get_k8s_model::<k8s_openapi::api::core::v1::LocalObjectReference>(&json!({})).is_ok());
    assert!(get_k8s_model::<Pod>(&json!({})).is_ok());
}

#[test]
fn later_spelling_of_the_same_field_wins() {
    let s = spec(json!({"containers": [], "nodeName": "a", "node_name": "b"}));
    assert_eq!(s.node_name.as_deref(), Some("b"));
    let mut target = spec(json!({"containers": [], "nodeName": "x"}));
    let overrides = update_k8s_model(
        &mut target,
        changes(json!({"nodeName": "a", "node_name": "b"})),
    )
    .expect("valid");
    assert_eq!(target.node_name.as_deref(), Some("b"));
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].previous, json!("x"));
    assert_eq!(overrides[0].new, json!("b"));
}

#[test]
fn falsy_target_values_are_not_reported_as_overridden() {
    let mut target = spec(json!({
        "containers": [],
        "activeDeadlineSeconds": 0,
        "hostNetwork": false,
        "hostname": "",
        "nodeSelector": {},
        "tolerations": [],
    }));
    let overrides = update_k8s_model(
        &mut target,
        changes(json!({
            "activeDeadlineSeconds": 5,
            "hostNetwork": true,
            "hostname": "h",
            "nodeSelector": {"a": "b"},
            "tolerations": [{"operator": "Exists"}],
        })),
    )
    .expect("valid");
    assert!(overrides.is_empty(), "{overrides:?}");
    assert_eq!(target.active_deadline_seconds, Some(5));
}

#[test]
fn an_empty_nested_model_counts_as_set() {
    let mut target = spec(json!({"containers": [], "securityContext": {}}));
    let overrides = update_k8s_model(
        &mut target,
        changes(json!({"securityContext": {"runAsUser": 1}})),
    )
    .expect("valid");
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].attribute, "security_context");
    assert_eq!(overrides[0].api_name, "securityContext");
    assert_eq!(overrides[0].previous, json!({}));
}

#[test]
fn model_changes_skip_unset_and_falsy_fields() {
    let mut target = spec(json!({
        "containers": [{"name": "c"}],
        "hostname": "keep",
        "priority": 3,
        "hostNetwork": true,
    }));
    let model = PodSpec {
        hostname: Some(String::new()),
        priority: Some(0),
        host_network: Some(false),
        node_name: Some("n".into()),
        security_context: Some(PodSecurityContext::default()),
        ..PodSpec::default()
    };
    let overrides = update_k8s_model(&mut target, Changes::Model(model)).expect("valid");
    assert!(overrides.is_empty(), "{overrides:?}");
    assert_eq!(target.hostname.as_deref(), Some("keep"));
    assert_eq!(target.priority, Some(3));
    assert_eq!(target.host_network, Some(true));
    assert_eq!(target.node_name.as_deref(), Some("n"));
    assert_eq!(target.security_context, Some(PodSecurityContext::default()));
    assert_eq!(target.containers.len(), 1);
}

#[test]
fn null_clears_and_is_reported_when_it_clears_a_set_value() {
    let mut target = spec(json!({"containers": [], "nodeSelector": {"a": "b"}, "hostname": ""}));
    let overrides = update_k8s_model(
        &mut target,
        changes(json!({"nodeSelector": null, "hostname": null})),
    )
    .expect("valid");
    assert_eq!(
        overrides.iter().map(|o| o.attribute).collect::<Vec<_>>(),
        ["node_selector"]
    );
    assert_eq!(overrides[0].new, Value::Null);
    assert_eq!(target.node_selector, None);
    assert_eq!(target.hostname, None);
}

//! Parity with Grader Service 0.12.5: vectors produced by the Python reference
//! (testdata/reference, see its README) must all be reproduced.

use std::collections::BTreeMap;

use grader_model::{
    Changes, K8sModel, ModelError, PodParams, get_k8s_model, hashed_slug, make_pod,
    update_k8s_model,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

const HASHED_SLUG: &str = include_str!("../testdata/reference/hashed_slug.json");
const UPDATE_K8S_MODEL: &str = include_str!("../testdata/reference/update_k8s_model.json");
const MAKE_POD: &str = include_str!("../testdata/reference/make_pod.json");

fn cases(text: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(text).expect("reference file is JSON");
    doc["cases"]
        .as_array()
        .expect("reference file has a cases list")
        .clone()
}

fn str_of<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("case field {key} is a string: {case}"))
}

fn usize_of(case: &Value, key: &str) -> usize {
    let n = case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("case field {key} is a number: {case}"));
    usize::try_from(n).expect("fits usize")
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[test]
fn hashed_slug_matches_reference() {
    let cases = cases(HASHED_SLUG);
    assert!(
        cases.len() >= 100,
        "expected a substantial vector set, got {}",
        cases.len()
    );
    let mut shortened = 0;
    for case in &cases {
        let input = str_of(case, "input");
        let expected = str_of(case, "output");
        let got = hashed_slug(
            input,
            usize_of(case, "limit"),
            usize_of(case, "hash_length"),
        );
        assert_eq!(got.as_deref(), Ok(expected), "case {case}");
        if input != expected {
            shortened += 1;
        }
    }
    assert!(
        shortened > 0 && shortened < cases.len(),
        "vectors cover both branches"
    );
}

/// The two quoted names in the reference's "'V1PodSpec' did not have an attribute matching
/// 'nodeSelectr'".
fn reference_error_names(message: &str) -> (String, String) {
    let quoted: Vec<&str> = message.split('\'').skip(1).step_by(2).collect();
    assert_eq!(quoted.len(), 2, "unexpected reference error {message}");
    let type_name = quoted[0].strip_prefix("V1").unwrap_or(quoted[0]);
    (type_name.to_owned(), quoted[1].to_owned())
}

fn run_update_case<T: K8sModel + Clone + PartialEq + std::fmt::Debug>(case: &Value) {
    let mut target: T = get_k8s_model(&case["target"]).expect("target builds");
    let original = target.clone();
    let changes = if case["changes_is_model"].as_bool() == Some(true) {
        Changes::Model(get_k8s_model::<T>(&case["changes"]).expect("changes model builds"))
    } else {
        Changes::try_from(case["changes"].clone()).expect("changes are an object")
    };
    let outcome = update_k8s_model(&mut target, changes);

    if let Some(message) = case.get("error").and_then(Value::as_str) {
        let (type_name, key) = reference_error_names(message);
        match outcome {
            Err(ModelError::UnknownField {
                type_name: got_type,
                key: got_key,
            }) => {
                assert_eq!(got_type, type_name, "case {case}");
                assert_eq!(got_key, key, "case {case}");
            }
            other => panic!("expected UnknownField for {case}, got {other:?}"),
        }
        let shown = format!("'{type_name}' has no field '{key}'");
        let err = update_k8s_model(
            &mut target,
            Changes::try_from(case["changes"].clone()).expect("object"),
        )
        .expect_err("still refused");
        assert_eq!(err.to_string(), shown);
        assert_eq!(target, original, "a refused change leaves the target alone");
        return;
    }

    let overrides = outcome.unwrap_or_else(|e| panic!("case {case} failed: {e}"));
    let result = serde_json::to_value(&target).expect("serializes");
    assert_eq!(
        result,
        case["result"],
        "case {case}\ngot {}",
        pretty(&result)
    );
    let overridden: Vec<&str> = overrides.iter().map(|o| o.attribute).collect();
    let expected: Vec<&str> = case["overridden"]
        .as_array()
        .expect("overridden list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(overridden, expected, "case {case}");
    assert_eq!(overrides.len(), usize_of(case, "warnings"), "case {case}");
}

#[test]
fn update_k8s_model_matches_reference() {
    let cases = cases(UPDATE_K8S_MODEL);
    assert!(cases.len() >= 20, "got {} cases", cases.len());
    let mut per_model = BTreeMap::<String, usize>::new();
    for case in &cases {
        let model = str_of(case, "model");
        match model {
            "V1PodSpec" => run_update_case::<PodSpec>(case),
            "V1Container" => run_update_case::<Container>(case),
            "V1ObjectMeta" => run_update_case::<ObjectMeta>(case),
            other => panic!("no mapping for reference model {other}"),
        }
        *per_model.entry(model.to_owned()).or_default() += 1;
    }
    assert_eq!(per_model.len(), 3, "{per_model:?}");
    assert!(
        cases.iter().any(|c| c.get("error").is_some()),
        "error cases present"
    );
    assert!(
        cases
            .iter()
            .any(|c| c["changes_is_model"] == Value::Bool(true)),
        "model cases present"
    );
}

fn list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn pod_params(args: &Value) -> PodParams {
    PodParams {
        name: str_of(args, "name").to_owned(),
        args: serde_json::from_value(args["cmd"].clone()).expect("cmd is a string list"),
        env: serde_json::from_value(args["env"].clone()).expect("env is an EnvVar list"),
        image: str_of(args, "image").to_owned(),
        image_pull_policy: str_of(args, "image_pull_policy").to_owned(),
        image_pull_secrets: serde_json::from_value(args["image_pull_secrets"].clone())
            .expect("image_pull_secrets are references or null"),
        working_dir: args["working_dir"].as_str().map(str::to_owned),
        volumes: list(&args["volumes"]),
        volume_mounts: list(&args["volume_mounts"]),
        labels: string_map(&args["labels"]),
        annotations: string_map(&args["annotations"]),
        tolerations: list(&args["tolerations"]),
        node_selector: BTreeMap::new(),
        run_as_user: args["run_as_user"].as_i64(),
        hardening: Default::default(),
    }
}

#[test]
fn make_pod_matches_reference() {
    let cases = cases(MAKE_POD);
    assert!(cases.len() >= 5, "got {} cases", cases.len());
    for case in &cases {
        let params = pod_params(&case["args"]);
        let pod = make_pod(&params).unwrap_or_else(|e| panic!("case {case} failed: {e}"));
        let got = serde_json::to_value(&pod).expect("pod serializes");
        assert_eq!(
            got,
            case["pod"],
            "case args {}\ngot {}",
            case["args"],
            pretty(&got)
        );
    }
}

#[test]
fn json_comparison_ignores_key_order() {
    let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"c": 2, "d": 3}}"#).expect("json");
    let b: Value = serde_json::from_str(r#"{"b": {"d": 3, "c": 2}, "a": 1}"#).expect("json");
    let c: Value = serde_json::from_str(r#"{"b": {"d": 3, "c": 4}, "a": 1}"#).expect("json");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

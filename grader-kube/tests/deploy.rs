//! The example deployment in `deploy/` parses into Kubernetes types, hangs together, and
//! grants exactly what the backend uses.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::pss::restricted_violations;
use common::task;
use grader_kube::{KubeSettings, REQUIRED_RBAC, build_pod};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize;

fn deploy_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn documents(name: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(&deploy_file(name))
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect()
}

fn one<T: serde::de::DeserializeOwned>(docs: &[serde_yaml::Value], kind: &str) -> T {
    let found: Vec<&serde_yaml::Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    serde_yaml::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn grader_toml() -> toml::Table {
    deploy_file("grader.toml").parse().unwrap()
}

#[test]
fn the_role_grants_exactly_what_the_backend_uses() {
    let docs = documents("rbac.yaml");
    assert_eq!(docs.len(), 3);
    let sa: ServiceAccount = one(&docs, "ServiceAccount");
    let role: Role = one(&docs, "Role");
    let binding: RoleBinding = one(&docs, "RoleBinding");

    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in role.rules.iter().flatten() {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&[String::new()][..]),
            "core group only"
        );
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for resource in rule.resources.iter().flatten() {
            granted
                .entry(resource.clone())
                .or_default()
                .extend(rule.verbs.iter().cloned());
        }
    }
    let required: BTreeMap<String, Vec<String>> = REQUIRED_RBAC
        .iter()
        .map(|(r, verbs)| {
            (
                (*r).to_owned(),
                verbs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect();
    for verbs in granted.values_mut() {
        verbs.sort();
    }
    let required: BTreeMap<String, Vec<String>> = required
        .into_iter()
        .map(|(r, mut v)| {
            v.sort();
            (r, v)
        })
        .collect();
    assert_eq!(granted, required);
    assert!(granted.values().flatten().all(|v| v != "*"));

    let ns = "grading";
    assert_eq!(sa.metadata.name.as_deref(), Some("grader"));
    assert_eq!(sa.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(role.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(binding.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, "grader");
    assert_eq!(subjects[0].namespace.as_deref(), Some(ns));
}

#[test]
fn the_namespace_enforces_restricted() {
    let docs = documents("namespace.yaml");
    let ns: Namespace = one(&docs, "Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some("grading"));
    assert_eq!(
        ns.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn the_claim_is_shared() {
    let docs = documents("pvc.yaml");
    let pvc: PersistentVolumeClaim = one(&docs, "PersistentVolumeClaim");
    assert_eq!(pvc.metadata.name.as_deref(), Some("grader-data"));
    assert_eq!(pvc.metadata.namespace.as_deref(), Some("grading"));
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
    assert!(
        spec.resources
            .unwrap()
            .requests
            .unwrap()
            .contains_key("storage")
    );
}

#[test]
fn the_example_config_uses_the_kube_backend_in_cluster() {
    let config = grader_toml();
    assert_eq!(config["backend"].as_str(), Some("kube"));
    let kube = config["kube"].as_table().unwrap();
    for key in kube.keys() {
        assert!(
            KubeSettings::TABLE_KEYS.contains(&key.as_str()),
            "unknown [kube] key {key}"
        );
    }
    assert!(!kube.contains_key("context"), "in-cluster configuration");
    assert_eq!(kube["namespace"].as_str(), Some("grading"));
    let volume = &kube["volume"];
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"].as_str(),
        Some("grader-data")
    );
}

/// The example config's pod passes the namespace's `restricted` policy.
#[test]
fn the_example_configs_pod_is_restricted() {
    let config = grader_toml();
    let kube = config["kube"].as_table().unwrap();
    let json = |v: &toml::Value| serde_json::to_value(v).unwrap();
    let strings = |v: &toml::Value| -> BTreeMap<String, String> {
        v.as_table()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    };
    let settings = KubeSettings {
        namespace: kube["namespace"].as_str().map(str::to_owned),
        default_image_name: grader_model::ImageNameTemplate::parse(
            kube["default_image_name"].as_str().unwrap(),
        )
        .unwrap(),
        volume: json(&kube["volume"]),
        labels: strings(&kube["labels"]),
        image_pull_policy: kube["image_pull_policy"].as_str().unwrap().to_owned(),
        uid: kube["uid"].as_integer(),
        hardening: kube["hardening"].as_bool().unwrap(),
        resources: grader_kube::Resources {
            requests: strings(&kube["resources"]["requests"]),
            limits: strings(&kube["resources"]["limits"]),
        },
        extra_pod_config: json(&kube["extra_pod_config"]),
        extra_container_config: json(&kube["extra_container_config"]),
        ..KubeSettings::default()
    };
    let image = settings.default_image_name.render("cs101", "7", "A1");
    assert_eq!(image, "registry.example.org/grading/cs101:latest");
    let (pod, warnings) = build_pod(&settings, &task(), &image).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(restricted_violations(&pod), Vec::<String>::new());
}

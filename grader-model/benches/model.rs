//! Throughput of the pure model: slugs, model merging and pod building.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use grader_model::{Changes, PodParams, get_k8s_model, hashed_slug, make_pod, update_k8s_model};
use k8s_openapi::api::core::v1::{EnvVar, PodSpec};
use serde_json::json;

fn slugs(c: &mut Criterion) {
    c.bench_function("hashed_slug/short", |b| {
        b.iter(|| hashed_slug(black_box("autograde-job-alice-17"), 63, 6))
    });
    let long = "autograde-job-".to_owned() + &"verylongusername".repeat(8);
    c.bench_function("hashed_slug/long", |b| {
        b.iter(|| hashed_slug(black_box(&long), 63, 6))
    });
}

fn merge(c: &mut Criterion) {
    let target: PodSpec = get_k8s_model(&json!({
        "containers": [{"name": "autograde", "image": "cs101_image", "args": ["grader-convert"]}],
        "restartPolicy": "Never",
        "nodeSelector": {"disk": "ssd"},
        "securityContext": {},
    }))
    .unwrap_or_default();
    let changes = json!({
        "nodeSelector": {"gpu": "true"},
        "tolerations": [{"key": "grading", "operator": "Exists", "effect": "NoSchedule"}],
        "priority_class_name": "low",
    });
    let Some(changes) = changes.as_object().cloned() else {
        return;
    };
    c.bench_function("update_k8s_model/podspec_json_map", |b| {
        b.iter(|| {
            let mut spec = target.clone();
            update_k8s_model(&mut spec, Changes::Map(black_box(changes.clone())))
        })
    });
}

fn pod(c: &mut Criterion) {
    let params = PodParams {
        name: "autograde-job-alice-17".into(),
        args: [
            "grader-convert",
            "autograde",
            "-i",
            "/in",
            "-o",
            "/out",
            "-p",
            "*.ipynb",
            "--log-level=INFO",
            "--ExecutePreprocessor.timeout=300",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![EnvVar {
            name: "ASSIGNMENT_SETTINGS".into(),
            value: Some(r#"{"cell_timeout": 300}"#.into()),
            ..EnvVar::default()
        }],
        image: "cs101_image".into(),
        image_pull_policy: "IfNotPresent".into(),
        working_dir: Some("/".into()),
        volumes: vec![
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "grader-data"}}),
        ],
        volume_mounts: vec![
            json!({"name": "data", "mountPath": "/in", "subPath": "convert_in/submission_17"}),
            json!({"name": "data", "mountPath": "/out", "subPath": "convert_out/submission_17"}),
        ],
        labels: BTreeMap::from([("app".into(), "grader".into())]),
        run_as_user: Some(1000),
        ..PodParams::default()
    };
    c.bench_function("make_pod/typical", |b| {
        b.iter(|| make_pod(black_box(&params)))
    });
}

criterion_group!(benches, slugs, merge, pod);
criterion_main!(benches);

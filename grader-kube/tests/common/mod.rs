//! Shared test fixtures: a grading task and pods in the states a cluster reports.
#![allow(dead_code)]

pub mod pss;

use std::path::PathBuf;
use std::time::Duration;

use grader_local::{GradingTask, JobKind};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

pub const NS: &str = "grading";
pub const POD: &str = "autograde-job-alice-42";

/// Autograding of submission 42 (alice, commit abc123) of assignment 7 of cs101.
pub fn task() -> GradingTask {
    GradingTask {
        kind: JobKind::Autograde,
        lecture: serde_json::from_value(json!({"code": "cs101"})).unwrap(),
        assignment: serde_json::from_value(json!({
            "id": 7, "name": "Assignment 1",
            "settings": {"cell_timeout": 120, "allowed_files": ["*.csv"], "autograde_type": "auto"}
        }))
        .unwrap(),
        submission: serde_json::from_value(json!({
            "id": 42, "commit_hash": "abc123", "username": "alice"
        }))
        .unwrap(),
        input_dir: PathBuf::from("/var/lib/grader/convert_in/submission_42"),
        output_dir: PathBuf::from("/var/lib/grader/convert_out/submission_42"),
        relative_input_dir: "convert_in/submission_42".into(),
        relative_output_dir: "convert_out/submission_42".into(),
        cell_timeout: 120,
        max_grading_time: Duration::from_secs(3600),
        resume: false,
    }
}

/// [`task`] whose work dirs an earlier run left: a running pod of the same job may be adopted.
pub fn resumed_task() -> GradingTask {
    GradingTask {
        resume: true,
        ..task()
    }
}

/// A pod of the job of [`task`] with `uid` and `status` (API JSON).
pub fn pod(uid: &str, status: Value) -> Pod {
    pod_with(uid, "abc123", status)
}

/// Like [`pod`] with another commit annotation.
pub fn pod_with(uid: &str, commit: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": POD, "namespace": NS, "uid": uid, "resourceVersion": "1",
            "labels": {
                "app.kubernetes.io/managed-by": "grader",
                "app.kubernetes.io/component": "autograde",
                "grader.io/submission-id": "42",
            },
            "annotations": {"grader.io/commit": commit},
        },
        "spec": {"containers": [{"name": "autograde", "image": "cs101_image"}]},
        "status": status,
    }))
    .unwrap()
}

pub fn pending() -> Value {
    json!({"phase": "Pending"})
}

pub fn running() -> Value {
    json!({"phase": "Running", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": true,
        "restartCount": 0, "state": {"running": {}}
    }]})
}

pub fn succeeded() -> Value {
    json!({"phase": "Succeeded", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
    }]})
}

pub fn exited(code: i32) -> Value {
    json!({"phase": "Failed", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": "Error"}}
    }]})
}

pub fn waiting(reason: &str, message: &str) -> Value {
    json!({"phase": "Pending", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}
    }]})
}

pub fn unschedulable() -> Value {
    json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."
    }]})
}

pub fn failed_with(reason: &str, message: &str) -> Value {
    json!({"phase": "Failed", "reason": reason, "message": message})
}

//! Pod status classification: what a waiter makes of each state a cluster reports.

mod common;

use common::*;
use grader_kube::{PodState, classify};
use grader_local::FailureKind;
use serde_json::json;

#[test]
fn finished_pods() {
    assert_eq!(classify(&pod("u", succeeded())), PodState::Succeeded);
    assert_eq!(
        classify(&pod("u", exited(2))),
        PodState::Failed(
            FailureKind::ToolExited,
            "failed: container autograde exited with code 2 (Error)".into()
        )
    );
    let oom = json!({"phase": "Failed", "containerStatuses": [{
        "name": "autograde", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "out of memory "}}
    }]});
    assert_eq!(
        classify(&pod("u", oom)),
        PodState::Failed(
            FailureKind::OutOfMemory,
            "failed: container autograde exited with code 137 (OOMKilled): out of memory".into()
        )
    );
    assert_eq!(
        classify(&pod("u", failed_with("Evicted", ""))),
        PodState::Failed(
            FailureKind::Infrastructure,
            "was evicted: (no message)".into()
        )
    );
    assert_eq!(
        classify(&pod("u", failed_with("NodeLost", "node went away"))),
        PodState::Failed(
            FailureKind::Infrastructure,
            "failed: NodeLost: node went away".into()
        )
    );
    assert_eq!(
        classify(&pod("u", json!({"phase": "Failed"}))),
        PodState::Failed(FailureKind::Infrastructure, "failed".into())
    );
}

#[test]
fn succeeded_wins_over_deletion_but_nothing_else_does() {
    let mut p = pod("u", succeeded());
    p.metadata.deletion_timestamp = serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
    assert_eq!(classify(&p), PodState::Succeeded);
    p.status = serde_json::from_value(exited(1)).ok();
    assert_eq!(classify(&p), PodState::Terminating);
    p.status = serde_json::from_value(running()).ok();
    assert_eq!(classify(&p), PodState::Terminating);
}

#[test]
fn start_failures() {
    for reason in [
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
    ] {
        assert_eq!(
            classify(&pod("u", waiting(reason, "m"))),
            PodState::CannotStart(format!("{reason}: m")),
            "{reason}"
        );
    }
    for reason in ["ErrImagePull", "ImagePullBackOff", "CreateContainerError"] {
        assert_eq!(
            classify(&pod("u", waiting(reason, " "))),
            PodState::Stuck(reason.to_owned()),
            "{reason}"
        );
    }
    assert_eq!(
        classify(&pod("u", unschedulable())),
        PodState::Stuck("Unschedulable: 0/3 nodes are available: 3 Insufficient memory.".into())
    );
}

#[test]
fn normal_progress() {
    assert_eq!(classify(&pod("u", pending())), PodState::Progressing);
    assert_eq!(classify(&pod("u", running())), PodState::Progressing);
    assert_eq!(
        classify(&pod("u", waiting("ContainerCreating", ""))),
        PodState::Progressing
    );
    let scheduling = json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulerError"}
    ]});
    assert_eq!(classify(&pod("u", scheduling)), PodState::Progressing);
    let mut no_status = pod("u", pending());
    no_status.status = None;
    assert_eq!(classify(&no_status), PodState::Progressing);
}

#[test]
fn init_containers_count_too() {
    let status = json!({"phase": "Pending", "initContainerStatuses": [{
        "name": "setup", "image": "bad image", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "InvalidImageName"}}
    }]});
    assert_eq!(
        classify(&pod("u", status)),
        PodState::CannotStart("InvalidImageName".into())
    );
}

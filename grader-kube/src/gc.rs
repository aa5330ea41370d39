//! Removing grading pods that nobody will clean up (after a crash, or an older grader).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::api::{Deletion, PodApi};
use crate::error::KubeError;
use crate::pod::GRADER_SELECTOR;

/// Deletes the grading pods (found by the grader label selector) that have finished
/// (`Succeeded`/`Failed`) or were created more than `stale_after` ago, and returns their
/// names. Pods already being deleted are left alone; a pod that cannot be deleted is logged
/// and skipped. Only listing is an error.
///
/// Run it when no job of this grader is running (e.g. at start): a finished pod of a running
/// job is one whose logs are about to be fetched.
pub async fn collect_garbage(
    api: &dyn PodApi,
    namespace: &str,
    stale_after: Duration,
) -> Result<Vec<String>, KubeError> {
    let pods = api
        .list(GRADER_SELECTOR)
        .await
        .map_err(|e| KubeError::api(format!("listing grading pods in namespace {namespace}"), e))?;
    let now = Timestamp::now();
    let mut deleted = Vec::new();
    for pod in pods {
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let Some(why) = garbage_reason(&pod, now, stale_after) else {
            continue;
        };
        match api.delete(&name).await {
            Ok(Deletion::NotFound) => {}
            Ok(_) => {
                tracing::info!(pod = %name, namespace, why, "deleted orphaned grading pod");
                deleted.push(name);
            }
            Err(e) => {
                tracing::warn!(pod = %name, namespace, error = %e, "cannot delete orphaned grading pod");
            }
        }
    }
    Ok(deleted)
}

/// Why `pod` is garbage, if it is.
fn garbage_reason(pod: &Pod, now: Timestamp, stale_after: Duration) -> Option<&'static str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some("finished");
    }
    let created = pod.metadata.creation_timestamp.as_ref()?.0;
    let age = now.duration_since(created);
    let stale = age.is_positive() && age.unsigned_abs() > stale_after;
    stale.then_some("stale")
}

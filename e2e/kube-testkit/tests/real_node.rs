//! The real node of kube-testkit (containerd + runc + kubelet, scheduler, controller-manager):
//! a pod of the grading image is scheduled by kube-scheduler, runs in a container as uid 1000,
//! and its logs come from the real kubelet. Skips loudly when the node's programs or the
//! grading image are missing (an error under `CI=true`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, PostParams};
use kube_testkit::{ControlPlane, RealNode, RealNodeConfig};
use serde_json::json;

/// The grading image archive of `deploy/image/build.sh --print`, or `None` (loudly).
fn grading_image() -> Result<Option<(String, PathBuf)>> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match kube_testkit::grading_image(&repo)? {
        Some(image) => Ok(Some((image.name, image.archive))),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            bail!("the grading image is not built and CI=true: run `bash deploy/image/build.sh`")
        }
        None => {
            eprintln!("SKIPPED: the grading image is not built (bash deploy/image/build.sh)");
            Ok(None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_the_grading_image_runs_in_a_container_on_the_real_node() -> Result<()> {
    let Some((image, archive)) = grading_image()? else {
        return Ok(());
    };
    let Some(cp) = ControlPlane::start().await? else {
        return Ok(());
    };
    let started = Instant::now();
    let Some(node) = RealNode::start(
        &cp,
        RealNodeConfig {
            images: vec![archive],
            ..Default::default()
        },
    )
    .await?
    else {
        return Ok(());
    };
    eprintln!(
        "real node ready in {:?}: {:?}",
        started.elapsed(),
        node.timings
    );
    cp.create_namespace("smoke", true).await?;
    let pods: Api<Pod> = Api::namespaced(cp.client().await?, "smoke");
    pods.create(&PostParams::default(), &whoami(&image)?)
        .await?;
    wait_succeeded(&pods, &node).await?;
    let pod = pods.get("whoami").await?;
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name()),
        "bound by kube-scheduler"
    );
    let logs = pods
        .logs("whoami", &LogParams::default())
        .await
        .context("pods/log through the kubelet")?;
    assert!(logs.starts_with("1000\n"), "{logs}");
    node.stop();
    Ok(())
}

/// The workplace's network rule: test traffic goes to loopback only. The Node advertises
/// only loopback addresses, the API server reaches kubelet (pods/log) on loopback, and no
/// process of the test (etcd, kube-apiserver, containerd, kubelet, kube-scheduler,
/// kube-controller-manager) listens on or connects to any other address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_node_and_its_control_plane_use_only_loopback() -> Result<()> {
    let Some((image, archive)) = grading_image()? else {
        return Ok(());
    };
    let Some(cp) = ControlPlane::start().await? else {
        return Ok(());
    };
    let Some(node) = RealNode::start(
        &cp,
        RealNodeConfig {
            images: vec![archive],
            ..Default::default()
        },
    )
    .await?
    else {
        return Ok(());
    };
    let client = cp.client().await?;
    let addresses = Api::<Node>::all(client.clone())
        .get(node.name())
        .await?
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default();
    assert!(!addresses.is_empty());
    for address in &addresses {
        let loopback = address.address == "localhost"
            || address
                .address
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        assert!(loopback, "the Node advertises {address:?}: {addresses:?}");
    }
    // A pod whose logs the API server fetches from kubelet.
    cp.create_namespace("net", true).await?;
    let pods: Api<Pod> = Api::namespaced(client, "net");
    pods.create(&PostParams::default(), &whoami(&image)?)
        .await?;
    wait_succeeded(&pods, &node).await?;
    let logs = pods.logs("whoami", &LogParams::default()).await?;
    assert!(logs.starts_with("1000\n"), "{logs}");
    let outside = RealNode::non_loopback_tcp_sockets();
    let described: Vec<String> = outside.iter().map(ToString::to_string).collect();
    assert!(
        outside.is_empty(),
        "sockets outside loopback:\n{}",
        described.join("\n")
    );
    node.stop();
    Ok(())
}

/// A pod of the grading image that prints its uid and the tool's first help line.
fn whoami(image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": "whoami" },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 1000,
                                 "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "id -u; grader-convert --help | head -1"],
                "securityContext": { "allowPrivilegeEscalation": false,
                                     "capabilities": { "drop": ["ALL"] } }
            }]
        }
    }))?)
}

/// Waits until pod `whoami` succeeded (two minutes at most).
async fn wait_succeeded(pods: &Api<Pod>, node: &RealNode) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pod = pods.get("whoami").await?;
        let status = pod.status.clone().unwrap_or_default();
        match status.phase.as_deref() {
            Some("Succeeded") => return Ok(()),
            Some("Failed") => bail!("pod failed: {status:?}\n{}", node.log("kubelet")),
            _ if Instant::now() > deadline => {
                bail!(
                    "pod not done: {status:?}\nkubelet:\n{}",
                    tail(&node.log("kubelet"))
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

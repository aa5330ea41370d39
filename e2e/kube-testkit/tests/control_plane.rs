//! Tests of the test kit itself, against a real kube-apiserver + etcd and the test node agent.
//! They skip loudly when the binaries are missing (build them with
//! `bash e2e/control-plane/build.sh`), except under `CI=true`, where that fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStateWaiting, Namespace, Pod,
    Secret,
};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_testkit::{ControlPlane, NodeAgent, NodeAgentConfig};
use serde_json::json;

/// A pod that `restricted` PodSecurity admits, running `argv` (`command`, no `args`).
fn restricted_pod(name: &str, argv: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 1000,
                "seccompProfile": { "type": "RuntimeDefault" }
            },
            "containers": [{
                "name": "main",
                "image": "registry.invalid/tool:1",
                "command": argv,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": { "drop": ["ALL"] }
                }
            }]
        }
    }))
    .expect("valid pod")
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Watches pod `name` until `done` holds (None: the pod is gone), tolerating watch errors
/// (e.g. an API server restart: the watcher re-lists).
async fn wait_for(
    api: &Api<Pod>,
    name: &str,
    timeout: Duration,
    done: impl Fn(Option<&Pod>) -> bool,
) -> Result<Option<Pod>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config).boxed();
    let deadline = Instant::now() + timeout;
    let mut current: Option<Pod> = None;
    // Between Init and InitDone the watcher is (re-)listing: `current` is not known yet.
    let mut listing = true;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(remaining, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("watch ended"),
            Err(_) => bail!(
                "timed out after {timeout:?} waiting for pod {name}; last seen: {:#?}",
                current.map(|p| p.status)
            ),
        };
        match event {
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(watcher::Event::Init) => {
                listing = true;
                current = None;
            }
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => current = Some(pod),
            Ok(watcher::Event::Delete(_)) => current = None,
            Ok(watcher::Event::InitDone) => listing = false,
        }
        if !listing && done(current.as_ref()) {
            return Ok(current);
        }
    }
}

/// The state of the pod's (single) container, once it has a status.
fn container_state(pod: &Pod) -> Option<ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .clone()
}

fn terminated(pod: &Pod) -> ContainerStateTerminated {
    container_state(pod)
        .and_then(|s| s.terminated)
        .expect("terminated")
}

fn waiting(pod: &Pod) -> Option<ContainerStateWaiting> {
    container_state(pod).and_then(|s| s.waiting)
}

struct Env {
    cp: ControlPlane,
    agent: NodeAgent,
    client: Client,
}

impl Env {
    /// Creates namespace `name` (`restricted` PodSecurity) and returns its pods.
    async fn restricted_namespace(&self, name: &str) -> Result<Api<Pod>> {
        self.cp.create_namespace(name, true).await?;
        Ok(Api::namespaced(self.client.clone(), name))
    }
}

async fn setup(config: NodeAgentConfig) -> Result<Option<Env>> {
    let started = Instant::now();
    let Some(cp) = ControlPlane::start().await? else {
        return Ok(None);
    };
    eprintln!("control plane ready in {:?}", started.elapsed());
    let client = cp.client().await?;
    let agent = NodeAgent::start(client.clone(), config).await?;
    Ok(Some(Env { cp, agent, client }))
}

#[tokio::test]
async fn pod_fails_with_exit_code_serves_logs_and_is_deleted() -> Result<()> {
    let Some(env) = setup(NodeAgentConfig::default()).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("grading").await?;
    let ns: Namespace = Api::all(env.client.clone()).get("grading").await?;
    assert_eq!(
        ns.labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );

    let pod = restricted_pod("fails", &["/bin/sh", "-c", "echo hello; exit 3"]);
    let created = pods.create(&PostParams::default(), &pod).await?;
    let uid = created.uid().expect("uid");

    let done = wait_for(&pods, "fails", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await?;
    let pod = done.expect("pod");
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("testkit-node")
    );
    let status = pod.status.as_ref().expect("status");
    let terminated = terminated(&pod);
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert!(terminated.started_at.is_some() && terminated.finished_at.is_some());
    let conditions: BTreeMap<&str, &str> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(conditions.get("PodScheduled"), Some(&"True"));
    assert_eq!(conditions.get("Ready"), Some(&"False"));

    // Logs go API server -> node agent's HTTPS endpoint, as in a cluster.
    let logs = pods.logs("fails", &LogParams::default()).await?;
    assert_eq!(logs, "hello\n");
    let tail = pods
        .logs(
            "fails",
            &LogParams {
                tail_lines: Some(1),
                limit_bytes: Some(3),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(tail, "hel");

    // Graceful deletion of a finished pod: the agent completes it.
    pods.delete("fails", &DeleteParams::default()).await?;
    wait_for(&pods, "fails", Duration::from_secs(30), |p| {
        p.is_none_or(|p| p.uid().as_deref() != Some(uid.as_str()))
    })
    .await?;
    assert!(pods.get_opt("fails").await?.is_none());
    env.agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn restricted_namespace_rejects_violating_pod_and_rbac_applies_to_tokens() -> Result<()> {
    let Some(env) = setup(NodeAgentConfig::default()).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("locked").await?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "privileged" },
        "spec": { "containers": [{ "name": "main", "image": "x", "command": ["true"],
                                   "securityContext": { "privileged": true } }] }
    }))?;
    match pods.create(&PostParams::default(), &pod).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                e.message
            );
        }
        other => panic!("expected a PodSecurity rejection, got {other:?}"),
    }
    // The same pod is fine in a namespace without the label.
    env.cp.create_namespace("open", false).await?;
    Api::<Pod>::namespaced(env.client.clone(), "open")
        .create(&PostParams::default(), &pod)
        .await?;

    // A ServiceAccount token authenticates, and RBAC denies what is not granted.
    let token = env.cp.service_account_token("open", "default").await?;
    let kubeconfig = env.cp.write_token_kubeconfig(&token, "open")?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    assert_eq!(config.default_namespace, "open");
    let sa_client = Client::try_from(config)?;
    match Api::<Pod>::namespaced(sa_client, "open")
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert!(
                e.message.contains("system:serviceaccount:open:default"),
                "{}",
                e.message
            );
        }
        other => panic!("expected 403 for an unprivileged ServiceAccount, got {other:?}"),
    }
    env.agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn sub_path_mount_writes_into_the_claim_directory() -> Result<()> {
    let claim = tempfile::tempdir()?;
    let view = tempfile::tempdir()?;
    let mount_path = view.path().join("workspace");
    let config = NodeAgentConfig {
        claim_dirs: BTreeMap::from([("grader-data".to_string(), claim.path().to_path_buf())]),
        ..Default::default()
    };
    let Some(env) = setup(config).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("mounts").await?;
    let private = unsafe { libc::geteuid() } == 0;
    // Without root the agent cannot bind-mount: the mountPath must be the host directory.
    let mount_path = if private {
        mount_path
    } else {
        claim.path().join("users/alice/assignment-1")
    };
    let mut pod = restricted_pod(
        "writer",
        &[
            "/bin/sh",
            "-c",
            "echo graded > out.txt && pwd && echo \"$GREETING\"",
        ],
    );
    let spec = pod.spec.as_mut().expect("spec");
    spec.volumes = Some(vec![serde_json::from_value(json!({
        "name": "data", "persistentVolumeClaim": { "claimName": "grader-data" }
    }))?]);
    let container = &mut spec.containers[0];
    container.working_dir = Some(mount_path.display().to_string());
    container.env = Some(vec![serde_json::from_value(
        json!({ "name": "GREETING", "value": "hi $(HOSTNAME)" }),
    )?]);
    container.volume_mounts = Some(vec![serde_json::from_value(json!({
        "name": "data", "mountPath": mount_path, "subPath": "users/alice/assignment-1"
    }))?]);
    pods.create(&PostParams::default(), &pod).await?;
    let done = wait_for(&pods, "writer", Duration::from_secs(60), |p| {
        p.is_some_and(|p| matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await?
    .expect("pod");
    let logs = pods.logs("writer", &LogParams::default()).await?;
    assert_eq!(
        phase(&done),
        "Succeeded",
        "logs: {logs}\nstatus: {:#?}",
        done.status
    );
    assert_eq!(logs, format!("{}\nhi writer\n", mount_path.display()));
    let written = claim.path().join("users/alice/assignment-1/out.txt");
    assert_eq!(
        std::fs::read_to_string(&written).context("the file lands in the claim dir + subPath")?,
        "graded\n"
    );
    if private {
        // The bind mount existed only in the container's mount namespace.
        assert!(mount_path.is_dir(), "mount point created");
        assert!(
            !mount_path.join("out.txt").exists(),
            "host sees no bind mount"
        );
    }
    env.agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn pod_survives_api_server_restart_and_deadline_and_pull_failures_apply() -> Result<()> {
    let config = NodeAgentConfig {
        pull_fail_images: vec!["registry.invalid/missing*".into()],
        executables: BTreeMap::from([("grader-convert".to_string(), "/bin/echo".into())]),
        ..Default::default()
    };
    let Some(mut env) = setup(config).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("restarts").await?;

    let mut unpullable = restricted_pod("unpullable", &["true"]);
    unpullable.spec.as_mut().expect("spec").containers[0].image =
        Some("registry.invalid/missing:1".into());
    pods.create(&PostParams::default(), &unpullable).await?;
    let mut limited = restricted_pod("limited", &["sleep", "30"]);
    limited.spec.as_mut().expect("spec").active_deadline_seconds = Some(2);
    pods.create(&PostParams::default(), &limited).await?;

    pods.create(
        &PostParams::default(),
        &restricted_pod("survivor", &["/bin/sh", "-c", "sleep 3; echo done"]),
    )
    .await?;
    wait_for(&pods, "survivor", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Running")
    })
    .await?;
    // Image entrypoint semantics: no command, args[0] is the program (mapped to a host one).
    let mut mapped = restricted_pod("mapped", &[]);
    mapped.spec.as_mut().expect("spec").containers[0].args =
        Some(vec!["grader-convert".into(), "converted".into()]);
    pods.create(&PostParams::default(), &mapped).await?;
    pods.create(
        &PostParams::default(),
        &restricted_pod("missing-tool", &["/nonexistent/tool"]),
    )
    .await?;

    let restart = Instant::now();
    env.cp.restart_apiserver().await?;
    eprintln!("API server restarted in {:?}", restart.elapsed());
    let done = wait_for(&pods, "survivor", Duration::from_secs(90), |p| {
        p.is_some_and(|p| matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await?
    .expect("pod");
    assert_eq!(phase(&done), "Succeeded", "{:#?}", done.status);
    assert_eq!(
        pods.logs("survivor", &LogParams::default()).await?,
        "done\n"
    );

    let limited = wait_for(&pods, "limited", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await?;
    let limited = limited.expect("pod");
    let status = limited.status.as_ref().expect("status");
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(terminated(&limited).exit_code, 128 + libc::SIGTERM);

    let mapped = wait_for(&pods, "mapped", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Succeeded")
    })
    .await?;
    assert!(mapped.is_some());
    assert_eq!(
        pods.logs("mapped", &LogParams::default()).await?,
        "converted\n"
    );
    let missing = wait_for(&pods, "missing-tool", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Failed")
    })
    .await?;
    let terminated = terminated(&missing.expect("pod"));
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert!(
        terminated
            .message
            .unwrap_or_default()
            .contains("/nonexistent/tool")
    );

    let unpullable = pods.get("unpullable").await?;
    let waiting = waiting(&unpullable).expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
    // Deleting it with the default grace period completes through the agent.
    pods.delete("unpullable", &DeleteParams::default()).await?;
    wait_for(&pods, "unpullable", Duration::from_secs(30), |p| {
        p.is_none()
    })
    .await?;
    env.agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn running_pod_is_killed_on_graceful_delete_and_logs_follow() -> Result<()> {
    let Some(env) = setup(NodeAgentConfig::default()).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("deletes").await?;
    let pod = restricted_pod(
        "sleeper",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo term; exit 0' TERM; echo started; while :; do sleep 0.1; done",
        ],
    );
    pods.create(&PostParams::default(), &pod).await?;
    wait_for(&pods, "sleeper", Duration::from_secs(60), |p| {
        p.is_some_and(|p| phase(p) == "Running")
    })
    .await?;
    let mut stream = pods
        .log_stream(
            "sleeper",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await?;
    let mut followed = String::new();
    use futures::AsyncReadExt as _;
    let mut buf = [0u8; 64];
    while !followed.contains("started") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await??;
        assert!(n > 0, "log stream ended early: {followed:?}");
        followed.push_str(std::str::from_utf8(&buf[..n])?);
    }
    pods.delete(
        "sleeper",
        &DeleteParams {
            grace_period_seconds: Some(5),
            ..Default::default()
        },
    )
    .await?;
    // The follow stream ends when the container has finished, after its last words.
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.read_to_string(&mut followed),
    )
    .await??;
    assert_eq!(followed, "started\nterm\n");
    wait_for(&pods, "sleeper", Duration::from_secs(30), |p| p.is_none()).await?;
    env.agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn config_maps_secrets_and_downward_api_reach_env_and_volumes() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: materialized volumes need bind mounts (root)");
        return Ok(());
    }
    let Some(env) = setup(NodeAgentConfig::default()).await? else {
        return Ok(());
    };
    let pods = env.restricted_namespace("data").await?;
    let client = env.client.clone();
    Api::<ConfigMap>::namespaced(client.clone(), "data")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "settings" },
                "data": { "greeting": "hello", "file.txt": "from a file" },
                "binaryData": { "bin": "Ynl0ZXM=" }
            }))?,
        )
        .await?;
    Api::<Secret>::namespaced(client.clone(), "data")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "token" },
                "stringData": { "password": "s3cret" }
            }))?,
        )
        .await?;
    let view = tempfile::tempdir()?;
    let v = view.path().display().to_string();
    let script = format!(
        "echo \"$CM_greeting $CM_bin $PASSWORD ${{MISSING-unset}}\"; cat {v}/cm/sub/f.txt; echo; \
         cat {v}/secret/password; echo; cat {v}/downward/name"
    );
    let mut pod = restricted_pod("reader", &["/bin/sh", "-c", &script]);
    let spec = pod.spec.as_mut().expect("spec");
    spec.volumes = Some(serde_json::from_value(json!([
        { "name": "cm", "configMap": { "name": "settings",
                                       "items": [{ "key": "file.txt", "path": "sub/f.txt" }] } },
        { "name": "secret", "secret": { "secretName": "token" } },
        { "name": "downward", "downwardAPI": {
            "items": [{ "path": "name", "fieldRef": { "fieldPath": "metadata.name" } }] } }
    ]))?);
    let container = &mut spec.containers[0];
    container.env_from = Some(serde_json::from_value(json!([
        { "prefix": "CM_", "configMapRef": { "name": "settings" } }
    ]))?);
    container.env = Some(serde_json::from_value(json!([
        { "name": "PASSWORD",
          "valueFrom": { "secretKeyRef": { "name": "token", "key": "password" } } },
        { "name": "MISSING",
          "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "absent",
                                              "optional": true } } }
    ]))?);
    container.volume_mounts = Some(serde_json::from_value(json!([
        { "name": "cm", "mountPath": format!("{v}/cm"), "readOnly": true },
        { "name": "secret", "mountPath": format!("{v}/secret"), "readOnly": true },
        { "name": "downward", "mountPath": format!("{v}/downward"), "readOnly": true }
    ]))?);
    pods.create(&PostParams::default(), &pod).await?;
    let done = wait_for(&pods, "reader", Duration::from_secs(60), |p| {
        p.is_some_and(|p| matches!(phase(p), "Succeeded" | "Failed"))
    })
    .await?
    .expect("pod");
    let logs = pods.logs("reader", &LogParams::default()).await?;
    assert_eq!(
        phase(&done),
        "Succeeded",
        "logs: {logs}\n{:#?}",
        done.status
    );
    assert_eq!(
        logs,
        "hello bytes s3cret unset\nfrom a file\ns3cret\nreader"
    );

    // A required key that is missing keeps the pod Pending, saying why.
    let mut broken = restricted_pod("broken", &["true"]);
    broken.spec.as_mut().expect("spec").containers[0].env = Some(serde_json::from_value(json!([
        { "name": "X", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "absent" } } }
    ]))?);
    pods.create(&PostParams::default(), &broken).await?;
    let broken = wait_for(&pods, "broken", Duration::from_secs(60), |p| {
        p.and_then(waiting)
            .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    })
    .await?
    .expect("pod");
    assert_eq!(phase(&broken), "Pending");
    assert_eq!(
        waiting(&broken).and_then(|w| w.message).as_deref(),
        Some("couldn't find key absent in ConfigMap data/settings")
    );
    env.agent.stop().await;
    Ok(())
}

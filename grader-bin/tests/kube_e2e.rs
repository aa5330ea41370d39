//! The Kubernetes backend end to end: the real `grader` binary (and, where a fault must be
//! injected at a precise moment, the library) against a real kube-apiserver + etcd, with
//! `kube-testkit`'s test node agent running each grading pod's container as a local process
//! with the host's real `grader-convert` and the pod's volume mounts.
//!
//! The grader and the pods share the example course's service directory: the agent serves it
//! as the claim `grader-data`, and each pod mounts its two work dirs from it by `subPath` at
//! the same absolute paths the grader uses.
//!
//! The tests skip with a loud `SKIPPED` message when the control-plane binaries
//! (`bash e2e/control-plane/build.sh`) or the grading tool (`bash scripts/setup-venv.sh`) are
//! missing; under `CI=true` that is a failure. They run one at a time (see
//! [`support::serial`]).

#[path = "kube_e2e/support.rs"]
mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;
use grader_kube::{ImageConfig, KubeBackend, KubeSettings};
use grader_local::job_file::load_job;
use grader_local::{
    BackendFailure, BackendOutput, Executor, ExecutorConfig, GradingBackend, GradingTask,
    ProcessGit,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use support::{Env, GRADER_SELECTOR, PodObserver, Spec, assert_forbidden, phase, run, serial};

/// Bound of one `grader` run that grades one submission (about 5 s of CPU).
const GRADING_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a deleted pod may take to disappear (graceful deletion through the agent).
const GONE_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome printed by `grader autograde`, with the context to read a failure.
fn outcome_of(out: &std::process::Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "grader printed no outcome; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts a correctly graded outcome of the submission described by `exp` (a line of
/// `expected.jsonl`).
fn assert_graded(outcome: &Value, exp: &Value) {
    let id = &exp["submission_id"];
    assert_eq!(
        outcome["status"], "automatically_graded",
        "#{id}: error {}\nlogs: {}",
        outcome["error"], outcome["logs"]
    );
    assert_eq!(outcome["submission_id"], *id);
    assert_eq!(outcome["backend"], "kube", "#{id}");
    assert_eq!(outcome["score"], exp["score"], "#{id}");
    assert_eq!(outcome["grading_score"], exp["score"], "#{id}");
    assert_eq!(outcome["max_score"], exp["max_score"], "#{id}");
    assert_eq!(
        outcome["branch"],
        format!("submission_{}", exp["commit_hash"].as_str().unwrap_or("?")),
        "#{id}"
    );
    assert!(outcome["error"].is_null(), "#{id}: {}", outcome["error"]);
}

/// The name of the autograding pod of `exp`'s submission.
fn pod_name(exp: &Value) -> String {
    format!(
        "autograde-job-{}-{}",
        exp["username"].as_str().unwrap_or("?"),
        exp["submission_id"]
    )
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Waits (briefly) until the observer has seen the watch `Delete` event of pod `uid`.
async fn assert_delete_seen(observer: &PodObserver, name: &str, uid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !observer.of(name).iter().any(|s| s.uid == uid && s.deleted) {
        assert!(
            Instant::now() < deadline,
            "no Delete event for pod {name} ({uid})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. A real autograde through the kube backend.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autograde_runs_in_an_admitted_pod_that_is_logged_deleted_and_pushed() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "autograde_runs_in_an_admitted_pod",
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let config = env.config("grader.toml", "", "")?;
    let exp = env.expected_for("bob")?;
    let id = exp["submission_id"].as_u64().context("id")?;
    let commit = str_of(&exp, "commit_hash");
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;

    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.args(["autograde", "--job"]).arg(env.job("bob"));
    let (out, took) = run(cmd, "grader autograde", GRADING_TIMEOUT).await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    assert_eq!(exp["score"], 2.5, "the example course's bob");
    let logs = str_of(&outcome, "logs");
    assert!(
        logs.contains("[AutogradeApp]") && logs.contains("Autograding"),
        "the pod's log (grader-convert's output) is in the outcome: {logs}"
    );

    // The pod: created once, admitted in the restricted namespace, run by the node agent
    // through Running to Succeeded.
    let uids = observer.uids(&name);
    assert_eq!(
        uids.len(),
        1,
        "exactly one pod {name}: {:?}",
        observer.sightings()
    );
    let phases = observer.phases(&uids[0]);
    let running = phases.iter().position(|p| p == "Running");
    let succeeded = phases.iter().position(|p| p == "Succeeded");
    assert!(
        running.is_some() && succeeded.is_some() && running < succeeded,
        "phases of {name}: {phases:?}"
    );
    let admitted: Pod = observer.of(&name)[0].pod.clone();
    let labels = admitted.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("grader")
    );
    assert_eq!(
        labels
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("autograde")
    );
    assert_eq!(labels.get("grader.io/submission-id"), Some(&id.to_string()));
    let annotations = admitted.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("grader.io/commit").map(String::as_str),
        Some(commit)
    );
    let spec = admitted.spec.clone().context("spec")?;
    assert_eq!(spec.active_deadline_seconds, Some(300));
    assert_eq!(
        spec.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );
    assert_eq!(spec.node_name.as_deref(), None, "bound later, by the agent");
    let args = spec.containers[0].args.clone().unwrap_or_default();
    let input = env.svc.join(format!("convert_in/submission_{id}"));
    assert_eq!(
        args[..4],
        [
            "grader-convert".to_string(),
            "autograde".into(),
            "-i".into(),
            input.display().to_string()
        ]
    );

    // Deleted afterwards: gone from the API.
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    assert_delete_seen(&observer, &name, &uids[0]).await;

    // Results pushed: the graded notebook and the allowed data file, never the gradebook.
    let branch = format!("submission_{commit}");
    assert_eq!(
        env.autograde_branch_files("bob", &branch)?,
        ["data.csv", "hw1.ipynb"]
    );
    assert!(!input.exists(), "work dirs removed");
    assert!(
        !env.svc
            .join(format!("convert_out/submission_{id}"))
            .exists(),
        "work dirs removed"
    );
    eprintln!("graded bob through a pod in {took:?}");
    env.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. The namespace enforces `restricted`; grader's pod passes it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_namespace_rejects_privileged_pods_and_admits_the_graders_pod() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "restricted_namespace",
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let ns: Namespace = Api::all(env.admin.clone()).get(&env.ns).await?;
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );

    // The exact manifest the backend creates, from `grader pod`.
    let manifest = |config: std::path::PathBuf| {
        let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
        cmd.args(["pod", "--job"]).arg(env.job("bob"));
        async move {
            let (out, _) = run(cmd, "grader pod", Duration::from_secs(60)).await?;
            anyhow::ensure!(out.status.success(), "grader pod failed");
            let mut pod: Pod = serde_yaml::from_slice(&out.stdout)?;
            pod.metadata.namespace = None;
            Ok::<Pod, anyhow::Error>(pod)
        }
    };
    let pod = manifest(env.config("grader.toml", "", "")?).await?;
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // Dry-run requests go through admission (PodSecurity included) without storing the pod.
    env.pods()
        .create(&dry_run, &pod)
        .await
        .context("the grader's pod must pass the restricted Pod Security Standard")?;

    let mut privileged = pod.clone();
    let context = privileged.spec.as_mut().context("spec")?.containers[0]
        .security_context
        .get_or_insert_default();
    context.privileged = Some(true);
    // (validation refuses privileged together with allowPrivilegeEscalation: false)
    context.allow_privilege_escalation = None;
    let rejected = env.pods().create(&dry_run, &privileged).await;
    if let Err(kube::Error::Api(e)) = &rejected {
        assert!(
            e.message
                .contains("violates PodSecurity \"restricted:latest\""),
            "{}",
            e.message
        );
    }
    assert_forbidden(rejected, "a privileged pod in a restricted namespace");

    // What makes it pass is the hardening: without it the same pod is refused...
    let unhardened = manifest(env.config("unhardened.toml", "", "hardening = false")?).await?;
    assert_forbidden(
        env.pods().create(&dry_run, &unhardened).await,
        "the grader's pod without hardening in a restricted namespace",
    );
    // ... though it is a valid pod where PodSecurity does not apply.
    env.cp.create_namespace("unrestricted", false).await?;
    Api::<Pod>::namespaced(env.admin.clone(), "unrestricted")
        .create(&dry_run, &unhardened)
        .await
        .context("the unhardened pod in a namespace without PodSecurity")?;
    assert!(
        env.pods().list(&Default::default()).await?.items.is_empty(),
        "dry runs store nothing"
    );
    env.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. RBAC: grader works with a token bound only to deploy/rbac.yaml's Role.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grader_needs_nothing_beyond_the_role_in_deploy() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "grader_needs_nothing_beyond_the_role_in_deploy",
        namespace: "course-grading",
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let ns = env.ns.clone();

    // deploy/rbac.yaml, moved to the test's namespace, applied by the admin.
    let text = std::fs::read_to_string(support::repo_root().join("deploy/rbac.yaml"))?;
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let mut doc = Value::deserialize(document)?;
        if doc.is_null() {
            continue;
        }
        doc["metadata"]["namespace"] = json!(ns);
        let kind = str_of(&doc, "kind").to_string();
        let post = PostParams::default();
        match kind.as_str() {
            "ServiceAccount" => {
                let sa: ServiceAccount = serde_json::from_value(doc)?;
                Api::namespaced(env.admin.clone(), &ns)
                    .create(&post, &sa)
                    .await?;
            }
            "Role" => {
                let role: Role = serde_json::from_value(doc)?;
                Api::namespaced(env.admin.clone(), &ns)
                    .create(&post, &role)
                    .await?;
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = serde_json::from_value(doc)?;
                for subject in binding.subjects.iter_mut().flatten() {
                    if subject.kind == "ServiceAccount" {
                        subject.namespace = Some(ns.clone());
                    }
                }
                Api::namespaced(env.admin.clone(), &ns)
                    .create(&post, &binding)
                    .await?;
            }
            other => panic!("unexpected kind {other} in deploy/rbac.yaml"),
        }
        kinds.push(kind);
    }
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding"]);

    let token = env.cp.service_account_token(&ns, "grader").await?;
    let kubeconfig = env.cp.write_token_kubeconfig(&token, &ns)?;
    let config = env.config("grader.toml", "", "")?;
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;

    let mut cmd = env.grader(&config, &kubeconfig);
    cmd.args(["autograde", "--job"]).arg(env.job("bob"));
    let (out, _) = run(
        cmd,
        "grader autograde (service-account token)",
        GRADING_TIMEOUT,
    )
    .await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    assert_eq!(observer.uids(&name).len(), 1);
    env.wait_gone(&name, GONE_TIMEOUT).await?;

    // `grader gc` lists and deletes: also within the Role.
    let mut cmd = env.grader(&config, &kubeconfig);
    cmd.arg("gc");
    let (out, _) = run(
        cmd,
        "grader gc (service-account token)",
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deleted 0 grading pod(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same token may do nothing else.
    let sa_config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let sa = kube::Client::try_from(sa_config)?;
    Api::<Pod>::namespaced(sa.clone(), &ns)
        .list(&Default::default())
        .await
        .context("the token may list pods in its namespace")?;
    assert_forbidden(
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .list(&Default::default())
            .await,
        "listing secrets",
    );
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "not-allowed" },
        "spec": {
            "selector": { "matchLabels": { "app": "x" } },
            "template": {
                "metadata": { "labels": { "app": "x" } },
                "spec": { "containers": [{ "name": "x", "image": "x" }] }
            }
        }
    }))?;
    assert_forbidden(
        Api::<Deployment>::namespaced(sa.clone(), &ns)
            .create(&PostParams::default(), &deployment)
            .await,
        "creating a deployment",
    );
    env.cp.create_namespace("elsewhere", false).await?;
    assert_forbidden(
        Api::<Pod>::namespaced(sa.clone(), "elsewhere")
            .list(&Default::default())
            .await,
        "listing pods in another namespace",
    );
    env.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Failures.

/// Runs `grader autograde` for bob with a stand-in tool and returns the outcome, the exit
/// code and how long it took.
async fn autograde_bob(env: &Env, top: &str) -> Result<(Value, Option<i32>, Duration)> {
    let config = env.config("grader.toml", top, "")?;
    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.args(["autograde", "--job"]).arg(env.job("bob"));
    let (out, took) = run(cmd, "grader autograde", GRADING_TIMEOUT).await?;
    Ok((outcome_of(&out)?, out.status.code(), took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_exiting_1_fails_the_job_with_its_output_and_the_pod_is_deleted() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_tool_exiting_1",
        tools: &[(
            "grader-convert-fails",
            "echo \"stand-in tool: about to fail on $3\"; echo 'Traceback: on purpose' >&2; exit 1",
        )],
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, _) =
        autograde_bob(&env, "convert_executable = \"grader-convert-fails\"").await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    assert_eq!(outcome["failure"], "tool_exited", "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains(&name) && error.contains("exited with code 1"),
        "{error}"
    );
    let logs = str_of(&outcome, "logs");
    let input = env
        .svc
        .join(format!("convert_in/submission_{}", exp["submission_id"]));
    assert!(
        logs.contains(&format!(
            "stand-in tool: about to fail on {}",
            input.display()
        )) && logs.contains("Traceback: on purpose"),
        "{logs}"
    );
    assert!(outcome["score"].is_null());
    let uids = observer.uids(&name);
    assert_eq!(uids.len(), 1);
    assert!(observer.phases(&uids[0]).contains(&"Failed".to_string()));
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_max_grading_time_fails_the_job_in_bounded_time_and_is_deleted() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_pod_past_max_grading_time",
        tools: &[(
            "grader-convert-hangs",
            "echo 'stand-in tool: hanging'; while :; do sleep 1; done",
        )],
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, took) = autograde_bob(
        &env,
        "convert_executable = \"grader-convert-hangs\"\nmax_grading_time = 3",
    )
    .await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    assert_eq!(outcome["failure"], "timed_out", "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains("max_grading_time") && error.contains(&name),
        "{error}"
    );
    assert!(
        took < Duration::from_secs(3 + 20),
        "a 3 s limit ended the job only after {took:?}"
    );
    assert!(
        str_of(&outcome, "logs").contains("stand-in tool: hanging"),
        "{outcome:#}"
    );
    let uids = observer.uids(&name);
    assert_eq!(uids.len(), 1);
    assert!(
        observer.phases(&uids[0]).contains(&"Running".to_string()),
        "it did run"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

/// Right after `grader` exited, the pod `name` is gone or being deleted, asked of the API
/// server itself (a watch, such as a [`PodObserver`]'s, may see the deletion a few ms later).
async fn assert_deleted_before_exit(env: &Env, name: &str) -> Result<()> {
    if let Some(pod) = env.pods().get_opt(name).await? {
        assert!(
            pod.metadata.deletion_timestamp.is_some(),
            "{name} was not being deleted when grader exited: phase {:?}",
            pod.status.and_then(|s| s.phase)
        );
    }
    Ok(())
}

/// Starts `grader autograde` for bob in the background (stdout and stderr captured).
/// The configuration that grades with the test's `grader-convert-slow` stand-in.
fn slow_config(env: &Env) -> Result<std::path::PathBuf> {
    env.config(
        "grader.toml",
        "convert_executable = \"grader-convert-slow\"",
        "",
    )
}

fn spawn_autograde(env: &Env, config: &std::path::Path) -> Result<tokio::process::Child> {
    let mut cmd = env.grader(config, env.cp.kubeconfig_path());
    cmd.args(["autograde", "--job"])
        .arg(env.job("bob"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd.spawn()?)
}

async fn finish(child: tokio::process::Child, what: &str) -> Result<std::process::Output> {
    let out = tokio::time::timeout(GRADING_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("{what} did not finish"))??;
    eprintln!(
        "---- {what}: exit {:?}; stderr:\n{}---- end of {what}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_by_someone_else_fails_the_job_saying_so() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_pod_deleted_by_someone_else",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: working'; sleep 120",
        )],
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    let started = Instant::now();
    let child = spawn_autograde(&env, &config)?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;
    env.pods().delete(&name, &Default::default()).await?;
    let out = finish(child, "grader autograde").await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    assert_eq!(outcome["failure"], "infrastructure", "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains(&name) && error.contains("was deleted before it finished"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "noticed the deletion at once, not at the tool's end"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    assert_eq!(observer.uids(&name).len(), 1, "not re-created");
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_mid_watch_does_not_disturb_grading() -> Result<()> {
    let _serial = serial().await;
    let Some(mut env) = Env::start(Spec {
        test: "an_api_server_restart_mid_watch",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: a slow start'; sleep 5; exec {convert} \"$@\"",
        )],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    let child = spawn_autograde(&env, &config)?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;
    let restart = Instant::now();
    env.cp.restart_apiserver().await?;
    eprintln!("API server restarted in {:?}", restart.elapsed());
    let out = finish(child, "grader autograde").await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    let logs = str_of(&outcome, "logs");
    assert!(
        logs.contains("stand-in tool: a slow start") && logs.contains("[AutogradeApp]"),
        "{logs}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pod watch failed"),
        "the restart should have broken the grader's watch: {stderr}"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    let uids = observer.uids(&name);
    assert_eq!(uids.len(), 1, "{:?}", observer.sightings());
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_grading_pod_of_another_commit_is_replaced() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_leftover_grading_pod_of_another_commit_is_replaced",
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let id = exp["submission_id"].to_string();
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    // A grading pod of the same submission, from an earlier grading of another commit, still
    // running.
    let leftover = env
        .create_sleeper(
            &name,
            json!({
                "app.kubernetes.io/managed-by": "grader",
                "app.kubernetes.io/component": "autograde",
                "grader.io/submission-id": id,
            }),
            json!({ "grader.io/commit": "0123456789abcdef0123456789abcdef01234567" }),
            &["sleep", "600"],
        )
        .await?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;

    let (outcome, code, took) = autograde_bob(&env, "").await?;
    assert_eq!(code, Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    assert!(str_of(&outcome, "logs").contains("[AutogradeApp]"));
    let uids = observer.uids(&name);
    let old = leftover.metadata.uid.clone().context("uid")?;
    assert_eq!(uids.len(), 2, "the leftover and the new pod: {uids:?}");
    assert_eq!(uids[0], old);
    assert!(
        observer.of(&name).iter().any(|s| s.uid == old && s.deleted),
        "the leftover was deleted"
    );
    let new_phases = observer.phases(&uids[1]);
    assert!(
        new_phases.contains(&"Succeeded".to_string()),
        "{new_phases:?}"
    );
    // The new pod was created only once the old one was gone (no old container writing).
    let sightings = observer.sightings();
    let old_gone = sightings
        .iter()
        .position(|s| s.uid == old && s.deleted)
        .context("delete event")?;
    let new_first = sightings
        .iter()
        .position(|s| s.uid == uids[1])
        .context("new pod")?;
    assert!(old_gone < new_first, "replaced after the leftover was gone");
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    eprintln!("replaced and graded in {took:?}");
    env.stop().await;
    Ok(())
}

/// A pod of the grading pod's name that is not the grader's (no grader label, so the shared
/// watch never sees it) is deleted, polled until gone, and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_pod_with_the_grading_pods_name_is_replaced() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_foreign_pod_with_the_grading_pods_name_is_replaced",
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    // A pod of that name without any of the grader's labels or annotations (e.g. left by
    // another grading system).
    let leftover = env
        .create_sleeper(&name, json!({}), json!({}), &["sleep", "600"])
        .await?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;

    let (outcome, code, took) = autograde_bob(&env, "").await?;
    assert_eq!(code, Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    let uids = observer.uids(&name);
    assert_eq!(uids.len(), 2, "the leftover and the new pod: {uids:?}");
    assert_eq!(Some(&uids[0]), leftover.metadata.uid.as_ref());
    assert!(
        took < Duration::from_secs(60),
        "replacing took {took:?} (the leftover is gone within seconds)"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

/// The next run finds the job's work dirs as the killed grader left them and its pod still
/// running: it keeps the dirs (the pod's mounts point at them) and adopts the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pod_of_a_killed_grader_is_adopted_by_the_next_run() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_running_pod_of_a_killed_grader_is_adopted",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: a slow start'; sleep 8; exec {convert} \"$@\"",
        )],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    // The first grader dies (SIGKILL: no clean-up) while its pod runs.
    let mut first = spawn_autograde(&env, &config)?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;
    first.start_kill()?;
    let _ = first.wait().await?;
    let pod = env.pods().get(&name).await?;
    assert_eq!(phase(&pod), "Running", "the pod outlives its grader");

    // The next run of the same job finds it and waits for it instead of starting anew.
    let out = finish(spawn_autograde(&env, &config)?, "grader autograde (2nd)").await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    assert_eq!(
        observer.uids(&name).len(),
        1,
        "adopted, not replaced: {:?}",
        observer.sightings()
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

/// A backend that, right before the kube backend runs a task, creates (as the admin) the
/// very pod the kube backend is about to create and waits until it runs: "a pod of this job
/// is already running" at the precise moment the backend starts, on work dirs the pipeline
/// kept (`resume`).
struct PodAlreadyRunning {
    inner: KubeBackend,
    settings: KubeSettings,
    admin: Api<Pod>,
    created: std::sync::Mutex<Option<Pod>>,
}

#[async_trait]
impl GradingBackend for PodAlreadyRunning {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn run(
        &self,
        task: &GradingTask,
        cancel: CancellationToken,
    ) -> Result<BackendOutput, BackendFailure> {
        let fail = |e: String| {
            BackendFailure::new(
                grader_local::FailureKind::Infrastructure,
                format!("test set-up: {e}"),
            )
        };
        let (pod, _) = grader_kube::build_pod(&self.settings, task, "cs101_image")
            .map_err(|e| fail(e.to_string()))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let created = self
            .admin
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| fail(e.to_string()))?;
        *self.created.lock().unwrap_or_else(|e| e.into_inner()) = Some(created);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pod = self
                .admin
                .get(&name)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if phase(&pod) == "Running" {
                break;
            }
            if Instant::now() > deadline {
                return Err(fail(format!("pod {name} did not start")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // As the pipeline does when it kept the work dirs of a run it found still going.
        let resumed = GradingTask {
            resume: true,
            ..task.clone()
        };
        self.inner.run(&resumed, cancel).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pod_of_the_same_job_is_adopted() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_running_pod_of_the_same_job_is_adopted",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: a slow start'; sleep 3; exec {convert} \"$@\"",
        )],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let settings = KubeSettings {
        namespace: Some(env.ns.clone()),
        convert_executable: "grader-convert-slow".into(),
        image_pull_policy: "IfNotPresent".into(),
        poll_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let backend = Arc::new(PodAlreadyRunning {
        inner: KubeBackend::new(
            env.cp.client().await?,
            &env.ns,
            settings.clone(),
            ImageConfig::load(None)?,
        ),
        settings,
        admin: env.pods(),
        created: Default::default(),
    });
    let mut config = ExecutorConfig::new(&env.svc);
    config.max_grading_time = Duration::from_secs(300);
    let executor = Executor::new(config, Arc::new(ProcessGit::new("git")), backend.clone());
    let job = load_job(&env.job("bob"))?;
    let outcome = tokio::time::timeout(
        GRADING_TIMEOUT,
        executor.autograde(&job, CancellationToken::new()),
    )
    .await?;
    let outcome = serde_json::to_value(&outcome)?;
    assert_graded(&outcome, &exp);
    assert!(
        str_of(&outcome, "logs").contains("stand-in tool: a slow start"),
        "the adopted pod's log: {outcome:#}"
    );
    let created = backend
        .created
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .context("the pod was created first")?;
    assert_eq!(
        observer.uids(&name),
        [created.metadata.uid.clone().unwrap_or_default()],
        "the backend created no pod of its own"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. A batch.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_twenty_at_concurrency_five_is_graded_exactly_and_leaves_no_pods() -> Result<()>
{
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "a_batch_of_twenty",
        course: &["--copies", "5"],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let expected = env.expected()?;
    assert_eq!(expected.len(), 20);
    let observer = PodObserver::start(env.pods()).await?;
    let config = env.config("grader.toml", "", "")?;
    let results = env.scratch.join("results");
    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.arg("batch")
        .arg(env.svc.join("jobs.jsonl"))
        .args(["--concurrency", "5", "--progress", "lines", "--results"])
        .arg(&results);
    let (out, took) = run(cmd, "grader batch", Duration::from_secs(900)).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("20 graded, 0 failed"), "{stderr}");
    for exp in &expected {
        let id = &exp["submission_id"];
        let text = std::fs::read_to_string(results.join(format!("submission_{id}.json")))?;
        assert_graded(&serde_json::from_str(&text)?, exp);
    }

    // One pod per submission, at most five at a time.
    let sightings = observer.sightings();
    let mut names: Vec<String> = sightings.iter().map(|s| s.name.clone()).collect();
    names.sort();
    names.dedup();
    let mut wanted: Vec<String> = expected.iter().map(pod_name).collect();
    wanted.sort();
    assert_eq!(names, wanted);
    for name in &names {
        assert_eq!(observer.uids(name).len(), 1, "{name}");
    }
    let mut active = std::collections::BTreeMap::new();
    let mut most = 0;
    for s in &sightings {
        let live = !s.deleted && !s.deleting && !matches!(s.phase.as_str(), "Succeeded" | "Failed");
        active.insert(s.uid.clone(), live);
        most = most.max(active.values().filter(|l| **l).count());
    }
    assert_eq!(most, 5, "at most (and at some point) five unfinished pods");

    // Nothing left behind; gc finds nothing.
    let terminating = env.wait_no_grading_pods(GONE_TIMEOUT).await?;
    eprintln!("still terminating right after the batch: {terminating:?}");
    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.arg("gc");
    let (out, _) = run(cmd, "grader gc", Duration::from_secs(60)).await?;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deleted 0 grading pod(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = env
        .pods()
        .list(&kube::api::ListParams::default().labels(GRADER_SELECTOR))
        .await?;
    assert!(left.items.is_empty());
    eprintln!("batch of 20 at concurrency 5 took {took:?}");
    env.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// More of what the README promises on Kubernetes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_job_after_unschedulable_grace() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "an_image_that_cannot_be_pulled",
        grades: false,
        pull_fail_images: &["cs101_image"],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let config = env.config("grader.toml", "", "unschedulable_grace = 2")?;
    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.args(["autograde", "--job"]).arg(env.job("bob"));
    let (out, took) = run(cmd, "grader autograde", GRADING_TIMEOUT).await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    assert_eq!(outcome["failure"], "tool_not_started", "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains(&name)
            && error.contains("could not start")
            && (error.contains("ErrImagePull") || error.contains("ImagePullBackOff"))
            && error.contains("unschedulable_grace of 2s"),
        "{error}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "failed after {took:?} with a grace of 2 s"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kube_batch_deletes_the_running_pods() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "ctrl_c_during_a_kube_batch",
        course: &["--students", "alice,bob,carol"],
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: working'; sleep 600",
        )],
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let expected = env.expected()?;
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    let results = env.scratch.join("results");
    let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
    cmd.arg("batch")
        .arg(env.svc.join("jobs.jsonl"))
        .args(["--concurrency", "2", "--progress", "lines", "--results"])
        .arg(&results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn()?;
    let running: Vec<String> = expected[..2].iter().map(pod_name).collect();
    for name in &running {
        observer
            .wait_phase(name, "Running", Duration::from_secs(60))
            .await?;
    }
    let pid = child.id().context("pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let out = finish(child, "grader batch").await?;
    assert_eq!(out.status.code(), Some(130));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json"))?)?;
    assert_eq!(summary["graded"], 0, "{summary:#}");
    assert_eq!(summary["interrupted"], 3, "{summary:#}");
    // Both running pods were deleted before grader exited, the third was never created.
    for name in &running {
        assert_deleted_before_exit(&env, name).await?;
    }
    assert!(observer.of(&pod_name(&expected[2])).is_empty());
    env.wait_no_grading_pods(GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

/// `grader batch` writes no outcome for an interrupted job; `grader autograde` prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_kube_autograde_prints_a_cancelled_outcome_and_deletes_the_pod()
-> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "ctrl_c_during_a_kube_autograde",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: working'; sleep 600",
        )],
        grades: false,
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    let child = spawn_autograde(&env, &config)?;
    observer
        .wait_phase(&name, "Running", Duration::from_secs(60))
        .await?;
    let pid = child.id().context("pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let out = finish(child, "grader autograde").await?;
    let outcome = outcome_of(&out)?;
    assert_eq!(out.status.code(), Some(130), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    assert_eq!(outcome["failure"], "cancelled", "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains(&name) && error.contains("cancelled"),
        "{error}"
    );
    assert_deleted_before_exit(&env, &name).await?;
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_graders_on_one_submission_take_turns_on_kubernetes() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "two_graders_on_one_submission",
        tools: &[(
            "grader-convert-slow",
            "echo 'stand-in tool: a slow start'; sleep 3; exec {convert} \"$@\"",
        )],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let observer = PodObserver::start(env.pods()).await?;
    let config = slow_config(&env)?;
    let first = spawn_autograde(&env, &config)?;
    let second = spawn_autograde(&env, &config)?;
    let mut waited = 0;
    for (child, what) in [(first, "1st"), (second, "2nd")] {
        let out = finish(child, &format!("grader autograde ({what})")).await?;
        let outcome = outcome_of(&out)?;
        assert_eq!(out.status.code(), Some(0), "{outcome:#}");
        assert_graded(&outcome, &exp);
        waited += usize::from(str_of(&outcome, "logs").contains("waited for another run"));
    }
    assert_eq!(waited, 1, "one grader waited for the other");
    // One pod after the other: the second was created only once the first had finished.
    let uids = observer.uids(&name);
    assert_eq!(uids.len(), 2, "{:?}", observer.sightings());
    assert!(
        observer.phases(&uids[0]).iter().any(|p| p == "Succeeded"),
        "{:?}",
        observer.sightings()
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.stop().await;
    Ok(())
}

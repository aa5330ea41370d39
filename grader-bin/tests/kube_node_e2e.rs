//! The Kubernetes backend on a real node: the `grader` binary (as uid 1000) against a real
//! kube-apiserver with kube-testkit's `RealNode` — containerd + runc + the upstream kubelet,
//! kube-scheduler and kube-controller-manager — grading in real containers of the grading
//! image built by `deploy/image/build.sh` (Debian + grader-service 0.12.5 + ipykernel).
//!
//! Unlike the node agent of `kube_e2e.rs`, this node enforces the pod's security context,
//! resource limits, images and volume plumbing: what a cluster operator relies on.
//!
//! Skips loudly when the node's programs (`bash e2e/control-plane/build.sh --node`,
//! `bash e2e/control-plane/install-node-packages.sh`) or the grading image
//! (`bash deploy/image/build.sh`) are missing, or when not root; under `CI=true` that is a
//! failure. The tests share one control plane and real node (started by the first, with the
//! image imported once, stopped when the binary exits), each in its own namespace, and take
//! turns; each ends by checking that no process of the test left loopback.

#[path = "kube_node_e2e/support.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::api::{EvictParams, ListParams};
use serde_json::Value;

use support::{Env, PodObserver, run};

/// Bound of one `grader` run that grades one submission in a container.
const GRADING_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a deleted pod may take to disappear (kubelet stops the container).
const GONE_TIMEOUT: Duration = Duration::from_secs(60);
/// The label every grading pod carries.
const GRADER_SELECTOR: &str = "app.kubernetes.io/managed-by=grader";

fn outcome_of(out: &std::process::Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "grader printed no outcome; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

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
    assert_eq!(outcome["max_score"], exp["max_score"], "#{id}");
    assert!(outcome["error"].is_null(), "#{id}: {}", outcome["error"]);
}

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

/// The last container state kubelet reported for pod `name` (terminated reason, exit code).
fn terminated(observer: &PodObserver, name: &str) -> Option<(String, i32)> {
    observer.of(name).into_iter().rev().find_map(|s| {
        let status = s.pod.status?.container_statuses?.into_iter().next()?;
        let t = status.state?.terminated?;
        Some((t.reason.unwrap_or_default(), t.exit_code))
    })
}

async fn autograde(
    env: &Env,
    config: &std::path::Path,
    user: &str,
) -> Result<(Value, Option<i32>, Duration)> {
    let mut cmd = env.grader(config);
    cmd.args(["autograde", "--job"]).arg(env.job(user));
    let (out, took) = run(cmd, "grader autograde", GRADING_TIMEOUT).await?;
    Ok((outcome_of(&out)?, out.status.code(), took))
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_course_is_graded_in_a_real_container_logged_by_kubelet_and_deleted()
-> Result<()> {
    let Some(env) = Env::start("graded_in_a_real_container", &["--students", "bob"]).await? else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let config = env.config("grader.toml", "", "")?;
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, took) = autograde(&env, &config, "bob").await?;
    assert_eq!(code, Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    assert_eq!(exp["score"], 2.5);
    let logs = str_of(&outcome, "logs");
    assert!(
        logs.contains("[AutogradeApp]") && logs.contains("Autograding"),
        "grader-convert's output, served by the real kubelet: {logs}"
    );
    // Scheduled by kube-scheduler onto the real node, run by kubelet to Succeeded.
    let sightings = observer.of(&name);
    assert!(
        sightings.iter().any(|s| s.node == env.node().name()),
        "bound to the real node"
    );
    let phases = observer.phases(&name);
    assert!(phases.contains(&"Succeeded".to_string()), "{phases:?}");
    assert_eq!(observer.uids(&name).len(), 1);
    assert!(
        env.node()
            .log("kubelet")
            .contains(&format!("{}/{name}", env.ns)),
        "kubelet's own log names the pod (namespace/name)"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    // Benchmark data: pod creation (first sighting) to Succeeded, and the whole run.
    let first = sightings.first().map(|s| s.at);
    let succeeded = sightings
        .iter()
        .find(|s| s.phase == "Succeeded")
        .map(|s| s.at);
    if let (Some(first), Some(succeeded)) = (first, succeeded) {
        eprintln!(
            "BENCH real node: pod created -> Succeeded {:?}; grader autograde wall {took:?}; node start {:?}",
            succeeded - first,
            env.node_start
        );
    }
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_security_context_is_enforced_by_the_real_runtime() -> Result<()> {
    let Some(env) = Env::start("security_context", &["--students", "bob"]).await? else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    // The probe runs in grader's own pod spec, in place of (then before) grader-convert.
    let probe = format!(
        "echo PROBE uid=$(id -u) gid=$(id -g); \
         grep -E '^(NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp):' /proc/self/status | sed 's/^/PROBE /'; \
         if [ -e /var/run/secrets/kubernetes.io/serviceaccount ]; then echo PROBE token=present; else echo PROBE token=absent; fi; \
         if ls {svc}/jobs >/dev/null 2>&1; then echo PROBE svc=visible; else echo PROBE svc=hidden; fi; \
         awk '{{print \"PROBE mount \" $4 \" \" $5}}' /proc/self/mountinfo; \
         exec \"$@\"",
        svc = env.svc.display()
    );
    let kube = format!(
        "extra_container_config = {{ command = [\"sh\", \"-c\", {}, \"probe\"] }}",
        serde_json::to_string(&probe)?
    );
    let config = env.config("grader.toml", "", &kube)?;
    let (outcome, code, _) = autograde(&env, &config, "bob").await?;
    assert_eq!(code, Some(0), "{outcome:#}");
    assert_graded(&outcome, &exp);
    let logs = str_of(&outcome, "logs");
    let probe: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("PROBE "))
        .collect();
    eprintln!("probe:\n{}", probe.join("\n"));
    let has = |line: &str| {
        probe
            .iter()
            .any(|p| p.split_whitespace().collect::<Vec<_>>().join(" ") == line)
    };
    assert!(
        has("uid=1000 gid=0") || has("uid=1000 gid=1000"),
        "{probe:?}"
    );
    assert!(
        has("NoNewPrivs: 1"),
        "allowPrivilegeEscalation: false → no_new_privs"
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            has(&format!("{set}: 0000000000000000")),
            "{set}: all dropped: {probe:?}"
        );
    }
    assert!(
        has("Seccomp: 2"),
        "seccomp RuntimeDefault is a filter (mode 2): {probe:?}"
    );
    assert!(has("token=absent"), "no service-account token mounted");
    assert!(
        has("svc=hidden"),
        "the service directory itself is not visible"
    );
    let svc = env.svc.display().to_string();
    let mut from_volume: Vec<String> = probe
        .iter()
        .filter_map(|p| p.strip_prefix("mount "))
        .filter(|m| m.starts_with(&svc))
        .map(|m| m.split(' ').next_back().unwrap_or_default().to_string())
        .collect();
    from_volume.sort();
    let id = &exp["submission_id"];
    assert_eq!(
        from_volume,
        vec![
            format!("{svc}/convert_in/submission_{id}"),
            format!("{svc}/convert_out/submission_{id}"),
        ],
        "only the job's two work dirs come from the volume"
    );
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_past_the_memory_limit_is_oom_killed_and_reported_so() -> Result<()> {
    let Some(env) = Env::start("oom_killed", &["--students", "bob"]).await? else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let kube = "resources = { requests = { cpu = \"100m\", memory = \"64Mi\" }, limits = { memory = \"128Mi\" } }\n\
                extra_container_config = { command = [\"python3\", \"-c\", \"print('allocating', flush=True); a = bytearray(1 << 30); print('survived')\"] }";
    let config = env.config("grader.toml", "", kube)?;
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, _) = autograde(&env, &config, "bob").await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    let error = str_of(&outcome, "error");
    assert!(error.contains("OOMKilled"), "{error}");
    assert_eq!(
        terminated(&observer, &name),
        Some(("OOMKilled".to_string(), 137)),
        "kubelet reported the kernel's OOM kill"
    );
    assert!(!str_of(&outcome, "logs").contains("survived"));
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_past_max_grading_time_is_stopped_and_reported_as_a_timeout() -> Result<()> {
    // `loop`'s notebook never ends; its cell timeout (60 s) is past max_grading_time (15 s).
    let Some(env) = Env::start(
        "past_max_grading_time",
        &["--students", "loop", "--cell-timeout", "60"],
    )
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("loop")?;
    let name = pod_name(&exp);
    let config = env.config("grader.toml", "max_grading_time = 15", "")?;
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, took) = autograde(&env, &config, "loop").await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    let error = str_of(&outcome, "error");
    assert!(error.contains("max_grading_time"), "{error}");
    assert!(
        took < Duration::from_secs(15 + 45),
        "stopped after {took:?}"
    );
    let phases = observer.phases(&name);
    assert!(phases.contains(&"Running".to_string()), "{phases:?}");
    let pod = observer
        .of(&name)
        .last()
        .map(|s| s.pod.clone())
        .context("seen")?;
    assert_eq!(
        pod.spec.and_then(|s| s.active_deadline_seconds),
        Some(15),
        "activeDeadlineSeconds = max_grading_time"
    );
    eprintln!(
        "timeout: phases {phases:?}, pod status reason {:?}",
        pod.status.and_then(|s| s.reason)
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_does_not_exist_is_an_image_pull_failure_within_the_grace() -> Result<()> {
    let Some(env) = Env::start("image_pull_failure", &["--students", "bob"]).await? else {
        return Ok(());
    };
    let exp = env.expected_for("bob")?;
    let name = pod_name(&exp);
    let config = env.config(
        "grader.toml",
        "",
        "default_image_name = \"grader.invalid/no-such-image:1\"\nunschedulable_grace = 10",
    )?;
    let (outcome, code, took) = autograde(&env, &config, "bob").await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains(&name)
            && (error.contains("ErrImagePull") || error.contains("ImagePullBackOff"))
            && error.contains("unschedulable_grace of 10s"),
        "{error}"
    );
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(60),
        "failed after {took:?} with a grace of 10 s"
    );
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_evicted_or_deleted_mid_run_is_reported_as_such() -> Result<()> {
    let Some(env) = Env::start(
        "evicted_or_deleted",
        &["--students", "loop,bob", "--cell-timeout", "120"],
    )
    .await?
    else {
        return Ok(());
    };
    let config = env.config("grader.toml", "", "")?;
    let observer = PodObserver::start(env.pods()).await?;
    // 1. Evicted through the Eviction API (what `kubectl drain` does), while running.
    // 2. Deleted by someone else, while running.
    for (user, evict) in [("loop", true), ("bob", false)] {
        let exp = env.expected_for(user)?;
        let name = pod_name(&exp);
        let mut cmd = env.grader(&config);
        cmd.args(["autograde", "--job"])
            .arg(env.job(user))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn()?;
        observer
            .wait_phase(&name, "Running", Duration::from_secs(120))
            .await?;
        let started = Instant::now();
        if evict {
            env.pods().evict(&name, &EvictParams::default()).await?;
        } else {
            env.pods().delete(&name, &Default::default()).await?;
        }
        let out = tokio::time::timeout(GRADING_TIMEOUT, child.wait_with_output()).await??;
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        let outcome = outcome_of(&out)?;
        assert_eq!(out.status.code(), Some(1), "{outcome:#}");
        let error = str_of(&outcome, "error");
        assert!(
            error.contains(&name) && error.contains("was deleted before it finished"),
            "{user}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "noticed at once"
        );
        env.wait_gone(&name, GONE_TIMEOUT).await?;
        assert_eq!(observer.uids(&name).len(), 1, "not re-created");
    }
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_twenty_at_concurrency_five_on_the_real_node_is_exact_and_leaves_no_pod()
-> Result<()> {
    let Some(env) = Env::start("batch_of_twenty", &["--copies", "5"]).await? else {
        return Ok(());
    };
    let expected = env.expected()?;
    assert_eq!(expected.len(), 20);
    let observer = PodObserver::start(env.pods()).await?;
    let config = env.config("grader.toml", "", "")?;
    let results = env.scratch.join("results");
    let mut cmd = env.grader(&config);
    cmd.arg("batch")
        .arg(env.svc.join("jobs.jsonl"))
        .args(["--concurrency", "5", "--progress", "lines", "--results"])
        .arg(&results);
    let (out, took) = run(cmd, "grader batch", Duration::from_secs(1800)).await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("20 graded, 0 failed"), "{stderr}");
    for exp in &expected {
        let id = &exp["submission_id"];
        let text = std::fs::read_to_string(results.join(format!("submission_{id}.json")))?;
        assert_graded(&serde_json::from_str(&text)?, exp);
    }
    let mut names: Vec<String> = observer
        .sightings()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    let deadline = Instant::now() + GONE_TIMEOUT;
    loop {
        let left = env
            .pods()
            .list(&ListParams::default().labels(GRADER_SELECTOR))
            .await?;
        if left.items.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pods left: {}", left.items.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "BENCH real node: batch of 20 at concurrency 5 took {took:?} ({:?} per submission)",
        took / 20
    );
    env.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_enforces_active_deadline_seconds_and_grader_reports_a_timeout() -> Result<()> {
    let Some(env) = Env::start(
        "kubelet_active_deadline",
        &["--students", "loop", "--cell-timeout", "120"],
    )
    .await?
    else {
        return Ok(());
    };
    let exp = env.expected_for("loop")?;
    let name = pod_name(&exp);
    // grader's own deadline (max_grading_time = 120) is far; the pod's activeDeadlineSeconds
    // is lowered to 8 so that kubelet, not grader, stops it.
    let config = env.config(
        "grader.toml",
        "max_grading_time = 120",
        "extra_pod_config = { activeDeadlineSeconds = 8 }",
    )?;
    let observer = PodObserver::start(env.pods()).await?;
    let (outcome, code, took) = autograde(&env, &config, "loop").await?;
    assert_eq!(code, Some(1), "{outcome:#}");
    assert_eq!(outcome["status"], "grading_failed");
    let error = str_of(&outcome, "error");
    assert!(
        error.contains("exceeded its activeDeadlineSeconds"),
        "kubelet's DeadlineExceeded is reported as a timeout: {error}"
    );
    assert!(took < Duration::from_secs(60), "stopped after {took:?}");
    let reason = observer
        .of(&name)
        .into_iter()
        .rev()
        .find_map(|s| s.pod.status.and_then(|st| st.reason));
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
    env.wait_gone(&name, GONE_TIMEOUT).await?;
    env.finish()
}

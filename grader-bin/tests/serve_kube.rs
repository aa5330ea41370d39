//! `grader serve` with the kube backend against the test control plane (a real
//! kube-apiserver + etcd and kube-testkit's node agent, as in `kube_e2e.rs`, whose support
//! module this reuses): jobs submitted through `grader submit --wait` are graded in pods with
//! the exact scores, their pods are deleted, and every job is served by the one backend the
//! service built, with its one shared pod watch.
//!
//! Skips loudly without the control-plane binaries or the grading tool (fails under CI).

// Shared with kube_e2e.rs, which uses more of it.
#[allow(dead_code)]
#[path = "kube_e2e/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use support::{Env, PodObserver, Spec, run, serial};

/// Bound of one graded submission through the service.
const GRADING_TIMEOUT: Duration = Duration::from_secs(180);

/// One GET over the service's Unix socket: status and body.
fn get(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The samples of a metrics page: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_grades_jobs_in_pods_over_one_shared_watch_and_deletes_the_pods() -> Result<()> {
    let _serial = serial().await;
    let Some(env) = Env::start(Spec {
        test: "serve_grades_jobs_in_pods_over_one_shared_watch_and_deletes_the_pods",
        course: &["--students", "bob,alice"],
        ..Default::default()
    })
    .await?
    else {
        return Ok(());
    };
    let socket = env.scratch.join("grader.sock");
    let config = env.config("grader.toml", "", "")?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[serve]\nsocket = \"{}\"\nconcurrency = 2\n",
        socket.display()
    ));
    std::fs::write(&config, text)?;
    let observer = PodObserver::start(env.pods()).await?;

    let log = env.scratch.join("serve.log");
    let mut serve = env.grader(&config, env.cp.kubeconfig_path());
    serve
        .args(["--log-format", "json", "serve"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut service = serve.spawn().context("spawn grader serve")?;
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&socket, "/readyz").map(|r| r.0) != Some(200) {
        if let Some(status) = service.try_wait()? {
            bail!("grader serve exited with {status}: {}", logs());
        }
        if Instant::now() > deadline {
            bail!("grader serve not ready: {}", logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two jobs at once through the client, each printing its outcome.
    let submit = |user: &str| {
        let mut cmd = env.grader(&config, env.cp.kubeconfig_path());
        cmd.args(["submit", "--wait", "--job"]).arg(env.job(user));
        run(cmd, "grader submit --wait", GRADING_TIMEOUT)
    };
    let (bob, alice) = tokio::join!(submit("bob"), submit("alice"));
    for (user, out) in [("bob", bob?.0), ("alice", alice?.0)] {
        let outcome: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{user}: no outcome: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let exp = env.expected_for(user)?;
        assert_eq!(out.status.code(), Some(0), "{user}: {outcome:#}");
        assert_eq!(outcome["status"], "automatically_graded", "{outcome:#}");
        assert_eq!(outcome["backend"], "kube");
        assert_eq!(outcome["submission_id"], exp["submission_id"]);
        assert_eq!(outcome["score"], exp["score"], "{user}'s exact score");
        assert_eq!(outcome["max_score"], exp["max_score"]);
    }

    // Every pod deleted; each was created once.
    let left = env.wait_no_grading_pods(Duration::from_secs(30)).await?;
    eprintln!("pods still being deleted at the first look: {left:?}");
    let names: std::collections::BTreeSet<String> = observer
        .sightings()
        .iter()
        .map(|s| s.pod.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 2, "one pod per job: {names:?}");
    for name in &names {
        assert_eq!(observer.uids(name).len(), 1, "{name} created once");
    }

    // One backend for the service's life: one shared watch for both jobs, two creates, two
    // deletes, nothing in flight.
    let (status, body) = get(&socket, "/metrics").context("GET /metrics")?;
    assert_eq!(status, 200, "{body}");
    let m = samples(&body);
    let requests = |verb: &str| m[&format!("grader_kube_api_requests_total{{verb=\"{verb}\"}}")];
    assert_eq!(requests("watch"), 1.0, "one shared watch: {body}");
    assert_eq!(requests("create"), 2.0, "{body}");
    assert_eq!(requests("delete"), 2.0, "{body}");
    assert_eq!(m["grader_kube_pods_in_flight"], 0.0);
    assert_eq!(m["grader_backend_ready{backend=\"kube\"}"], 1.0);
    assert_eq!(
        m["grader_jobs_finished_total{kind=\"autograde\",result=\"automatically_graded\",failure=\"none\"}"],
        2.0
    );
    let built = logs()
        .lines()
        .filter(|l| l.contains("grading pods run in Kubernetes"))
        .count();
    assert_eq!(built, 1, "the backend is built once: {}", logs());

    // SIGTERM: exit 0, nothing left.
    let pid = nix::unistd::Pid::from_raw(service.id().context("pid")? as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let status = tokio::time::timeout(Duration::from_secs(30), service.wait())
        .await
        .context("grader serve did not stop")??;
    assert_eq!(status.code(), Some(0), "{}", logs());
    assert!(!socket.exists());
    env.stop().await;
    Ok(())
}

//! `grader-test-cluster`: the kit's test control plane (a real kube-apiserver + etcd on
//! loopback) and its test node agent, as a process of its own, for test suites that are not
//! written in Rust (the Grader Service end-to-end suite in `integrations/grader-service`).
//!
//! ```text
//! grader-test-cluster --dir DIR [--namespace NS] [--claim NAME=HOST_DIR]... [--exec NAME=HOST_PATH]...
//! ```
//!
//! It starts the control plane, creates the namespace (enforcing the `restricted` Pod Security
//! Standard), starts the node agent for that namespace (each `--claim` served from its host
//! directory, each `--exec` command mapped to a host executable, as in the kit's own tests)
//! and writes to `DIR`:
//!
//! * `kubeconfig` — the admin kubeconfig (context `testkit`, its current context);
//! * `grader.toml` — the `[kube]` table grader needs for this cluster (namespace, pull policy,
//!   quick polling); it leaves `backend` to the caller;
//! * `ca.crt`, `admin.crt`, `admin.key` — PEM files for asking the API server directly;
//! * `pods.jsonl` — every pod state of the namespace the API server showed, one JSON object a
//!   line (`event` `apply`/`delete`, `name`, `uid`, `phase`, `deleting`, `component`,
//!   `submission_id`), so a test can tell that a pod ran and was deleted.
//!
//! When ready it prints one JSON line to stdout naming those files and the API server's URL.
//! When the binaries are missing it prints `{"missing": "<why>"}` and exits with code 3 (the
//! caller decides whether that skips or fails). It stops everything — the node agent and its
//! running containers, kube-apiserver, etcd — and exits 0 when its stdin closes or on
//! SIGTERM/SIGINT; the control-plane processes also die with it if it is killed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_testkit::{ControlPlane, NodeAgent, NodeAgentConfig, locate_binaries};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

/// Exit code when the control-plane binaries are missing.
const EXIT_MISSING: u8 = 3;

/// Command-line arguments.
struct Args {
    dir: PathBuf,
    namespace: String,
    claims: BTreeMap<String, PathBuf>,
    executables: BTreeMap<String, PathBuf>,
}

const USAGE: &str = "usage: grader-test-cluster --dir DIR [--namespace NS] \
                     [--claim NAME=HOST_DIR]... [--exec NAME=HOST_PATH]...";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args> {
    let mut dir = None;
    let mut namespace = "grading".to_string();
    let mut claims = BTreeMap::new();
    let mut executables = BTreeMap::new();
    let pair = |flag: &str, value: String| -> Result<(String, PathBuf)> {
        match value.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ => bail!("{flag} expects NAME=PATH, got {value:?}\n{USAGE}"),
        }
    };
    while let Some(flag) = argv.next() {
        let mut value = || {
            argv.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--namespace" => namespace = value()?,
            "--claim" => {
                let (name, path) = pair("--claim", value()?)?;
                claims.insert(name, path);
            }
            "--exec" => {
                let (name, path) = pair("--exec", value()?)?;
                executables.insert(name, path);
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Args {
        dir: dir.with_context(|| format!("--dir is required\n{USAGE}"))?,
        namespace,
        claims,
        executables,
    })
}

/// The `[kube]` table grader needs for this cluster (the volume is grader's default, the
/// claim `grader-data`; the image is its default `{lecture}_image`, which the node agent
/// "has").
fn grader_toml(namespace: &str) -> String {
    format!(
        "# Written by grader-test-cluster: grader's kube backend on the test control plane.\n\
         # The kubeconfig comes from KUBECONFIG (its current context is `testkit`).\n\
         [kube]\n\
         namespace = \"{namespace}\"\n\
         image_pull_policy = \"IfNotPresent\"\n\
         poll_interval = 1\n\
         unschedulable_grace = 30\n"
    )
}

/// The admin user's client certificate and key (PEM) from the kubeconfig the kit wrote.
fn admin_credentials(kubeconfig: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("read {}", kubeconfig.display()))?;
    let config: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let user = &config["users"][0]["user"];
    let field = |key: &str| -> Result<String> {
        let data = user[key]
            .as_str()
            .with_context(|| format!("{key} missing in {}", kubeconfig.display()))?;
        let pem = base64::engine::general_purpose::STANDARD.decode(data)?;
        Ok(String::from_utf8(pem)?)
    };
    Ok((field("client-certificate-data")?, field("client-key-data")?))
}

/// Appends every pod state of `api` to `journal`, one JSON line each, until aborted.
async fn journal_pods(api: Api<Pod>, journal: PathBuf) {
    let mut file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
    {
        Ok(file) => file,
        Err(e) => {
            eprintln!("grader-test-cluster: open {}: {e}", journal.display());
            return;
        }
    };
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let (pod, kind) = match event {
            Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => (pod, "apply"),
            Ok(watcher::Event::Delete(pod)) => (pod, "delete"),
            Ok(_) => continue,
            Err(e) => {
                eprintln!("grader-test-cluster: pod watch: {e}");
                continue;
            }
        };
        let labels = pod.labels();
        let line = json!({
            "event": kind,
            "name": pod.name_any(),
            "uid": pod.uid().unwrap_or_default(),
            "phase": pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
            "deleting": pod.metadata.deletion_timestamp.is_some(),
            "component": labels.get("app.kubernetes.io/component"),
            "submission_id": labels.get("grader.io/submission-id"),
            "node": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        });
        if writeln!(file, "{line}")
            .and_then(|()| file.flush())
            .is_err()
        {
            eprintln!("grader-test-cluster: cannot write {}", journal.display());
            return;
        }
    }
}

/// Resolves once stdin is closed (read to its end on a thread of its own).
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    rx
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

async fn run(args: Args) -> Result<ExitCode> {
    let binaries = match locate_binaries() {
        Ok(b) => b,
        Err(why) => {
            println!("{}", json!({ "missing": why }));
            return Ok(ExitCode::from(EXIT_MISSING));
        }
    };
    for (name, dir) in &args.claims {
        if !dir.is_dir() {
            bail!("--claim {name}={}: not a directory", dir.display());
        }
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let closed = stdin_closed();

    let cp = ControlPlane::start_with(binaries).await?;
    cp.create_namespace(&args.namespace, true).await?;
    let agent = NodeAgent::start(
        cp.client().await?,
        NodeAgentConfig {
            claim_dirs: args.claims.clone(),
            executables: args.executables.clone(),
            namespaces: vec![args.namespace.clone()],
            ..Default::default()
        },
    )
    .await?;

    let kubeconfig = args.dir.join("kubeconfig");
    std::fs::copy(cp.kubeconfig_path(), &kubeconfig)
        .with_context(|| format!("write {}", kubeconfig.display()))?;
    let (cert, key) = admin_credentials(&kubeconfig)?;
    let ca = write_file(&args.dir, "ca.crt", cp.ca_pem())?;
    let client_cert = write_file(&args.dir, "admin.crt", &cert)?;
    let client_key = write_file(&args.dir, "admin.key", &key)?;
    let grader_config = write_file(&args.dir, "grader.toml", &grader_toml(&args.namespace))?;
    let journal = args.dir.join("pods.jsonl");
    std::fs::write(&journal, "")?;
    let watch = tokio::spawn(journal_pods(
        Api::namespaced(cp.client().await?, &args.namespace),
        journal.clone(),
    ));

    let ready: Value = json!({
        "ready": true,
        "server": cp.server_url(),
        "namespace": args.namespace,
        "node": agent.node_name(),
        "kubeconfig": kubeconfig,
        "grader_config": grader_config,
        "ca": ca,
        "client_cert": client_cert,
        "client_key": client_key,
        "pod_journal": journal,
        "data_dir": cp.data_dir(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    drop(stdout);

    let why = tokio::select! {
        _ = closed => "stdin closed",
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    eprintln!("grader-test-cluster: {why}: stopping");
    watch.abort();
    let _ = watch.await;
    agent.stop().await;
    drop(cp);
    eprintln!("grader-test-cluster: stopped");
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("grader-test-cluster: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("grader-test-cluster: error: {e:#}");
            println!("{}", json!({ "error": format!("{e:#}") }));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_are_parsed_and_bad_ones_refused() {
        let a = args(&[
            "--dir",
            "/d",
            "--claim",
            "grader-data=/srv",
            "--exec",
            "grader-convert=/v/bin/grader-convert",
        ])
        .expect("valid");
        assert_eq!(a.dir, PathBuf::from("/d"));
        assert_eq!(a.namespace, "grading");
        assert_eq!(a.claims["grader-data"], PathBuf::from("/srv"));
        assert_eq!(
            a.executables["grader-convert"],
            PathBuf::from("/v/bin/grader-convert")
        );
        assert!(args(&[]).is_err(), "--dir is required");
        assert!(args(&["--dir", "/d", "--claim", "no-equals"]).is_err());
        assert!(args(&["--dir", "/d", "--claim", "=x"]).is_err());
        assert!(args(&["--dir"]).is_err());
        assert!(args(&["--dir", "/d", "--bogus"]).is_err());
    }

    #[test]
    fn the_grader_config_names_the_namespace_and_leaves_the_backend_out() {
        let text = grader_toml("grading-x");
        assert!(
            text.contains("[kube]\nnamespace = \"grading-x\"\n"),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("backend")),
            "{text}"
        );
    }
}

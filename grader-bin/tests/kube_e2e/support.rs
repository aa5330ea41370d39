//! Support of the Kubernetes end-to-end suite: a control plane with the test node agent per
//! test, the example course as the shared service directory, the `grader` binary configured
//! for the kube backend, and an observer that records every pod state the API server shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use assert_cmd::cargo::CommandCargoExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kube_testkit::{ControlPlane, NodeAgent, NodeAgentConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The label every grading pod carries.
pub const GRADER_SELECTOR: &str = "app.kubernetes.io/managed-by=grader";

/// Every test starts a control plane and grades with a CPU-bound tool; on two cores they run
/// one at a time, so that timing-sensitive ones are not starved by the others.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the suite's lock for the duration of a test.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The real grading tool, or `None` after a loud message (an error under `CI=true`).
fn grader_convert(test: &str) -> Result<Option<PathBuf>> {
    let candidates = [
        std::env::var_os("GRADER_CONVERT").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h).join(".cache/grader/venv-grader-service-0.12.5/bin/grader-convert")
        }),
    ];
    if let Some(c) = candidates.into_iter().flatten().find(|c| c.is_file()) {
        return Ok(Some(c));
    }
    let msg = format!(
        "{test}: grader-convert not found (set GRADER_CONVERT or run scripts/setup-venv.sh)"
    );
    if under_ci() {
        bail!("{msg}; CI=true, so this is a failure");
    }
    eprintln!("\n==========\nSKIPPED {msg}\n==========\n");
    Ok(None)
}

/// What a test needs from its environment.
pub struct Spec<'a> {
    /// The test's name, for messages.
    pub test: &'a str,
    /// The namespace the grading pods run in (created enforcing `restricted`).
    pub namespace: &'a str,
    /// Arguments of `examples/make-service-dir.sh` after the directory.
    pub course: &'a [&'a str],
    /// Stand-in tools `(name, shell script body)`, mapped by the node agent like
    /// `grader-convert`; `{convert}` in a body is replaced by the real tool's path.
    pub tools: &'a [(&'a str, &'a str)],
    /// Whether the test grades with the real tool (else it is not looked for).
    pub grades: bool,
    /// Images the node agent "fails to pull".
    pub pull_fail_images: &'a [&'a str],
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            test: "kube_e2e",
            namespace: "grading",
            course: &["--students", "bob"],
            tools: &[],
            grades: true,
            pull_fail_images: &[],
        }
    }
}

/// A control plane, the test node agent running pods with the host's tools, a restricted
/// namespace and the example course in a service directory that the agent serves as the
/// claim `grader-data`.
pub struct Env {
    pub cp: ControlPlane,
    agent: Option<NodeAgent>,
    /// An admin client (`system:masters`).
    pub admin: Client,
    pub ns: String,
    /// The service directory (`service_dir` of the grader, the claim `grader-data` of pods).
    pub svc: PathBuf,
    /// Scratch space outside the service directory.
    pub scratch: PathBuf,
    _dir: TempDir,
}

impl Env {
    /// Starts everything, or returns `None` (after a loud `SKIPPED` message) when the
    /// control-plane binaries or the grading tool are missing and `CI` is not `"true"`.
    pub async fn start(spec: Spec<'_>) -> Result<Option<Env>> {
        let convert = if spec.grades {
            match grader_convert(spec.test)? {
                Some(c) => c,
                None => return Ok(None),
            }
        } else {
            PathBuf::from("/bin/false")
        };
        let started = Instant::now();
        let Some(cp) = ControlPlane::start().await? else {
            eprintln!("SKIPPED {}: no control plane", spec.test);
            return Ok(None);
        };
        eprintln!(
            "{}: control plane ready in {:?}",
            spec.test,
            started.elapsed()
        );
        let dir = tempfile::Builder::new()
            .prefix("grader-kube-e2e-")
            .tempdir()?;
        let svc = dir.path().join("svc");
        let scratch = dir.path().join("scratch");
        let tools = dir.path().join("tools");
        for d in [&svc, &scratch, &tools] {
            std::fs::create_dir_all(d)?;
        }
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("examples/make-service-dir.sh"))
            .arg(&svc)
            .args(spec.course)
            .status()
            .context("run examples/make-service-dir.sh")?;
        anyhow::ensure!(status.success(), "make-service-dir.sh failed: {status}");

        let mut executables = BTreeMap::from([("grader-convert".to_string(), convert.clone())]);
        for (name, body) in spec.tools {
            let path = tools.join(name);
            let script = format!(
                "#!/bin/sh\n{}\n",
                body.replace("{convert}", &convert.display().to_string())
            );
            std::fs::write(&path, script)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            executables.insert((*name).to_string(), path);
        }

        cp.create_namespace(spec.namespace, true).await?;
        let admin = cp.client().await?;
        let agent = NodeAgent::start(
            cp.client().await?,
            NodeAgentConfig {
                claim_dirs: BTreeMap::from([("grader-data".to_string(), svc.clone())]),
                executables,
                pull_fail_images: spec
                    .pull_fail_images
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ..Default::default()
            },
        )
        .await?;
        Ok(Some(Env {
            cp,
            agent: Some(agent),
            admin,
            ns: spec.namespace.to_string(),
            svc,
            scratch,
            _dir: dir,
        }))
    }

    /// Stops the node agent (its running containers are killed).
    pub async fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
    }

    /// The pods of the test's namespace, as the admin sees them.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Writes a grader configuration for the kube backend in the test's namespace: `top`
    /// holds more top-level keys, `kube` more keys of the `[kube]` table (both replace the
    /// defaults written here).
    pub fn config(&self, file: &str, top: &str, kube: &str) -> Result<PathBuf> {
        let with_defaults = |given: &str, defaults: &[(&str, String)]| {
            let mut text = String::new();
            for (key, value) in defaults {
                let set = given
                    .lines()
                    .any(|l| l.split('=').next().map(str::trim) == Some(*key));
                if !set {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            text + given + "\n"
        };
        let top = with_defaults(
            top,
            &[
                ("backend", "\"kube\"".into()),
                ("service_dir", format!("\"{}\"", self.svc.display())),
                ("max_grading_time", "300".into()),
            ],
        );
        let kube = with_defaults(
            kube,
            &[
                ("context", "\"testkit\"".into()),
                ("namespace", format!("\"{}\"", self.ns)),
                ("image_pull_policy", "\"IfNotPresent\"".into()),
                ("poll_interval", "1".into()),
                ("unschedulable_grace", "20".into()),
            ],
        );
        let path = self.scratch.join(file);
        std::fs::write(&path, format!("{top}\n[kube]\n{kube}"))?;
        Ok(path)
    }

    /// The `grader` binary with configuration `config`, talking to the API server through
    /// `kubeconfig` (and nothing else from the environment: no `GRADER_*` variables).
    pub fn grader(&self, config: &Path, kubeconfig: &Path) -> tokio::process::Command {
        let mut cmd = std::process::Command::cargo_bin("grader").expect("the grader binary");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GRADER_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("GRADER_LOG", "info")
            .env("NO_COLOR", "1")
            .env("KUBECONFIG", kubeconfig)
            .arg("--config")
            .arg(config);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        cmd
    }

    /// The job file of `user`.
    pub fn job(&self, user: &str) -> PathBuf {
        self.svc.join(format!("jobs/{user}.json"))
    }

    /// `expected.jsonl` of the service directory: per submission the score the grading tool
    /// gives.
    pub fn expected(&self) -> Result<Vec<Value>> {
        std::fs::read_to_string(self.svc.join("expected.jsonl"))?
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    }

    /// The expected outcome of `user`'s submission.
    pub fn expected_for(&self, user: &str) -> Result<Value> {
        self.expected()?
            .into_iter()
            .find(|e| e["username"] == user)
            .with_context(|| format!("no submission of {user} in expected.jsonl"))
    }

    /// The files on `branch` of `user`'s autograde repository.
    pub fn autograde_branch_files(&self, user: &str, branch: &str) -> Result<Vec<String>> {
        let repo = self.svc.join(format!("git/cs101/1/autograde/user/{user}"));
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(["ls-tree", "-r", "--name-only", branch])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "git ls-tree {branch} in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut files: Vec<String> = String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_string)
            .collect();
        files.sort();
        Ok(files)
    }

    /// Waits until no pod named `name` exists any more.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(pod) = self.pods().get_opt(name).await? {
            if Instant::now() > deadline {
                bail!(
                    "pod {name} still exists after {timeout:?}: phase {}, deleting {}",
                    phase(&pod),
                    pod.metadata.deletion_timestamp.is_some()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Waits until no grading pod (grader label) exists in the namespace; returns the names
    /// of those that were still there, being deleted, at the first look.
    pub async fn wait_no_grading_pods(&self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let params = ListParams::default().labels(GRADER_SELECTOR);
        let mut first: Option<Vec<String>> = None;
        loop {
            let pods = self.pods().list(&params).await?.items;
            let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
            if let Some(live) = pods
                .iter()
                .find(|p| p.metadata.deletion_timestamp.is_none())
            {
                bail!(
                    "grading pod {} is left behind and not being deleted (phase {})",
                    live.name_any(),
                    phase(live)
                );
            }
            let first = first.get_or_insert_with(|| names.clone());
            if names.is_empty() {
                return Ok(first.clone());
            }
            if Instant::now() > deadline {
                bail!("grading pods still terminating after {timeout:?}: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates a pod that passes the `restricted` standard, running `argv`.
    pub async fn create_sleeper(
        &self,
        name: &str,
        labels: Value,
        annotations: Value,
        argv: &[&str],
    ) -> Result<Pod> {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": name, "labels": labels, "annotations": annotations },
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 1000,
                    "seccompProfile": { "type": "RuntimeDefault" }
                },
                "containers": [{
                    "name": "leftover",
                    "image": "registry.invalid/leftover:1",
                    "command": argv,
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": { "drop": ["ALL"] }
                    }
                }]
            }
        }))?;
        Ok(self.pods().create(&PostParams::default(), &pod).await?)
    }
}

/// The phase of a pod, `""` before the node agent wrote one.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Runs a `grader` command to its end (bounded by `timeout`), echoing its stderr.
pub async fn run(
    mut cmd: tokio::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<(Output, Duration)> {
    let started = Instant::now();
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("{what} did not finish within {timeout:?}"))??;
    let took = started.elapsed();
    eprintln!(
        "---- {what}: exit {:?} after {took:?}; stderr:\n{}---- end of {what}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out, took))
}

/// One state of one pod as the watch delivered it.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub deleting: bool,
    /// A watch `Delete` event: the pod is gone.
    pub deleted: bool,
    pub pod: Pod,
}

/// Records every pod state the API server shows in a namespace (a watch of the admin,
/// re-listing after errors, e.g. while the API server restarts).
pub struct PodObserver {
    seen: Arc<Mutex<Vec<Sighting>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodObserver {
    /// Starts watching; returns once the initial list is in.
    pub async fn start(api: Api<Pod>) -> Result<PodObserver> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let (pod, deleted) = match event {
                    Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => (pod, false),
                    Ok(watcher::Event::Delete(pod)) => (pod, true),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                let sighting = Sighting {
                    name: pod.name_any(),
                    uid: pod.uid().unwrap_or_default(),
                    phase: phase(&pod).to_string(),
                    deleting: pod.metadata.deletion_timestamp.is_some(),
                    deleted,
                    pod,
                };
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sighting);
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .context("the observer's initial list did not arrive")??;
        Ok(PodObserver { seen, task })
    }

    /// Everything seen so far, in order.
    pub fn sightings(&self) -> Vec<Sighting> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The sightings of pods named `name`.
    pub fn of(&self, name: &str) -> Vec<Sighting> {
        self.sightings()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// The distinct uids that pods named `name` had, in order of appearance.
    pub fn uids(&self, name: &str) -> Vec<String> {
        let mut uids: Vec<String> = Vec::new();
        for s in self.of(name) {
            if !uids.contains(&s.uid) {
                uids.push(s.uid);
            }
        }
        uids
    }

    /// The phases the pod with `uid` went through (consecutive repeats merged; `""` is the
    /// state before the node agent wrote a status).
    pub fn phases(&self, uid: &str) -> Vec<String> {
        let mut phases: Vec<String> = Vec::new();
        for s in self.sightings().into_iter().filter(|s| s.uid == uid) {
            if phases.last() != Some(&s.phase) {
                phases.push(s.phase);
            }
        }
        phases
    }

    /// Waits until a pod named `name` is in phase `wanted` (and not being deleted); returns it.
    pub async fn wait_phase(&self, name: &str, wanted: &str, timeout: Duration) -> Result<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .of(name)
                .into_iter()
                .rev()
                .find(|s| s.phase == wanted && !s.deleting && !s.deleted)
            {
                return Ok(s.pod);
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} never reached phase {wanted} within {timeout:?}; seen: {:?}",
                    self.of(name)
                        .iter()
                        .map(|s| (&s.uid, &s.phase, s.deleting, s.deleted))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PodObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts that `result` is a 403 from the API server.
pub fn assert_forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) {
    match result {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{what}: {e:?}"),
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

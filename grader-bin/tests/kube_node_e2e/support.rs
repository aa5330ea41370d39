//! Support of the real-node suite: one control plane with one real node (containerd + runc +
//! kubelet, kube-scheduler, kube-controller-manager) shared by all the tests of the binary,
//! started by the first test that needs it, with the grading image of `deploy/image/build.sh`
//! imported into containerd once; each test gets its own namespace (restricted) with the
//! example course as its service directory behind its own hostPath PersistentVolume, bound
//! to the `grader-data` claim of `deploy/pvc.yaml`; the `grader` binary runs as uid 1000
//! (the pods' `kube.uid`, so both can write the work dirs, as the README asks of operators).
//!
//! The tests take turns (one lock), so each sees the node to itself. The node is stopped
//! when the test binary exits (an `atexit` handler): its containers, shims, mounts and
//! bridge are removed then; the control plane's processes die with the binary anyway.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use assert_cmd::cargo::CommandCargoExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kube_testkit::{ControlPlane, RealNode, RealNodeConfig};
use serde_json::Value;
use tempfile::TempDir;

/// The uid (and gid) of the grading pods and of the `grader` process.
pub const UID: u32 = 1000;

/// The shared control plane and node, and the lock the tests take turns with.
static SHARED: tokio::sync::Mutex<Shared> = tokio::sync::Mutex::const_new(Shared::NotStarted);

/// The state of the shared cluster.
enum Shared {
    NotStarted,
    /// A program or the grading image is missing (said loudly once); every test skips.
    Skipped(String),
    /// The first start failed; later tests fail at once with the same reason.
    Failed(String),
    Running(Box<Cluster>),
    /// Stopped at exit.
    Stopped,
}

/// A control plane with a real node and the grading image.
struct Cluster {
    node: RealNode,
    cp: ControlPlane,
    image: String,
    /// How long the node took to turn Ready (with the image import).
    node_start: Duration,
}

impl Cluster {
    async fn start(test: &str) -> Result<Result<Cluster, String>> {
        let Some((image, archive)) = grading_image(test)? else {
            return Ok(Err("the grading image is not built".into()));
        };
        let Some(cp) = ControlPlane::start().await? else {
            return Ok(Err("no control-plane binaries".into()));
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
            return Ok(Err("the real node's programs are missing".into()));
        };
        let node_start = started.elapsed();
        eprintln!(
            "{test}: shared real node ready in {node_start:?} ({:?})",
            node.timings
        );
        // SAFETY: registers a plain function; it runs once, when the test binary exits.
        if unsafe { atexit(stop_at_exit) } != 0 {
            tracing::warn!("atexit failed: the node is torn down by the next run instead");
        }
        Ok(Ok(Cluster {
            node,
            cp,
            image,
            node_start,
        }))
    }
}

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Stops the shared node when the test binary exits (every test has finished: the lock is
/// free). The node's processes would die with the binary anyway; this removes its
/// containers, shims, mounts and bridge and restores the kernel tunables.
extern "C" fn stop_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let Ok(mut shared) = SHARED.try_lock() else {
            return;
        };
        if let Shared::Running(cluster) = std::mem::replace(&mut *shared, Shared::Stopped) {
            let Cluster { node, cp, .. } = *cluster;
            node.stop();
            drop(cp);
        }
    });
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn skip_or_fail(test: &str, why: &str) -> Result<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("{test}: {why}; CI=true, so this is a failure");
    }
    eprintln!("\n==========\nSKIPPED {test}: {why}\n==========\n");
    Ok(())
}

/// The grading image ([`kube_testkit::grading_image`]), or `None` once skipped.
fn grading_image(test: &str) -> Result<Option<(String, PathBuf)>> {
    match kube_testkit::grading_image(&repo_root()).context("run deploy/image/build.sh --print")? {
        Some(image) => Ok(Some((image.name, image.archive))),
        None => {
            skip_or_fail(
                test,
                "the grading image is not built (run `bash deploy/image/build.sh`)",
            )?;
            Ok(None)
        }
    }
}

/// One test's share of the cluster: the suite's lock (held until the `Env` is dropped),
/// its own restricted namespace with the claim `grader-data` bound to its own service
/// directory.
pub struct Env {
    shared: tokio::sync::MutexGuard<'static, Shared>,
    pub admin: Client,
    pub ns: String,
    /// The grading image's reference.
    pub image: String,
    /// The service directory (owned by uid 1000).
    pub svc: PathBuf,
    /// Scratch space owned by uid 1000: configurations, kubeconfig, results.
    pub scratch: PathBuf,
    /// A kubeconfig readable by uid 1000 (the admin's).
    pub kubeconfig: PathBuf,
    /// How long the shared node took to turn Ready (with the image import).
    pub node_start: Duration,
    _dir: TempDir,
}

impl Env {
    /// Waits for its turn, starts the shared cluster if no test did yet, and prepares the
    /// namespace of `test` for `course` (arguments of `examples/make-service-dir.sh`); or
    /// `None` after a loud `SKIPPED` (a failure under `CI=true`).
    pub async fn start(test: &str, course: &[&str]) -> Result<Option<Env>> {
        let mut shared = SHARED.lock().await;
        if let Shared::NotStarted = *shared {
            *shared = match Cluster::start(test).await {
                Ok(Ok(cluster)) => Shared::Running(Box::new(cluster)),
                Ok(Err(why)) => Shared::Skipped(why),
                Err(e) => Shared::Failed(format!("{e:#}")),
            };
        }
        let (cp, node, image, node_start) = match &*shared {
            Shared::Running(c) => (&c.cp, &c.node, c.image.clone(), c.node_start),
            Shared::Skipped(why) => {
                skip_or_fail(test, why)?;
                return Ok(None);
            }
            Shared::Failed(why) => bail!("{test}: the shared real node did not start: {why}"),
            Shared::NotStarted | Shared::Stopped => bail!("{test}: the shared node is gone"),
        };

        let dir = tempfile::Builder::new()
            .prefix("grader-kube-node-e2e-")
            .tempdir()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let svc = dir.path().join("svc");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&svc)?;
        std::fs::create_dir_all(scratch.join("home"))?;
        let status = std::process::Command::new("bash")
            .arg(repo_root().join("examples/make-service-dir.sh"))
            .arg(&svc)
            .args(course)
            .status()
            .context("run examples/make-service-dir.sh")?;
        anyhow::ensure!(status.success(), "make-service-dir.sh failed: {status}");
        let kubeconfig = scratch.join("admin.kubeconfig");
        std::fs::copy(cp.kubeconfig_path(), &kubeconfig)?;
        let status = std::process::Command::new("chown")
            .args(["-R", &format!("{UID}:{UID}")])
            .arg(&svc)
            .arg(&scratch)
            .status()?;
        anyhow::ensure!(status.success(), "chown failed: {status}");

        // One namespace per test: its pods, claim and volume are its own.
        let ns = test.replace('_', "-").to_lowercase();
        cp.create_namespace(&ns, true).await?;
        let admin = cp.client().await?;
        // The claim of deploy/pvc.yaml, unchanged but for its namespace (the test's instead
        // of `grading`), and a hostPath volume for it.
        let mut claim: PersistentVolumeClaim = serde_yaml::from_str(&std::fs::read_to_string(
            repo_root().join("deploy/pvc.yaml"),
        )?)?;
        claim.metadata.namespace = Some(ns.clone());
        let claim_name = claim.name_any();
        node.create_host_volume(
            &admin,
            &format!("grader-data-{ns}"),
            &svc,
            "50Gi",
            &ns,
            &claim_name,
        )
        .await?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        claims.create(&PostParams::default(), &claim).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = claims.get(&claim_name).await?;
            if c.status.and_then(|s| s.phase).as_deref() == Some("Bound") {
                break;
            }
            if Instant::now() > deadline {
                bail!("claim {claim_name} not bound by the controller-manager within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Some(Env {
            shared,
            admin,
            ns,
            image,
            svc,
            scratch,
            kubeconfig,
            node_start,
            _dir: dir,
        }))
    }

    /// Ends the test: no process of the test (control plane, node, `grader`) may hold a TCP
    /// socket outside loopback (the workplace's network rule), then the next test's turn.
    pub fn finish(self) -> Result<()> {
        let outside: Vec<String> = RealNode::non_loopback_tcp_sockets()
            .iter()
            .map(ToString::to_string)
            .collect();
        anyhow::ensure!(
            outside.is_empty(),
            "sockets outside loopback:\n{}",
            outside.join("\n")
        );
        Ok(())
    }

    pub fn node(&self) -> &RealNode {
        match &*self.shared {
            Shared::Running(cluster) => &cluster.node,
            _ => unreachable!("an Env exists only while the cluster runs"),
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Writes a grader configuration (kube backend, the grading image, small requests so
    /// that five pods fit on two cores): `top` and `kube` add keys (replacing the defaults).
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
                ("default_image_name", format!("\"{}\"", self.image)),
                ("image_pull_policy", "\"IfNotPresent\"".into()),
                ("poll_interval", "1".into()),
                ("unschedulable_grace", "20".into()),
                (
                    "resources",
                    "{ requests = { cpu = \"100m\", memory = \"128Mi\" }, limits = { cpu = \"2\", memory = \"1Gi\" } }"
                        .into(),
                ),
            ],
        );
        let path = self.scratch.join(file);
        std::fs::write(&path, format!("{top}\n[kube]\n{kube}"))?;
        let _ = std::process::Command::new("chown")
            .arg(format!("{UID}:{UID}"))
            .arg(&path)
            .status();
        Ok(path)
    }

    /// The `grader` binary as uid 1000 with configuration `config` and the admin kubeconfig.
    pub fn grader(&self, config: &Path) -> tokio::process::Command {
        let mut cmd = std::process::Command::cargo_bin("grader").expect("the grader binary");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GRADER_") {
                cmd.env_remove(&name);
            }
        }
        cmd.uid(UID)
            .gid(UID)
            .env("HOME", self.scratch.join("home"))
            .env("GRADER_LOG", "info")
            .env("NO_COLOR", "1")
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--config")
            .arg(config);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        cmd
    }

    pub fn job(&self, user: &str) -> PathBuf {
        self.svc.join(format!("jobs/{user}.json"))
    }

    pub fn expected(&self) -> Result<Vec<Value>> {
        std::fs::read_to_string(self.svc.join("expected.jsonl"))?
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    }

    pub fn expected_for(&self, user: &str) -> Result<Value> {
        self.expected()?
            .into_iter()
            .find(|e| e["username"] == user)
            .with_context(|| format!("no submission of {user} in expected.jsonl"))
    }

    /// Waits until no pod named `name` exists any more.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.pods().get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("pod {name} still exists after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
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

/// One state of one pod as the watch delivered it, with when it arrived.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub at: Instant,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub node: String,
    pub pod: Pod,
}

/// Records every pod state the API server shows in a namespace.
pub struct PodObserver {
    seen: Arc<Mutex<Vec<Sighting>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodObserver {
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
                let pod = match event {
                    Ok(
                        watcher::Event::InitApply(pod)
                        | watcher::Event::Apply(pod)
                        | watcher::Event::Delete(pod),
                    ) => pod,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                let sighting = Sighting {
                    at: Instant::now(),
                    name: pod.name_any(),
                    uid: pod.uid().unwrap_or_default(),
                    phase: pod
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default(),
                    node: pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
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

    pub fn sightings(&self) -> Vec<Sighting> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn of(&self, name: &str) -> Vec<Sighting> {
        self.sightings()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// The distinct uids of pods named `name`.
    pub fn uids(&self, name: &str) -> Vec<String> {
        let mut uids: Vec<String> = Vec::new();
        for s in self.of(name) {
            if !uids.contains(&s.uid) {
                uids.push(s.uid);
            }
        }
        uids
    }

    /// The phases the pod `name` went through (consecutive repeats merged).
    pub fn phases(&self, name: &str) -> Vec<String> {
        let mut phases: Vec<String> = Vec::new();
        for s in self.of(name) {
            if phases.last() != Some(&s.phase) {
                phases.push(s.phase);
            }
        }
        phases
    }

    /// Waits until the pod `name` is in phase `wanted`.
    pub async fn wait_phase(&self, name: &str, wanted: &str, timeout: Duration) -> Result<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.of(name).into_iter().rev().find(|s| s.phase == wanted) {
                return Ok(s.pod);
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} never reached {wanted} within {timeout:?}: {:?}",
                    self.phases(name)
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

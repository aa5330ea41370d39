//! A real node for a [`ControlPlane`]: Debian's `containerd` (CRI) with `runc`, the upstream
//! `kubelet`, `kube-scheduler` and `kube-controller-manager` of the API server's release, so
//! that pods run in real containers and scheduling, PersistentVolume binding, pod garbage
//! collection and node lifecycle are Kubernetes' own.
//!
//! * `binaries` — where the programs come from ([`locate_node_binaries`]).
//! * `pki` — the kubelet's client (`system:node:<name>`) and serving certificates, signed by
//!   the control plane's CA.
//! * `config` — the files the processes read: containerd's `config.toml`, the CNI network,
//!   the `KubeletConfiguration`, the kubeconfigs.
//! * `cleanup` — tearing down what containers leave on the host (shims, mounts, the bridge),
//!   also for nodes of test processes that died.
//! * `image` — where the grading image of `deploy/image/build.sh` is ([`grading_image`]).
//! * `netcheck` — the TCP sockets of the test's processes, to show they stay on loopback.
//!
//! Only one real node runs on a machine at a time (kubelet owns the `kubepods` cgroups and
//! containerd's shims are machine-wide): [`RealNode::start`] takes a process-wide lock and a
//! file lock in the cache directory, held until the node is stopped.
//!
//! Network: every connection stays on loopback. kubelet, kube-scheduler and
//! kube-controller-manager serve on `127.0.0.1`, containerd's streaming server too, and the
//! Node is named `127.0.0.1` so that its only addresses are loopback ([`NODE_NAME`]): the
//! API server calls kubelet there. Pods get addresses of the CNI bridge inside network
//! namespaces the runtime creates. [`RealNode::non_loopback_tcp_sockets`] lets a test check it.
//!
//! What the node needs from the machine, and what it changes there:
//! * root, cgroup v1 or v2 (kubelet runs with the `cgroupfs` driver, no systemd), overlayfs
//!   (containerd's `overlayfs` snapshotter), the `bridge` CNI plugin (a Linux bridge
//!   `grader-cni0`, pod network `10.88.0.0/16`);
//! * kubelet sets the sysctls it wants (`vm.overcommit_memory=1`, `kernel.panic=10`,
//!   `kernel.panic_on_oops=1`, as on every node with `protectKernelDefaults: false`); the
//!   node writes the previous values back when it stops.

mod binaries;
mod cleanup;
mod config;
mod image;
mod netcheck;
mod pki;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::api::{Api, PostParams};
use serde_json::json;
use tempfile::TempDir;

pub use binaries::{NodeBinaries, PAUSE_VERSION, locate_node_binaries};
pub use image::{GradingImage, grading_image};

use crate::ControlPlane;
use crate::spawn::{mark_owned, spawn_tied_to_process};

/// How long the node may take to turn Ready (kubelet's first status after the runtime is up).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The prefix of a node's temporary directory (not `kube-testkit-`: those are removed by the
/// control plane's reaper, which knows nothing about mounts and shims).
pub(crate) const DIR_PREFIX: &str = "grader-testnode-";

/// The Node's name, and kubelet's `--hostname-override`: an IP address given as the
/// hostname is what kubelet advertises as the Node's `InternalIP` (and `Hostname`) without
/// the loopback check it applies to `--node-ip`. So the Node has only loopback addresses,
/// kubelet serves on `127.0.0.1`, and the API server (`--kubelet-preferred-address-types=
/// InternalIP`) reaches it there for `pods/log`: no test traffic leaves loopback.
pub(crate) const NODE_NAME: &str = "127.0.0.1";

/// What a [`RealNode`] runs with.
#[derive(Clone, Debug)]
pub struct RealNodeConfig {
    /// OCI image archives imported into containerd's `k8s.io` namespace before kubelet
    /// starts (the pause image is always imported).
    pub images: Vec<PathBuf>,
    /// kubelet's `maxPods`.
    pub max_pods: u32,
}

impl Default for RealNodeConfig {
    fn default() -> Self {
        RealNodeConfig {
            images: Vec::new(),
            max_pods: 110,
        }
    }
}

static ONE_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A real node (containerd + kubelet) with kube-scheduler and kube-controller-manager,
/// attached to a [`ControlPlane`]. Stop it with [`RealNode::stop`] (dropping it stops it too).
pub struct RealNode {
    dir: Option<TempDir>,
    children: Vec<(&'static str, Child)>,
    binaries: NodeBinaries,
    socket: PathBuf,
    node_name: String,
    sysctls: Vec<(PathBuf, String)>,
    _lock: Option<(tokio::sync::MutexGuard<'static, ()>, std::fs::File)>,
    /// When the node was started and how long each step took, for reports.
    pub timings: BTreeMap<&'static str, Duration>,
}

impl RealNode {
    /// Starts a node for `cp`, or returns `Ok(None)` after a loud `SKIPPED:` message when a
    /// program is missing (an error under env `CI=true`). Returns when the Node is Ready.
    pub async fn start(cp: &ControlPlane, config: RealNodeConfig) -> Result<Option<RealNode>> {
        match locate_node_binaries() {
            Ok(binaries) => Self::start_with(cp, config, binaries).await.map(Some),
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                bail!("kube-testkit: the real node cannot start and CI=true: {why}")
            }
            Err(why) => {
                eprintln!(
                    "\n========================================================================\n\
                     SKIPPED: kube-testkit cannot start a real node: {why}\n\
                     (under CI=true this is an error)\n\
                     ========================================================================\n"
                );
                Ok(None)
            }
        }
    }

    /// Like [`RealNode::start`] with explicit programs; never skips.
    pub async fn start_with(
        cp: &ControlPlane,
        config: RealNodeConfig,
        binaries: NodeBinaries,
    ) -> Result<RealNode> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("a real node needs root (containerd, kubelet, mounts, cgroups)");
        }
        let guard = ONE_NODE.lock().await;
        let lock_file = tokio::task::spawn_blocking(machine_lock)
            .await
            .context("machine lock task")??;
        cleanup::reap_stale_nodes();

        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir()?;
        mark_owned(dir.path())?;
        let root = dir.path().to_path_buf();
        let mut node = RealNode {
            dir: Some(dir),
            children: Vec::new(),
            socket: root.join("containerd.sock"),
            node_name: NODE_NAME.to_string(),
            binaries,
            sysctls: config::KERNEL_TUNABLES
                .iter()
                .filter_map(|p| {
                    let path = PathBuf::from(p);
                    std::fs::read_to_string(&path)
                        .ok()
                        .map(|v| (path, v.trim().to_string()))
                })
                .collect(),
            _lock: Some((guard, lock_file)),
            timings: BTreeMap::new(),
        };
        let started = Instant::now();

        // containerd, with the images.
        let files = config::write_all(&root, cp, &node.binaries, &config)?;
        let mut containerd = Command::new(&node.binaries.containerd);
        containerd.arg("--config").arg(&files.containerd_config);
        node.spawn("containerd", containerd, &root.join("containerd.log"))?;
        node.wait_for_socket().await?;
        let mut images = vec![node.binaries.pause_archive.clone()];
        images.extend(config.images.iter().cloned());
        for archive in &images {
            node.import(archive)?;
        }
        node.timings
            .insert("containerd + images", started.elapsed());

        // kubelet, scheduler, controller-manager.
        let mut kubelet = Command::new(&node.binaries.kubelet);
        kubelet
            .arg(format!("--config={}", files.kubelet_config.display()))
            .arg(format!(
                "--kubeconfig={}",
                files.kubelet_kubeconfig.display()
            ))
            .arg(format!("--root-dir={}", root.join("kubelet").display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg("--v=2");
        node.spawn("kubelet", kubelet, &root.join("kubelet.log"))?;
        let [sched_port, cm_port] = free_ports::<2>()?;
        let admin = cp.kubeconfig_path().display().to_string();
        let mut scheduler = Command::new(&node.binaries.kube_scheduler);
        scheduler.args([
            format!("--kubeconfig={admin}"),
            format!("--authentication-kubeconfig={admin}"),
            format!("--authorization-kubeconfig={admin}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={sched_port}"),
            "--v=1".into(),
        ]);
        node.spawn(
            "kube-scheduler",
            scheduler,
            &root.join("kube-scheduler.log"),
        )?;
        let data = cp.data_dir();
        let mut cm = Command::new(&node.binaries.kube_controller_manager);
        cm.args([
            format!("--kubeconfig={admin}"),
            format!("--authentication-kubeconfig={admin}"),
            format!("--authorization-kubeconfig={admin}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={cm_port}"),
            format!(
                "--service-account-private-key-file={}",
                data.join("sa.key").display()
            ),
            format!("--root-ca-file={}", data.join("ca.crt").display()),
            "--use-service-account-credentials=false".into(),
            "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle".into(),
            "--v=1".into(),
        ]);
        node.spawn(
            "kube-controller-manager",
            cm,
            &root.join("kube-controller-manager.log"),
        )?;
        node.wait_ready(cp).await?;
        node.timings.insert("ready", started.elapsed());
        tracing::info!(elapsed = ?started.elapsed(), node = %node.node_name, "real node ready");
        Ok(node)
    }

    /// The TCP sockets of this process and its descendants (control plane, node programs,
    /// `grader`) whose addresses are not all loopback, including listeners on every
    /// interface: the tests' evidence that test traffic stays on loopback.
    pub fn non_loopback_tcp_sockets() -> Vec<netcheck::TcpSocket> {
        netcheck::tcp_sockets_of_this_process_tree()
            .into_iter()
            .filter(|s| !s.is_loopback())
            .collect()
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.node_name
    }

    /// The node's directory: `kubelet.log`, `containerd.log`, `kube-scheduler.log`,
    /// `kube-controller-manager.log`, the configuration files, kubelet's root dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("node dir").path()
    }

    /// containerd's CRI socket.
    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// The text of one of the node's logs (`"kubelet"`, `"containerd"`, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Creates a PersistentVolume `name` backed by the host directory `host_dir` (hostPath,
    /// `ReadWriteMany`, `capacity`, reclaim policy `Retain`), pre-bound to the claim
    /// `namespace/claim`, for the controller-manager's binder to bind when the claim exists.
    pub async fn create_host_volume(
        &self,
        client: &kube::Client,
        name: &str,
        host_dir: &Path,
        capacity: &str,
        namespace: &str,
        claim: &str,
    ) -> Result<PersistentVolume> {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": { "name": name },
            "spec": {
                "capacity": { "storage": capacity },
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": { "path": host_dir.display().to_string(), "type": "Directory" },
                "claimRef": { "namespace": namespace, "name": claim },
            }
        }))?;
        Api::<PersistentVolume>::all(client.clone())
            .create(&PostParams::default(), &pv)
            .await
            .with_context(|| format!("create PersistentVolume {name}"))
    }

    /// Stops the node: kubelet, scheduler and controller-manager, then every container
    /// (through containerd), containerd, leftover shims, mounts and the bridge; deletes the
    /// directory (kept with `GRADER_TESTKIT_KEEP=1`) and restores the kernel tunables.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        let mut containerd = None;
        for (name, mut child) in self.children.drain(..) {
            if name == "containerd" {
                containerd = Some(child);
                continue;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup::remove_containers(&self.binaries.ctr, &self.socket);
        if let Some(mut child) = containerd {
            let _ = child.kill();
            let _ = child.wait();
        }
        cleanup::teardown(dir.path());
        for (path, value) in &self.sysctls {
            let _ = std::fs::write(path, value);
        }
        if std::env::var("GRADER_TESTKIT_KEEP").as_deref() == Ok("1") {
            eprintln!(
                "kube-testkit: keeping node data in {}",
                dir.path().display()
            );
            let _ = dir.keep();
        } else if let Err(e) = dir.close() {
            tracing::warn!(error = %e, "could not remove the node's directory");
        }
        self._lock = None;
    }

    fn spawn(&mut self, name: &'static str, mut cmd: Command, log: &Path) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = spawn_tied_to_process(cmd).with_context(|| format!("spawn {name}"))?;
        self.children.push((name, child));
        Ok(())
    }

    fn exited(&mut self) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!(
                    "{name} exited ({status}):\n{}",
                    log_tail(&self.dir.as_ref()?.path().join(format!("{name}.log")))
                ));
            }
        }
        None
    }

    async fn wait_for_socket(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(why) = self.exited() {
                bail!("{why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not listen on {} within 30 s:\n{}",
                    self.socket.display(),
                    log_tail(&self.data_dir().join("containerd.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `ctr images import` of one OCI archive into the `k8s.io` namespace.
    fn import(&self, archive: &Path) -> Result<()> {
        let out = Command::new(&self.binaries.ctr)
            .arg("--address")
            .arg(&self.socket)
            .args([
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
            ])
            .arg(archive)
            .output()
            .context("run ctr images import")?;
        if !out.status.success() {
            bail!(
                "ctr images import {} failed: {}{}",
                archive.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn wait_ready(&mut self, cp: &ControlPlane) -> Result<()> {
        let nodes = Api::<Node>::all(cp.client().await?);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = nodes
                .get_opt(&self.node_name)
                .await?
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
            if let Some(why) = self.exited() {
                bail!("{why}");
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not Ready after {READY_TIMEOUT:?}:\n{}",
                    self.node_name,
                    log_tail(&self.data_dir().join("kubelet.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An exclusive lock on `<cache>/node/node.lock` (blocks until the other node stops).
fn machine_lock() -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let base = match std::env::var_os("GRADER_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/grader"),
    };
    let dir = base.join("node");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("node.lock"))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("flock node.lock");
    }
    Ok(file)
}

fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", path.display())
}

//! A real etcd + kube-apiserver on loopback.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tempfile::TempDir;

use crate::binaries::{Binaries, locate_binaries};
use crate::certs::Pki;
use crate::spawn::{mark_owned, spawn_tied_to_process};

/// ClusterIP of the `kubernetes` Service (first address of the service range). Only
/// configuration: nothing here sends traffic to it.
pub(crate) const SERVICE_IP: &str = "10.96.0.1";
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Service-account token issuer (and default API audience).
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Context (and cluster) name in the kubeconfigs written here.
const CONTEXT: &str = "testkit";
/// How long etcd / kube-apiserver may take to get ready (a 2-core CI machine under load).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A real `etcd` and `kube-apiserver` on loopback, for tests.
///
/// [`ControlPlane::start`] locates the binaries (env `GRADER_KUBE_APISERVER` / `GRADER_ETCD`,
/// else the cache of `e2e/control-plane/build.sh`), generates a CA and certificates (API server
/// serving cert for 127.0.0.1/localhost, admin client cert with `O=system:masters`, a client
/// cert for API server → kubelet calls, a service-account signing key), starts etcd and
/// kube-apiserver on free loopback ports with a temporary data directory, writes an admin
/// kubeconfig (context `testkit`) and waits for `/readyz`.
///
/// The API server runs with `--authorization-mode=Node,RBAC` and its default admission
/// plugins (`NamespaceLifecycle`, `ServiceAccount`, `PodSecurity`, ...). No controller-manager
/// and no scheduler run: nothing creates `default` ServiceAccounts (see
/// [`ControlPlane::create_namespace`]), finishes namespace deletion, garbage-collects owned
/// objects or removes PVC protection finalizers; [`crate::NodeAgent`] binds pods.
///
/// Dropping it kills both processes and deletes the data directory (set
/// `GRADER_TESTKIT_KEEP=1` to keep it, with the `etcd.log` and `kube-apiserver.log`). The
/// processes also die with the test process, even when the value is never dropped.
///
/// [`ControlPlane::client`] returns a fresh client each call: create one per tokio runtime.
pub struct ControlPlane {
    dir: Option<TempDir>,
    etcd_dir: Option<TempDir>,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    server: String,
    kubeconfig: PathBuf,
    ca_pem: String,
    token_configs: AtomicUsize,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    ///
    /// Returns `Ok(None)` after printing a loud `SKIPPED: ...` message to stderr when the
    /// binaries are missing and env `CI` is not `"true"`; under `CI=true` a missing binary is
    /// an error (CI must not pass by skipping).
    pub async fn start() -> Result<Option<ControlPlane>> {
        match locate_binaries() {
            Ok(binaries) => Self::start_with(binaries).await.map(Some),
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                bail!("kube-testkit: the control-plane binaries are missing and CI=true: {why}")
            }
            Err(why) => {
                eprintln!(
                    "\n========================================================================\n\
                     SKIPPED: kube-testkit cannot start a control plane: {why}\n\
                     (under CI=true this is an error)\n\
                     ========================================================================\n"
                );
                Ok(None)
            }
        }
    }

    /// Like [`ControlPlane::start`], with explicit binaries; never skips.
    pub async fn start_with(binaries: Binaries) -> Result<ControlPlane> {
        crate::spawn::reap_stale_dirs();
        let dir = tempfile::Builder::new().prefix("kube-testkit-").tempdir()?;
        mark_owned(dir.path())?;
        let root = dir.path().to_path_buf();
        // etcd fsyncs every write: keep its data on tmpfs when there is one.
        let etcd_dir = match Path::new("/dev/shm") {
            shm if shm.is_dir() => tempfile::Builder::new()
                .prefix("kube-testkit-etcd-")
                .tempdir_in(shm)
                .ok()
                .filter(|d| mark_owned(d.path()).is_ok()),
            _ => None,
        };
        let etcd_data = etcd_dir
            .as_ref()
            .map_or_else(|| root.join("etcd"), |d| d.path().join("etcd"));

        let pki = Pki::generate()?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = root.join(name);
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };
        let ca_crt = write("ca.crt", &pki.ca.cert)?;
        write("ca.key", &pki.ca.key)?;
        let serving_crt = write("apiserver.crt", &pki.apiserver.cert)?;
        let serving_key = write("apiserver.key", &pki.apiserver.key)?;
        let kubelet_crt = write("apiserver-kubelet-client.crt", &pki.kubelet_client.cert)?;
        let kubelet_key = write("apiserver-kubelet-client.key", &pki.kubelet_client.key)?;
        let sa_key = write("sa.key", &pki.service_account_key)?;
        let sa_pub = write("sa.pub", &pki.service_account_pub)?;

        let [etcd_client, etcd_peer, secure_port] = free_ports::<3>()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let server = format!("https://127.0.0.1:{secure_port}");

        let mut cp = ControlPlane {
            dir: Some(dir),
            etcd_dir,
            etcd: None,
            apiserver: None,
            apiserver_bin: binaries.kube_apiserver,
            apiserver_args: Vec::new(),
            server: server.clone(),
            kubeconfig: root.join("admin.kubeconfig"),
            ca_pem: pki.ca.cert.clone(),
            token_configs: AtomicUsize::new(0),
        };

        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": server,
                "certificate-authority-data": b64(&pki.ca.cert),
            }}],
            "users": [{"name": "testkit-admin", "user": {
                "client-certificate-data": b64(&pki.admin.cert),
                "client-key-data": b64(&pki.admin.key),
            }}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "testkit-admin"}}],
            "current-context": CONTEXT,
        });
        std::fs::write(&cp.kubeconfig, serde_yaml::to_string(&kubeconfig)?)?;

        let started = Instant::now();
        let mut etcd = Command::new(&binaries.etcd);
        etcd.args(["--name", "testkit", "--data-dir"])
            .arg(&etcd_data)
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args([
                "--initial-cluster",
                &format!("testkit={peer_url}"),
                "--initial-cluster-state",
                "new",
            ])
            .args(["--logger", "zap", "--log-level", "warn"]);
        cp.etcd = Some(spawn_logged(etcd, &root.join("etcd.log"))?);
        wait_for_tcp(
            etcd_client,
            cp.etcd.as_mut().expect("etcd"),
            &root.join("etcd.log"),
            "etcd",
        )
        .await?;

        let p = |path: &Path| path.display().to_string();
        cp.apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={secure_port}"),
            format!("--tls-cert-file={}", p(&serving_crt)),
            format!("--tls-private-key-file={}", p(&serving_key)),
            format!("--client-ca-file={}", p(&ca_crt)),
            format!("--service-account-issuer={ISSUER}"),
            format!("--api-audiences={ISSUER}"),
            format!("--service-account-key-file={}", p(&sa_pub)),
            format!("--service-account-signing-key-file={}", p(&sa_key)),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            // As in kubeadm clusters: privileged pods are a matter for PodSecurity admission.
            "--allow-privileged=true".into(),
            // The node agent's log endpoint: InternalIP 127.0.0.1 and the port it publishes in
            // its Node's daemonEndpoints. Its serving certificate is self-signed, so no
            // --kubelet-certificate-authority (upstream's default: not verified).
            format!("--kubelet-client-certificate={}", p(&kubelet_crt)),
            format!("--kubelet-client-key={}", p(&kubelet_key)),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
            "--v=0".into(),
        ];
        cp.spawn_apiserver()?;
        cp.wait_ready().await?;
        tracing::info!(elapsed = ?started.elapsed(), %server, "kube-testkit control plane ready");
        if std::env::var("GRADER_TESTKIT_KEEP").as_deref() == Ok("1") {
            eprintln!(
                "kube-testkit: keeping control-plane data in {}",
                root.display()
            );
        }
        Ok(cp)
    }

    /// The admin kubeconfig (context `testkit`, user with `O=system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The PEM of the cluster CA (signs the API server's serving certificate and client certs).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The data directory: certificates, kubeconfigs, `etcd.log`, `kube-apiserver.log`.
    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("data dir").path()
    }

    /// A new admin client (from the admin kubeconfig).
    pub async fn client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Creates namespace `name` (labelled `pod-security.kubernetes.io/enforce=restricted`,
    /// `enforce-version=latest` when `restricted`) with its `default` ServiceAccount and its
    /// `kube-root-ca.crt` ConfigMap — no controller-manager runs, so nothing else creates them
    /// (and pods cannot be created before the `default` ServiceAccount exists).
    pub async fn create_namespace(&self, name: &str, restricted: bool) -> Result<()> {
        let client = self.client().await?;
        let mut labels = std::collections::BTreeMap::new();
        if restricted {
            labels.insert(
                "pod-security.kubernetes.io/enforce".to_string(),
                "restricted".to_string(),
            );
            labels.insert(
                "pod-security.kubernetes.io/enforce-version".to_string(),
                "latest".to_string(),
            );
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        ignore_exists(
            Api::<ServiceAccount>::namespaced(client.clone(), name)
                .create(&PostParams::default(), &sa)
                .await,
        )
        .with_context(|| format!("create ServiceAccount {name}/default"))?;
        let ca = ConfigMap {
            metadata: ObjectMeta {
                name: Some("kube-root-ca.crt".into()),
                ..Default::default()
            },
            data: Some([("ca.crt".to_string(), self.ca_pem.clone())].into()),
            ..Default::default()
        };
        ignore_exists(
            Api::<ConfigMap>::namespaced(client, name)
                .create(&PostParams::default(), &ca)
                .await,
        )
        .with_context(|| format!("create ConfigMap {name}/kube-root-ca.crt"))?;
        Ok(())
    }

    /// A token for ServiceAccount `ns/sa` from the TokenRequest API (valid one hour, default
    /// audience), e.g. for [`ControlPlane::write_token_kubeconfig`].
    pub async fn service_account_token(&self, ns: &str, sa: &str) -> Result<String> {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client().await?, ns)
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?;
        response
            .status
            .map(|s| s.token)
            .ok_or_else(|| anyhow!("TokenRequest for {ns}/{sa} returned no status"))
    }

    /// Writes a kubeconfig (context `testkit`, default namespace `namespace`) that
    /// authenticates with the bearer `token`, for RBAC tests; returns its path.
    pub fn write_token_kubeconfig(&self, token: &str, namespace: &str) -> Result<PathBuf> {
        let n = self.token_configs.fetch_add(1, Ordering::Relaxed);
        let path = self.data_dir().join(format!("token-{n}.kubeconfig"));
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": self.server,
                "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
            }}],
            "users": [{"name": "token-user", "user": {"token": token}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "token-user", "namespace": namespace}}],
            "current-context": CONTEXT,
        });
        std::fs::write(&path, serde_yaml::to_string(&config)?)?;
        Ok(path)
    }

    /// Kills kube-apiserver (SIGKILL) and starts it again with the same flags, ports and data
    /// (etcd keeps running), for "API server restarted mid-watch" tests; returns when
    /// `/readyz` is ok again.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn_apiserver()?;
        self.wait_ready().await
    }

    fn spawn_apiserver(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.apiserver_bin);
        cmd.args(&self.apiserver_args);
        self.apiserver = Some(spawn_logged(
            cmd,
            &self.data_dir().join("kube-apiserver.log"),
        )?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let log = self.data_dir().join("kube-apiserver.log");
        loop {
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let last_error = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    bail!(
                        "{name} exited ({status}) before the API server got ready:\n{}",
                        log_tail(&log)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?} (last: {last_error}):\n{}",
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var("GRADER_TESTKIT_KEEP").as_deref() == Ok("1") {
            for dir in [self.dir.take(), self.etcd_dir.take()]
                .into_iter()
                .flatten()
            {
                let _ = dir.keep();
            }
        }
    }
}

/// A kube client from a kubeconfig file (its current context).
pub(crate) async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let options = KubeConfigOptions {
        context: Some(CONTEXT.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

fn ignore_exists<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// `N` distinct free loopback ports (bound together, then released).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let program = cmd.get_program().to_owned();
    spawn_tied_to_process(cmd).with_context(|| format!("spawn {}", Path::new(&program).display()))
}

async fn wait_for_tcp(port: u16, child: &mut Child, log: &Path, name: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited ({status}):\n{}", log_tail(log));
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not listen on port {port} within {READY_TIMEOUT:?}:\n{}",
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", path.display())
}

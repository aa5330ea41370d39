//! The files the node's processes read, all inside the node's directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::json;

use super::{NodeBinaries, RealNodeConfig, free_ports, pki};
use crate::ControlPlane;

/// The kernel tunables kubelet sets (`protectKernelDefaults: false`); the node restores them.
pub(super) const KERNEL_TUNABLES: &[&str] = &[
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/vm/panic_on_oom",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/panic_on_oops",
];

/// The Linux bridge of the pod network (one node at a time, so a fixed name).
pub(crate) const BRIDGE: &str = "grader-cni0";
/// The pod network.
const POD_SUBNET: &str = "10.88.0.0/16";

/// Paths of the written files.
pub(super) struct Files {
    pub containerd_config: PathBuf,
    pub kubelet_config: PathBuf,
    pub kubelet_kubeconfig: PathBuf,
}

/// Writes containerd's configuration, the CNI network, kubelet's certificates, kubeconfig
/// and `KubeletConfiguration` under `root`.
pub(super) fn write_all(
    root: &Path,
    cp: &ControlPlane,
    binaries: &NodeBinaries,
    config: &RealNodeConfig,
) -> Result<Files> {
    let write = |name: &str, contents: &str| -> Result<PathBuf> {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    };
    let p = |path: &Path| path.display().to_string();

    // The pod network: a bridge with host-local addresses, state inside the node's dir.
    let cni = json!({
        "cniVersion": "0.4.0",
        "name": "grader-testnode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "dataDir": p(&root.join("cni-ipam")),
                }
            },
            { "type": "loopback" }
        ]
    });
    write(
        "cni/10-grader.conflist",
        &serde_json::to_string_pretty(&cni)?,
    )?;

    // containerd: everything under root; the CRI plugin with overlayfs, runc with the
    // cgroupfs driver (no systemd here), the locally built sandbox image.
    let containerd = format!(
        r#"version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine's root may lack
  # (runc then fails with "failed to update /proc/self/oom_score_adj: Permission denied"):
  # containerd clamps it to its own value instead.
  restrict_oom_score_adj = true
  disable_cgroup = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{root}/cni"
    max_conf_num = 1
"#,
        root = root.display(),
        socket = root.join("containerd.sock").display(),
        pause = binaries.pause_image,
        runc = binaries.runc.display(),
        cni_bin = binaries.cni_bin_dir.display(),
    );
    let containerd_config = write("containerd.toml", &containerd)?;

    // kubelet: certificates from the control plane's CA, a kubeconfig, its configuration.
    let (client, serving) = pki::kubelet_certs(cp.data_dir(), super::NODE_NAME)?;
    let serving_crt = write("kubelet/pki/kubelet.crt", &serving.cert)?;
    let serving_key = write("kubelet/pki/kubelet.key", &serving.key)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testkit", "cluster": {
            "server": cp.server_url(),
            "certificate-authority-data": b64(cp.ca_pem()),
        }}],
        "users": [{"name": "kubelet", "user": {
            "client-certificate-data": b64(&client.cert),
            "client-key-data": b64(&client.key),
        }}],
        "contexts": [{"name": "testkit", "context": {"cluster": "testkit", "user": "kubelet"}}],
        "current-context": "testkit",
    });
    let kubelet_kubeconfig = write("kubelet.kubeconfig", &serde_yaml::to_string(&kubeconfig)?)?;
    let [port, healthz] = free_ports::<2>()?;
    let kubelet = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // Loopback only: the API server reaches kubelet (pods/log) at the Node's InternalIP,
        // which is 127.0.0.1 (see NODE_NAME); the read-only port is off.
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "tlsCertFile": p(&serving_crt),
        "tlsPrivateKeyFile": p(&serving_key),
        // Only clients with a certificate of the cluster CA (the API server's) get in.
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": false },
            "x509": { "clientCAFile": p(&cp.data_dir().join("ca.crt")) },
        },
        "authorization": { "mode": "AlwaysAllow" },
        "containerRuntimeEndpoint": format!("unix://{}", root.join("containerd.sock").display()),
        // No systemd on this machine, and cgroup v1: the cgroupfs driver.
        "cgroupDriver": "cgroupfs",
        "failSwapOn": false,
        "clusterDomain": "cluster.local",
        "maxPods": config.max_pods,
        "serializeImagePulls": false,
        // The images are imported, never pulled: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        // Evict only when the machine is really short (not because a CI disk is 90% full);
        // the per-container limits (memory, ephemeral-storage) are still enforced.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "evictionPressureTransitionPeriod": "5s",
        "fileCheckFrequency": "5s",
        "syncFrequency": "5s",
        "nodeStatusUpdateFrequency": "5s",
        "registerNode": true,
        "shutdownGracePeriod": "0s",
    });
    let kubelet_config = write("kubelet.yaml", &serde_yaml::to_string(&kubelet)?)?;
    Ok(Files {
        containerd_config,
        kubelet_config,
        kubelet_kubeconfig,
    })
}

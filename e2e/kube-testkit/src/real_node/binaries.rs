//! Where the real node's programs come from: kubelet, kube-scheduler and
//! kube-controller-manager built by `e2e/control-plane/build.sh --node` (same release as the
//! API server), the pause image built there too, and Debian's containerd, runc and CNI
//! plugins (`e2e/control-plane/install-node-packages.sh`).

use std::path::{Path, PathBuf};

use crate::binaries::KUBE_APISERVER_VERSION;

/// The version of the node's sandbox image that `build.sh --node` builds (`PAUSE_VERSION`);
/// a unit test keeps the two in step.
pub const PAUSE_VERSION: &str = "1";

/// Paths of everything a [`super::RealNode`] runs.
#[derive(Clone, Debug)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub runc: PathBuf,
    /// The directory of the CNI plugins (`bridge`, `host-local`, `loopback`).
    pub cni_bin_dir: PathBuf,
    /// The OCI archive of the sandbox image ...
    pub pause_archive: PathBuf,
    /// ... and its reference (containerd's `sandbox_image`).
    pub pause_image: String,
}

fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("GRADER_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/grader"),
    };
    Some(base.join("control-plane"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `env` if set, else `file` in build.sh's cache.
fn built(env: &str, file: &str, missing: &mut Vec<String>) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = cache_dir().unwrap_or_default().join(file);
    if !path.is_file() {
        missing.push(format!("{} (or {env})", path.display()));
    }
    path
}

/// The first of `candidates` that is an executable file.
fn system(candidates: &[&str], missing: &mut Vec<String>) -> PathBuf {
    match candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| is_executable(p))
    {
        Some(path) => path,
        None => {
            missing.push(candidates.join(" / "));
            PathBuf::from(candidates[0])
        }
    }
}

/// Locates the node's programs; the error lists what is missing and how to get it.
pub fn locate_node_binaries() -> Result<NodeBinaries, String> {
    let mut missing = Vec::new();
    let v = KUBE_APISERVER_VERSION;
    let kubelet = built("GRADER_KUBELET", &format!("kubelet-{v}"), &mut missing);
    let kube_scheduler = built(
        "GRADER_KUBE_SCHEDULER",
        &format!("kube-scheduler-{v}"),
        &mut missing,
    );
    let kube_controller_manager = built(
        "GRADER_KUBE_CONTROLLER_MANAGER",
        &format!("kube-controller-manager-{v}"),
        &mut missing,
    );
    let pause_archive = built(
        "GRADER_PAUSE_IMAGE_ARCHIVE",
        &format!("pause-{PAUSE_VERSION}.oci.tar"),
        &mut missing,
    );
    let built_missing = missing.len();
    let containerd = system(&["/usr/bin/containerd"], &mut missing);
    let ctr = system(&["/usr/bin/ctr"], &mut missing);
    let runc = system(&["/usr/sbin/runc", "/usr/bin/runc"], &mut missing);
    let bridge = system(
        &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
        &mut missing,
    );
    if missing.is_empty() {
        return Ok(NodeBinaries {
            kubelet,
            kube_scheduler,
            kube_controller_manager,
            containerd,
            ctr,
            runc,
            cni_bin_dir: bridge.parent().unwrap_or(Path::new("/")).to_path_buf(),
            pause_archive,
            pause_image: format!("grader.invalid/pause:{PAUSE_VERSION}"),
        });
    }
    let mut how = Vec::new();
    if built_missing > 0 {
        how.push("`bash e2e/control-plane/build.sh --node`");
    }
    if missing.len() > built_missing {
        how.push("`bash e2e/control-plane/install-node-packages.sh` (as root)");
    }
    Err(format!(
        "missing: {}; run {}",
        missing.join(", "),
        how.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause version here must be the one build.sh builds, or the node never starts.
    #[test]
    fn pause_version_matches_build_script() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/build.sh"),
        )
        .expect("read build.sh");
        assert!(script.contains(&format!("PAUSE_VERSION={PAUSE_VERSION}\n")));
        let node_mod = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/kube-node/go.mod"),
        )
        .expect("read kube-node/go.mod");
        assert!(node_mod.contains(&format!("k8s.io/kubernetes {KUBE_APISERVER_VERSION}")));
    }
}

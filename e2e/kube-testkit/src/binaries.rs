//! Where the control-plane binaries come from.

use std::path::{Path, PathBuf};

/// The `kube-apiserver` version that `e2e/control-plane/build.sh` builds (matches the
/// `k8s-openapi` feature `v1_34`). A unit test keeps the two in step.
pub const KUBE_APISERVER_VERSION: &str = "v1.34.4";
/// The `etcd` version that `e2e/control-plane/build.sh` provides from Debian's `etcd-server`
/// package. A unit test keeps the two in step.
pub const ETCD_VERSION: &str = "v3.4.23";
/// The `etcd` version that `build.sh` builds from source when Debian's is not available.
pub const ETCD_SOURCE_VERSION: &str = "v3.6.4";

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

/// The cache directory of `build.sh`: `${GRADER_CACHE:-$HOME/.cache/grader}/control-plane`.
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

fn locate(env: &str, files: &[String]) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "{env}={} is not an executable file",
                path.display()
            ))
        };
    }
    let Some(dir) = cache_dir() else {
        return Err(format!(
            "{env} is unset and neither GRADER_CACHE nor HOME is set"
        ));
    };
    let candidates: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| {
            let names: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            format!("{env} is unset and {} does not exist", names.join(" / "))
        })
}

/// Locates the binaries: env `GRADER_KUBE_APISERVER` / `GRADER_ETCD`, else the cache of
/// `e2e/control-plane/build.sh` (`kube-apiserver-<version>`, `etcd-<version>` for Debian's or
/// the source-built version).
/// The error says what is missing and how to build it.
pub fn locate_binaries() -> Result<Binaries, String> {
    let apiserver = locate(
        "GRADER_KUBE_APISERVER",
        &[format!("kube-apiserver-{KUBE_APISERVER_VERSION}")],
    );
    let etcd = locate(
        "GRADER_ETCD",
        &[
            format!("etcd-{ETCD_VERSION}"),
            format!("etcd-{ETCD_SOURCE_VERSION}"),
        ],
    );
    match (apiserver, etcd) {
        (Ok(kube_apiserver), Ok(etcd)) => Ok(Binaries {
            kube_apiserver,
            etcd,
        }),
        (a, e) => {
            let missing: Vec<String> = [a.err(), e.err()].into_iter().flatten().collect();
            Err(format!(
                "{}; run `bash e2e/control-plane/build.sh` to build them",
                missing.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions here must be the ones build.sh produces, or tests would skip forever.
    #[test]
    fn versions_match_build_script() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/build.sh"),
        )
        .expect("read build.sh");
        assert!(
            script.contains(&format!("KUBE_VERSION={KUBE_APISERVER_VERSION}\n")),
            "build.sh does not build kube-apiserver {KUBE_APISERVER_VERSION}"
        );
        assert!(
            script.contains(&format!("ETCD_VERSION={ETCD_VERSION}\n")),
            "build.sh does not provide etcd {ETCD_VERSION}"
        );
        assert!(
            script.contains(&format!("ETCD_SOURCE_VERSION={ETCD_SOURCE_VERSION}\n")),
            "build.sh does not build etcd {ETCD_SOURCE_VERSION}"
        );
        let etcd_mod = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/etcd/go.mod"),
        )
        .expect("read etcd/go.mod");
        assert!(etcd_mod.contains(&format!("go.etcd.io/etcd/server/v3 {ETCD_SOURCE_VERSION}")));
        let apiserver_mod = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/kube-apiserver/go.mod"),
        )
        .expect("read kube-apiserver/go.mod");
        assert!(apiserver_mod.contains(&format!("k8s.io/kubernetes {KUBE_APISERVER_VERSION}")));
    }
}

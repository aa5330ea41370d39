//! A container's volume mounts: which host directory goes where (`subPath` included), and
//! the mount points made ready before the bind mounts.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::env::expand;
use super::prepare::{PrepareError, Setup};
use super::volumes::stays_inside;

/// A bind mount of `source` (host) onto `target` (the container's `mountPath`).
#[derive(Clone, Debug)]
pub(crate) struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

impl Setup<'_> {
    /// The bind mounts of `container`, each volume's host directory made once. Without
    /// private mounts (not root) there are none: each host directory must then *be* its
    /// `mountPath`.
    pub(super) async fn mounts(
        &self,
        spec: &PodSpec,
        container: &Container,
        vars: &HashMap<String, String>,
    ) -> Result<Vec<Mount>, PrepareError> {
        let mut sources: HashMap<String, PathBuf> = HashMap::new();
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            // Without bind mounts the service-account token volume cannot be mounted anyway.
            if !self.shared.private_mounts && vm.name.starts_with("kube-api-access-") {
                continue;
            }
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == vm.name)
                .ok_or_else(|| {
                    PrepareError::Config(format!(
                        "volumeMount \"{}\" names no volume of the pod",
                        vm.name
                    ))
                })?;
            let source = match sources.get(&vm.name) {
                Some(source) => source.clone(),
                None => {
                    let source = self.volume_source(volume).await?;
                    sources.insert(vm.name.clone(), source.clone());
                    source
                }
            };
            let sub_path = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(sub), _) if !sub.is_empty() => sub.clone(),
                (_, Some(expr)) if !expr.is_empty() => expand(expr, vars),
                _ => String::new(),
            };
            let source = if sub_path.is_empty() {
                source
            } else {
                let relative = Path::new(&sub_path);
                if !stays_inside(relative) {
                    return Err(PrepareError::Config(format!(
                        "subPath \"{sub_path}\" must be a relative path without '..'"
                    )));
                }
                let source = source.join(relative);
                if !source.exists() {
                    std::fs::create_dir_all(&source).map_err(|e| {
                        PrepareError::Start(format!("create subPath {}: {e}", source.display()))
                    })?;
                }
                source
            };
            let target = PathBuf::from(&vm.mount_path);
            if !self.shared.private_mounts {
                let same = match (source.canonicalize(), target.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => source == target,
                };
                if !same {
                    return Err(PrepareError::Start(format!(
                        "volumeMount \"{}\": mountPath {} is not its host directory {}; without root the test \
                         node agent cannot bind-mount, so the paths must be equal",
                        vm.name,
                        target.display(),
                        source.display()
                    )));
                }
                continue;
            }
            mounts.push(Mount {
                source,
                target,
                read_only: vm.read_only.unwrap_or(false),
            });
        }
        if self.shared.private_mounts {
            prepare_mount_points(&mut mounts)
                .map_err(|e| PrepareError::Start(format!("create mount points: {e}")))?;
        }
        Ok(mounts)
    }
}

/// Lexically normalizes an absolute path (`.`/`..` resolved), for mount bookkeeping.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Orders mounts parent-first and creates every mount point where it will physically be:
/// under an earlier mount's *source* when it lies inside that mount, else on the host.
pub(crate) fn prepare_mount_points(mounts: &mut [Mount]) -> std::io::Result<()> {
    for mount in mounts.iter_mut() {
        mount.target = normalize(&mount.target);
    }
    mounts.sort_by_key(|m| m.target.components().count());
    for i in 0..mounts.len() {
        let target = &mounts[i].target;
        let physical = mounts[..i]
            .iter()
            .rev()
            .find_map(|outer| {
                target
                    .strip_prefix(&outer.target)
                    .ok()
                    .map(|rel| outer.source.join(rel))
            })
            .unwrap_or_else(|| target.clone());
        if mounts[i].source.is_dir() {
            std::fs::create_dir_all(&physical)?;
        } else if !physical.exists() {
            if let Some(parent) = physical.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::create(&physical)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_follow_outer_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let inner = dir.path().join("inner");
        std::fs::create_dir_all(&outer).unwrap();
        std::fs::create_dir_all(&inner).unwrap();
        let base = dir.path().join("view");
        let mut mounts = vec![
            Mount {
                source: inner,
                target: base.join("a/b/../b/c"),
                read_only: false,
            },
            Mount {
                source: outer.clone(),
                target: base.join("a"),
                read_only: false,
            },
        ];
        prepare_mount_points(&mut mounts).unwrap();
        assert_eq!(mounts[0].target, base.join("a"));
        assert_eq!(mounts[1].target, base.join("a/b/c"));
        assert!(base.join("a").is_dir());
        assert!(
            outer.join("b/c").is_dir(),
            "inner mount point is created inside the outer source"
        );
        assert!(!base.join("a/b").exists());
    }
}

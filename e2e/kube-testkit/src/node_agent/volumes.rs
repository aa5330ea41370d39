//! The host directory behind each volume of a pod: configured directories, claims,
//! hostPaths, emptyDirs, and configMap/secret/downwardAPI/projected files written out.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume};

use super::objects::{DataKind, field_value};
use super::prepare::{PrepareError, Setup};

impl Setup<'_> {
    /// The host directory backing `volume` (see `NodeAgentConfig::volume_dirs`).
    pub(super) async fn volume_source(&self, volume: &Volume) -> Result<PathBuf, PrepareError> {
        let config = &self.shared.config;
        if let Some(dir) = config.volume_dirs.get(&volume.name) {
            return Ok(dir.clone());
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            return config.claim_dirs.get(&claim.claim_name).cloned().ok_or_else(|| {
                PrepareError::Config(format!(
                    "persistentVolumeClaim \"{}\" (volume \"{}\") has no host directory in NodeAgentConfig::claim_dirs",
                    claim.claim_name, volume.name
                ))
            });
        }
        if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            if host_path.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&path).map_err(|e| {
                    PrepareError::Start(format!("create hostPath {}: {e}", path.display()))
                })?;
            }
            return Ok(path);
        }
        let dir = self.pod_dir.join("volumes").join(&volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| PrepareError::Start(format!("create {}: {e}", dir.display())))?;
        if volume.empty_dir.is_some() {
            return Ok(dir);
        }
        if let Some(cm) = &volume.config_map {
            self.write_data(&dir, DataKind::ConfigMap, &cm.name, cm.optional, &cm.items)
                .await?;
            return Ok(dir);
        }
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref().unwrap_or_default();
            self.write_data(&dir, DataKind::Secret, name, secret.optional, &secret.items)
                .await?;
            return Ok(dir);
        }
        if let Some(downward) = &volume.downward_api {
            self.write_downward(&dir, &downward.items)?;
            return Ok(dir);
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    self.write_data(&dir, DataKind::ConfigMap, &cm.name, cm.optional, &cm.items)
                        .await?;
                } else if let Some(secret) = &source.secret {
                    let (name, optional) = (&secret.name, secret.optional);
                    self.write_data(&dir, DataKind::Secret, name, optional, &secret.items)
                        .await?;
                } else if let Some(downward) = &source.downward_api {
                    self.write_downward(&dir, &downward.items)?;
                } else if let Some(token) = &source.service_account_token {
                    let value = self
                        .service_account_token(token.audience.clone(), token.expiration_seconds)
                        .await?;
                    write_file(&dir, &token.path, value.as_bytes())?;
                } else {
                    return Err(PrepareError::Config(format!(
                        "volume \"{}\": this projected source is not supported by the test node agent",
                        volume.name
                    )));
                }
            }
            return Ok(dir);
        }
        Err(PrepareError::Config(format!(
            "volume \"{}\": this volume type is not supported by the test node agent",
            volume.name
        )))
    }

    /// Writes the data of ConfigMap or Secret `name` into `dir`: the listed `items`, or
    /// every key as a file of its name.
    async fn write_data(
        &self,
        dir: &Path,
        kind: DataKind,
        name: &str,
        optional: Option<bool>,
        items: &Option<Vec<KeyToPath>>,
    ) -> Result<(), PrepareError> {
        let data = self.data(kind, name, optional.unwrap_or(false)).await?;
        write_items(dir, &data, items.as_deref())
    }

    /// Writes each downward-API item (a supported `fieldRef`) into `dir`.
    fn write_downward(
        &self,
        dir: &Path,
        items: &Option<Vec<DownwardAPIVolumeFile>>,
    ) -> Result<(), PrepareError> {
        for item in items.iter().flatten() {
            let path = &item.path;
            let field = item.field_ref.as_ref().map(|f| f.field_path.as_str());
            let value = field
                .and_then(|f| field_value(self.pod, f))
                .ok_or_else(|| {
                    PrepareError::Config(format!(
                        "downwardAPI item {path}: only supported fieldRefs are allowed"
                    ))
                })?;
            write_file(dir, path, value.as_bytes())?;
        }
        Ok(())
    }
}

/// Whether `relative` is a relative path of plain names only (no `..`, no root): joined to
/// a directory, it stays inside it.
pub(super) fn stays_inside(relative: &Path) -> bool {
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

fn write_file(dir: &Path, relative: &str, contents: &[u8]) -> Result<(), PrepareError> {
    let relative_path = Path::new(relative);
    if !stays_inside(relative_path) {
        return Err(PrepareError::Config(format!(
            "volume file path \"{relative}\" must be relative without '..'"
        )));
    }
    let path = dir.join(relative_path);
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, contents));
    result.map_err(|e| PrepareError::Start(format!("write {}: {e}", path.display())))
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> Result<(), PrepareError> {
    match items {
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    PrepareError::Config(format!("key \"{}\" not found", item.key))
                })?;
                write_file(dir, &item.path, value)?;
            }
        }
        None => {
            for (key, value) in data {
                write_file(dir, key, value)?;
            }
        }
    }
    Ok(())
}

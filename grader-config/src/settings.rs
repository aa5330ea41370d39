//! The one conversion from a loaded configuration into everything it configures.
//!
//! [`Settings::from_config`] turns the operator-facing [`GraderConfig`] (seconds, MiB, text
//! quantities, a backend name) into the settings the libraries take: the pipeline's
//! [`ExecutorConfig`], the local backend's program and warm pool, and the kube backend's
//! [`KubeSettings`]. The loader runs it while it validates, so a configuration that loads is
//! one that converts, and every caller (the commands, `grader serve`, the benches) gets the same
//! values from [`crate::Loaded::settings`] without converting again.

use std::path::PathBuf;
use std::time::Duration;

use grader_kube::KubeSettings;
use grader_local::{CellTimeouts, ExecutorConfig, PoolSettings};

use crate::model::{Backend, GraderConfig, Quantity};

/// Everything the configuration configures.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The pipeline's settings.
    pub executor: ExecutorConfig,
    /// The git program (both backends run git locally).
    pub git_executable: PathBuf,
    /// Which backend grades.
    pub backend: Backend,
    /// The local backend's settings (also read when the backend is `kube`, for nothing).
    pub local: LocalSettings,
    /// The kube backend's settings (also used by `grader pod` and `grader gc`).
    pub kube: KubeSettings,
}

/// Settings of the local backend.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// The grading tool.
    pub convert_executable: PathBuf,
    /// Most bytes of the tool's output kept per job.
    pub log_cap_bytes: usize,
    /// The warm pool as configured; its `pool.workers` is 0 when jobs run as plain processes
    /// (see [`LocalSettings::warm_pool`]).
    pub warm: WarmSettings,
}

impl LocalSettings {
    /// The warm pool to start, or `None` when every job runs as a plain process.
    pub fn warm_pool(&self) -> Option<&WarmSettings> {
        (self.warm.pool.workers > 0).then_some(&self.warm)
    }
}

/// Settings of the warm worker pool.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmSettings {
    /// Size, recycling and health checks of the pool.
    pub pool: PoolSettings,
    /// How long a worker may take to import the tool.
    pub start_timeout: Duration,
}

/// A value the configuration's types accept but its settings cannot be made from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// The three cell timeouts are not ordered `0 < min < default < max`.
    #[error(transparent)]
    CellTimeouts(#[from] grader_model::InvalidTimeouts),
    /// One key's value is unusable.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
}

impl Settings {
    /// Converts a configuration; fails naming the key when a value cannot be used.
    pub fn from_config(cfg: &GraderConfig) -> Result<Settings, SettingError> {
        let log_cap_bytes = usize::try_from(cfg.log_cap_bytes).unwrap_or(usize::MAX);
        let executor = ExecutorConfig {
            service_dir: cfg.service_dir.clone(),
            relative_input_path: relative("relative_input_path", &cfg.relative_input_path)?,
            relative_output_path: relative("relative_output_path", &cfg.relative_output_path)?,
            timeouts: CellTimeouts::new(
                cfg.min_cell_timeout,
                cfg.default_cell_timeout,
                cfg.max_cell_timeout,
            )?,
            max_grading_time: Duration::from_secs(cfg.max_grading_time),
            log_cap_bytes,
            keep_workdirs: cfg.keep_workdirs,
        };
        let l = &cfg.local;
        let warm = WarmSettings {
            pool: PoolSettings {
                workers: l.warm_workers as usize,
                recycle_after_jobs: l.warm_recycle_after,
                max_rss_growth: l.warm_max_rss_growth_mib.saturating_mul(1024 * 1024),
                prestart_kernels: l.warm_prestart_kernels,
                ..PoolSettings::default()
            },
            start_timeout: Duration::from_secs(l.warm_start_timeout),
        };
        Ok(Settings {
            executor,
            git_executable: cfg.git_executable.clone(),
            backend: cfg.backend,
            local: LocalSettings {
                convert_executable: cfg.convert_executable.clone(),
                log_cap_bytes,
                warm,
            },
            kube: kube_settings(cfg),
        })
    }

    /// The same settings with `workers` warm workers, unless the configuration asked for a
    /// number itself (`explicit`): the rule of `grader serve` and `grader batch`, which keep
    /// one warm worker per job they grade at once.
    /// The pool keeps every other `local.warm_*` key as configured.
    pub fn with_default_warm_workers(mut self, workers: usize, explicit: bool) -> Settings {
        if !explicit {
            self.local.warm.pool.workers = workers;
        }
        self
    }
}

fn relative(key: &'static str, path: &std::path::Path) -> Result<String, SettingError> {
    let text = path.to_str().ok_or_else(|| SettingError::Invalid {
        key,
        reason: format!("{path:?} is not valid UTF-8"),
    })?;
    grader_model::safe_path::check_relative(key, text).map_err(|e| SettingError::Invalid {
        key,
        reason: format!("{:?} is refused: {}", e.value, e.why),
    })?;
    Ok(text.to_owned())
}

/// The `[kube]` table, and the two top-level keys a pod needs, as the kube backend's settings.
fn kube_settings(cfg: &GraderConfig) -> KubeSettings {
    let k = &cfg.kube;
    let quantities = |m: &std::collections::BTreeMap<String, Quantity>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().to_string()))
            .collect()
    };
    KubeSettings {
        namespace: k.namespace.clone(),
        context: k.context.clone(),
        image_config_path: k.image_config_path.clone(),
        default_image_name: k.default_image_name.clone(),
        volume: k.volume.clone(),
        extra_volumes: k.extra_volumes.clone(),
        extra_volume_mounts: k.extra_volume_mounts.clone(),
        labels: k.labels.clone(),
        annotations: k.annotations.clone(),
        image_pull_policy: k.image_pull_policy.to_string(),
        image_pull_secrets: k.image_pull_secrets.clone(),
        tolerations: k.tolerations.clone(),
        node_selector: k.node_selector.clone(),
        uid: k.uid,
        resources: grader_kube::Resources {
            requests: quantities(&k.resources.requests),
            limits: quantities(&k.resources.limits),
        },
        extra_pod_config: k.extra_pod_config.clone(),
        extra_container_config: k.extra_container_config.clone(),
        poll_interval: Duration::from_secs(k.poll_interval),
        unschedulable_grace: Duration::from_secs(k.unschedulable_grace),
        hardening: k.hardening,
        convert_executable: cfg.convert_executable.to_string_lossy().into_owned(),
        log_cap_bytes: usize::try_from(cfg.log_cap_bytes).unwrap_or(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_gives_the_libraries_defaults() {
        let s = Settings::from_config(&GraderConfig::default()).unwrap();
        assert_eq!(s.executor, ExecutorConfig::new(crate::DEFAULT_SERVICE_DIR));
        assert_eq!(s.kube, KubeSettings::default());
        assert_eq!(s.local.warm_pool(), None);
        assert_eq!(
            s.local.convert_executable,
            PathBuf::from(grader_model::DEFAULT_CONVERT_EXECUTABLE)
        );
        let defaults = crate::model::LocalConfig::default();
        let pool = PoolSettings::default();
        assert_eq!(defaults.warm_recycle_after, pool.recycle_after_jobs);
        assert_eq!(
            defaults.warm_max_rss_growth_mib * 1024 * 1024,
            pool.max_rss_growth
        );
        assert_eq!(defaults.warm_prestart_kernels, pool.prestart_kernels);
        assert_eq!(s.local.warm.pool, PoolSettings { workers: 0, ..pool });
    }

    #[test]
    fn serve_and_batch_get_one_warm_worker_per_job_unless_the_configuration_says() {
        let s = Settings::from_config(&GraderConfig::default()).unwrap();
        let warm = s.clone().with_default_warm_workers(3, false);
        assert_eq!(warm.local.warm_pool().unwrap().pool.workers, 3);
        assert_eq!(
            s.clone()
                .with_default_warm_workers(3, true)
                .local
                .warm_pool(),
            None
        );
        assert_eq!(
            s.with_default_warm_workers(0, false).local.warm_pool(),
            None
        );
        let mut cfg = GraderConfig::default();
        cfg.local.warm_workers = 2;
        let s = Settings::from_config(&cfg).unwrap();
        let warm = s.with_default_warm_workers(5, true);
        assert_eq!(warm.local.warm_pool().unwrap().pool.workers, 2);
    }

    #[test]
    fn the_default_warm_workers_keep_every_other_configured_warm_key() {
        let mut cfg = GraderConfig::default();
        cfg.local.warm_recycle_after = 7;
        cfg.local.warm_max_rss_growth_mib = 9;
        cfg.local.warm_start_timeout = 11;
        cfg.local.warm_prestart_kernels = false;
        let s = Settings::from_config(&cfg)
            .unwrap()
            .with_default_warm_workers(3, false);
        let warm = s.local.warm_pool().unwrap();
        assert_eq!(warm.pool.workers, 3);
        assert_eq!(warm.pool.recycle_after_jobs, 7);
        assert_eq!(warm.pool.max_rss_growth, 9 * 1024 * 1024);
        assert!(!warm.pool.prestart_kernels);
        assert_eq!(warm.start_timeout, Duration::from_secs(11));
    }
}

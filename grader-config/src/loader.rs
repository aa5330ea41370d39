//! Loading the configuration from its layers: defaults < system file < local
//! file (or `--config` files) < `GRADER_*` environment variables < flags.
//!
//! The sources live here: which files and variables are read, in which order, and how they
//! merge; [`crate::overrides`] holds the flags, [`crate::keys`] reads variables and flags into
//! keys, [`crate::layers`] turns each source into a layer, [`crate::validate`] checks the
//! result and [`crate::loaded`] is what a caller gets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::Figment;
use figment::value::{Dict, Value as FigValue};

use crate::context::*;
use crate::error::{ConfigError, Layer};
use crate::keys::*;
use crate::layers::*;
use crate::loaded::*;
use crate::model::GraderConfig;
use crate::overrides::*;
use crate::schema::ENV_PREFIX;
use crate::validate::*;

/// The system-wide configuration file, read when it exists.
pub const SYSTEM_CONFIG_FILE: &str = "/etc/grader/grader.toml";
/// The local configuration file (relative to the working directory), read when
/// it exists and no `--config` file is given.
pub const LOCAL_CONFIG_FILE: &str = "grader.toml";
/// `GRADER_*` variables that the `grader` binary and the project's scripts
/// read and that are therefore not configuration keys: `GRADER_LOG` (log
/// filter), `GRADER_CACHE` (cache directory), `GRADER_VENV` (virtual
/// environment of the grading tool), `GRADER_CONFIG` (configuration file, like
/// `--config`), and the test and set-up scripts' `GRADER_CONVERT`,
/// `GRADER_KUBE_APISERVER`, `GRADER_ETCD`, `GRADER_ETCD_FROM_SOURCE`,
/// `GRADER_TESTKIT_KEEP`, the real test node's (`GRADER_KUBELET`, `GRADER_GRADING_IMAGE`, ...)
/// and the benchmark's, and Grader Service's own (`GRADER_DB_URL`, `GRADER_COOKIE_SECRET`,
/// `GRADER_HOST`, `GRADER_HOST_URL`, `GRADER_PORT`, `GRADER_SERVICE_DIRECTORY`), so that
/// `grader` can run in the environment of Grader Service's worker.
pub const RESERVED_ENV_VARS: &[&str] = &[
    "GRADER_LOG",
    "GRADER_CACHE",
    "GRADER_VENV",
    "GRADER_CONFIG",
    "GRADER_CONVERT",
    "GRADER_KUBE_APISERVER",
    "GRADER_ETCD",
    "GRADER_ETCD_FROM_SOURCE",
    "GRADER_TESTKIT_KEEP",
    "GRADER_KUBELET",
    "GRADER_KUBE_SCHEDULER",
    "GRADER_KUBE_CONTROLLER_MANAGER",
    "GRADER_PAUSE_IMAGE",
    "GRADER_PAUSE_IMAGE_ARCHIVE",
    "GRADER_GRADING_IMAGE",
    "GRADER_GRADING_IMAGE_ARCHIVE",
    "GRADER_NODE_IP",
    "GRADER_DEBIAN_MIRROR",
    "GRADER_SERVICE_VERSION",
    "GRADER_BENCH_KEEP",
    "GRADER_BENCH_LOG",
    // Grader Service's own variables: `grader` runs beside `grader-worker`, often in its
    // environment.
    "GRADER_COOKIE_SECRET",
    "GRADER_DB_URL",
    "GRADER_HOST",
    "GRADER_HOST_URL",
    "GRADER_PORT",
    "GRADER_SERVICE_DIRECTORY",
];

/// Builds a [`Loaded`] configuration from its layers. [`ConfigLoader::new`]
/// reads nothing but the defaults (for tests); [`ConfigLoader::from_process`]
/// reads the real files and environment.
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    system_file: Option<PathBuf>,
    local_file: Option<PathBuf>,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    non_utf8_env: Vec<String>,
    ignored_env: Vec<String>,
    overrides: Overrides,
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigLoader {
    /// A loader with only the built-in defaults: no system or local file, no
    /// environment, no overrides. [`RESERVED_ENV_VARS`] are ignored.
    pub fn new() -> Self {
        ConfigLoader {
            system_file: None,
            local_file: None,
            files: Vec::new(),
            env: Vec::new(),
            non_utf8_env: Vec::new(),
            ignored_env: RESERVED_ENV_VARS.iter().map(|s| (*s).to_owned()).collect(),
            overrides: Overrides::new(),
        }
    }

    /// A loader over the real process: [`SYSTEM_CONFIG_FILE`],
    /// [`LOCAL_CONFIG_FILE`] and the process environment.
    pub fn from_process() -> Self {
        let mut loader = Self::new()
            .system_file(SYSTEM_CONFIG_FILE)
            .local_file(LOCAL_CONFIG_FILE);
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => loader.env.push((name, value)),
                (Ok(name), Err(_)) => loader.non_utf8_env.push(name),
                (Err(name), _) => {
                    let name = name.to_string_lossy().into_owned();
                    if name.starts_with(ENV_PREFIX) {
                        loader.non_utf8_env.push(name);
                    }
                }
            }
        }
        loader
    }

    /// The system-wide file (read when it exists).
    pub fn system_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.system_file = Some(path.into());
        self
    }

    /// The local file (read when it exists and no [`ConfigLoader::files`] are
    /// given).
    pub fn local_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.local_file = Some(path.into());
        self
    }

    /// Files given with `--config`, lowest first. When not empty they replace
    /// the local file, and each must exist. An empty list keeps the local
    /// file.
    pub fn files<I, P>(mut self, files: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.files = files.into_iter().map(Into::into).collect();
        self
    }

    /// The environment to read (replacing any set before). Only variables
    /// starting with `GRADER_` are looked at.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.non_utf8_env.clear();
        self
    }

    /// Ignores one more `GRADER_*` variable (besides [`RESERVED_ENV_VARS`]).
    pub fn ignore_env_var(mut self, name: impl Into<String>) -> Self {
        self.ignored_env.push(name.into());
        self
    }

    /// The command-line overrides.
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Reads, merges, type-checks and validates all layers.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut layers: Vec<(Layer, Dict)> = Vec::new();

        let defaults = FigValue::serialize(GraderConfig::default())
            .ok()
            .and_then(FigValue::into_dict)
            .ok_or_else(|| ConfigError::Other {
                message: "cannot serialize the built-in defaults".to_owned(),
            })?;
        layers.push((Layer::Default, defaults));

        if let Some(path) = &self.system_file
            && let Some(dict) = read_file(path, false)?
        {
            layers.push((Layer::File(path.clone()), dict));
        }
        if self.files.is_empty() {
            if let Some(path) = &self.local_file
                && let Some(dict) = read_file(path, false)?
            {
                layers.push((Layer::File(path.clone()), dict));
            }
        } else {
            for path in &self.files {
                if let Some(dict) = read_file(path, true)? {
                    layers.push((Layer::File(path.clone()), dict));
                }
            }
        }

        let ignored = |name: &str| self.ignored_env.iter().any(|i| i == name);
        if let Some(var) = self
            .non_utf8_env
            .iter()
            .find(|v| v.starts_with(ENV_PREFIX) && !ignored(v))
        {
            return Err(ConfigError::InvalidEnvVar {
                var: var.clone(),
                reason: "name or value is not valid UTF-8".to_owned(),
            });
        }
        let env: BTreeMap<&str, &str> = self
            .env
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !ignored(name))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        for (name, raw) in env {
            let (info, key) = env_key(name)?;
            let value = text_value(info, raw).map_err(|reason| ConfigError::InvalidEnvVar {
                var: name.to_owned(),
                reason: format!("value for `{key}`: {reason}"),
            })?;
            layers.push((Layer::Env(name.to_owned()), nest(info.key, value)));
        }

        for entry in &self.overrides.entries {
            let layer = Layer::Flag(entry.flag.clone());
            let info = override_key(&entry.key, &layer)?;
            let value = match &entry.value {
                OverrideValue::Typed(v) => v.clone(),
                OverrideValue::Raw(raw) => {
                    text_value(info, raw).map_err(|reason| ConfigError::InvalidOverride {
                        flag: entry.flag.clone(),
                        reason: format!("value for `{}`: {reason}", info.key),
                    })?
                }
                OverrideValue::Unserializable(e) => {
                    return Err(ConfigError::InvalidOverride {
                        flag: entry.flag.clone(),
                        reason: format!("value for `{}`: {e}", info.key),
                    });
                }
            };
            layers.push((layer, nest(info.key, value)));
        }

        replace_whole_tables(&mut layers);

        let mut figment = Figment::new();
        for (layer, dict) in &layers {
            figment = figment.merge(LayerProvider {
                name: layer.to_string(),
                dict: dict.clone(),
            });
        }
        let layers: Vec<Layer> = layers.into_iter().map(|(l, _)| l).collect();
        let ctx = Ctx {
            figment: &figment,
            layers: &layers,
        };
        let config: GraderConfig = figment.extract().map_err(|e| ctx.map_figment_error(e))?;
        let settings = settings(&config, &ctx)?;
        validate(&config, &ctx)?;
        Ok(Loaded {
            config,
            settings,
            figment,
            layers,
        })
    }
}

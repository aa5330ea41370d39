//! Loading the configuration from its layers: defaults < system file < local
//! file (or `--config` files) < `GRADER_*` environment variables < flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value as FigValue};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde_json::Value as JsonValue;

use crate::error::{ConfigError, Layer};
use crate::model::GraderConfig;
use crate::render;
use crate::schema::{self, ENV_PREFIX, KEYS, KeyInfo, KeyKind};
use crate::settings::{SettingError, Settings};

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
/// `GRADER_TESTKIT_KEEP`.
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
];

/// Values set on the command line, the highest layer. Each entry names the
/// dotted key, the value and the flag it came from (for provenance and
/// errors). Later entries win over earlier ones.
///
/// ```
/// use grader_config::{Backend, Overrides};
/// let overrides = Overrides::new()
///     .set("backend", Backend::Kube, "--backend")
///     .set_opt("service_dir", None::<std::path::PathBuf>, "--service-dir")
///     .set_raw("kube.namespace", "grading", "--set");
/// assert_eq!(overrides.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<Override>,
}

#[derive(Debug, Clone)]
struct Override {
    key: String,
    flag: String,
    value: OverrideValue,
}

#[derive(Debug, Clone)]
enum OverrideValue {
    Typed(FigValue),
    Raw(String),
    Unserializable(String),
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (dotted, e.g. `kube.namespace`) to a typed value given with
    /// `flag` (e.g. `--namespace`).
    pub fn set<T: Serialize>(
        mut self,
        key: impl Into<String>,
        value: T,
        flag: impl Into<String>,
    ) -> Self {
        let value = match FigValue::serialize(value) {
            Ok(v) => OverrideValue::Typed(v),
            Err(e) => OverrideValue::Unserializable(e.to_string()),
        };
        self.entries.push(Override {
            key: key.into(),
            flag: flag.into(),
            value,
        });
        self
    }

    /// Like [`Overrides::set`], doing nothing for `None` (convenient for
    /// optional clap arguments).
    pub fn set_opt<T: Serialize>(
        self,
        key: impl Into<String>,
        value: Option<T>,
        flag: impl Into<String>,
    ) -> Self {
        match value {
            Some(v) => self.set(key, v, flag),
            None => self,
        }
    }

    /// Sets `key` from text, read the way an environment variable is (see the
    /// crate documentation).
    pub fn set_raw(
        mut self,
        key: impl Into<String>,
        raw: impl Into<String>,
        flag: impl Into<String>,
    ) -> Self {
        self.entries.push(Override {
            key: key.into(),
            flag: flag.into(),
            value: OverrideValue::Raw(raw.into()),
        });
        self
    }

    /// Adds a `KEY=VALUE` assignment (e.g. from a repeated `--set` flag); the
    /// value is read like [`Overrides::set_raw`].
    pub fn set_assignment(
        self,
        assignment: &str,
        flag: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let flag = flag.into();
        match assignment.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(self.set_raw(key.trim(), value, flag))
            }
            _ => Err(ConfigError::InvalidOverride {
                flag,
                reason: format!("expected KEY=VALUE, found {assignment:?}"),
            }),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

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

/// Reads one TOML file. `Ok(None)` when it does not exist and is optional.
fn read_file(path: &Path, required: bool) -> Result<Option<Dict>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if required {
                Err(ConfigError::MissingFile {
                    path: path.to_owned(),
                })
            } else {
                Ok(None)
            };
        }
        Err(source) => {
            return Err(ConfigError::ReadFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    let data = Toml::string(&text)
        .data()
        .map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.kind.to_string(),
        })?;
    Ok(Some(data.into_values().flatten().collect()))
}

/// Turns `GRADER_KUBE__NAMESPACE` into the key `kube.namespace`.
fn env_key(name: &str) -> Result<(&'static KeyInfo, String), ConfigError> {
    let rest = &name[ENV_PREFIX.len()..];
    let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(ConfigError::InvalidEnvVar {
            var: name.to_owned(),
            reason: format!(
                "does not name a configuration key (write {ENV_PREFIX}KEY, or {ENV_PREFIX}TABLE__KEY for keys in a table)"
            ),
        });
    }
    let layer = Layer::Env(name.to_owned());
    let key = segments.join(".");
    let info = resolve_key(&segments, &layer).map_err(|e| match e {
        KeyProblem::Error(e) => e,
        KeyProblem::Message(reason) => ConfigError::InvalidEnvVar {
            var: name.to_owned(),
            reason,
        },
    })?;
    Ok((info, key))
}

fn override_key(key: &str, layer: &Layer) -> Result<&'static KeyInfo, ConfigError> {
    let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
    resolve_key(&segments, layer).map_err(|e| match e {
        KeyProblem::Error(e) => e,
        KeyProblem::Message(reason) => ConfigError::InvalidOverride {
            flag: match layer {
                Layer::Flag(f) => f.clone(),
                other => other.to_string(),
            },
            reason,
        },
    })
}

enum KeyProblem {
    Error(ConfigError),
    Message(String),
}

/// Finds the schema entry for a key given as segments; only whole leaf keys
/// may be set from text.
fn resolve_key(segments: &[String], layer: &Layer) -> Result<&'static KeyInfo, KeyProblem> {
    let mut section = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let candidate = if section.is_empty() {
            segment.clone()
        } else {
            format!("{section}.{segment}")
        };
        let last = i + 1 == segments.len();
        if let Some(info) = schema::key_info(&candidate) {
            if last {
                return Ok(info);
            }
            let how = match info.kind {
                KeyKind::Table => format!(
                    "`{candidate}` is a table and is set as a whole, e.g. {}='{{\"key\": \"value\"}}' (JSON or a TOML inline table)",
                    info.env_var()
                ),
                _ => format!(
                    "`{candidate}` is a single value, set with {}",
                    info.env_var()
                ),
            };
            return Err(KeyProblem::Message(how));
        }
        if schema::is_section(&candidate) {
            if last {
                return Err(KeyProblem::Message(format!(
                    "`{candidate}` is a table of settings; set its keys one by one, e.g. {}",
                    schema::env_var_for(&format!(
                        "{candidate}.{}",
                        schema::children(&candidate)
                            .first()
                            .copied()
                            .unwrap_or("key")
                    ))
                )));
            }
            section = candidate;
            continue;
        }
        return Err(KeyProblem::Error(ConfigError::UnknownKey {
            key: candidate,
            layer: layer.clone(),
            expected: schema::children(&section)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }));
    }
    Err(KeyProblem::Message("empty key".to_owned()))
}

/// Reads a text value for a key (see [`KeyKind`]).
fn text_value(info: &KeyInfo, raw: &str) -> Result<FigValue, String> {
    match info.kind {
        KeyKind::Text => Ok(FigValue::from(raw.to_owned())),
        KeyKind::Scalar => {
            let v: FigValue = raw
                .parse()
                .unwrap_or_else(|_| FigValue::from(raw.to_owned()));
            Ok(v)
        }
        KeyKind::Table | KeyKind::List => {
            let (want_table, what) = match info.kind {
                KeyKind::Table => (true, "a table"),
                _ => (false, "a list"),
            };
            let value = structured_value(raw).ok_or_else(|| {
                format!("expected {what} written as JSON or as a TOML inline value, found {raw:?}")
            })?;
            let ok = if want_table {
                matches!(value, FigValue::Dict(..))
            } else {
                matches!(value, FigValue::Array(..))
            };
            if ok {
                Ok(value)
            } else {
                Err(format!("expected {what}, found {raw:?}"))
            }
        }
    }
}

/// Parses JSON, or else a TOML inline value.
fn structured_value(raw: &str) -> Option<FigValue> {
    if let Ok(json) = serde_json::from_str::<JsonValue>(raw) {
        return FigValue::serialize(json).ok();
    }
    let data = Toml::string(&format!("v = {raw}")).data().ok()?;
    let mut dict: Dict = data.into_values().flatten().collect();
    if dict.len() != 1 {
        return None;
    }
    dict.remove("v")
}

fn nest(key: &str, value: FigValue) -> Dict {
    figment::util::nest(key, value)
        .into_dict()
        .unwrap_or_default()
}

fn dict_get<'a>(dict: &'a Dict, key: &str) -> Option<&'a FigValue> {
    let mut parts = key.split('.');
    let first = dict.get(parts.next()?)?;
    parts.try_fold(first, |v, p| v.as_dict()?.get(p))
}

fn dict_remove(dict: &mut Dict, key: &str) {
    match key.split_once('.') {
        None => {
            dict.remove(key);
        }
        Some((head, rest)) => {
            if let Some(FigValue::Dict(_, inner)) = dict.get_mut(head) {
                dict_remove(inner, rest);
            }
        }
    }
}

/// Free-form tables are replaced as a whole by the highest layer that sets
/// them, instead of being merged key by key (a merged Kubernetes volume could
/// end up with two sources).
fn replace_whole_tables(layers: &mut [(Layer, Dict)]) {
    for i in 1..layers.len() {
        for info in KEYS.iter().filter(|k| k.kind == KeyKind::Table) {
            if dict_get(&layers[i].1, info.key).is_some() {
                for (_, lower) in layers[..i].iter_mut() {
                    dict_remove(lower, info.key);
                }
            }
        }
    }
}

/// One layer as a figment provider, named by its [`Layer`] label.
struct LayerProvider {
    name: String,
    dict: Dict,
}

impl Provider for LayerProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

struct Ctx<'a> {
    figment: &'a Figment,
    layers: &'a [Layer],
}

impl Ctx<'_> {
    fn layer_by_name(&self, name: &str) -> Option<Layer> {
        self.layers.iter().find(|l| l.to_string() == name).cloned()
    }

    /// The layer that supplied the value at a path, walking up to the
    /// nearest ancestor figment can find (map keys may contain dots).
    fn layer_for_path(&self, path: &[String]) -> Option<Layer> {
        (1..=path.len()).rev().find_map(|n| {
            let md = self.figment.find_metadata(&path[..n].join("."))?;
            self.layer_by_name(&md.name)
        })
    }

    fn layer_of(&self, key: &str) -> Layer {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        self.layer_for_path(&path).unwrap_or(Layer::Default)
    }

    fn map_figment_error(&self, error: figment::Error) -> ConfigError {
        let Some(first) = error.into_iter().next() else {
            return ConfigError::Other {
                message: "unknown error".to_owned(),
            };
        };
        let mut path = first.path.clone();
        if let Kind::UnknownField(field, _) = &first.kind
            && path.last() != Some(field)
        {
            path.push(field.clone());
        }
        let key = path.join(".");
        let layer = self
            .layer_for_path(&path)
            .or_else(|| {
                first
                    .metadata
                    .as_ref()
                    .and_then(|m| self.layer_by_name(&m.name))
            })
            .unwrap_or(Layer::Unknown);
        match first.kind {
            Kind::UnknownField(_, expected) => ConfigError::UnknownKey {
                key,
                layer,
                expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            },
            Kind::InvalidType(found, expected) => ConfigError::WrongType {
                key,
                layer,
                found: found.to_string(),
                expected,
            },
            Kind::InvalidValue(found, expected) => ConfigError::InvalidValue {
                key,
                layer,
                reason: format!("found {found}, expected {expected}"),
            },
            Kind::UnknownVariant(found, allowed) => ConfigError::InvalidValue {
                key,
                layer,
                reason: format!("found {found:?}, expected one of: {}", allowed.join(", ")),
            },
            Kind::Message(reason) => ConfigError::InvalidValue { key, layer, reason },
            other if key.is_empty() => ConfigError::Other {
                message: other.to_string(),
            },
            other => ConfigError::InvalidValue {
                key,
                layer,
                reason: other.to_string(),
            },
        }
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            layer: self.layer_of(key),
            reason: reason.into(),
        }
    }
}

fn describe_json(v: &JsonValue) -> String {
    match v {
        JsonValue::Null => "nothing".to_owned(),
        JsonValue::Bool(b) => format!("boolean {b}"),
        JsonValue::Number(n) => format!("number {n}"),
        JsonValue::String(s) => format!("string {s:?}"),
        JsonValue::Array(_) => "a list".to_owned(),
        JsonValue::Object(_) => "a table".to_owned(),
    }
}

fn check_table(ctx: &Ctx<'_>, key: &str, v: &JsonValue, what: &str) -> Result<(), ConfigError> {
    if v.is_object() {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            format!("must be a table ({what}), found {}", describe_json(v)),
        ))
    }
}

fn check_table_list(
    ctx: &Ctx<'_>,
    key: &str,
    items: &[JsonValue],
    what: &str,
    required: &[&str],
) -> Result<(), ConfigError> {
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return Err(ctx.invalid(
                key,
                format!(
                    "entry {i} must be a table ({what}), found {}",
                    describe_json(item)
                ),
            ));
        };
        for field in required {
            if obj
                .get(*field)
                .is_none_or(|f| f.as_str().is_none_or(str::is_empty))
            {
                return Err(ctx.invalid(
                    key,
                    format!("entry {i} ({what}) needs a non-empty string `{field}`"),
                ));
            }
        }
    }
    Ok(())
}

/// Converts a configuration into its settings (see [`Settings::from_config`]), as an error
/// naming the key and its layer.
fn settings(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<Settings, ConfigError> {
    Settings::from_config(c).map_err(|e| match e {
        SettingError::CellTimeouts(grader_model::InvalidTimeouts { min, default, max }) => {
            ConfigError::CellTimeouts {
                min,
                default,
                max,
                min_layer: ctx.layer_of("min_cell_timeout"),
                default_layer: ctx.layer_of("default_cell_timeout"),
                max_layer: ctx.layer_of("max_cell_timeout"),
            }
        }
        SettingError::Invalid { key, reason } => ctx.invalid(key, reason),
    })
}

/// Checks what types and the conversion alone cannot; errors name the key and its layer.
fn validate(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    for (key, value) in [
        ("max_grading_time", c.max_grading_time),
        ("log_cap_bytes", c.log_cap_bytes),
        ("kube.poll_interval", c.kube.poll_interval),
        ("local.warm_start_timeout", c.local.warm_start_timeout),
    ] {
        if value == 0 {
            return Err(ctx.invalid(key, "must be greater than 0"));
        }
    }
    for (key, path) in [
        ("service_dir", &c.service_dir),
        ("git_executable", &c.git_executable),
        ("convert_executable", &c.convert_executable),
    ] {
        if path.as_os_str().is_empty() {
            return Err(ctx.invalid(key, "must not be empty"));
        }
    }
    // The grading tool runs in the job's input dir: a relative service_dir would mean a
    // different directory to it and fail every job.
    if !c.service_dir.is_absolute() {
        return Err(ctx.invalid(
            "service_dir",
            format!(
                "must be an absolute path, found {:?}",
                c.service_dir.display().to_string()
            ),
        ));
    }
    if c.relative_input_path == c.relative_output_path {
        return Err(ctx.invalid(
            "relative_output_path",
            format!(
                "must differ from relative_input_path (both are {:?})",
                c.relative_input_path.display().to_string()
            ),
        ));
    }

    if c.local.warm_workers > crate::model::MAX_WARM_WORKERS {
        return Err(ctx.invalid(
            "local.warm_workers",
            format!(
                "must be at most {}, found {}",
                crate::model::MAX_WARM_WORKERS,
                c.local.warm_workers
            ),
        ));
    }

    validate_serve(c, ctx)?;

    let k = &c.kube;
    if k.context.as_deref() == Some("") {
        return Err(ctx.invalid("kube.context", "must not be empty (leave it unset instead)"));
    }
    if let Some(ns) = &k.namespace
        && !grader_model::is_dns1123_label(ns)
    {
        return Err(ctx.invalid(
            "kube.namespace",
            format!(
                "{ns:?} is not a valid namespace (lowercase letters, digits and `-`, at most 63, starting and ending with a letter or digit)"
            ),
        ));
    }
    if k.image_config_path
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err(ctx.invalid(
            "kube.image_config_path",
            "must not be empty (leave it unset instead)",
        ));
    }
    check_table(ctx, "kube.volume", &k.volume, "a Kubernetes Volume")?;
    if k.volume
        .get("name")
        .is_none_or(|n| n.as_str().is_none_or(str::is_empty))
    {
        return Err(ctx.invalid(
            "kube.volume",
            "the Kubernetes Volume needs a non-empty string `name`",
        ));
    }
    check_table_list(
        ctx,
        "kube.extra_volumes",
        &k.extra_volumes,
        "a Kubernetes Volume",
        &["name"],
    )?;
    check_table_list(
        ctx,
        "kube.extra_volume_mounts",
        &k.extra_volume_mounts,
        "a Kubernetes VolumeMount",
        &["name", "mountPath"],
    )?;
    check_table_list(
        ctx,
        "kube.tolerations",
        &k.tolerations,
        "a Kubernetes Toleration",
        &[],
    )?;
    check_table(
        ctx,
        "kube.extra_pod_config",
        &k.extra_pod_config,
        "pod spec fields",
    )?;
    check_table(
        ctx,
        "kube.extra_container_config",
        &k.extra_container_config,
        "container fields",
    )?;
    if let Some(i) = k.image_pull_secrets.iter().position(String::is_empty) {
        return Err(ctx.invalid(
            "kube.image_pull_secrets",
            format!("entry {i} must be a non-empty secret name"),
        ));
    }
    for (key, map) in [
        ("kube.labels", &k.labels),
        ("kube.annotations", &k.annotations),
        ("kube.node_selector", &k.node_selector),
    ] {
        if map.keys().any(String::is_empty) {
            return Err(ctx.invalid(key, "keys must not be empty"));
        }
    }
    match k.uid {
        Some(uid) if uid < 0 => {
            return Err(ctx.invalid("kube.uid", format!("must not be negative, found {uid}")));
        }
        Some(0) if k.hardening => {
            return Err(ctx.invalid(
                "kube.uid",
                "0 (root) is not allowed while kube.hardening is on",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Checks the `[serve]` table: a usable socket path, a TCP address that parses and comes
/// with a token file, limits that make sense.
fn validate_serve(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    let s = &c.serve;
    let socket_len = s.socket.as_os_str().len();
    if socket_len == 0 {
        return Err(ctx.invalid("serve.socket", "must not be empty"));
    }
    if socket_len > crate::model::MAX_SOCKET_PATH_BYTES {
        return Err(ctx.invalid(
            "serve.socket",
            format!(
                "is {socket_len} bytes long; a Unix socket path may have at most {}",
                crate::model::MAX_SOCKET_PATH_BYTES
            ),
        ));
    }
    if let Some(listen) = &s.listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ctx.invalid(
                "serve.listen",
                format!(
                    "{listen:?} is not a TCP address of the form ip:port (e.g. 127.0.0.1:8600)"
                ),
            ));
        }
        if s.token_file.is_none() {
            return Err(ctx.invalid(
                "serve.listen",
                "a TCP listener needs serve.token_file (the bearer token its clients must send)",
            ));
        }
    }
    for (key, path) in [
        ("serve.token_file", &s.token_file),
        ("serve.results_dir", &s.results_dir),
    ] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ctx.invalid(key, "must not be empty (leave it unset instead)"));
        }
    }
    if !(1..=crate::model::MAX_SERVE_CONCURRENCY).contains(&s.concurrency) {
        return Err(ctx.invalid(
            "serve.concurrency",
            format!(
                "must be between 1 and {}, found {}",
                crate::model::MAX_SERVE_CONCURRENCY,
                s.concurrency
            ),
        ));
    }
    if s.max_request_bytes == 0 {
        return Err(ctx.invalid("serve.max_request_bytes", "must be greater than 0"));
    }
    Ok(())
}

/// A loaded configuration with the figment it came from, for provenance.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective, validated configuration.
    pub config: GraderConfig,
    /// What it configures, converted once (see [`Settings`]).
    pub settings: Settings,
    /// The merged layers (metadata names are the [`Layer`] labels).
    pub figment: Figment,
    layers: Vec<Layer>,
}

impl Loaded {
    /// The layers that were read, lowest first (missing optional files are
    /// not listed).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The layer that supplied a dotted key (`default` when none did).
    pub fn layer_of(&self, key: &str) -> Layer {
        self.ctx().layer_of(key)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            figment: &self.figment,
            layers: &self.layers,
        }
    }

    /// Every key with its rendered value (TOML syntax, or `(not set)`) and
    /// the label of the layer it came from (`default`, `file /path`,
    /// `env GRADER_X`, `flag --backend`). Free-form tables are one entry each.
    pub fn provenance(&self) -> Vec<(String, String, String)> {
        let json = serde_json::to_value(&self.config).unwrap_or_default();
        KEYS.iter()
            .map(|info| {
                let value = match render::lookup(&json, info.key) {
                    Some(v) if !v.is_null() => render::toml_value(v),
                    _ => NOT_SET.to_owned(),
                };
                (
                    info.key.to_owned(),
                    value,
                    self.layer_of(info.key).to_string(),
                )
            })
            .collect()
    }

    /// The effective configuration as TOML, each key followed by a comment
    /// naming its layer, e.g. `max_grading_time = 600    # env
    /// GRADER_MAX_GRADING_TIME`. Unset optional keys appear commented out.
    pub fn render_effective(&self) -> String {
        let provenance = self.provenance();
        let mut out = String::from(
            "# Effective grader configuration; each key is followed by the layer it came from.\n",
        );
        let labels: Vec<String> = self.layers.iter().map(Layer::to_string).collect();
        out.push_str(&format!("# Layers, lowest first: {}\n", labels.join(" < ")));
        let mut sections: Vec<&str> = vec![""];
        sections.extend(schema::SECTIONS);
        for section in sections {
            let lines: Vec<(String, &str)> = KEYS
                .iter()
                .zip(&provenance)
                .filter(|(info, _)| info.split().0 == section)
                .map(|(info, (_, value, layer))| {
                    let name = info.split().1;
                    let left = if value == NOT_SET {
                        format!("# {name} is not set")
                    } else {
                        format!("{name} = {value}")
                    };
                    (left, layer.as_str())
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            if !section.is_empty() {
                out.push_str(&format!("\n[{section}]\n"));
            }
            let width = lines
                .iter()
                .map(|(l, _)| l.chars().count())
                .filter(|w| *w <= 48)
                .max()
                .unwrap_or(0);
            for (left, layer) in lines {
                let pad = width.saturating_sub(left.chars().count()) + 4;
                out.push_str(&format!("{left}{:pad$}# {layer}\n", ""));
            }
        }
        out
    }
}

/// How [`Loaded::provenance`] shows an unset optional key.
pub const NOT_SET: &str = "(not set)";

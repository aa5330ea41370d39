//! Configuration errors and the layers values come from.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The built-in defaults.
    Default,
    /// A TOML configuration file (system, local or `--config`).
    File(PathBuf),
    /// An environment variable, by name (e.g. `GRADER_MAX_GRADING_TIME`).
    Env(String),
    /// A command-line flag, by name (e.g. `--backend`).
    Flag(String),
    /// Provenance could not be determined (should not happen).
    Unknown,
}

impl Layer {
    /// The long form used in error messages: `in file /etc/grader/grader.toml`,
    /// `from environment variable GRADER_X`, `from flag --backend`,
    /// `in the built-in defaults`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Default => "in the built-in defaults".to_owned(),
            Layer::File(p) => format!("in file {}", p.display()),
            Layer::Env(v) => format!("from environment variable {v}"),
            Layer::Flag(f) => format!("from flag {f}"),
            Layer::Unknown => "from an unknown source".to_owned(),
        }
    }
}

/// The short form used in provenance: `default`, `file /path`, `env GRADER_X`,
/// `flag --backend`. It is also the figment metadata name of the layer.
impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Default => f.write_str("default"),
            Layer::File(p) => write!(f, "file {}", p.display()),
            Layer::Env(v) => write!(f, "env {v}"),
            Layer::Flag(n) => write!(f, "flag {n}"),
            Layer::Unknown => f.write_str("unknown"),
        }
    }
}

/// A configuration could not be loaded. Each variant names the key and the
/// layer (file, environment variable or flag) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file given with `--config` does not exist.
    #[error("invalid configuration: config file {} (given with --config) does not exist", path.display())]
    MissingFile {
        /// The path as given.
        path: PathBuf,
    },
    /// A configuration file exists but could not be read.
    #[error("invalid configuration: cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML.
    #[error("invalid configuration: cannot parse config file {} as TOML: {message}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that is not a configuration key.
    #[error("invalid configuration: unknown key `{key}` {} (expected one of: {})", layer.describe(), expected.join(", "))]
    UnknownKey {
        /// Dotted key as written (lowercased for environment variables).
        key: String,
        /// Where it was set.
        layer: Layer,
        /// The keys allowed at that place.
        expected: Vec<String>,
    },
    /// A value of the wrong type.
    #[error("invalid configuration: wrong type for `{key}` {}: found {found}, expected {expected}", layer.describe())]
    WrongType {
        /// Dotted key.
        key: String,
        /// Where the value came from.
        layer: Layer,
        /// What was found, e.g. `string "abc"`.
        found: String,
        /// What was expected, e.g. `u64`.
        expected: String,
    },
    /// A value of the right type that is not allowed.
    #[error("invalid configuration: invalid value for `{key}` {}: {reason}", layer.describe())]
    InvalidValue {
        /// Dotted key.
        key: String,
        /// Where the value came from.
        layer: Layer,
        /// What is wrong with it.
        reason: String,
    },
    /// The three cell timeouts are not ordered `0 < min < default < max`.
    #[error(
        "invalid configuration: cell timeouts must satisfy 0 < min_cell_timeout < default_cell_timeout < max_cell_timeout, \
         but min_cell_timeout = {min} ({min_layer}), default_cell_timeout = {default} ({default_layer}), \
         max_cell_timeout = {max} ({max_layer})"
    )]
    CellTimeouts {
        /// `min_cell_timeout`.
        min: u64,
        /// `default_cell_timeout`.
        default: u64,
        /// `max_cell_timeout`.
        max: u64,
        /// Where `min_cell_timeout` came from.
        min_layer: Layer,
        /// Where `default_cell_timeout` came from.
        default_layer: Layer,
        /// Where `max_cell_timeout` came from.
        max_layer: Layer,
    },
    /// An environment variable with the `GRADER_` prefix that cannot be used
    /// (no key, not UTF-8, a value that cannot be read).
    #[error("invalid configuration: environment variable {var}: {reason}")]
    InvalidEnvVar {
        /// The variable's name.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A command-line override that cannot be used.
    #[error("invalid configuration: flag {flag}: {reason}")]
    InvalidOverride {
        /// The flag's name.
        flag: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other error from the configuration library.
    #[error("invalid configuration: {message}")]
    Other {
        /// The message.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::InvalidValue { key, .. } => Some(key),
            ConfigError::CellTimeouts { .. } => Some("default_cell_timeout"),
            _ => None,
        }
    }

    /// The layer the error is about, when there is one.
    pub fn layer(&self) -> Option<Layer> {
        match self {
            ConfigError::UnknownKey { layer, .. }
            | ConfigError::WrongType { layer, .. }
            | ConfigError::InvalidValue { layer, .. } => Some(layer.clone()),
            ConfigError::MissingFile { path }
            | ConfigError::ReadFile { path, .. }
            | ConfigError::ParseFile { path, .. } => Some(Layer::File(path.clone())),
            ConfigError::InvalidEnvVar { var, .. } => Some(Layer::Env(var.clone())),
            ConfigError::InvalidOverride { flag, .. } => Some(Layer::Flag(flag.clone())),
            ConfigError::CellTimeouts { .. } | ConfigError::Other { .. } => None,
        }
    }
}

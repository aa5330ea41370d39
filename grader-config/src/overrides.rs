//! Command-line overrides: the highest layer, one `--flag` or `--set KEY=VALUE` each.

use figment::value::Value as FigValue;
use serde::Serialize;

use crate::error::ConfigError;

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
    pub(crate) entries: Vec<Override>,
}

#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) key: String,
    pub(crate) flag: String,
    pub(crate) value: OverrideValue,
}

#[derive(Debug, Clone)]
pub(crate) enum OverrideValue {
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

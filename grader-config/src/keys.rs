//! From a variable or flag name to its configuration key, and from text to a typed value.

use figment::Provider;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Value as FigValue};
use serde_json::Value as JsonValue;

use crate::error::{ConfigError, Layer};
use crate::schema::{self, ENV_PREFIX, KeyInfo, KeyKind};

/// Turns `GRADER_KUBE__NAMESPACE` into the key `kube.namespace`.
pub(crate) fn env_key(name: &str) -> Result<(&'static KeyInfo, String), ConfigError> {
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

pub(crate) fn override_key(key: &str, layer: &Layer) -> Result<&'static KeyInfo, ConfigError> {
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

pub(crate) enum KeyProblem {
    Error(ConfigError),
    Message(String),
}

/// Finds the schema entry for a key given as segments; only whole leaf keys
/// may be set from text.
pub(crate) fn resolve_key(
    segments: &[String],
    layer: &Layer,
) -> Result<&'static KeyInfo, KeyProblem> {
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
pub(crate) fn text_value(info: &KeyInfo, raw: &str) -> Result<FigValue, String> {
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
pub(crate) fn structured_value(raw: &str) -> Option<FigValue> {
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

//! Where a value came from: the layer of a key, and errors that name the key and its layer.

use figment::Figment;
use figment::error::Kind;
use serde_json::Value as JsonValue;

use crate::error::{ConfigError, Layer};

pub(crate) struct Ctx<'a> {
    pub(crate) figment: &'a Figment,
    pub(crate) layers: &'a [Layer],
}

impl Ctx<'_> {
    pub(crate) fn layer_by_name(&self, name: &str) -> Option<Layer> {
        self.layers.iter().find(|l| l.to_string() == name).cloned()
    }

    /// The layer that supplied the value at a path, walking up to the
    /// nearest ancestor figment can find (map keys may contain dots).
    pub(crate) fn layer_for_path(&self, path: &[String]) -> Option<Layer> {
        (1..=path.len()).rev().find_map(|n| {
            let md = self.figment.find_metadata(&path[..n].join("."))?;
            self.layer_by_name(&md.name)
        })
    }

    pub(crate) fn layer_of(&self, key: &str) -> Layer {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        self.layer_for_path(&path).unwrap_or(Layer::Default)
    }

    pub(crate) fn map_figment_error(&self, error: figment::Error) -> ConfigError {
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

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            layer: self.layer_of(key),
            reason: reason.into(),
        }
    }
}

pub(crate) fn describe_json(v: &JsonValue) -> String {
    match v {
        JsonValue::Null => "nothing".to_owned(),
        JsonValue::Bool(b) => format!("boolean {b}"),
        JsonValue::Number(n) => format!("number {n}"),
        JsonValue::String(s) => format!("string {s:?}"),
        JsonValue::Array(_) => "a list".to_owned(),
        JsonValue::Object(_) => "a table".to_owned(),
    }
}

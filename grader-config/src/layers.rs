//! One layer per source: a TOML file read into a dictionary, nested keys, tables that a
//! higher layer replaces whole, and the provider figment merges.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value as FigValue};
use figment::{Metadata, Profile, Provider};

use crate::error::{ConfigError, Layer};
use crate::schema::{KEYS, KeyKind};

/// Reads one TOML file. `Ok(None)` when it does not exist and is optional.
pub(crate) fn read_file(path: &Path, required: bool) -> Result<Option<Dict>, ConfigError> {
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

pub(crate) fn nest(key: &str, value: FigValue) -> Dict {
    figment::util::nest(key, value)
        .into_dict()
        .unwrap_or_default()
}

pub(crate) fn dict_get<'a>(dict: &'a Dict, key: &str) -> Option<&'a FigValue> {
    let mut parts = key.split('.');
    let first = dict.get(parts.next()?)?;
    parts.try_fold(first, |v, p| v.as_dict()?.get(p))
}

pub(crate) fn dict_remove(dict: &mut Dict, key: &str) {
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
pub(crate) fn replace_whole_tables(layers: &mut [(Layer, Dict)]) {
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
pub(crate) struct LayerProvider {
    pub(crate) name: String,
    pub(crate) dict: Dict,
}

impl Provider for LayerProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

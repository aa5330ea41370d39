//! A loaded configuration: the values, their settings, and where each came from.

use figment::Figment;

use crate::context::*;
use crate::error::Layer;
use crate::model::GraderConfig;
use crate::render;
use crate::schema::{self, KEYS};
use crate::settings::Settings;

/// A loaded configuration with the figment it came from, for provenance.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective, validated configuration.
    pub config: GraderConfig,
    /// What it configures, converted once (see [`Settings`]).
    pub settings: Settings,
    /// The merged layers (metadata names are the [`Layer`] labels).
    pub figment: Figment,
    pub(crate) layers: Vec<Layer>,
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

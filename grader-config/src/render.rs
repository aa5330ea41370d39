//! Rendering values as TOML text, for `grader config` and `CONFIG.md`.

use serde_json::Value as JsonValue;

/// Finds a dotted key (through objects only) in a JSON value.
pub(crate) fn lookup<'a>(value: &'a JsonValue, key: &str) -> Option<&'a JsonValue> {
    key.split('.')
        .try_fold(value, |v, segment| v.as_object()?.get(segment))
}

/// A JSON value as an inline TOML value. `null` (which TOML lacks) prints as
/// `null`; it only occurs inside free-form tables given as JSON.
pub(crate) fn toml_value(value: &JsonValue) -> String {
    match value {
        JsonValue::Null => "null".to_owned(),
        JsonValue::Bool(b) => b.to_string(),
        JsonValue::Number(n) => n.to_string(),
        JsonValue::String(s) => toml_string(s),
        JsonValue::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        JsonValue::Object(map) if map.is_empty() => "{}".to_owned(),
        JsonValue::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    }
}

/// A TOML basic string.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when possible, quoted otherwise.
pub(crate) fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml_string(k)
    }
}

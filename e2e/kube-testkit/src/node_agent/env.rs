//! A container's environment (`env`, `envFrom`) and `$(VAR)` expansion.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVarSource};

use super::objects::{DataKind, field_value};
use super::prepare::{PrepareError, Setup};

impl Setup<'_> {
    /// The container's environment: PATH, HOME (the agent's), HOSTNAME, then `envFrom`, then
    /// `env` (later entries override earlier ones; `$(VAR)` refers to earlier entries).
    pub(super) async fn environment(
        &self,
        container: &Container,
    ) -> Result<Vec<(String, String)>, PrepareError> {
        let mut env: Vec<(String, String)> = Vec::new();
        let set = |env: &mut Vec<(String, String)>, key: String, value: String| match env
            .iter_mut()
            .find(|(k, _)| *k == key)
        {
            Some(entry) => entry.1 = value,
            None => env.push((key, value)),
        };
        let path = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        set(&mut env, "PATH".into(), path);
        if let Ok(home) = std::env::var("HOME") {
            set(&mut env, "HOME".into(), home);
        }
        set(&mut env, "HOSTNAME".into(), self.name.to_string());
        for source in container.env_from.iter().flatten() {
            let prefix = source.prefix.clone().unwrap_or_default();
            let data = if let Some(cm) = &source.config_map_ref {
                self.data(DataKind::ConfigMap, &cm.name, cm.optional.unwrap_or(false))
                    .await?
            } else if let Some(secret) = &source.secret_ref {
                self.data(
                    DataKind::Secret,
                    &secret.name,
                    secret.optional.unwrap_or(false),
                )
                .await?
            } else {
                BTreeMap::new()
            };
            for (key, value) in data {
                set(
                    &mut env,
                    format!("{prefix}{key}"),
                    String::from_utf8_lossy(&value).into_owned(),
                );
            }
        }
        for var in container.env.iter().flatten() {
            let value = if let Some(source) = &var.value_from {
                if let Some(field) = &source.field_ref {
                    field_value(self.pod, &field.field_path).ok_or_else(|| {
                        PrepareError::Config(format!(
                            "env {}: fieldRef {} is not supported",
                            var.name, field.field_path
                        ))
                    })?
                } else if let Some((kind, name, key, optional)) = key_ref(source) {
                    match self.key_value(kind, name, key, optional).await? {
                        Some(v) => v,
                        None => continue,
                    }
                } else {
                    return Err(PrepareError::Config(format!(
                        "env {}: this valueFrom is not supported by the test node agent",
                        var.name
                    )));
                }
            } else {
                let vars: HashMap<String, String> = env.iter().cloned().collect();
                expand(var.value.as_deref().unwrap_or_default(), &vars)
            };
            set(&mut env, var.name.clone(), value);
        }
        Ok(env)
    }
}

/// The object, name, key and optionality of a `configMapKeyRef` or `secretKeyRef`.
fn key_ref(source: &EnvVarSource) -> Option<(DataKind, &str, &str, bool)> {
    if let Some(key) = &source.config_map_key_ref {
        let optional = key.optional.unwrap_or(false);
        Some((DataKind::ConfigMap, &key.name, &key.key, optional))
    } else if let Some(key) = &source.secret_key_ref {
        let optional = key.optional.unwrap_or(false);
        Some((DataKind::Secret, &key.name, &key.key, optional))
    } else {
        None
    }
}

/// Expands `$(VAR)` references as Kubernetes does for command, args and env values: a
/// defined variable is replaced, an undefined reference is left as is, `$$` is a literal `$`.
pub(crate) fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)/$(B)/$$(A)/$A/$", &env), "x/$(B)/$(A)/$A/$");
        assert_eq!(expand("$(A", &env), "$(A");
    }
}

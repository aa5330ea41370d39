//! What types alone cannot check: the conversion into settings, and the rules between keys.

use serde_json::Value as JsonValue;

use crate::context::*;
use crate::error::ConfigError;
use crate::model::GraderConfig;
use crate::settings::{SettingError, Settings};

pub(crate) fn check_table(
    ctx: &Ctx<'_>,
    key: &str,
    v: &JsonValue,
    what: &str,
) -> Result<(), ConfigError> {
    if v.is_object() {
        Ok(())
    } else {
        Err(ctx.invalid(
            key,
            format!("must be a table ({what}), found {}", describe_json(v)),
        ))
    }
}

pub(crate) fn check_table_list(
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
pub(crate) fn settings(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<Settings, ConfigError> {
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
pub(crate) fn validate(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
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
pub(crate) fn validate_serve(c: &GraderConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
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

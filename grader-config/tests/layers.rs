//! Layering: defaults < system file < local file / --config files < env < flags,
//! and provenance naming the right layer.

use std::path::{Path, PathBuf};

use grader_config::{
    Backend, ConfigError, ConfigLoader, GraderConfig, ImagePullPolicy, KEYS, Layer, Overrides,
};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn layer_of(loaded: &grader_config::Loaded, key: &str) -> String {
    loaded
        .provenance()
        .into_iter()
        .find(|(k, _, _)| k == key)
        .unwrap_or_else(|| panic!("no provenance for {key}"))
        .2
}

#[test]
fn defaults() {
    let loaded = ConfigLoader::new().load().unwrap();
    let c = &loaded.config;
    assert_eq!(c, &GraderConfig::default());
    assert_eq!(c.service_dir, PathBuf::from("/var/lib/grader"));
    assert_eq!(c.relative_input_path, PathBuf::from("convert_in"));
    assert_eq!(c.relative_output_path, PathBuf::from("convert_out"));
    assert_eq!(c.git_executable, PathBuf::from("git"));
    assert_eq!(c.convert_executable, PathBuf::from("grader-convert"));
    assert_eq!(
        (
            c.min_cell_timeout,
            c.default_cell_timeout,
            c.max_cell_timeout
        ),
        (10, 300, 86400)
    );
    assert_eq!(c.max_grading_time, 3600);
    assert_eq!(c.log_cap_bytes, 1024 * 1024);
    assert!(!c.keep_workdirs);
    assert_eq!(c.backend, Backend::Local);
    let k = &c.kube;
    assert_eq!(k.context, None);
    assert_eq!(k.namespace, None);
    assert_eq!(k.image_config_path, None);
    assert_eq!(k.default_image_name.as_str(), "{lecture}_image");
    assert_eq!(
        k.volume,
        serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "grader-data"}})
    );
    assert!(k.extra_volumes.is_empty() && k.extra_volume_mounts.is_empty());
    assert!(k.labels.is_empty() && k.annotations.is_empty() && k.node_selector.is_empty());
    assert_eq!(k.image_pull_policy, ImagePullPolicy::Always);
    assert!(k.image_pull_secrets.is_empty() && k.tolerations.is_empty());
    assert_eq!(k.uid, Some(1000));
    assert_eq!(k.resources.requests["cpu"].as_str(), "500m");
    assert_eq!(k.resources.requests["memory"].as_str(), "512Mi");
    assert_eq!(k.resources.limits["cpu"].as_str(), "2");
    assert_eq!(k.resources.limits["memory"].as_str(), "2Gi");
    assert_eq!(k.extra_pod_config, serde_json::json!({}));
    assert_eq!(k.extra_container_config, serde_json::json!({}));
    assert_eq!(k.poll_interval, 5);
    assert_eq!(k.unschedulable_grace, 300);
    assert!(k.hardening);

    assert_eq!(loaded.layers(), &[Layer::Default]);
    for (key, _, layer) in loaded.provenance() {
        assert_eq!(layer, "default", "{key}");
    }
}

#[test]
fn missing_default_files_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = ConfigLoader::new()
        .system_file(dir.path().join("nope-system.toml"))
        .local_file(dir.path().join("nope-local.toml"))
        .load()
        .unwrap();
    assert_eq!(loaded.config, GraderConfig::default());
    assert_eq!(loaded.layers(), &[Layer::Default]);
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = ConfigLoader::new()
        .files([missing.clone()])
        .load()
        .unwrap_err();
    assert!(matches!(&err, ConfigError::MissingFile { path } if *path == missing));
    assert!(err.to_string().contains(&missing.display().to_string()));
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where a file is expected cannot be read.
    let err = ConfigLoader::new()
        .system_file(dir.path())
        .load()
        .unwrap_err();
    assert!(matches!(err, ConfigError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn invalid_toml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "bad.toml", "max_grading_time = \n");
    let err = ConfigLoader::new().local_file(&f).load().unwrap_err();
    assert!(matches!(err, ConfigError::ParseFile { .. }), "{err}");
    assert!(err.to_string().contains(&f.display().to_string()));
}

/// Every layer overrides the one below, and provenance names it.
#[test]
fn each_layer_overrides_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    // Each key is set by its layer and all layers below it, so the winner is
    // the layer named in the key.
    let system = write(
        dir.path(),
        "system.toml",
        r#"
service_dir = "/srv/system"
max_grading_time = 100
log_cap_bytes = 100
[kube]
namespace = "system"
poll_interval = 100
unschedulable_grace = 100
uid = 100
"#,
    );
    let local = write(
        dir.path(),
        "local.toml",
        r#"
max_grading_time = 200
log_cap_bytes = 200
[kube]
namespace = "local"
poll_interval = 200
unschedulable_grace = 200
"#,
    );
    let c1 = write(
        dir.path(),
        "c1.toml",
        r#"
max_grading_time = 300
log_cap_bytes = 300
[kube]
namespace = "config1"
poll_interval = 300
unschedulable_grace = 300
uid = 300
"#,
    );
    let c2 = write(
        dir.path(),
        "c2.toml",
        r#"
max_grading_time = 400
[kube]
namespace = "config2"
poll_interval = 400
unschedulable_grace = 400
"#,
    );

    // Without --config: defaults < system < local.
    let loaded = ConfigLoader::new()
        .system_file(&system)
        .local_file(&local)
        .load()
        .unwrap();
    assert_eq!(loaded.config.service_dir, PathBuf::from("/srv/system"));
    assert_eq!(
        layer_of(&loaded, "service_dir"),
        format!("file {}", system.display())
    );
    assert_eq!(loaded.config.max_grading_time, 200);
    assert_eq!(
        layer_of(&loaded, "max_grading_time"),
        format!("file {}", local.display())
    );
    assert_eq!(loaded.config.kube.uid, Some(100));
    assert_eq!(
        layer_of(&loaded, "kube.uid"),
        format!("file {}", system.display())
    );
    assert_eq!(loaded.config.kube.namespace.as_deref(), Some("local"));
    assert_eq!(layer_of(&loaded, "relative_input_path"), "default");

    // With --config files: the local file is not read; later files win; then
    // env, then flags.
    let loaded = ConfigLoader::new()
        .system_file(&system)
        .local_file(&local)
        .files([&c1, &c2])
        .env_vars([
            ("GRADER_KUBE__POLL_INTERVAL", "500"),
            ("GRADER_KUBE__UNSCHEDULABLE_GRACE", "500"),
            ("HOME", "/root"),
        ])
        .overrides(Overrides::new().set("kube.unschedulable_grace", 600u64, "--grace"))
        .load()
        .unwrap();
    let c = &loaded.config;
    assert_eq!(
        loaded.layers(),
        &[
            Layer::Default,
            Layer::File(system.clone()),
            Layer::File(c1.clone()),
            Layer::File(c2.clone()),
            Layer::Env("GRADER_KUBE__POLL_INTERVAL".into()),
            Layer::Env("GRADER_KUBE__UNSCHEDULABLE_GRACE".into()),
            Layer::Flag("--grace".into()),
        ]
    );
    assert_eq!(c.kube.uid, Some(300));
    assert_eq!(
        layer_of(&loaded, "kube.uid"),
        format!("file {}", c1.display())
    );
    assert_eq!(
        c.log_cap_bytes, 300,
        "local file must not be read with --config"
    );
    assert_eq!(
        layer_of(&loaded, "log_cap_bytes"),
        format!("file {}", c1.display())
    );
    assert_eq!(c.max_grading_time, 400);
    assert_eq!(
        layer_of(&loaded, "max_grading_time"),
        format!("file {}", c2.display())
    );
    assert_eq!(c.kube.namespace.as_deref(), Some("config2"));
    assert_eq!(
        layer_of(&loaded, "kube.namespace"),
        format!("file {}", c2.display())
    );
    assert_eq!(c.kube.poll_interval, 500);
    assert_eq!(
        layer_of(&loaded, "kube.poll_interval"),
        "env GRADER_KUBE__POLL_INTERVAL"
    );
    assert_eq!(c.kube.unschedulable_grace, 600);
    assert_eq!(
        layer_of(&loaded, "kube.unschedulable_grace"),
        "flag --grace"
    );
    assert_eq!(c.service_dir, PathBuf::from("/srv/system"));
    assert_eq!(
        layer_of(&loaded, "service_dir"),
        format!("file {}", system.display())
    );
    assert_eq!(layer_of(&loaded, "git_executable"), "default");
    assert_eq!(
        loaded.layer_of("kube.unschedulable_grace"),
        Layer::Flag("--grace".into())
    );
}

#[test]
fn flags_override_env() {
    let loaded = ConfigLoader::new()
        .env_vars([("GRADER_BACKEND", "local"), ("GRADER_SERVICE_DIR", "/env")])
        .overrides(
            Overrides::new()
                .set("backend", Backend::Kube, "--backend")
                .set_opt("service_dir", Some(PathBuf::from("/flag")), "--service-dir")
                .set_opt("max_grading_time", None::<u64>, "--max-grading-time"),
        )
        .load()
        .unwrap();
    assert_eq!(loaded.config.backend, Backend::Kube);
    assert_eq!(loaded.config.service_dir, PathBuf::from("/flag"));
    assert_eq!(layer_of(&loaded, "backend"), "flag --backend");
    assert_eq!(layer_of(&loaded, "service_dir"), "flag --service-dir");
    assert_eq!(layer_of(&loaded, "max_grading_time"), "default");
}

#[test]
fn later_flags_win_and_raw_assignments_work() {
    let overrides = Overrides::new()
        .set_assignment("kube.namespace=first", "--set")
        .unwrap()
        .set_assignment("kube.namespace=second", "--set")
        .unwrap()
        .set_assignment("keep_workdirs=true", "--set")
        .unwrap()
        .set_assignment("kube.labels={team = \"x\"}", "--set")
        .unwrap();
    let loaded = ConfigLoader::new().overrides(overrides).load().unwrap();
    assert_eq!(loaded.config.kube.namespace.as_deref(), Some("second"));
    assert!(loaded.config.keep_workdirs);
    assert_eq!(loaded.config.kube.labels["team"], "x");
    assert_eq!(layer_of(&loaded, "kube.namespace"), "flag --set");

    let err = Overrides::new()
        .set_assignment("no-equals-sign", "--set")
        .unwrap_err();
    assert!(err.to_string().contains("--set"), "{err}");
}

#[test]
fn nested_env_key() {
    let loaded = ConfigLoader::new()
        .env_vars([
            ("GRADER_KUBE__NAMESPACE", "grading"),
            ("GRADER_KUBE__CONTEXT", "prod"),
            ("GRADER_KUBE__HARDENING", "false"),
            ("GRADER_KUBE__IMAGE_PULL_POLICY", "IfNotPresent"),
            ("GRADER_MAX_GRADING_TIME", "600"),
        ])
        .load()
        .unwrap();
    let c = &loaded.config;
    assert_eq!(c.kube.namespace.as_deref(), Some("grading"));
    assert_eq!(c.kube.context.as_deref(), Some("prod"));
    assert!(!c.kube.hardening);
    assert_eq!(c.kube.image_pull_policy, ImagePullPolicy::IfNotPresent);
    assert_eq!(c.max_grading_time, 600);
    assert_eq!(
        layer_of(&loaded, "kube.namespace"),
        "env GRADER_KUBE__NAMESPACE"
    );
    assert_eq!(
        layer_of(&loaded, "max_grading_time"),
        "env GRADER_MAX_GRADING_TIME"
    );
}

#[test]
fn env_text_keys_are_taken_verbatim() {
    let loaded = ConfigLoader::new()
        .env_vars([
            ("GRADER_KUBE__NAMESPACE", "123"),
            ("GRADER_KUBE__CONTEXT", "true"),
            (
                "GRADER_KUBE__DEFAULT_IMAGE_NAME",
                "registry/{lecture}:{assignment_id}",
            ),
        ])
        .load()
        .unwrap();
    assert_eq!(loaded.config.kube.namespace.as_deref(), Some("123"));
    assert_eq!(loaded.config.kube.context.as_deref(), Some("true"));
    assert_eq!(
        loaded.config.kube.default_image_name.render("l", "7", "a"),
        "registry/l:7"
    );
}

#[test]
fn env_tables_and_lists_as_json_or_toml() {
    let loaded = ConfigLoader::new()
        .env_vars([
            (
                "GRADER_KUBE__LABELS",
                r#"{"app.kubernetes.io/part-of": "grader", "team": "x"}"#,
            ),
            (
                "GRADER_KUBE__VOLUME",
                r#"{name = "data", hostPath = {path = "/srv"}}"#,
            ),
            ("GRADER_KUBE__IMAGE_PULL_SECRETS", r#"["regcred", "other"]"#),
            (
                "GRADER_KUBE__TOLERATIONS",
                r#"[{"key": "grading", "operator": "Exists", "effect": "NoSchedule"}]"#,
            ),
            (
                "GRADER_KUBE__RESOURCES__LIMITS",
                r#"{"cpu": 4, "memory": "8Gi"}"#,
            ),
            ("GRADER_KUBE__UID", "none"),
        ])
        .load()
        .unwrap();
    let k = &loaded.config.kube;
    assert_eq!(k.labels["app.kubernetes.io/part-of"], "grader");
    assert_eq!(k.labels.len(), 2);
    assert_eq!(
        k.volume,
        serde_json::json!({"name": "data", "hostPath": {"path": "/srv"}})
    );
    assert_eq!(k.image_pull_secrets, vec!["regcred", "other"]);
    assert_eq!(k.tolerations[0]["operator"], "Exists");
    assert_eq!(k.resources.limits["cpu"].as_str(), "4");
    assert_eq!(k.resources.limits["memory"].as_str(), "8Gi");
    assert_eq!(k.resources.requests["cpu"].as_str(), "500m");
    assert_eq!(k.uid, None);
    assert_eq!(layer_of(&loaded, "kube.volume"), "env GRADER_KUBE__VOLUME");
    assert_eq!(layer_of(&loaded, "kube.resources.requests"), "default");
}

#[test]
fn free_form_tables_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sys = write(
        dir.path(),
        "sys.toml",
        r#"
[kube.labels]
a = "1"
b = "2"
[kube.resources.limits]
cpu = "8"
"#,
    );
    let local = write(
        dir.path(),
        "local.toml",
        r#"
[kube.volume]
name = "data"
hostPath = { path = "/srv/grader" }
[kube.labels]
c = "3"
[kube.resources.requests]
memory = "1Gi"
"#,
    );
    let loaded = ConfigLoader::new()
        .system_file(&sys)
        .local_file(&local)
        .load()
        .unwrap();
    let k = &loaded.config.kube;
    // The default volume's persistentVolumeClaim must not leak into the new one.
    assert_eq!(
        k.volume,
        serde_json::json!({"name": "data", "hostPath": {"path": "/srv/grader"}})
    );
    assert_eq!(k.labels.keys().collect::<Vec<_>>(), vec!["c"]);
    // Typed tables merge: limits from the system file, requests from local.
    assert_eq!(k.resources.limits.len(), 1);
    assert_eq!(k.resources.limits["cpu"].as_str(), "8");
    assert_eq!(k.resources.requests.len(), 1);
    assert_eq!(k.resources.requests["memory"].as_str(), "1Gi");
    assert_eq!(
        layer_of(&loaded, "kube.resources.limits"),
        format!("file {}", sys.display())
    );
    assert_eq!(
        layer_of(&loaded, "kube.resources.requests"),
        format!("file {}", local.display())
    );
    assert_eq!(
        layer_of(&loaded, "kube.labels"),
        format!("file {}", local.display())
    );
}

#[test]
fn reserved_and_foreign_env_vars_are_ignored() {
    let loaded = ConfigLoader::new()
        .env_vars([
            ("GRADER_LOG", "debug"),
            ("GRADER_CACHE", "/tmp/cache"),
            ("GRADER_VENV", "/opt/venv"),
            ("GRADER_CONFIG", "/etc/x.toml"),
            ("PATH", "/usr/bin"),
            ("grader_lowercase", "x"),
            ("MY_GRADER_THING", "x"),
        ])
        .load()
        .unwrap();
    assert_eq!(loaded.config, GraderConfig::default());

    // More can be ignored explicitly.
    ConfigLoader::new()
        .env_vars([("GRADER_E2E_IMAGE", "x")])
        .ignore_env_var("GRADER_E2E_IMAGE")
        .load()
        .unwrap();
}

#[test]
fn render_effective_lists_each_key_once_with_its_layer() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "c.toml", "[kube]\nnamespace = \"grading\"\n");
    let loaded = ConfigLoader::new()
        .files([&f])
        .env_vars([("GRADER_MAX_GRADING_TIME", "600")])
        .overrides(Overrides::new().set("backend", Backend::Kube, "--backend"))
        .load()
        .unwrap();
    let text = loaded.render_effective();
    let provenance = loaded.provenance();
    assert_eq!(provenance.len(), KEYS.len());

    // Split the text into sections.
    let mut section = String::new();
    let mut lines: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if !line.trim().is_empty() {
            lines.push((section.clone(), line.to_owned()));
        }
    }
    for info in KEYS {
        let (sec, name) = info.split();
        let (_, _, layer) = provenance.iter().find(|(k, _, _)| k == info.key).unwrap();
        let matching: Vec<&String> = lines
            .iter()
            .filter(|(s, l)| {
                s == sec
                    && (l.starts_with(&format!("{name} = "))
                        || l.starts_with(&format!("# {name} is not set")))
            })
            .map(|(_, l)| l)
            .collect();
        assert_eq!(matching.len(), 1, "{}: {matching:?}\n{text}", info.key);
        assert!(
            matching[0].ends_with(&format!("# {layer}")),
            "{}: {}",
            info.key,
            matching[0]
        );
    }
    assert!(text.contains("max_grading_time = 600"));
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.starts_with("max_grading_time = 600")
                && l.ends_with("# env GRADER_MAX_GRADING_TIME"))
    );
    assert!(lines.iter().any(|(s, l)| s == "kube"
        && l.starts_with("namespace = \"grading\"")
        && l.ends_with(&format!("# file {}", f.display()))));
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.starts_with("backend = \"kube\"") && l.ends_with("# flag --backend"))
    );
}

/// The effective configuration printed by `grader config` (comments removed)
/// is itself a valid configuration file that loads to the same values.
#[test]
fn render_effective_round_trips() {
    let loaded = ConfigLoader::new()
        .env_vars([
            (
                "GRADER_KUBE__LABELS",
                r#"{"app.kubernetes.io/name": "g\"x"}"#,
            ),
            ("GRADER_KUBE__NAMESPACE", "ns"),
            ("GRADER_KUBE__UID", "none"),
            (
                "GRADER_KUBE__EXTRA_POD_CONFIG",
                r#"{"priorityClassName": "low"}"#,
            ),
        ])
        .load()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "effective.toml", &loaded.render_effective());
    let again = ConfigLoader::new().files([&f]).load().unwrap();
    assert_eq!(again.config, loaded.config);
}

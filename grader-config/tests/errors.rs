//! Errors name the key and the layer (file, environment variable, flag).

use std::path::{Path, PathBuf};

use grader_config::{ConfigError, ConfigLoader, Layer, Overrides};

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("grader.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn file_error(text: &str) -> (ConfigError, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), text);
    let err = ConfigLoader::new().files([&f]).load().unwrap_err();
    (err, f, dir)
}

fn env_error(vars: &[(&str, &str)]) -> ConfigError {
    ConfigLoader::new()
        .env_vars(vars.iter().copied())
        .load()
        .unwrap_err()
}

#[test]
fn unknown_key_in_file_names_file_and_key() {
    let (err, f, _d) = file_error("[kube]\nnamspace = \"x\"\n");
    match &err {
        ConfigError::UnknownKey {
            key,
            layer,
            expected,
        } => {
            assert_eq!(key, "kube.namspace");
            assert_eq!(layer, &Layer::File(f.clone()));
            assert!(expected.iter().any(|e| e == "namespace"));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "invalid configuration: unknown key `kube.namspace` in file {} (expected one of: context, namespace,",
            f.display()
        )),
        "{msg}"
    );

    let (err, f, _d) = file_error("max_grading_tim = 5\n");
    assert!(
        err.to_string().contains(&format!(
            "unknown key `max_grading_tim` in file {}",
            f.display()
        )),
        "{err}"
    );

    let (err, _, _d) = file_error("[kube.resources]\nrequest = {cpu = \"1\"}\n");
    assert_eq!(err.key(), Some("kube.resources.request"), "{err}");

    let (err, _, _d) = file_error("[kub]\nnamespace = \"x\"\n");
    assert_eq!(err.key(), Some("kub"), "{err}");
}

#[test]
fn unknown_key_is_attributed_to_the_file_that_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, "[kube]\nnamespace = \"a\"\n").unwrap();
    std::fs::write(&bad, "[kube]\nbogus = 1\n").unwrap();
    let err = ConfigLoader::new()
        .system_file(&bad)
        .files([&good])
        .load()
        .unwrap_err();
    assert_eq!(err.layer(), Some(Layer::File(bad.clone())), "{err}");
}

#[test]
fn unknown_env_variable_names_the_variable() {
    let err = env_error(&[("GRADER_MAX_GRADNG_TIME", "600")]);
    match &err {
        ConfigError::UnknownKey { key, layer, .. } => {
            assert_eq!(key, "max_gradng_time");
            assert_eq!(layer, &Layer::Env("GRADER_MAX_GRADNG_TIME".into()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(
        "unknown key `max_gradng_time` from environment variable GRADER_MAX_GRADNG_TIME"
    ));

    let err = env_error(&[("GRADER_KUBE__NAMESPAC", "x")]);
    assert!(err.to_string().contains("GRADER_KUBE__NAMESPAC"), "{err}");
    assert!(err.to_string().contains("namespace"), "{err}");

    for var in [
        "GRADER_",
        "GRADER___X",
        "GRADER_KUBE__",
        "GRADER_KUBE",
        "GRADER_KUBE__LABELS__APP",
        "GRADER_BACKEND__X",
    ] {
        let err = env_error(&[(var, "x")]);
        assert!(err.to_string().contains(var), "{var}: {err}");
        assert_eq!(err.layer(), Some(Layer::Env(var.into())), "{var}: {err}");
    }
}

#[test]
fn env_tables_refuse_garbage() {
    for (var, value) in [
        ("GRADER_KUBE__LABELS", "app=grader"),
        ("GRADER_KUBE__LABELS", "[1, 2]"),
        ("GRADER_KUBE__VOLUME", "data"),
        ("GRADER_KUBE__IMAGE_PULL_SECRETS", "regcred"),
        ("GRADER_KUBE__IMAGE_PULL_SECRETS", "{a = 1}"),
        ("GRADER_KUBE__LABELS", "{a = \"b\"}\nx = 1"),
    ] {
        let err = env_error(&[(var, value)]);
        assert!(
            matches!(&err, ConfigError::InvalidEnvVar { var: v, .. } if v == var),
            "{var}={value}: {err}"
        );
    }
    // Well-formed but wrong inner types still name the variable.
    let err = env_error(&[("GRADER_KUBE__LABELS", r#"{"a": 1}"#)]);
    assert_eq!(err.layer(), Some(Layer::Env("GRADER_KUBE__LABELS".into())));
}

#[test]
fn wrong_type_names_key_and_layer() {
    let err = env_error(&[("GRADER_MAX_GRADING_TIME", "abc")]);
    assert_eq!(
        err.to_string(),
        "invalid configuration: wrong type for `max_grading_time` from environment variable \
         GRADER_MAX_GRADING_TIME: found string \"abc\", expected u64"
    );

    let (err, f, _d) = file_error("keep_workdirs = \"yes\"\n");
    assert!(matches!(&err, ConfigError::WrongType { key, .. } if key == "keep_workdirs"));
    assert_eq!(err.layer(), Some(Layer::File(f)));

    let (err, f, _d) = file_error("[kube]\nimage_pull_secrets = \"regcred\"\n");
    assert_eq!(err.key(), Some("kube.image_pull_secrets"), "{err}");
    assert_eq!(err.layer(), Some(Layer::File(f)));

    let (err, _, _d) = file_error("kube = 5\n");
    assert_eq!(err.key(), Some("kube"), "{err}");

    let (err, f, _d) = file_error("[kube.labels]\n\"app.kubernetes.io/name\" = 5\n");
    assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
    assert_eq!(err.layer(), Some(Layer::File(f)));

    let err = ConfigLoader::new()
        .overrides(Overrides::new().set("max_grading_time", "soon", "--max-grading-time"))
        .load()
        .unwrap_err();
    assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`max_grading_time` from flag --max-grading-time"),
        "{err}"
    );

    let err = env_error(&[("GRADER_KUBE__UID", "root")]);
    assert_eq!(err.key(), Some("kube.uid"), "{err}");
    assert_eq!(err.layer(), Some(Layer::Env("GRADER_KUBE__UID".into())));
}

#[test]
fn table_required_where_table_expected() {
    let (err, f, _d) = file_error("[kube]\nvolume = \"data\"\n");
    assert_eq!(err.key(), Some("kube.volume"), "{err}");
    assert_eq!(err.layer(), Some(Layer::File(f)));
    assert!(err.to_string().contains("must be a table"), "{err}");

    let (err, _, _d) = file_error("[kube]\nextra_pod_config = [1]\n");
    assert_eq!(err.key(), Some("kube.extra_pod_config"), "{err}");

    let (err, _, _d) = file_error("[kube]\nextra_container_config = 3\n");
    assert_eq!(err.key(), Some("kube.extra_container_config"), "{err}");

    let (err, _, _d) = file_error("[kube]\nextra_volumes = [{name = \"a\"}, \"b\"]\n");
    assert_eq!(err.key(), Some("kube.extra_volumes"), "{err}");
    assert!(err.to_string().contains("entry 1"), "{err}");

    let (err, _, _d) = file_error("[kube]\nextra_volume_mounts = [{name = \"a\"}]\n");
    assert!(err.to_string().contains("mountPath"), "{err}");

    let (err, _, _d) = file_error("[kube]\ntolerations = [\"x\"]\n");
    assert_eq!(err.key(), Some("kube.tolerations"), "{err}");

    let (err, _, _d) = file_error("[kube.volume]\nhostPath = {path = \"/x\"}\n");
    assert!(err.to_string().contains("`name`"), "{err}");
}

#[test]
fn backend_must_be_local_or_kube() {
    let err = env_error(&[("GRADER_BACKEND", "docker")]);
    let msg = err.to_string();
    assert!(msg.contains("`backend`"), "{msg}");
    assert!(msg.contains("GRADER_BACKEND"), "{msg}");
    assert!(msg.contains("\"docker\""), "{msg}");
    assert!(msg.contains("local, kube"), "{msg}");
}

#[test]
fn pull_policy_validation() {
    for ok in ["Always", "IfNotPresent", "Never"] {
        let loaded = ConfigLoader::new()
            .env_vars([("GRADER_KUBE__IMAGE_PULL_POLICY", ok)])
            .load()
            .unwrap();
        assert_eq!(loaded.config.kube.image_pull_policy.as_str(), ok);
    }
    for bad in ["always", "Sometimes", ""] {
        let (err, f, _d) = file_error(&format!("[kube]\nimage_pull_policy = \"{bad}\"\n"));
        assert_eq!(err.key(), Some("kube.image_pull_policy"), "{err}");
        assert_eq!(err.layer(), Some(Layer::File(f)));
        assert!(
            err.to_string().contains("Always, IfNotPresent, Never"),
            "{err}"
        );
    }
}

#[test]
fn timeout_validation_names_all_three() {
    let err = env_error(&[("GRADER_MIN_CELL_TIMEOUT", "500")]);
    match &err {
        ConfigError::CellTimeouts {
            min,
            default,
            max,
            min_layer,
            default_layer,
            max_layer,
        } => {
            assert_eq!((*min, *default, *max), (500, 300, 86400));
            assert_eq!(min_layer, &Layer::Env("GRADER_MIN_CELL_TIMEOUT".into()));
            assert_eq!(default_layer, &Layer::Default);
            assert_eq!(max_layer, &Layer::Default);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    for part in [
        "min_cell_timeout = 500",
        "default_cell_timeout = 300",
        "max_cell_timeout = 86400",
        "env GRADER_MIN_CELL_TIMEOUT",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }

    for (min, default, max) in [(0, 300, 86400), (10, 10, 100), (10, 100, 100), (5, 4, 3)] {
        let (err, f, _d) = file_error(&format!(
            "min_cell_timeout = {min}\ndefault_cell_timeout = {default}\nmax_cell_timeout = {max}\n"
        ));
        assert!(matches!(err, ConfigError::CellTimeouts { .. }), "{err}");
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
    }
    let (err, _, _d) = file_error("min_cell_timeout = -1\n");
    assert_eq!(err.key(), Some("min_cell_timeout"), "{err}");
    assert!(err.to_string().contains("-1"), "{err}");
}

#[test]
fn other_value_checks() {
    for (text, key) in [
        ("max_grading_time = 0\n", "max_grading_time"),
        ("log_cap_bytes = 0\n", "log_cap_bytes"),
        ("[kube]\npoll_interval = 0\n", "kube.poll_interval"),
        ("relative_input_path = \"/abs\"\n", "relative_input_path"),
        ("relative_output_path = \"../up\"\n", "relative_output_path"),
        ("relative_input_path = \"\"\n", "relative_input_path"),
        (
            "relative_input_path = \"x\"\nrelative_output_path = \"x\"\n",
            "relative_output_path",
        ),
        ("service_dir = \"\"\n", "service_dir"),
        ("git_executable = \"\"\n", "git_executable"),
        ("[kube]\nnamespace = \"Not_Valid\"\n", "kube.namespace"),
        ("[kube]\ncontext = \"\"\n", "kube.context"),
        ("[kube]\nuid = 0\n", "kube.uid"),
        ("[kube]\nuid = -5\n", "kube.uid"),
        (
            "[kube]\nimage_pull_secrets = [\"\"]\n",
            "kube.image_pull_secrets",
        ),
        (
            "[kube.resources.limits]\ncpu = \"lots\"\n",
            "kube.resources.limits.cpu",
        ),
        (
            "[kube.resources.limits]\nmemory = -1\n",
            "kube.resources.limits.memory",
        ),
    ] {
        let (err, f, _d) = file_error(text);
        assert_eq!(err.key(), Some(key), "{text}: {err}");
        assert_eq!(err.layer(), Some(Layer::File(f)), "{text}: {err}");
    }
    // uid 0 is fine without hardening; "none" leaves it unset.
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "[kube]\nuid = 0\nhardening = false\n");
    assert_eq!(
        ConfigLoader::new()
            .files([&f])
            .load()
            .unwrap()
            .config
            .kube
            .uid,
        Some(0)
    );
    let f = write(dir.path(), "[kube]\nuid = \"none\"\n");
    assert_eq!(
        ConfigLoader::new()
            .files([&f])
            .load()
            .unwrap()
            .config
            .kube
            .uid,
        None
    );
}

#[test]
fn flags_with_unknown_keys_name_the_flag() {
    let err = ConfigLoader::new()
        .overrides(Overrides::new().set("kube.namespce", "x", "--namespace"))
        .load()
        .unwrap_err();
    assert_eq!(
        err.layer(),
        Some(Layer::Flag("--namespace".into())),
        "{err}"
    );
    assert_eq!(err.key(), Some("kube.namespce"));

    let err = ConfigLoader::new()
        .overrides(Overrides::new().set_raw("kube.labels", "not a table", "--set"))
        .load()
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidOverride { flag, .. } if flag == "--set"),
        "{err}"
    );
}

#[test]
fn template_errors_name_key_value_and_layer() {
    for bad in [
        "{lecture",
        "image}",
        "{lecturer}_x",
        "{}",
        "a{b{lecture}}",
        "",
    ] {
        let err = ConfigLoader::new()
            .env_vars([("GRADER_KUBE__DEFAULT_IMAGE_NAME", bad)])
            .load()
            .unwrap_err();
        assert_eq!(err.key(), Some("kube.default_image_name"), "{bad}: {err}");
        assert_eq!(
            err.layer(),
            Some(Layer::Env("GRADER_KUBE__DEFAULT_IMAGE_NAME".into())),
            "{bad}: {err}"
        );
        if !bad.is_empty() {
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }
}

#[test]
fn from_process_builds_without_panicking() {
    let _ = ConfigLoader::from_process();
}

#[test]
fn errors_have_no_panics_on_odd_input() {
    // Odd but well-formed TOML must produce errors, not panics.
    for text in [
        "service_dir = 1979-05-27T07:32:00Z\n",
        "[kube]\nlabels = [[1]]\n",
        "[[kube]]\n",
        "kube.resources = 3\n",
        "[kube.resources]\nrequests = 1\n",
        "max_grading_time = 1e400\n",
        "max_grading_time = 18446744073709551616\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), text);
        let err = ConfigLoader::new().files([&f]).load().unwrap_err();
        assert!(err.to_string().contains(&f.display().to_string()), "{err}");
    }
}

#[test]
fn the_local_table_is_read_and_checked_like_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "[local]\nwarm_workers = 2\nwarm_recycle_after = 0\n",
    );
    let loaded = ConfigLoader::new()
        .files([&f])
        .env_vars([("GRADER_LOCAL__WARM_MAX_RSS_GROWTH_MIB", "64")])
        .load()
        .unwrap();
    let local = &loaded.config.local;
    assert_eq!(
        (
            local.warm_workers,
            local.warm_recycle_after,
            local.warm_max_rss_growth_mib
        ),
        (2, 0, 64)
    );
    assert_eq!(
        local.warm_start_timeout, 60,
        "unset keys keep their defaults"
    );

    let (err, f, _d) = file_error("[local]\nwarm_worker = 2\n");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "unknown key `local.warm_worker` in file {}",
            f.display()
        )) && msg.contains("warm_workers"),
        "{msg}"
    );
    let err = env_error(&[("GRADER_LOCAL__WARM_WORKERS", "1000")]);
    let msg = err.to_string();
    assert!(
        msg.contains("local.warm_workers")
            && msg.contains("GRADER_LOCAL__WARM_WORKERS")
            && msg.contains("at most 256, found 1000"),
        "{msg}"
    );
    let err = env_error(&[("GRADER_LOCAL__WARM_WORKERS", "two")]);
    assert!(
        err.to_string().contains("GRADER_LOCAL__WARM_WORKERS"),
        "{err}"
    );
    let err = ConfigLoader::new()
        .overrides(
            Overrides::new()
                .set_assignment("local.warm_start_timeout=0", "--set")
                .unwrap(),
        )
        .load()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("local.warm_start_timeout")
            && msg.contains("greater than 0")
            && msg.contains("--set"),
        "{msg}"
    );
}

/// The grading tool runs inside the job's input dir: a relative `service_dir` would point
/// somewhere else for it and fail every job, so it is refused before anything runs.
#[test]
fn a_relative_service_dir_is_refused_naming_key_and_layer() {
    for text in [
        "service_dir = \"srv\"\n",
        "service_dir = \"./srv\"\n",
        "service_dir = \"../srv\"\n",
    ] {
        let (err, f, _d) = file_error(text);
        assert_eq!(err.key(), Some("service_dir"), "{text}: {err}");
        assert_eq!(err.layer(), Some(Layer::File(f)), "{text}: {err}");
        assert!(err.to_string().contains("absolute"), "{err}");
    }
    let err = env_error(&[("GRADER_SERVICE_DIR", "data/grader")]);
    assert_eq!(err.key(), Some("service_dir"), "{err}");
    assert_eq!(
        err.layer(),
        Some(Layer::Env("GRADER_SERVICE_DIR".into())),
        "{err}"
    );
    assert!(err.to_string().contains("\"data/grader\""), "{err}");
    let err = ConfigLoader::new()
        .overrides(Overrides::new().set_opt(
            "service_dir",
            Some(PathBuf::from("rel")),
            "--service-dir",
        ))
        .load()
        .unwrap_err();
    assert_eq!(
        err.layer(),
        Some(Layer::Flag("--service-dir".into())),
        "{err}"
    );
    // An absolute one is fine.
    let loaded = ConfigLoader::new()
        .env_vars([("GRADER_SERVICE_DIR", "/srv/grader")])
        .load()
        .unwrap();
    assert_eq!(loaded.config.service_dir, PathBuf::from("/srv/grader"));
}

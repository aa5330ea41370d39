//! The typed pieces: templates, quantities, enums; the key list and the
//! documentation generated from it.

use std::collections::BTreeSet;

use grader_config::{
    Backend, ConfigLoader, GraderConfig, ImageNameTemplate, ImagePullPolicy, KEYS, KeyKind,
    Quantity, TemplateError, reference_markdown, schema,
};

#[test]
fn template_rendering() {
    let t = ImageNameTemplate::parse("{lecture}_image").unwrap();
    assert_eq!(t.render("ml", "7", "hw1"), "ml_image");
    let t = ImageNameTemplate::parse("reg.example/{lecture}/{assignment_name}:{assignment_id}")
        .unwrap();
    assert_eq!(t.render("ml", "7", "hw1"), "reg.example/ml/hw1:7");
    let t = ImageNameTemplate::parse("{{literal}}-{lecture}{lecture}").unwrap();
    assert_eq!(t.render("a", "b", "c"), "{literal}-aa");
    let t = ImageNameTemplate::parse("plain").unwrap();
    assert_eq!(t.render("a", "b", "c"), "plain");
    assert_eq!(t.as_str(), "plain");
    assert_eq!(
        ImageNameTemplate::default(),
        ImageNameTemplate::parse("{lecture}_image").unwrap()
    );
    let t = ImageNameTemplate::parse("ü{lecture}ü").unwrap();
    assert_eq!(t.render("x", "", ""), "üxü");
}

#[test]
fn template_validation() {
    assert!(matches!(
        ImageNameTemplate::parse("{lecturer}"),
        Err(TemplateError::UnknownPlaceholder { placeholder, .. }) if placeholder == "lecturer"
    ));
    assert!(matches!(
        ImageNameTemplate::parse("{}"),
        Err(TemplateError::UnknownPlaceholder { .. })
    ));
    assert!(matches!(
        ImageNameTemplate::parse("x{lecture"),
        Err(TemplateError::UnbalancedBrace { position: 1, .. })
    ));
    assert!(matches!(
        ImageNameTemplate::parse("x}"),
        Err(TemplateError::UnbalancedBrace { position: 1, .. })
    ));
    assert!(matches!(
        ImageNameTemplate::parse("{lec{ture}"),
        Err(TemplateError::UnbalancedBrace { .. })
    ));
    assert!(matches!(
        ImageNameTemplate::parse(""),
        Err(TemplateError::Empty)
    ));
    let err = ImageNameTemplate::parse("{foo}_image").unwrap_err();
    assert!(err.to_string().contains("\"{foo}_image\""), "{err}");
    assert!(err.to_string().contains("{foo}"), "{err}");
}

#[test]
fn quantities() {
    for ok in [
        "500m", "2", "2Gi", "512Mi", "0.5", "1.5Gi", "1e3", "1E-3", "+1", "100k", ".5",
    ] {
        assert_eq!(Quantity::parse(ok).unwrap().as_str(), ok);
    }
    for bad in ["", "abc", "1.2.3", "-1", "1Gb", "1e", "m", "1 Gi"] {
        assert!(Quantity::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn enums_parse_and_print() {
    assert_eq!("kube".parse::<Backend>().unwrap(), Backend::Kube);
    assert_eq!("local".parse::<Backend>().unwrap(), Backend::Local);
    let err = "docker".parse::<Backend>().unwrap_err();
    assert!(err.to_string().contains("local, kube"), "{err}");
    assert_eq!(Backend::Kube.to_string(), "kube");
    assert_eq!(
        "IfNotPresent".parse::<ImagePullPolicy>().unwrap(),
        ImagePullPolicy::IfNotPresent
    );
    assert!("ifnotpresent".parse::<ImagePullPolicy>().is_err());
    assert_eq!(ImagePullPolicy::Never.to_string(), "Never");
}

/// Leaf keys of a serialized config, stopping at the keys [`KEYS`] lists as
/// tables/lists.
fn leaves(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if schema::is_section(&key) {
                leaves(&key, v, out);
            } else {
                out.insert(key);
            }
        }
    }
}

/// KEYS lists exactly the fields of GraderConfig, with kinds matching their
/// types.
#[test]
fn key_list_matches_the_struct() {
    let json = serde_json::to_value(GraderConfig::default()).unwrap();
    let mut fields = BTreeSet::new();
    leaves("", &json, &mut fields);
    let listed: BTreeSet<String> = KEYS.iter().map(|k| k.key.to_owned()).collect();
    assert_eq!(fields, listed);
    assert_eq!(listed.len(), KEYS.len(), "duplicate keys in KEYS");
    for info in KEYS {
        let value = info
            .key
            .split('.')
            .try_fold(&json, |v, s| v.get(s))
            .unwrap();
        match info.kind {
            KeyKind::Table => assert!(value.is_object(), "{}", info.key),
            KeyKind::List => assert!(value.is_array(), "{}", info.key),
            KeyKind::Scalar => assert!(
                value.is_number() || value.is_boolean(),
                "{}: {value}",
                info.key
            ),
            KeyKind::Text => assert!(value.is_string() || value.is_null(), "{}", info.key),
        }
        assert!(!info.doc.is_empty() && !info.ty.is_empty());
    }
}

/// CONFIG.md carries the generated reference table, and its example file
/// loads.
#[test]
fn config_md_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/CONFIG.md");
    let text = std::fs::read_to_string(path).unwrap();
    let table = reference_markdown();
    assert!(
        text.contains(&table),
        "CONFIG.md is out of date; replace its table with:\n{table}"
    );
    for info in KEYS {
        assert!(text.contains(&info.env_var()), "{}", info.key);
    }

    let start = text.find("```toml\n").expect("an example ```toml block") + 8;
    let end = start + text[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("grader.toml");
    std::fs::write(&f, &text[start..end]).unwrap();
    let loaded = ConfigLoader::new().files([&f]).load().unwrap();
    assert_eq!(loaded.config.backend, Backend::Kube);
}

//! Properties of slugs, pod names and merging.

use grader_model::{
    Changes, get_k8s_model, hashed_slug, is_dns1123_label, pod_name, update_k8s_model,
};
use k8s_openapi::api::core::v1::PodSpec;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// (limit, hash_length) pairs the function accepts.
fn slug_params() -> impl Strategy<Value = (usize, usize)> {
    (3usize..300).prop_flat_map(|limit| (Just(limit), 1..=(limit - 2).min(64)))
}

proptest! {
    #[test]
    fn ascii_slugs_fit_the_limit_and_are_deterministic(
        slug in "[ -~]{0,320}",
        (limit, hash_length) in slug_params(),
    ) {
        let first = hashed_slug(&slug, limit, hash_length).expect("valid parameters");
        prop_assert!(first.chars().count() <= limit, "{} > {limit}", first.len());
        prop_assert_eq!(hashed_slug(&slug, limit, hash_length).expect("valid"), first);
    }

    #[test]
    fn short_slugs_pass_through(
        slug in "\\PC{0,80}",
        (limit, hash_length) in slug_params(),
    ) {
        prop_assume!(slug.chars().count() < limit - hash_length);
        prop_assert_eq!(hashed_slug(&slug, limit, hash_length).expect("valid"), slug);
    }

    #[test]
    fn long_slugs_with_a_shared_prefix_stay_distinct(
        prefix in "[a-z0-9-]{300}",
        a in "\\PC{0,20}",
        b in "\\PC{0,20}",
        (limit, hash_length) in (20usize..300).prop_flat_map(|l| (Just(l), 8..=(l - 2).min(64))),
    ) {
        prop_assume!(a != b);
        let x = hashed_slug(&format!("{prefix}{a}"), limit, hash_length).expect("valid");
        let y = hashed_slug(&format!("{prefix}{b}"), limit, hash_length).expect("valid");
        prop_assert_ne!(x, y);
    }

    #[test]
    fn pod_names_are_dns1123_labels(username in any::<String>(), id in any::<u64>()) {
        let name = pod_name(&username, id);
        prop_assert!(is_dns1123_label(&name), "{:?} -> {}", username, name);
        prop_assert!(name.starts_with("autograde-job-"));
        let suffix = format!("-{id}");
        prop_assert!(name.ends_with(&suffix), "{}", name);
    }

    #[test]
    fn unicode_pod_names_are_dns1123_labels(username in "\\PC{0,80}", id in any::<u64>()) {
        let name = pod_name(&username, id);
        prop_assert!(is_dns1123_label(&name), "{:?} -> {}", username, name);
    }

    #[test]
    fn different_unsanitizable_usernames_do_not_collide(
        a in "[^a-zA-Z0-9\\x00-\\x7f]{1,10}",
        b in "[^a-zA-Z0-9\\x00-\\x7f]{1,10}",
        id in any::<u64>(),
    ) {
        prop_assume!(a != b);
        let (x, y) = (pod_name(&a, id), pod_name(&b, id));
        // A few non-ASCII letters lowercase to ASCII ('K' Kelvin sign) and keep a sanitized
        // form; where nothing is left, the hash of the original username tells them apart.
        let (_, sanitized_a) = reference_name(&a, id);
        let (_, sanitized_b) = reference_name(&b, id);
        if sanitized_a.is_empty() || sanitized_b.is_empty() {
            prop_assert_ne!(x, y);
        }
    }

    #[test]
    fn ascii_pod_names_follow_the_reference_when_they_fit(
        username in "[a-zA-Z0-9._@ -]{0,60}",
        id in prop_oneof![0u64..1000, any::<u64>()],
    ) {
        let name = pod_name(&username, id);
        let (reference, sanitized) = reference_name(&username, id);
        if !sanitized.is_empty() && reference.len() <= 63 {
            prop_assert_eq!(name, reference);
        } else {
            prop_assert!(is_dns1123_label(&name));
            prop_assert_ne!(name, reference);
        }
    }
}

/// The reference rule, for ASCII usernames: the name and the sanitized username in it.
fn reference_name(username: &str, id: u64) -> (String, String) {
    let lowered = username.to_lowercase();
    let mut sanitized = String::new();
    for c in lowered.chars() {
        if c.is_ascii_alphanumeric() {
            sanitized.push(c);
        } else if !sanitized.ends_with('-') {
            sanitized.push('-');
        }
    }
    let cut: String = sanitized.chars().take(50).collect();
    let user = cut.trim_matches('-').to_owned();
    (format!("autograde-job-{user}-{id}"), user)
}

/// PodSpec fields used by the merge properties: (API name, attribute name, value strategy).
fn pool() -> Vec<(&'static str, &'static str, BoxedStrategy<Value>)> {
    let text = || "[a-z]{0,6}".prop_map(Value::from).boxed();
    let map = || {
        prop::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..3)
            .prop_map(|m| json!(m))
            .boxed()
    };
    vec![
        (
            "activeDeadlineSeconds",
            "active_deadline_seconds",
            (0i64..3).prop_map(Value::from).boxed(),
        ),
        (
            "automountServiceAccountToken",
            "automount_service_account_token",
            any::<bool>().prop_map(Value::from).boxed(),
        ),
        ("dnsPolicy", "dns_policy", text()),
        (
            "hostIPC",
            "host_ipc",
            any::<bool>().prop_map(Value::from).boxed(),
        ),
        ("hostname", "hostname", text()),
        ("nodeSelector", "node_selector", map()),
        ("priorityClassName", "priority_class_name", text()),
        (
            "securityContext",
            "security_context",
            prop_oneof![
                Just(json!({})),
                (0i64..3).prop_map(|u| json!({"runAsUser": u})),
            ]
            .boxed(),
        ),
        ("serviceAccountName", "service_account_name", text()),
        (
            "tolerations",
            "tolerations",
            prop::collection::vec(
                "[a-z]{1,3}".prop_map(|k| json!({"key": k, "operator": "Exists"})),
                0..2,
            )
            .prop_map(Value::from)
            .boxed(),
        ),
    ]
}

fn python_truthy(api: &str, value: &Value) -> bool {
    match value {
        Value::Null => false,
        _ if api == "securityContext" => true,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn target_strategy() -> impl Strategy<Value = Map<String, Value>> {
    let fields: Vec<_> = pool()
        .into_iter()
        .map(|(api, _, value)| prop::option::of(value).prop_map(move |v| (api, v)))
        .collect();
    fields.prop_map(|fields| {
        let mut map = Map::new();
        map.insert("containers".into(), json!([{"name": "autograde"}]));
        for (api, value) in fields {
            if let Some(value) = value {
                map.insert(api.into(), value);
            }
        }
        map
    })
}

/// Changes as (API name, key as written, value or null), in pool order.
fn changes_strategy() -> impl Strategy<Value = Vec<(&'static str, &'static str, Value)>> {
    let fields: Vec<_> = pool()
        .into_iter()
        .map(|(api, attr, value)| {
            let value = prop_oneof![4 => value, 1 => Just(Value::Null)];
            prop::option::of((any::<bool>(), value)).prop_map(move |change| {
                change.map(|(snake, v)| (api, if snake { attr } else { api }, v))
            })
        })
        .collect();
    fields.prop_map(|changes| changes.into_iter().flatten().collect())
}

proptest! {
    #[test]
    fn json_map_merge_sets_exactly_the_given_keys(
        target in target_strategy(),
        changes in changes_strategy(),
    ) {
        let mut spec: PodSpec = get_k8s_model(&Value::Object(target.clone())).expect("valid target");
        let before = serde_json::to_value(&spec).expect("serializes");
        let map: Map<String, Value> =
            changes.iter().map(|(_, key, v)| ((*key).to_owned(), v.clone())).collect();
        let overrides = update_k8s_model(&mut spec, Changes::Map(map)).expect("valid changes");
        let after = serde_json::to_value(&spec).expect("serializes");

        for (api, _, value) in &changes {
            prop_assert_eq!(after.get(*api), (!value.is_null()).then_some(value), "{}", api);
        }
        for (key, value) in before.as_object().expect("object") {
            if !changes.iter().any(|(api, _, _)| api == key) {
                prop_assert_eq!(after.get(key), Some(value), "{} changed", key);
            }
        }
        for key in after.as_object().expect("object").keys() {
            prop_assert!(
                before.get(key).is_some() || changes.iter().any(|(api, _, _)| api == key),
                "{} appeared", key
            );
        }
        let expected: Vec<&str> = changes
            .iter()
            .filter(|(api, _, _)| before.get(*api).is_some_and(|v| python_truthy(api, v)))
            .map(|(api, _, _)| *api)
            .collect();
        let got: Vec<&str> = overrides.iter().map(|o| o.api_name).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn merging_a_model_onto_itself_changes_nothing(target in target_strategy()) {
        let mut spec: PodSpec = get_k8s_model(&Value::Object(target)).expect("valid target");
        let original = spec.clone();
        let overrides = update_k8s_model(&mut spec, Changes::Model(original.clone())).expect("valid");
        prop_assert_eq!(&spec, &original);
        for o in &overrides {
            prop_assert_eq!(&o.previous, &o.new);
        }
    }
}

//! Whatever the loader accepts can grade, and whatever it refuses names the key: generated
//! configurations (values an operator might write, good and bad) are loaded; an accepted one
//! must give settings whose pipeline accepts a valid job and whose kube backend builds its
//! pod, a refused one must name one of the keys that were set.

use std::path::Path;

use grader_config::{ConfigLoader, Loaded};
use grader_local::JobKind;
use proptest::prelude::*;

/// A valid job with an inline gradebook.
fn job() -> grader_local::Job {
    let text = r#"{"lecture": {"code": "cs101"},
        "assignment": {"id": 3, "name": "hw1", "settings": {"cell_timeout": 120},
                       "gradebook": {"notebooks": {}}},
        "submission": {"id": 42, "commit_hash": "0f3c9a1e", "username": "alice"}}"#;
    grader_local::job_file::parse_job(text, Path::new("/"), "test").unwrap()
}

fn relative() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("convert_in".to_string()),
        Just("./convert_in".to_string()),
        Just("data/convert_in".to_string()),
        Just("../convert_in".to_string()),
        Just("/abs".to_string()),
        Just("a//b".to_string()),
        Just("x/.".to_string()),
        Just("".to_string()),
        "[a-z]{1,8}(/[a-z]{1,8}){0,2}",
    ]
}

fn template() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{lecture}_image".to_string()),
        Just("reg/{lecture}/{assignment_name}:{assignment_id}".to_string()),
        Just("{lecturer}".to_string()),
        Just("x{".to_string()),
        Just("{{x}}".to_string()),
        Just("".to_string()),
    ]
}

fn namespace() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("grading".to_string())),
        Just(Some("Grading".to_string())),
        Just(Some("-x".to_string())),
        "[a-z][a-z0-9-]{0,10}[a-z0-9]".prop_map(Some),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..100, 100u64..100_000]
}

prop_compose! {
    fn vars()(
        service_dir in prop_oneof![Just("/srv/grader"), Just("srv"), Just("/")],
        input in relative(),
        output in relative(),
        min in number(), default in number(), max in number(),
        max_grading_time in number(),
        log_cap in number(),
        poll in number(),
        template in template(),
        namespace in namespace(),
        uid in prop_oneof![Just("1000"), Just("0"), Just("none"), Just("-5")],
        hardening in any::<bool>(),
        warm in 0u64..300,
    ) -> Vec<(String, String)> {
        let mut v = vec![
            ("GRADER_SERVICE_DIR".into(), service_dir.to_string()),
            ("GRADER_RELATIVE_INPUT_PATH".into(), input),
            ("GRADER_RELATIVE_OUTPUT_PATH".into(), output),
            ("GRADER_MIN_CELL_TIMEOUT".into(), min.to_string()),
            ("GRADER_DEFAULT_CELL_TIMEOUT".into(), default.to_string()),
            ("GRADER_MAX_CELL_TIMEOUT".into(), max.to_string()),
            ("GRADER_MAX_GRADING_TIME".into(), max_grading_time.to_string()),
            ("GRADER_LOG_CAP_BYTES".into(), log_cap.to_string()),
            ("GRADER_KUBE__POLL_INTERVAL".into(), poll.to_string()),
            ("GRADER_KUBE__DEFAULT_IMAGE_NAME".into(), template),
            ("GRADER_KUBE__UID".into(), uid.to_string()),
            ("GRADER_KUBE__HARDENING".into(), hardening.to_string()),
            ("GRADER_LOCAL__WARM_WORKERS".into(), warm.to_string()),
        ];
        if let Some(ns) = namespace {
            v.push(("GRADER_KUBE__NAMESPACE".into(), ns));
        }
        v
    }
}

/// The dotted key of a `GRADER_*` variable.
fn key_of(var: &str) -> String {
    var.trim_start_matches("GRADER_")
        .to_lowercase()
        .replace("__", ".")
}

fn grades(loaded: &Loaded) -> Result<(), String> {
    let settings = &loaded.settings;
    let job = job();
    let task = settings
        .executor
        .task(&job, JobKind::Autograde)
        .map_err(|e| format!("the pipeline refused a valid job: {e}"))?;
    let image = settings.kube.default_image_name.render("cs101", "3", "hw1");
    grader_kube::build_pod(&settings.kube, &task, &image)
        .map_err(|e| format!("the kube backend could not build the pod: {e}"))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_accepted_configuration_grades_and_a_refused_one_names_its_key(vars in vars()) {
        match ConfigLoader::new().env_vars(vars.clone()).load() {
            Ok(loaded) => {
                if let Err(e) = grades(&loaded) {
                    prop_assert!(false, "{e}\nwith {vars:?}");
                }
            }
            Err(e) => {
                let keys: Vec<String> = vars.iter().map(|(k, _)| key_of(k)).collect();
                match e.key() {
                    Some(key) => prop_assert!(
                        keys.iter().any(|k| k == key),
                        "refused naming {key:?}, which was not set: {e}"
                    ),
                    None => prop_assert!(
                        matches!(e, grader_config::ConfigError::CellTimeouts { .. }),
                        "refused without naming a key: {e}"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_dotted_relative_input_path_is_refused_by_the_configuration_naming_the_key() {
    let err = ConfigLoader::new()
        .env_vars([("GRADER_RELATIVE_INPUT_PATH", "./convert_in")])
        .load()
        .unwrap_err();
    assert_eq!(err.key(), Some("relative_input_path"), "{err}");
    assert!(err.to_string().contains("./convert_in"), "{err}");
    assert!(
        err.to_string().contains("GRADER_RELATIVE_INPUT_PATH"),
        "the layer is named: {err}"
    );
}

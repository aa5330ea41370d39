//! The gradebook model against real `grader-convert` output and the reference's score rules.
//!
//! Fixtures are in testdata/gradebook (see its README). Every expected score below is what the
//! reference's `GradeBookModel` (grader-service 0.12.5, Python 3.11) computes for the same file;
//! testdata/gradebook/regenerate.sh prints those numbers.

use grader_model::{Gradebook, GradebookError, whitelist_patterns};
use serde_json::{Value, json};

const RELEASE: &[u8] = include_bytes!("../testdata/gradebook/release.json");
const AUTOGRADED_BOB: &[u8] = include_bytes!("../testdata/gradebook/autograded-bob.json");
const MANUAL_BOB: &[u8] = include_bytes!("../testdata/gradebook/manual-bob.json");
const SYNTHETIC: &[u8] = include_bytes!("../testdata/gradebook/synthetic.json");

fn book(bytes: &[u8]) -> Gradebook {
    Gradebook::from_slice(bytes).expect("fixture is a valid gradebook")
}

fn value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("fixture is JSON")
}

/// Exact float equality, so that a last-bit difference from the reference shows up.
#[track_caller]
fn assert_same(got: f64, expected: f64) {
    assert_eq!(
        got.to_bits(),
        expected.to_bits(),
        "got {got:?}, expected {expected:?}"
    );
}

#[test]
fn release_gradebook_has_no_grades_yet() {
    let gb = book(RELEASE);
    assert_eq!(gb.notebook_names(), ["hw1"]);
    // generate_assignment ran with allowed_files ["*"], so it recorded every copied file.
    assert_eq!(gb.extra_files(), ["hw1.ipynb", "data.csv"]);
    assert_same(gb.score(), 0.0);
    assert_same(gb.max_score(), 6.0);
}

#[test]
fn autograded_scores_match_grader_convert() {
    // grader-convert autograde of examples/cs101/students/bob: test_load_rows 1.0,
    // test_total_value 0, test_most_expensive 1.5 (partial credit); GradeBookModel: 2.5 / 6.0.
    let gb = book(AUTOGRADED_BOB);
    assert_same(gb.score(), 2.5);
    assert_same(gb.max_score(), 6.0);
    assert_same(gb.notebook_score("hw1").unwrap(), 2.5);
    assert_same(gb.notebook_max_score("hw1").unwrap(), 6.0);
    assert_eq!(gb.notebook_score("hw2"), None);
    assert_eq!(gb.notebook_max_score("hw2"), None);
}

#[test]
fn manually_graded_fixture_scores() {
    // manual_score 1.5 replaces auto 0 on test_total_value; extra credit 0.5 on
    // test_most_expensive: 1.0 + 1.5 + (1.5 + 0.5). GradeBookModel: 4.5 / 6.0.
    let gb = book(MANUAL_BOB);
    assert_same(gb.score(), 4.5);
    assert_same(gb.max_score(), 6.0);
}

#[test]
fn synthetic_scores_match_the_reference_to_the_last_bit() {
    // Task cells, a markdown grade cell, manual overrides, extra credit on a grade without
    // scores, a grade with nothing set, and sums that are inexact in binary.
    let gb = book(SYNTHETIC);
    assert_eq!(gb.notebook_names(), ["part1", "part2"]);
    assert_same(gb.notebook_score("part1").unwrap(), 2.8500000000000005);
    assert_same(gb.notebook_max_score("part1").unwrap(), 10.0);
    assert_same(gb.notebook_score("part2").unwrap(), 0.30000000000000004);
    assert_same(gb.notebook_max_score("part2").unwrap(), 0.30000000000000004);
    assert_same(gb.score(), 3.1500000000000004);
    assert_same(gb.max_score(), 10.3);
}

fn with_grade(mut doc: Value, grade: &str, field: &str, v: Value) -> Gradebook {
    doc["notebooks"]["hw1"]["grades_dict"][grade][field] = v;
    Gradebook::from_value(doc).expect("still valid")
}

#[test]
fn manual_score_overrides_auto_score() {
    let doc = value(AUTOGRADED_BOB);
    // Lowering: the autograder gave 1.0, the grader 0.
    assert_same(
        with_grade(doc.clone(), "test_load_rows", "manual_score", json!(0)).score(),
        1.5,
    );
    // Raising: the autograder gave 0, the grader 2.
    assert_same(
        with_grade(doc, "test_total_value", "manual_score", json!(2.0)).score(),
        4.5,
    );
}

#[test]
fn extra_credit_adds_to_either_score_or_stands_alone() {
    let doc = value(AUTOGRADED_BOB);
    assert_same(
        with_grade(doc.clone(), "test_load_rows", "extra_credit", json!(0.25)).score(),
        2.75,
    );

    let mut doc = doc;
    let grade = &mut doc["notebooks"]["hw1"]["grades_dict"]["test_total_value"];
    grade["auto_score"] = Value::Null;
    grade["manual_score"] = Value::Null;
    let gb = Gradebook::from_value(doc.clone()).unwrap();
    assert_same(gb.score(), 2.5); // neither score: 0
    doc["notebooks"]["hw1"]["grades_dict"]["test_total_value"]["extra_credit"] = json!(1);
    let gb = Gradebook::from_value(doc).unwrap();
    assert_same(gb.score(), 3.5); // neither score: the extra credit alone
    assert_same(gb.max_score(), 6.0); // extra credit never raises the maximum
}

#[test]
fn carry_over_brings_manual_grades_and_comments_into_the_release_gradebook() {
    let mut gb = book(RELEASE);
    let graded = book(MANUAL_BOB);
    gb.carry_over_manual_grades(&graded);

    let got = gb.to_value();
    let release = value(RELEASE);
    let manual = value(MANUAL_BOB);
    for key in ["grades_dict", "comments_dict"] {
        assert_eq!(
            got["notebooks"]["hw1"][key], manual["notebooks"]["hw1"][key],
            "{key}"
        );
    }
    // Everything else stays as in the release gradebook.
    for key in [
        "grade_cells_dict",
        "solution_cells_dict",
        "task_cells_dict",
        "source_cells_dict",
    ] {
        assert_eq!(
            got["notebooks"]["hw1"][key], release["notebooks"]["hw1"][key],
            "{key}"
        );
    }
    assert_eq!(got["extra_files"], release["extra_files"]);
    assert_same(gb.score(), 4.5);
    assert_eq!(
        got["notebooks"]["hw1"]["comments_dict"]["total_value"]["manual_comment"],
        "Multiply by the quantity; half credit."
    );
}

#[test]
fn carry_over_touches_only_notebooks_both_gradebooks_have() {
    let mut ours = value(RELEASE);
    let hw2 = json!({"grade_cells_dict": {}, "grades_dict": {"keep": {"auto_score": 1}},
                     "comments_dict": {"keep": {}}, "mine": true});
    ours["notebooks"]["hw2"] = hw2.clone();
    let mut theirs = value(MANUAL_BOB);
    theirs["notebooks"]["other"] =
        json!({"grades_dict": {"x": {"manual_score": 5}}, "comments_dict": {}});
    theirs["notebooks"]["hw1"]["flagged"] = json!(true);

    let mut gb = Gradebook::from_value(ours).unwrap();
    gb.carry_over_manual_grades(&Gradebook::from_value(theirs).unwrap());
    let got = gb.to_value();

    assert_eq!(gb.notebook_names(), ["hw1", "hw2"]);
    assert_eq!(got["notebooks"]["hw2"], hw2);
    assert_eq!(
        got["notebooks"]["hw1"]["flagged"],
        json!(false),
        "only grades and comments move"
    );
    assert_same(gb.score(), 4.5 + 1.0);
}

#[test]
fn unknown_fields_survive_a_round_trip_in_order() {
    let mut doc = value(MANUAL_BOB);
    doc["zz_root"] = json!({"nested": [1, 2.5, "x", null]});
    let nb = &mut doc["notebooks"]["hw1"];
    nb["notebook_extra"] = json!("kept");
    nb["grades_dict"]["test_load_rows"]["grade_extra"] = json!({"a": 1});
    nb["grade_cells_dict"]["test_load_rows"]["cell_extra"] = json!([true]);
    nb["comments_dict"]["load_rows"]["comment_extra"] = json!(0.1);
    nb["source_cells_dict"]["setup"]["source_extra"] = json!(-3);
    let original = serde_json::to_string(&doc).unwrap();

    let gb = Gradebook::from_value(doc.clone()).unwrap();
    assert_eq!(gb.to_value(), doc);
    assert_eq!(
        serde_json::to_string(&gb.to_value()).unwrap(),
        original,
        "key order kept"
    );

    let reread = Gradebook::from_slice(&gb.to_vec_pretty()).unwrap();
    assert_eq!(reread, gb);
    assert_eq!(serde_json::to_string(&reread.to_value()).unwrap(), original);

    // A change leaves the unknown fields alone too.
    let mut changed = book(RELEASE);
    changed.carry_over_manual_grades(&gb);
    let v = changed.to_value();
    assert_eq!(
        v["notebooks"]["hw1"]["grades_dict"]["test_load_rows"]["grade_extra"],
        json!({"a": 1})
    );
    assert_eq!(
        v["notebooks"]["hw1"]["comments_dict"]["load_rows"]["comment_extra"],
        json!(0.1)
    );
}

#[test]
fn real_files_round_trip_unchanged() {
    for bytes in [RELEASE, AUTOGRADED_BOB, MANUAL_BOB, SYNTHETIC] {
        let gb = book(bytes);
        assert_eq!(gb.to_value(), value(bytes));
        assert_eq!(
            serde_json::to_string(&gb.to_value()).unwrap(),
            serde_json::to_string(&value(bytes)).unwrap()
        );
    }
}

#[track_caller]
fn error_of(doc: Value) -> String {
    match Gradebook::from_value(doc) {
        Ok(_) => panic!("malformed gradebook was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_gradebooks_name_the_bad_field() {
    let base = value(AUTOGRADED_BOB);

    let mut doc = base.clone();
    doc["notebooks"] = json!([]);
    assert_eq!(
        error_of(doc),
        "gradebook field `notebooks` must be an object, found an array"
    );

    let mut doc = base.clone();
    doc.as_object_mut().unwrap().remove("notebooks");
    assert_eq!(error_of(doc), "gradebook field `notebooks` is missing");

    let mut doc = base.clone();
    doc["notebooks"]["hw1"] = json!("hw1.ipynb");
    assert_eq!(
        error_of(doc),
        "gradebook field `notebooks.hw1` must be an object, found a string"
    );

    let mut doc = base.clone();
    doc["notebooks"]["hw1"]["grades_dict"]["test_total_value"]["auto_score"] = json!("2");
    assert_eq!(
        error_of(doc),
        "gradebook field `notebooks.hw1.grades_dict.test_total_value.auto_score` \
         must be a number or null, found a string"
    );

    let mut doc = base.clone();
    doc["notebooks"]["hw1"]["grades_dict"]["test_load_rows"]["extra_credit"] = json!(true);
    assert!(error_of(doc).contains("grades_dict.test_load_rows.extra_credit"));

    let mut doc = base.clone();
    doc["notebooks"]["hw1"]["grades_dict"] = json!([]);
    assert!(error_of(doc).contains("`notebooks.hw1.grades_dict` must be an object"));

    let mut doc = base.clone();
    doc["notebooks"]["hw1"]["grade_cells_dict"]["test_load_rows"]
        .as_object_mut()
        .unwrap()
        .remove("max_score");
    assert_eq!(
        error_of(doc),
        "gradebook field `notebooks.hw1.grade_cells_dict.test_load_rows.max_score` is missing"
    );

    let mut doc = base.clone();
    doc["notebooks"]["hw1"]["task_cells_dict"] = json!({"t": {"max_score": null}});
    assert!(error_of(doc).contains("`notebooks.hw1.task_cells_dict.t.max_score` must be a number"));

    let mut doc = base.clone();
    doc["notebooks"]["week 1.v2"] = json!({"comments_dict": {"c": 1}});
    assert!(
        error_of(doc).contains(r#"`notebooks["week 1.v2"].comments_dict.c` must be an object"#)
    );

    let mut doc = base.clone();
    doc["extra_files"] = json!(["data.csv", 3]);
    assert!(error_of(doc).contains("`extra_files[1]` must be a string"));

    let mut doc = base;
    doc["extra_files"] = json!("data.csv");
    assert!(error_of(doc).contains("`extra_files` must be an array of strings"));

    assert!(matches!(
        Gradebook::from_slice(b"{\"notebooks\": "),
        Err(GradebookError::Json(_))
    ));
    assert!(matches!(
        Gradebook::from_slice(b"null"),
        Err(GradebookError::WrongType { .. })
    ));
}

#[test]
fn optional_parts_may_be_absent() {
    // The reference writes every field, but a sparse document still has well-defined scores.
    let gb = Gradebook::from_value(json!({"notebooks": {"a": {}}, "extra_files": null})).unwrap();
    assert_eq!(gb.extra_files(), Vec::<String>::new());
    assert_same(gb.score(), 0.0);
    assert_same(gb.max_score(), 0.0);
    assert_same(gb.notebook_score("a").unwrap(), 0.0);
}

#[test]
fn whitelist_patterns_dedupe_and_keep_order() {
    let gb = book(RELEASE); // extra_files: hw1.ipynb, data.csv
    let allowed = ["*.csv", "data.csv", "*.ipynb", "*.csv"].map(String::from);
    assert_eq!(
        whitelist_patterns(&gb, &allowed),
        ["*.ipynb", "hw1.ipynb", "data.csv", "*.csv"]
    );
    let empty = Gradebook::from_value(json!({"notebooks": {}})).unwrap();
    assert_eq!(whitelist_patterns(&empty, &[]), ["*.ipynb"]);
}

#[test]
fn gradebooks_the_real_tool_wrote_pass_the_tamper_check() {
    book(AUTOGRADED_BOB).check_graded(&book(RELEASE)).unwrap();
    // A manually graded submission starts from the release with its manual grades carried over.
    let mut given = book(RELEASE);
    given.carry_over_manual_grades(&book(MANUAL_BOB));
    book(MANUAL_BOB).check_graded(&given).unwrap();
    // The manual grades were not in the release the autograde run started from.
    let err = book(MANUAL_BOB).check_graded(&book(RELEASE)).unwrap_err();
    assert!(
        err.path.ends_with("manual_score") || err.path.ends_with("extra_credit"),
        "{err}"
    );
}

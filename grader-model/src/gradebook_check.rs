//! Checking a gradebook that came back from the grading tool against the one it was given.
//!
//! The grading tool reads `gradebook.json` from its output directory at the end of a run and
//! merges its scores into it, while the student's code runs beside it with the same rights:
//! a notebook can rewrite the file and the tool would keep what it found (the reference takes
//! such a file as it is). What the pipeline wrote before grading is trusted; the tool may only
//! fill in automatic scores. So the graded gradebook must have the same notebooks and the same
//! grade and task cells with the same maximum scores, every grade must belong to one of those
//! cells, no automatic score may leave `0..=max_score` of its cell, and manual scores and extra
//! credit must be exactly what the pipeline wrote (the tool never changes them).
//!
//! This bounds a forged gradebook to scores a cell could give; it cannot tell a forged score
//! within a cell's points from an earned one (see the README's Security section).

use serde_json::{Map, Value};

use crate::gradebook::{GRADE_CELLS, GRADES, Gradebook, NOTEBOOKS, TASK_CELLS};

/// A graded gradebook that the grading tool could not have written from the one it was given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the graded gradebook was tampered with: `{path}` {what}")]
pub struct Tampered {
    /// Dotted path of the field that does not match (`notebooks.hw1.grades_dict.t1.auto_score`).
    pub path: String,
    /// What is wrong with it, with the values.
    pub what: String,
}

/// Slack for comparing scores computed in floating point (partial credit).
const EPSILON: f64 = 1e-9;

impl Gradebook {
    /// Checks that `self`, as the grading tool left it, can have come from `given` (the
    /// gradebook the pipeline wrote before grading) by the tool's own rules.
    pub fn check_graded(&self, given: &Gradebook) -> Result<(), Tampered> {
        let graded = self.notebooks_map();
        let trusted = given.notebooks_map();
        same_keys(NOTEBOOKS, graded, trusted, "notebook")?;
        for (name, trusted_nb) in trusted {
            let path = format!("{NOTEBOOKS}.{name}");
            let graded_nb = graded.get(name).unwrap_or(&Value::Null);
            check_notebook(&path, graded_nb, trusted_nb)?;
        }
        Ok(())
    }
}

fn check_notebook(path: &str, graded: &Value, trusted: &Value) -> Result<(), Tampered> {
    let mut maxima = Map::new();
    for key in [GRADE_CELLS, TASK_CELLS] {
        let cells_path = format!("{path}.{key}");
        let (g, t) = (dict(graded, key), dict(trusted, key));
        same_keys(&cells_path, g, t, "cell")?;
        for (id, cell) in t {
            let max = number(cell, "max_score");
            let got = g.get(id).and_then(|c| number(c, "max_score"));
            if got != max {
                return Err(tampered(
                    format!("{cells_path}.{id}.max_score"),
                    format!("is {}, the assignment says {}", show(got), show(max)),
                ));
            }
            maxima.insert(id.clone(), max.map_or(Value::Null, Value::from));
        }
    }
    let grades_path = format!("{path}.{GRADES}");
    let given_grades = dict(trusted, GRADES);
    for (id, grade) in dict(graded, GRADES) {
        let grade_path = format!("{grades_path}.{id}");
        let Some(max) = maxima.get(id) else {
            return Err(tampered(
                grade_path,
                "is a grade for a cell the assignment does not have".into(),
            ));
        };
        let max = max.as_f64().unwrap_or(0.0);
        if let Some(own) = number(grade, "max_score")
            && (own - max).abs() > EPSILON
        {
            return Err(tampered(
                format!("{grade_path}.max_score"),
                format!("is {own}, the cell's is {max}"),
            ));
        }
        if let Some(auto) = number(grade, "auto_score")
            && !(auto.is_finite() && -EPSILON <= auto && auto <= max + EPSILON)
        {
            return Err(tampered(
                format!("{grade_path}.auto_score"),
                format!("is {auto}, outside the cell's 0 to {max} points"),
            ));
        }
        let before = given_grades.get(id);
        for key in ["manual_score", "extra_credit"] {
            let was = before.and_then(|g| number(g, key));
            let now = number(grade, key);
            if was != now {
                return Err(tampered(
                    format!("{grade_path}.{key}"),
                    format!(
                        "is {}, but grading started from {} (the grading tool never sets it)",
                        show(now),
                        show(was)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Both maps must have the same keys; names the first one only one of them has.
fn same_keys(
    path: &str,
    graded: &Map<String, Value>,
    trusted: &Map<String, Value>,
    what: &str,
) -> Result<(), Tampered> {
    if let Some(extra) = graded.keys().find(|k| !trusted.contains_key(*k)) {
        return Err(tampered(
            format!("{path}.{extra}"),
            format!("is a {what} the assignment does not have"),
        ));
    }
    if let Some(missing) = trusted.keys().find(|k| !graded.contains_key(*k)) {
        return Err(tampered(
            format!("{path}.{missing}"),
            format!("is missing: the assignment has this {what}"),
        ));
    }
    Ok(())
}

fn tampered(path: String, what: String) -> Tampered {
    Tampered { path, what }
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn dict<'a>(value: &'a Value, key: &str) -> &'a Map<String, Value> {
    value.get(key).and_then(Value::as_object).unwrap_or(&EMPTY)
}

fn number(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

fn show(n: Option<f64>) -> String {
    n.map_or_else(|| "null".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn given() -> Gradebook {
        Gradebook::from_value(json!({"notebooks": {"hw1": {
            "grade_cells_dict": {"t1": {"max_score": 1.0}, "t2": {"max_score": 2.0}},
            "task_cells_dict": {"task": {"max_score": 3.0}},
            "grades_dict": {"task": {"manual_score": 2.0, "auto_score": null}},
        }}}))
        .unwrap()
    }

    fn graded(grades: Value) -> Gradebook {
        let mut v = given().to_value();
        v["notebooks"]["hw1"]["grades_dict"] = grades;
        Gradebook::from_value(v).unwrap()
    }

    fn honest() -> Value {
        json!({
            "t1": {"auto_score": 1.0, "max_score": 1.0},
            "t2": {"auto_score": 0.5, "max_score": 2.0},
            "task": {"auto_score": null, "manual_score": 2.0, "max_score": 3.0},
        })
    }

    #[test]
    fn an_honest_gradebook_passes() {
        graded(honest()).check_graded(&given()).unwrap();
        graded(json!({})).check_graded(&given()).unwrap();
    }

    #[test]
    fn a_score_beyond_its_cell_is_tampering() {
        let mut g = honest();
        g["t1"]["auto_score"] = json!(99);
        let err = graded(g).check_graded(&given()).unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.grades_dict.t1.auto_score");
        assert!(err.to_string().contains("99"), "{err}");
        let mut g = honest();
        g["t2"]["auto_score"] = json!(-1);
        assert!(graded(g).check_graded(&given()).is_err());
    }

    #[test]
    fn manual_scores_and_extra_credit_must_be_what_grading_started_from() {
        let mut g = honest();
        g["task"]["manual_score"] = json!(3.0);
        let err = graded(g).check_graded(&given()).unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.grades_dict.task.manual_score");
        let mut g = honest();
        g["t1"]["extra_credit"] = json!(5);
        let err = graded(g).check_graded(&given()).unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.grades_dict.t1.extra_credit");
    }

    #[test]
    fn cells_notebooks_and_maxima_must_be_the_assignments() {
        let mut g = honest();
        g["bonus"] = json!({"auto_score": 50});
        let err = graded(g).check_graded(&given()).unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.grades_dict.bonus");

        let mut v = graded(honest()).to_value();
        v["notebooks"]["hw1"]["grade_cells_dict"]["t1"]["max_score"] = json!(100);
        let err = Gradebook::from_value(v)
            .unwrap()
            .check_graded(&given())
            .unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.grade_cells_dict.t1.max_score");

        let mut v = graded(honest()).to_value();
        v["notebooks"]["extra"] = json!({"grades_dict": {}});
        let err = Gradebook::from_value(v)
            .unwrap()
            .check_graded(&given())
            .unwrap_err();
        assert_eq!(err.path, "notebooks.extra");

        let mut v = graded(honest()).to_value();
        v["notebooks"]["hw1"]["task_cells_dict"]
            .as_object_mut()
            .unwrap()
            .remove("task");
        let err = Gradebook::from_value(v)
            .unwrap()
            .check_graded(&given())
            .unwrap_err();
        assert_eq!(err.path, "notebooks.hw1.task_cells_dict.task");
    }
}

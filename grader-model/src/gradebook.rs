//! The `gradebook.json` file that Grader Service hands to `grader-convert` and reads back.
//!
//! The format belongs to the reference (`grader_service.convert.gradebook.models`), so the
//! file is kept as parsed JSON and only the fields this crate needs are read through typed
//! accessors. Everything else, including fields a newer reference may add, is written back
//! untouched and in its original order. The document is validated once when it is parsed;
//! the accessors can then not fail.
//!
//! Score rules follow the reference's `GradeBookModel`:
//! * a grade's score is its `manual_score` if set, else its `auto_score`, plus its
//!   `extra_credit` if set; with neither score set it is the extra credit alone, or 0;
//! * a notebook's score is the sum of the scores in its `grades_dict`, a notebook's maximum
//!   the sum of `max_score` over its `grade_cells_dict` and then its `task_cells_dict`;
//! * the gradebook's score and maximum are the sums over its notebooks.
//!
//! Sums are taken left to right in document order, as the reference does on Python 3.11, so
//! that the results agree with it to the last bit. (Python 3.12 changed `sum()` of floats to
//! compensated summation, which can differ from this in the last place.)

use serde_json::{Map, Value};

/// Why a gradebook could not be read. Messages name the offending field as a dotted path from
/// the document root, e.g. `notebooks.hw1.grades_dict.test_a.auto_score`.
#[derive(Debug, thiserror::Error)]
pub enum GradebookError {
    /// The bytes are not JSON at all.
    #[error("gradebook is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the score rules need is absent.
    #[error("gradebook field `{path}` is missing")]
    Missing {
        /// Dotted path of the missing field.
        path: String,
    },
    /// A field has the wrong JSON type.
    #[error("gradebook field `{path}` must be {expected}, found {found}")]
    WrongType {
        /// Dotted path of the field.
        path: String,
        /// What the field must be (`"an object"`, `"a number or null"`, ...).
        expected: &'static str,
        /// The JSON type that was found instead.
        found: &'static str,
    },
}

/// A parsed `gradebook.json`. Unknown fields anywhere survive a read-modify-write untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradebook {
    /// The whole document; validated to be an object with a well-formed `notebooks` object.
    root: Map<String, Value>,
}

pub(crate) const NOTEBOOKS: &str = "notebooks";
const EXTRA_FILES: &str = "extra_files";
pub(crate) const GRADE_CELLS: &str = "grade_cells_dict";
pub(crate) const TASK_CELLS: &str = "task_cells_dict";
pub(crate) const GRADES: &str = "grades_dict";
const COMMENTS: &str = "comments_dict";

impl Gradebook {
    /// Parse and validate the bytes of a `gradebook.json`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, GradebookError> {
        Self::from_value(serde_json::from_slice(bytes)?)
    }

    /// Validate an already parsed gradebook document.
    pub fn from_value(value: serde_json::Value) -> Result<Self, GradebookError> {
        let Value::Object(root) = value else {
            return Err(wrong_type(String::new(), "an object", &value));
        };
        validate(&root)?;
        Ok(Self { root })
    }

    /// The document as JSON: exactly what was read, plus any changes made since.
    pub fn to_value(&self) -> serde_json::Value {
        Value::Object(self.root.clone())
    }

    /// The document as indented JSON, ready to be written as `gradebook.json`.
    pub fn to_vec_pretty(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.root)
            .expect("a map with string keys always serialises");
        out.push(b'\n');
        out
    }

    /// The notebook names (file names without `.ipynb`), in document order.
    pub fn notebook_names(&self) -> Vec<String> {
        self.notebooks().map(|(name, _)| name.clone()).collect()
    }

    /// The extra files recorded by `grader-convert` (files it copied besides the notebooks);
    /// empty when the field is absent or null.
    pub fn extra_files(&self) -> Vec<String> {
        match self.root.get(EXTRA_FILES) {
            Some(Value::Array(files)) => files
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Total score: sum over notebooks of sum over grades of grade score.
    pub fn score(&self) -> f64 {
        self.notebooks()
            .fold(0.0, |sum, (_, nb)| sum + notebook_score(nb))
    }

    /// The most points the assignment can give: sum over notebooks of their maximum scores.
    pub fn max_score(&self) -> f64 {
        self.notebooks()
            .fold(0.0, |sum, (_, nb)| sum + notebook_max_score(nb))
    }

    /// Score of one notebook, or `None` if the gradebook has no notebook of that name.
    pub fn notebook_score(&self, notebook: &str) -> Option<f64> {
        self.notebook(notebook).map(notebook_score)
    }

    /// Maximum score of one notebook, or `None` if the gradebook has no notebook of that name.
    pub fn notebook_max_score(&self, notebook: &str) -> Option<f64> {
        self.notebook(notebook).map(notebook_max_score)
    }

    /// Carry grades_dict and comments_dict of every notebook both gradebooks share from `graded`
    /// into self (the reference's behaviour for already manually graded submissions).
    ///
    /// Each dict is replaced as a whole (so manual scores, extra credit and manual comments come
    /// along); a dict absent from `graded` is left as it is in self. Notebooks only one of the
    /// two gradebooks has, and all other fields, are not touched.
    pub fn carry_over_manual_grades(&mut self, graded: &Gradebook) {
        let Some(Value::Object(ours)) = self.root.get_mut(NOTEBOOKS) else {
            return;
        };
        for (name, notebook) in ours.iter_mut() {
            let (Value::Object(mine), Some(Value::Object(their_nb))) =
                (notebook, graded.notebook(name))
            else {
                continue;
            };
            for key in [GRADES, COMMENTS] {
                if let Some(dict) = their_nb.get(key) {
                    mine.insert(key.to_owned(), dict.clone());
                }
            }
        }
    }

    /// The `notebooks` object (validation guarantees it is one).
    pub(crate) fn notebooks_map(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.root
            .get(NOTEBOOKS)
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY)
    }

    /// The notebooks in document order (validation guarantees `notebooks` is an object).
    fn notebooks(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.notebooks_map().iter()
    }

    fn notebook(&self, name: &str) -> Option<&Value> {
        self.root.get(NOTEBOOKS)?.get(name)
    }
}

/// `*.ipynb` + the gradebook's extra_files + the assignment's allowed_files, deduplicated, order kept.
///
/// These are the glob patterns of the files in the output directory that are committed as the
/// autograding result (the reference's `Assignment.get_whitelist_patterns`).
pub fn whitelist_patterns(gradebook: &Gradebook, allowed_files: &[String]) -> Vec<String> {
    let mut patterns: Vec<String> = Vec::new();
    let candidates = std::iter::once("*.ipynb".to_owned())
        .chain(gradebook.extra_files())
        .chain(allowed_files.iter().cloned());
    for pattern in candidates {
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    patterns
}

fn notebook_score(notebook: &Value) -> f64 {
    dict_values(notebook, GRADES).fold(0.0, |sum, grade| sum + grade_score(grade))
}

fn notebook_max_score(notebook: &Value) -> f64 {
    dict_values(notebook, GRADE_CELLS)
        .chain(dict_values(notebook, TASK_CELLS))
        .fold(0.0, |sum, cell| {
            sum + number(cell, "max_score").unwrap_or(0.0)
        })
}

/// The reference's `Grade.score`.
fn grade_score(grade: &Value) -> f64 {
    let base = number(grade, "manual_score").or_else(|| number(grade, "auto_score"));
    let extra = number(grade, "extra_credit");
    match (base, extra) {
        (Some(base), Some(extra)) => base + extra,
        (Some(base), None) => base,
        (None, Some(extra)) => extra,
        (None, None) => 0.0,
    }
}

/// The values of one of a notebook's `*_dict` objects; none if it is absent.
fn dict_values<'a>(notebook: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    notebook
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|dict| dict.values())
}

/// A numeric field; `None` when absent or null.
fn number(object: &Value, key: &str) -> Option<f64> {
    object.get(key).and_then(Value::as_f64)
}

// ---- validation ------------------------------------------------------------------------------

fn validate(root: &Map<String, Value>) -> Result<(), GradebookError> {
    match root.get(EXTRA_FILES) {
        None | Some(Value::Null) => {}
        Some(Value::Array(files)) => {
            for (i, file) in files.iter().enumerate() {
                if !file.is_string() {
                    return Err(wrong_type(format!("{EXTRA_FILES}[{i}]"), "a string", file));
                }
            }
        }
        Some(other) => {
            return Err(wrong_type(
                EXTRA_FILES.to_owned(),
                "an array of strings",
                other,
            ));
        }
    }

    let notebooks = match root.get(NOTEBOOKS) {
        None => {
            return Err(GradebookError::Missing {
                path: NOTEBOOKS.to_owned(),
            });
        }
        Some(Value::Object(notebooks)) => notebooks,
        Some(other) => return Err(wrong_type(NOTEBOOKS.to_owned(), "an object", other)),
    };
    for (name, notebook) in notebooks {
        let nb_path = join(NOTEBOOKS, name);
        let Value::Object(notebook) = notebook else {
            return Err(wrong_type(nb_path, "an object", notebook));
        };
        for key in [GRADE_CELLS, TASK_CELLS] {
            for_each_entry(notebook, &nb_path, key, |path, cell| {
                required_number(cell, &path, "max_score")
            })?;
        }
        for_each_entry(notebook, &nb_path, GRADES, |path, grade| {
            for key in ["auto_score", "manual_score", "extra_credit"] {
                optional_number(grade, &path, key)?;
            }
            Ok(())
        })?;
        for_each_entry(notebook, &nb_path, COMMENTS, |_, _| Ok(()))?;
    }
    Ok(())
}

/// Check that `notebook[key]`, if present, is an object of objects, and run `check` on each
/// entry with its path.
fn for_each_entry(
    notebook: &Map<String, Value>,
    nb_path: &str,
    key: &str,
    mut check: impl FnMut(String, &Map<String, Value>) -> Result<(), GradebookError>,
) -> Result<(), GradebookError> {
    let dict_path = join(nb_path, key);
    let dict = match notebook.get(key) {
        None => return Ok(()),
        Some(Value::Object(dict)) => dict,
        Some(other) => return Err(wrong_type(dict_path, "an object", other)),
    };
    for (id, entry) in dict {
        let entry_path = join(&dict_path, id);
        let Value::Object(entry) = entry else {
            return Err(wrong_type(entry_path, "an object", entry));
        };
        check(entry_path, entry)?;
    }
    Ok(())
}

fn required_number(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<(), GradebookError> {
    match object.get(key) {
        Some(Value::Number(_)) => Ok(()),
        None => Err(GradebookError::Missing {
            path: join(path, key),
        }),
        Some(other) => Err(wrong_type(join(path, key), "a number", other)),
    }
}

fn optional_number(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<(), GradebookError> {
    match object.get(key) {
        None | Some(Value::Null) | Some(Value::Number(_)) => Ok(()),
        Some(other) => Err(wrong_type(join(path, key), "a number or null", other)),
    }
}

fn wrong_type(path: String, expected: &'static str, found: &Value) -> GradebookError {
    GradebookError::WrongType {
        path: if path.is_empty() {
            "(root)".to_owned()
        } else {
            path
        },
        expected,
        found: crate::k8s::json_type(found),
    }
}

/// Append a key to a dotted path; keys that would make the path ambiguous are quoted.
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_quote_awkward_keys() {
        assert_eq!(join("", "notebooks"), "notebooks");
        assert_eq!(join("notebooks", "hw1"), "notebooks.hw1");
        assert_eq!(join("notebooks", "week 1.v2"), "notebooks[\"week 1.v2\"]");
        assert_eq!(join("", ""), "[\"\"]");
    }

    #[test]
    fn grade_score_rules() {
        let s = |g: Value| grade_score(&g);
        assert_eq!(s(json!({})), 0.0);
        assert_eq!(
            s(json!({"auto_score": null, "manual_score": null, "extra_credit": 0.5})),
            0.5
        );
        assert_eq!(s(json!({"auto_score": 2, "manual_score": null})), 2.0);
        assert_eq!(s(json!({"auto_score": 2, "extra_credit": 0.5})), 2.5);
        assert_eq!(s(json!({"auto_score": 2, "manual_score": 0})), 0.0);
        assert_eq!(
            s(json!({"auto_score": null, "manual_score": 1, "extra_credit": 1})),
            2.0
        );
    }

    #[test]
    fn root_must_be_an_object() {
        let err = Gradebook::from_value(json!([1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gradebook field `(root)` must be an object, found an array"
        );
    }
}

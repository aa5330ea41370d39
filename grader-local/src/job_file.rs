//! The job file: one submission to grade, as JSON.
//!
//! ```json
//! {"lecture": {"code": "cs101"},
//!  "assignment": {"id": 3, "name": "hw1", "gradebook_path": "gradebook.json",
//!                 "settings": {"cell_timeout": 120, "allowed_files": ["*.csv"]}},
//!  "submission": {"id": 42, "commit_hash": "0f3c...", "username": "alice"}}
//! ```
//! `gradebook_path` is relative to the job file; `gradebook` (the JSON inline) may stand
//! instead. The submission may carry its earlier gradebook the same way (needed for feedback
//! and for manually graded submissions). Unknown fields are allowed for forward compatibility.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use grader_model::gradebook::Gradebook;
use grader_model::{Assignment, Lecture, Submission};
use serde::Deserialize;
use serde_json::Value;

use crate::job::Job;

/// A job file or line that cannot be used, naming where and which field.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    #[error("cannot read job file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: field `{field}`: {message}")]
    Field {
        origin: String,
        field: String,
        message: String,
    },
    #[error("{origin}: cannot read gradebook {path} (field `{field}`): {message}")]
    Gradebook {
        origin: String,
        field: String,
        path: PathBuf,
        message: String,
    },
}

#[derive(Deserialize)]
struct RawJob {
    lecture: Lecture,
    assignment: RawAssignment,
    submission: RawSubmission,
}

#[derive(Deserialize)]
struct RawAssignment {
    #[serde(flatten)]
    assignment: Assignment,
    gradebook_path: Option<PathBuf>,
    gradebook: Option<Value>,
}

#[derive(Deserialize)]
struct RawSubmission {
    #[serde(flatten)]
    submission: Submission,
    gradebook_path: Option<PathBuf>,
    gradebook: Option<Value>,
}

/// Reads a job file; relative gradebook paths are resolved against its directory.
pub fn load_job(path: &Path) -> Result<Job, JobFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_job(&text, base, &path.display().to_string())
}

/// Parses one job from `text`; `origin` names it in errors (`jobs.jsonl:7`).
pub fn parse_job(text: &str, base_dir: &Path, origin: &str) -> Result<Job, JobFileError> {
    JobReader::default().parse(text, base_dir, origin)
}

/// Parses many jobs, reading each assignment gradebook file once: the jobs of one assignment
/// share it (a batch of hundreds of submissions holds one copy, not hundreds).
#[derive(Debug, Default)]
pub struct JobReader {
    gradebooks: HashMap<PathBuf, Arc<Gradebook>>,
}

impl JobReader {
    /// Parses one job from `text`; `origin` names it in errors (`jobs.jsonl:7`). A byte order
    /// mark at the start (editors on Windows write one) is skipped.
    pub fn parse(
        &mut self,
        text: &str,
        base_dir: &Path,
        origin: &str,
    ) -> Result<Job, JobFileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawJob = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let field = e.path().to_string();
            JobFileError::Field {
                origin: origin.to_string(),
                field: if field == "." {
                    "(top level)".into()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
            }
        })?;
        // Only whitespace may follow the job.
        de.end().map_err(|e| JobFileError::Field {
            origin: origin.to_string(),
            field: "(top level)".into(),
            message: e.to_string(),
        })?;
        let shared = match (&raw.assignment.gradebook_path, &raw.assignment.gradebook) {
            (Some(rel), None) => self.gradebooks.get(&base_dir.join(rel)).cloned(),
            _ => None,
        };
        let gradebook = match shared {
            Some(gradebook) => gradebook,
            None => {
                let key = raw
                    .assignment
                    .gradebook_path
                    .as_ref()
                    .map(|p| base_dir.join(p));
                let gradebook = gradebook_of(
                    origin,
                    "assignment",
                    base_dir,
                    raw.assignment.gradebook_path,
                    raw.assignment.gradebook,
                )?
                .ok_or_else(|| JobFileError::Field {
                    origin: origin.to_string(),
                    field: "assignment.gradebook_path".into(),
                    message: "missing: give `gradebook_path` or an inline `gradebook`".into(),
                })?;
                let gradebook = Arc::new(gradebook);
                if let Some(key) = key {
                    self.gradebooks.insert(key, gradebook.clone());
                }
                gradebook
            }
        };
        let submission_gradebook = gradebook_of(
            origin,
            "submission",
            base_dir,
            raw.submission.gradebook_path,
            raw.submission.gradebook,
        )?;
        Ok(Job {
            lecture: raw.lecture,
            assignment: raw.assignment.assignment,
            submission: raw.submission.submission,
            gradebook,
            submission_gradebook,
        })
    }
}

fn gradebook_of(
    origin: &str,
    owner: &str,
    base_dir: &Path,
    path: Option<PathBuf>,
    inline: Option<Value>,
) -> Result<Option<Gradebook>, JobFileError> {
    match (path, inline) {
        (Some(_), Some(_)) => Err(JobFileError::Field {
            origin: origin.to_string(),
            field: format!("{owner}.gradebook"),
            message: "give either `gradebook_path` or `gradebook`, not both".into(),
        }),
        (None, Some(value)) => {
            Gradebook::from_value(value)
                .map(Some)
                .map_err(|e| JobFileError::Field {
                    origin: origin.to_string(),
                    field: format!("{owner}.gradebook"),
                    message: e.to_string(),
                })
        }
        (Some(rel), None) => {
            let path = base_dir.join(&rel);
            let field = format!("{owner}.gradebook_path");
            let bytes = std::fs::read(&path).map_err(|e| JobFileError::Gradebook {
                origin: origin.to_string(),
                field: field.clone(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            Gradebook::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JobFileError::Gradebook {
                    origin: origin.to_string(),
                    field,
                    path,
                    message: e.to_string(),
                })
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: &str = r#"{"notebooks": {}, "extra_files": []}"#;

    #[test]
    fn a_full_job_with_an_inline_gradebook_parses_and_keeps_unknown_fields_out_of_the_way() {
        let text = format!(
            r#"{{"lecture": {{"code": "cs101", "term": "ws26"}},
               "assignment": {{"id": 3, "name": "hw1", "gradebook": {GB}, "points": 6,
                              "settings": {{"cell_timeout": 120, "allowed_files": ["*.csv"], "autograde_type": "auto"}}}},
               "submission": {{"id": 42, "commit_hash": "0f3c", "username": "alice", "edited": false,
                              "manual_status": "not_graded", "score_scaling": 1.0, "future": 1}},
               "version": 2}}"#
        );
        let job = parse_job(&text, Path::new("."), "job.json").unwrap();
        assert_eq!(job.assignment.settings.cell_timeout, Some(120));
        assert_eq!(job.submission.username, "alice");
        assert!(job.submission_gradebook.is_none());
    }

    #[test]
    fn jobs_of_one_assignment_share_its_gradebook() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gb.json"), GB).unwrap();
        let line = |id: u32| {
            format!(
                r#"{{"lecture": {{"code": "c"}}, "assignment": {{"id": 1, "name": "a", "gradebook_path": "gb.json"}},
                   "submission": {{"id": {id}, "commit_hash": "abcd", "username": "u{id}"}}}}"#
            )
        };
        let mut reader = JobReader::default();
        let a = reader.parse(&line(1), dir.path(), "j:1").unwrap();
        let b = reader.parse(&line(2), dir.path(), "j:2").unwrap();
        assert!(Arc::ptr_eq(&a.gradebook, &b.gradebook));
        assert_eq!(b.submission.id, 2);
    }

    #[test]
    fn a_wrong_field_is_named() {
        let text = format!(
            r#"{{"lecture": {{"code": "cs101"}},
               "assignment": {{"id": 3, "name": "hw1", "gradebook": {GB}}},
               "submission": {{"id": "forty-two", "commit_hash": "0f3c", "username": "alice"}}}}"#
        );
        let err = parse_job(&text, Path::new("."), "jobs.jsonl:7")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("jobs.jsonl:7: field `submission"), "{err}");
        assert!(err.contains("forty-two"), "{err}");
        let err = parse_job(r#"{"lecture": {}}"#, Path::new("."), "j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("code"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_before_a_job_is_accepted() {
        let job = format!(
            r#"{{"lecture": {{"code": "c"}}, "assignment": {{"id": 1, "name": "a", "gradebook": {GB}}},
               "submission": {{"id": 7, "commit_hash": "abcd", "username": "u"}}}}"#
        );
        // Editors on Windows save UTF-8 with a BOM; a batch line may carry one too.
        let parsed = parse_job(&format!("\u{feff}{job}"), Path::new("."), "j:1").unwrap();
        assert_eq!(parsed.submission.id, 7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.json");
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice(job.as_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(load_job(&path).unwrap().submission.id, 7);
        // Only at the start: a BOM elsewhere is still an error.
        assert!(parse_job(&format!("{job}\u{feff}"), Path::new("."), "j").is_err());
    }

    #[test]
    fn a_missing_or_unreadable_gradebook_is_named() {
        let text = r#"{"lecture": {"code": "c"}, "assignment": {"id": 1, "name": "a"},
                       "submission": {"id": 1, "commit_hash": "abcd", "username": "u"}}"#;
        let err = parse_job(text, Path::new("."), "j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("assignment.gradebook_path"), "{err}");
        let text = r#"{"lecture": {"code": "c"}, "assignment": {"id": 1, "name": "a", "gradebook_path": "nope.json"},
                       "submission": {"id": 1, "commit_hash": "abcd", "username": "u"}}"#;
        let err = parse_job(text, Path::new("/nonexistent"), "j")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/nope.json"), "{err}");
    }
}

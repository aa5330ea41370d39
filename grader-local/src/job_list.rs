//! Job lists (`jobs.jsonl`, one job per line) and the rules a list must keep before anything
//! of it is graded: every line parses, the list is not empty, every job passes the pipeline's
//! check, and no two jobs share a submission id (they would share work dirs). Every problem is
//! reported at once, so an operator fixes a list in one go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::backend::JobKind;
use crate::job::Job;
use crate::job_file::JobReader;
use crate::settings::ExecutorConfig;

/// A job list that cannot be graded; nothing of it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobListError {
    /// The file could not be read.
    #[error("cannot read job list {path}: {message}")]
    Unreadable {
        /// The list.
        path: PathBuf,
        /// What the system said.
        message: String,
    },
    /// The file holds no job.
    #[error("{path} holds no jobs")]
    Empty {
        /// The list.
        path: PathBuf,
    },
    /// Lines that break the rules, each naming its line or job and field.
    #[error("{} problem(s) in {path}, nothing was graded:\n  {}", problems.len(), problems.join("\n  "))]
    Problems {
        /// The list.
        path: PathBuf,
        /// One text per problem.
        problems: Vec<String>,
    },
}

/// Reads every line of a job list (blank lines are skipped; the jobs of one assignment share
/// its gradebook) and checks the list's rules for jobs of `kind` against `config`.
pub fn read_job_list(
    path: &Path,
    config: &ExecutorConfig,
    kind: JobKind,
) -> Result<Vec<Job>, JobListError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobListError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    let mut reader = JobReader::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match reader.parse(line, base, &format!("{}:{}", path.display(), i + 1)) {
            Ok(job) => jobs.push(job),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() && jobs.is_empty() {
        return Err(JobListError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut seen = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let id = job.submission.id;
        if let Err(e) = config.check(job, kind) {
            problems.push(format!("job {} (submission {id}): {e}", i + 1));
        }
        if let Some(first) = seen.insert(id, i + 1) {
            problems.push(format!(
                "jobs {first} and {} both have submission id {id} (they would share work dirs)",
                i + 1
            ));
        }
    }
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(JobListError::Problems {
            path: path.to_path_buf(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRADEBOOK: &str = r#"{"notebooks": {}}"#;

    fn line(id: u64, commit: &str) -> String {
        format!(
            r#"{{"lecture": {{"code": "cs101"}}, "assignment": {{"id": 1, "name": "hw1", "gradebook": {GRADEBOOK}}}, "submission": {{"id": {id}, "commit_hash": "{commit}", "username": "u{id}"}}}}"#
        )
    }

    fn read(text: &str) -> Result<Vec<Job>, JobListError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.jsonl");
        std::fs::write(&path, text).unwrap();
        read_job_list(&path, &ExecutorConfig::new("/srv"), JobKind::Autograde)
    }

    #[test]
    fn a_good_list_reads_every_job_and_skips_blank_lines() {
        let jobs = read(&format!("{}\n\n{}\n", line(1, "abcd"), line(2, "beef"))).unwrap();
        assert_eq!(jobs.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let text = format!(
            "{}\nnot json\n{}\n{}\n",
            line(1, "abcd"),
            line(1, "beef"),
            line(3, "xyz!")
        );
        let JobListError::Problems { problems, .. } = read(&text).unwrap_err() else {
            panic!("problems expected");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("jobs.jsonl:2"), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("commit_hash")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("both have submission id 1")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_empty_or_missing_list_is_refused() {
        assert!(matches!(read("\n\n"), Err(JobListError::Empty { .. })));
        let err = read_job_list(
            Path::new("/nonexistent/jobs.jsonl"),
            &ExecutorConfig::new("/srv"),
            JobKind::Autograde,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/jobs.jsonl"), "{err}");
    }
}

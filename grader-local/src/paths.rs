//! Where repositories and work directories live under the service directory.
//!
//! The layout is Grader Service's, so that `grader` can run beside an existing deployment. Every
//! name that comes from a job (lecture code, username) is checked to be a single plain path
//! component before it is joined, so nothing a job says can resolve outside `service_dir`.

use std::path::{Path, PathBuf};

use grader_model::safe_path::{UnsafePath, check_component, check_relative, lexically_inside};
use grader_model::{Lecture, Submission};

/// The kind of repository of an assignment (`{service_dir}/git/{lecture}/{assignment}/{type}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoType {
    /// The student's own repository: `user/{username}`.
    User,
    /// An instructor-edited copy of one submission: `edit/{submission id}`.
    Edit,
    /// Graded notebooks: `autograde/user/{username}`.
    Autograde,
    /// Generated feedback: `feedback/user/{username}`.
    Feedback,
}

/// The directories of one job, computed once and checked before anything touches the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    service_dir: PathBuf,
    assignment_dir: PathBuf,
    username: String,
    submission_id: u64,
    /// Work dir the submission is fetched into.
    pub input_dir: PathBuf,
    /// Work dir the grading tool writes to.
    pub output_dir: PathBuf,
    /// `input_dir` relative to `service_dir` (the `subPath` of a pod's mount).
    pub relative_input_dir: String,
    /// `output_dir` relative to `service_dir`.
    pub relative_output_dir: String,
    /// The file whose lock a run holds while it uses the work dirs (see [`crate::WorkLock`]).
    pub lock_file: PathBuf,
}

impl JobPaths {
    /// Paths of a job; `work_prefix` is `submission` for autograding and `feedback` for feedback.
    pub fn new(
        service_dir: &Path,
        relative_input_path: &str,
        relative_output_path: &str,
        lecture: &Lecture,
        assignment_id: u64,
        submission: &Submission,
        work_prefix: &str,
    ) -> Result<Self, UnsafePath> {
        check_component("lecture.code", &lecture.code)?;
        check_component("submission.username", &submission.username)?;
        check_relative("relative_input_path", relative_input_path)?;
        check_relative("relative_output_path", relative_output_path)?;
        let work = format!("{work_prefix}_{}", submission.id);
        let relative_input_dir = format!("{relative_input_path}/{work}");
        let relative_output_dir = format!("{relative_output_path}/{work}");
        let paths = JobPaths {
            service_dir: service_dir.to_path_buf(),
            assignment_dir: service_dir
                .join("git")
                .join(&lecture.code)
                .join(assignment_id.to_string()),
            username: submission.username.clone(),
            submission_id: submission.id,
            lock_file: service_dir.join(format!("{relative_input_dir}.lock")),
            input_dir: service_dir.join(&relative_input_dir),
            output_dir: service_dir.join(&relative_output_dir),
            relative_input_dir,
            relative_output_dir,
        };
        for p in [
            &paths.assignment_dir,
            &paths.input_dir,
            &paths.output_dir,
            &paths.lock_file,
        ] {
            debug_assert!(lexically_inside(service_dir, p));
        }
        Ok(paths)
    }

    /// The service directory all other paths live under.
    pub fn service_dir(&self) -> &Path {
        &self.service_dir
    }

    /// The repository of the given type for this job's submission.
    pub fn repo(&self, repo_type: RepoType) -> PathBuf {
        match repo_type {
            RepoType::User => self.assignment_dir.join("user").join(&self.username),
            RepoType::Edit => self
                .assignment_dir
                .join("edit")
                .join(self.submission_id.to_string()),
            RepoType::Autograde => self
                .assignment_dir
                .join("autograde")
                .join("user")
                .join(&self.username),
            RepoType::Feedback => self
                .assignment_dir
                .join("feedback")
                .join("user")
                .join(&self.username),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn submission(username: &str) -> Submission {
        Submission {
            id: 42,
            commit_hash: "abc".into(),
            username: username.into(),
            edited: false,
            auto_status: Default::default(),
            manual_status: Default::default(),
            feedback_status: Default::default(),
            score_scaling: 1.0,
        }
    }

    fn lecture(code: &str) -> Lecture {
        Lecture {
            code: code.into(),
            extra: Map::new(),
        }
    }

    #[test]
    fn layout_matches_grader_service() {
        let p = JobPaths::new(
            Path::new("/srv/g"),
            "convert_in",
            "convert_out",
            &lecture("cs101"),
            3,
            &submission("alice"),
            "submission",
        )
        .unwrap();
        assert_eq!(p.input_dir, Path::new("/srv/g/convert_in/submission_42"));
        assert_eq!(p.output_dir, Path::new("/srv/g/convert_out/submission_42"));
        assert_eq!(p.relative_input_dir, "convert_in/submission_42");
        assert_eq!(
            p.lock_file,
            Path::new("/srv/g/convert_in/submission_42.lock")
        );
        assert_eq!(
            p.repo(RepoType::User),
            Path::new("/srv/g/git/cs101/3/user/alice")
        );
        assert_eq!(
            p.repo(RepoType::Edit),
            Path::new("/srv/g/git/cs101/3/edit/42")
        );
        assert_eq!(
            p.repo(RepoType::Autograde),
            Path::new("/srv/g/git/cs101/3/autograde/user/alice")
        );
        assert_eq!(
            p.repo(RepoType::Feedback),
            Path::new("/srv/g/git/cs101/3/feedback/user/alice")
        );
    }

    #[test]
    fn hostile_names_are_refused_naming_the_field() {
        for bad in [
            "../bob", "..", ".", "", "a/b", "/etc", "a\0b", "a\\b", "x\ny",
        ] {
            let err = JobPaths::new(
                Path::new("/srv/g"),
                "convert_in",
                "convert_out",
                &lecture("cs101"),
                1,
                &submission(bad),
                "submission",
            )
            .unwrap_err();
            assert_eq!(err.field, "submission.username", "{bad:?}");
            assert_eq!(err.value, bad);
        }
        let err = JobPaths::new(
            Path::new("/srv/g"),
            "convert_in",
            "convert_out",
            &lecture("../../etc"),
            1,
            &submission("alice"),
            "submission",
        )
        .unwrap_err();
        assert_eq!(err.field, "lecture.code");
    }
}

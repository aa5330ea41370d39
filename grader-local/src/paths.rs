//! Where repositories and work directories live under the service directory.
//!
//! The layout is Grader Service's, so that `grader` can run beside an existing deployment. Every
//! name that comes from a job (lecture code, username) is checked to be a single plain path
//! component before it is joined, so nothing a job says can resolve outside `service_dir`.

use std::path::{Component, Path, PathBuf};

use grader_model::{Lecture, Submission};

/// A name from a job that would escape its directory or is not a usable path component.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("refusing {field} {value:?}: {why}")]
pub struct UnsafePath {
    /// Which job field held the name (`lecture.code`, `submission.username`, ...).
    pub field: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Checks that `value` is one plain path component (no separators, `.`/`..`, NUL or control
/// characters) so that joining it to a directory stays inside that directory.
pub fn check_component(field: &'static str, value: &str) -> Result<(), UnsafePath> {
    let fail = |why| {
        Err(UnsafePath {
            field,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value == "." || value == ".." {
        return fail("it names a directory itself or its parent");
    }
    if value.contains(['/', '\\']) {
        return fail("it contains a path separator");
    }
    if value.chars().any(char::is_control) {
        return fail("it contains NUL or a control character");
    }
    if value.len() > 255 {
        return fail("it is longer than 255 bytes");
    }
    Ok(())
}

/// Checks a configured path relative to `service_dir` (such as `convert_in`): relative, and
/// made of normal components only.
pub fn check_relative(field: &'static str, value: &str) -> Result<(), UnsafePath> {
    let path = Path::new(value);
    if value.is_empty() || value.contains('\0') {
        return Err(UnsafePath {
            field,
            value: value.to_string(),
            why: "it is empty or contains NUL",
        });
    }
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(UnsafePath {
            field,
            value: value.to_string(),
            why: "it must be a relative path without `.` or `..`",
        });
    }
    Ok(())
}

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
    /// The file whose lock a run holds while it uses the work dirs (see [`crate::lock`]).
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

/// True when `path`, read lexically, stays within `root` (no `..` climbing out).
pub fn lexically_inside(root: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(root) else {
        return false;
    };
    let mut depth: usize = 0;
    for c in rest.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
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
        for bad in ["../x", "/abs", "a/../b", ""] {
            assert!(check_relative("relative_input_path", bad).is_err(), "{bad}");
        }
        assert!(check_relative("relative_input_path", "data/convert_in").is_ok());
    }

    #[test]
    fn lexical_containment() {
        assert!(lexically_inside(Path::new("/a"), Path::new("/a/b/../c")));
        assert!(!lexically_inside(Path::new("/a"), Path::new("/a/../b")));
        assert!(!lexically_inside(Path::new("/a"), Path::new("/b")));
    }
}

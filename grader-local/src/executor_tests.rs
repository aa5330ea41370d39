//! Every branch of the pipeline, with git, the backend and the clock mocked.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grader_model::gradebook::Gradebook;
use grader_model::{Assignment, AssignmentSettings, Lecture, Submission};
use mockall::predicate::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::backend::{BackendOutput, FailureKind, GradingTask, MockGradingBackend};
use crate::clock::MockClock;
use crate::git::{ExportStats, GitError, MockGit};

const COMMIT: &str = "0f3c9a";

fn release_gradebook() -> Gradebook {
    Gradebook::from_value(json!({
        "notebooks": {
            "hw1": {
                "name": "hw1",
                "grade_cells_dict": {
                    "q1": {"name": "q1", "max_score": 2.0, "cell_type": "code", "_type": "GradeCell"},
                    "q2": {"name": "q2", "max_score": 3.0, "cell_type": "code", "_type": "GradeCell"}
                },
                "solution_cells_dict": {}, "task_cells_dict": {}, "source_cells_dict": {},
                "grades_dict": {}, "comments_dict": {}
            }
        },
        "extra_files": ["notes/*.txt"]
    }))
    .expect("test gradebook")
}

/// The gradebook as the grading tool leaves it: `q1` right, `q2` wrong.
fn graded_gradebook_json(q1: f64) -> serde_json::Value {
    json!({
        "notebooks": {
            "hw1": {
                "name": "hw1",
                "grade_cells_dict": {
                    "q1": {"name": "q1", "max_score": 2.0, "cell_type": "code", "_type": "GradeCell"},
                    "q2": {"name": "q2", "max_score": 3.0, "cell_type": "code", "_type": "GradeCell"}
                },
                "solution_cells_dict": {}, "task_cells_dict": {}, "source_cells_dict": {},
                "grades_dict": {
                    "q1": {"name": "q1", "auto_score": q1, "manual_score": null, "extra_credit": null,
                           "max_score_gradecell": 2.0, "max_score_taskcell": null},
                    "q2": {"name": "q2", "auto_score": 0.0, "manual_score": null, "extra_credit": null,
                           "max_score_gradecell": 3.0, "max_score_taskcell": null}
                },
                "comments_dict": {}
            }
        },
        "extra_files": ["notes/*.txt"]
    })
}

fn job(service: &Path) -> (ExecutorConfig, Job) {
    let config = ExecutorConfig::new(service);
    let job = Job {
        lecture: Lecture {
            code: "cs101".into(),
            extra: Default::default(),
        },
        assignment: Assignment {
            id: 3,
            name: "hw1".into(),
            settings: AssignmentSettings {
                cell_timeout: Some(5),
                allowed_files: vec!["*.csv".into()],
                ..Default::default()
            },
        },
        submission: Submission {
            id: 42,
            commit_hash: COMMIT.into(),
            username: "alice".into(),
            edited: false,
            auto_status: Default::default(),
            manual_status: Default::default(),
            feedback_status: Default::default(),
            score_scaling: 0.5,
        },
        gradebook: Arc::new(release_gradebook()),
        submission_gradebook: None,
    };
    (config, job)
}

/// A backend mock that finds no earlier run to resume.
fn mock_backend() -> MockGradingBackend {
    let mut b = MockGradingBackend::new();
    b.expect_resumable().returning(|_| false);
    b
}

/// A backend that writes the files a grading run would write and checks what it was given.
fn grading_backend(q1: f64, seen: Arc<Mutex<Option<GradingTask>>>) -> MockGradingBackend {
    let mut b = mock_backend();
    b.expect_name().return_const("mock".to_string());
    b.expect_run().times(1).returning(move |task, _| {
        let out = &task.output_dir;
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("gradebook.json")).unwrap()).unwrap();
        let mut graded = graded_gradebook_json(q1);
        // Keep whatever the pipeline put in (carried-over grades) unless the tool re-scored it.
        if let Some(grades) = written["notebooks"]["hw1"]["grades_dict"].as_object() {
            for (k, v) in grades {
                if v["manual_score"].is_number() {
                    graded["notebooks"]["hw1"]["grades_dict"][k]["manual_score"] =
                        v["manual_score"].clone();
                }
            }
        }
        std::fs::write(out.join("gradebook.json"), graded.to_string()).unwrap();
        std::fs::write(out.join("hw1.ipynb"), "{}").unwrap();
        std::fs::write(out.join("data.csv"), "a,b").unwrap();
        std::fs::create_dir_all(out.join("notes")).unwrap();
        std::fs::write(out.join("notes/n.txt"), "x").unwrap();
        std::fs::write(out.join("secret.py"), "x").unwrap();
        std::fs::write(out.join("hw1.html"), "<html/>").unwrap();
        *seen.lock().unwrap() = Some(task.clone());
        Ok(BackendOutput {
            logs: "graded\0 ok".into(),
        })
    });
    b
}

/// A pipeline over `git` whose backend grades question 1 with 2.0 points (see
/// [`grading_backend`]).
fn executor_grading(
    config: ExecutorConfig,
    git: MockGit,
    seen: Arc<Mutex<Option<GradingTask>>>,
) -> Executor {
    Executor::new(config, Arc::new(git), Arc::new(grading_backend(2.0, seen)))
}

fn exporting_git(expect_repo: &'static str, expect_rev: &'static str) -> MockGit {
    let mut g = MockGit::new();
    g.expect_export()
        .times(1)
        .returning(move |repo, rev, dest| {
            assert!(repo.ends_with(expect_repo), "export from {repo:?}");
            assert_eq!(rev, expect_rev);
            std::fs::write(dest.join("hw1.ipynb"), "{}").unwrap();
            Ok(ExportStats {
                files: 1,
                skipped: vec!["link.csv".into()],
            })
        });
    g
}

fn committed(
    g: &mut MockGit,
    files: Arc<Mutex<Vec<String>>>,
    repo: &'static str,
    branch: &'static str,
) {
    g.expect_commit_files()
        .times(1)
        .returning(move |workdir, f, r, b, msg| {
            assert!(
                workdir.ends_with("convert_out/submission_42")
                    || workdir.ends_with("convert_out/feedback_42")
            );
            assert!(r.ends_with(repo), "commit to {r:?}");
            assert_eq!(b, branch);
            assert_eq!(msg, COMMIT);
            *files.lock().unwrap() = f.to_vec();
            Ok("c0ffee".into())
        });
}

#[tokio::test]
async fn autograde_scores_commits_whitelist_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let seen = Arc::new(Mutex::new(None));
    let files = Arc::new(Mutex::new(vec![]));
    let mut git = exporting_git("git/cs101/3/user/alice", COMMIT);
    committed(
        &mut git,
        files.clone(),
        "git/cs101/3/autograde/user/alice",
        "submission_0f3c9a",
    );
    let exec = executor_grading(config, git, seen.clone());

    let out = exec.autograde(&job, CancellationToken::new()).await;

    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{out:?}"
    );
    assert_eq!(out.grading_score, Some(2.0));
    assert_eq!(out.score, Some(1.0), "score scaling 0.5 applies");
    assert_eq!(out.max_score, Some(5.0));
    assert_eq!(out.backend, "mock");
    assert_eq!(out.branch.as_deref(), Some("submission_0f3c9a"));
    assert_eq!(out.commit.as_deref(), Some("c0ffee"));
    assert!(
        out.logs.contains("graded ok"),
        "NUL removed: {:?}",
        out.logs
    );
    assert!(out.logs.contains("skipped \"link.csv\""));
    assert_eq!(
        *files.lock().unwrap(),
        vec!["data.csv", "hw1.ipynb", "notes/n.txt"],
        "ipynb + gradebook extra_files + allowed_files; never gradebook.json"
    );
    let task = seen.lock().unwrap().clone().unwrap();
    assert_eq!(task.cell_timeout, 10, "assignment's 5 s clamped to min 10");
    assert_eq!(task.relative_input_dir, "convert_in/submission_42");
    assert!(!dir.path().join("convert_in/submission_42").exists());
    assert!(!dir.path().join("convert_out/submission_42").exists());
}

#[tokio::test]
async fn edited_submissions_are_fetched_from_the_edit_repo() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut job) = job(dir.path());
    job.submission.edited = true;
    let mut git = exporting_git("git/cs101/3/edit/42", "main");
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let exec = executor_grading(config, git, Arc::default());
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert!(out.status.is_success(), "{out:?}");
}

#[tokio::test]
async fn manual_grades_are_carried_over_into_the_written_gradebook() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut job) = job(dir.path());
    job.submission.manual_status = ManualStatus::ManuallyGraded;
    let mut manual = graded_gradebook_json(0.0);
    manual["notebooks"]["hw1"]["grades_dict"]["q2"]["manual_score"] = json!(2.5);
    manual["notebooks"]["hw1"]["comments_dict"] = json!({"q2": {"manual_comment": "close"}});
    job.submission_gradebook = Some(Gradebook::from_value(manual).unwrap());
    let mut git = exporting_git("user/alice", COMMIT);
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    backend.expect_run().times(1).returning(|task, _| {
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(task.output_dir.join("gradebook.json")).unwrap())
                .unwrap();
        assert_eq!(
            written["notebooks"]["hw1"]["grades_dict"]["q2"]["manual_score"],
            2.5
        );
        assert_eq!(
            written["notebooks"]["hw1"]["comments_dict"]["q2"]["manual_comment"],
            "close"
        );
        let mut graded = written.clone();
        graded["notebooks"]["hw1"]["grades_dict"]["q1"] =
            json!({"auto_score": 2.0, "manual_score": null, "extra_credit": null});
        std::fs::write(task.output_dir.join("gradebook.json"), graded.to_string()).unwrap();
        Ok(BackendOutput::default())
    });
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.grading_score, Some(4.5), "{out:?}");
}

#[tokio::test]
async fn manually_graded_job_without_its_gradebook_is_refused_before_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut job) = job(dir.path());
    job.submission.manual_status = ManualStatus::ManuallyGraded;
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    let exec = Executor::new(config, Arc::new(MockGit::new()), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(out.error.unwrap().contains("manual grades are kept"));
}

#[tokio::test]
async fn hostile_usernames_and_commit_hashes_touch_nothing() {
    for (username, commit, needle) in [
        ("../bob", COMMIT, "submission.username"),
        ("alice", "--output=/tmp/x", "submission.commit_hash"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (config, mut job) = job(dir.path());
        job.submission.username = username.into();
        job.submission.commit_hash = commit.into();
        let mut backend = mock_backend();
        backend.expect_name().return_const("mock".to_string());
        let exec = Executor::new(config, Arc::new(MockGit::new()), Arc::new(backend));
        let out = exec.autograde(&job, CancellationToken::new()).await;
        assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
        assert!(out.error.as_deref().unwrap().contains(needle), "{out:?}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing created"
        );
    }
}

#[tokio::test]
async fn a_failed_fetch_fails_the_job_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let mut git = MockGit::new();
    git.expect_export().times(1).returning(|repo, _, _| {
        Err(GitError::MissingRepo {
            path: repo.to_path_buf(),
        })
    });
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    let err = out.error.unwrap();
    assert!(
        err.contains("could not fetch the submission") && err.contains("user/alice"),
        "{err}"
    );
    assert!(out.logs.contains(&err));
    assert_eq!(out.failure, Some(FailureKind::Workdir));
    assert!(!dir.path().join("convert_in/submission_42").exists());
}

#[tokio::test]
async fn a_failed_grading_run_keeps_its_logs_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let git = exporting_git("user/alice", COMMIT);
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    backend.expect_run().times(1).returning(|_, _| {
        Err(BackendFailure {
            kind: FailureKind::ToolExited,
            reason: "grading tool exited with 1".into(),
            logs: "Traceback: boom".into(),
        })
    });
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(out.logs.contains("Traceback: boom"));
    assert!(out.logs.contains("grading tool exited with 1"));
    assert_eq!(
        out.failure,
        Some(FailureKind::ToolExited),
        "the backend's kind"
    );
    assert_eq!(out.score, None);
    assert_eq!(out.branch, None);
}

#[tokio::test]
async fn a_failed_commit_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let mut git = exporting_git("user/alice", COMMIT);
    git.expect_commit_files()
        .times(1)
        .returning(|_, _, _, _, _| {
            Err(GitError::Failed {
                command: "git update-ref".into(),
                status: "exit status: 128".into(),
                stderr: "locked".into(),
            })
        });
    let exec = executor_grading(config, git, Arc::default());
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(out.error.unwrap().contains("could not commit the results"));
    assert_eq!(out.failure, Some(FailureKind::Workdir));
}

#[tokio::test]
async fn an_unreadable_gradebook_after_grading_fails_the_job_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let git = exporting_git("user/alice", COMMIT);
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    backend.expect_run().times(1).returning(|task, _| {
        std::fs::write(task.output_dir.join("gradebook.json"), "{not json").unwrap();
        Ok(BackendOutput::default())
    });
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(out.error.unwrap().contains("not a valid gradebook"));
    assert_eq!(out.failure, Some(FailureKind::InvalidGradebook));
}

#[tokio::test]
async fn a_cancelled_job_stops_before_grading() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let git = MockGit::new();
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, cancel).await;
    assert_eq!(out.error.as_deref(), Some("cancelled"));
    assert_eq!(out.failure, Some(FailureKind::Cancelled));
}

#[tokio::test]
async fn keep_workdirs_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, job) = job(dir.path());
    config.keep_workdirs = true;
    let mut git = exporting_git("user/alice", COMMIT);
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let exec = executor_grading(config, git, Arc::default());
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert!(out.status.is_success());
    assert!(
        dir.path()
            .join("convert_out/submission_42/gradebook.json")
            .exists()
    );
}

#[tokio::test]
async fn feedback_reads_the_autograde_branch_and_commits_only_html() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut job) = job(dir.path());
    job.submission.auto_status = AutoStatus::AutomaticallyGraded;
    job.submission_gradebook = Some(Gradebook::from_value(graded_gradebook_json(2.0)).unwrap());
    let files = Arc::new(Mutex::new(vec![]));
    let mut git = exporting_git("git/cs101/3/autograde/user/alice", "submission_0f3c9a");
    committed(
        &mut git,
        files.clone(),
        "git/cs101/3/feedback/user/alice",
        "feedback_0f3c9a",
    );
    let seen = Arc::new(Mutex::new(None));
    let exec = executor_grading(config, git, seen.clone());
    let out = exec.generate_feedback(&job, CancellationToken::new()).await;
    assert_eq!(
        out.status,
        Status::Feedback(FeedbackStatus::Generated),
        "{out:?}"
    );
    assert_eq!(*files.lock().unwrap(), vec!["hw1.html"]);
    let task = seen.lock().unwrap().clone().unwrap();
    assert_eq!(task.kind, JobKind::Feedback);
    assert!(task.output_dir.ends_with("convert_out/feedback_42"));
    assert_eq!(
        task.tool_args("IN", "OUT", false, "/k/kernel.json"),
        vec![
            "generate_feedback",
            "-i",
            "IN",
            "-o",
            "OUT",
            "-p",
            "*.ipynb"
        ]
    );
}

#[tokio::test]
async fn feedback_after_failed_autograding_but_manual_grading_reads_the_user_repo() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut job) = job(dir.path());
    job.submission.auto_status = AutoStatus::GradingFailed;
    job.submission.manual_status = ManualStatus::ManuallyGraded;
    job.submission_gradebook = Some(release_gradebook());
    let mut git = exporting_git("git/cs101/3/user/alice", COMMIT);
    committed(
        &mut git,
        Arc::default(),
        "feedback/user/alice",
        "feedback_0f3c9a",
    );
    let exec = executor_grading(config, git, Arc::default());
    let out = exec.generate_feedback(&job, CancellationToken::new()).await;
    assert!(out.status.is_success(), "{out:?}");
}

#[tokio::test]
async fn timings_come_from_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let mut git = exporting_git("user/alice", COMMIT);
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let base = Instant::now();
    let ticks = Arc::new(Mutex::new(0u64));
    let mut clock = MockClock::new();
    clock.expect_now().returning(move || {
        let mut t = ticks.lock().unwrap();
        *t += 1;
        base + Duration::from_millis(*t * 10)
    });
    let exec = Executor::with_clock(
        config,
        Arc::new(git),
        Arc::new(grading_backend(2.0, Arc::default())),
        Arc::new(clock),
    );
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.timings.fetch_ms, 10.0);
    assert_eq!(out.timings.grading_ms, 10.0);
    assert_eq!(out.duration_ms, 80, "start + 7 laps + end");
}

#[tokio::test]
async fn a_still_running_earlier_run_is_adopted_with_its_work_dirs_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let input = dir.path().join("convert_in/submission_42");
    let output = dir.path().join("convert_out/submission_42");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(input.join("hw1.ipynb"), "{}").unwrap();
    std::fs::write(
        output.join("gradebook.json"),
        "{\"written\": \"by the earlier run\"}",
    )
    .unwrap();

    let mut git = MockGit::new();
    git.expect_export().never();
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let mut backend = MockGradingBackend::new();
    backend.expect_name().return_const("mock".to_string());
    backend.expect_resumable().times(1).returning(|_| true);
    backend.expect_run().times(1).returning(|task, _| {
        let gb = std::fs::read_to_string(task.output_dir.join("gradebook.json")).unwrap();
        assert!(
            gb.contains("earlier run"),
            "the work dirs were left as they were"
        );
        assert!(task.input_dir.join("hw1.ipynb").exists());
        std::fs::write(
            task.output_dir.join("gradebook.json"),
            graded_gradebook_json(2.0).to_string(),
        )
        .unwrap();
        Ok(BackendOutput::default())
    });
    let exec = Executor::new(config, Arc::new(git), Arc::new(backend));
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.grading_score, Some(2.0), "{out:?}");
    assert!(out.logs.contains("adopting it and its work dirs"));
}

/// A backend that writes `gradebook` as the graded gradebook.
fn writing_backend(gradebook: serde_json::Value) -> MockGradingBackend {
    let mut backend = mock_backend();
    backend.expect_name().return_const("mock".to_string());
    backend.expect_run().times(1).returning(move |task, _| {
        std::fs::write(
            task.output_dir.join("gradebook.json"),
            gradebook.to_string(),
        )
        .unwrap();
        std::fs::write(task.output_dir.join("hw1.ipynb"), "{}").unwrap();
        Ok(BackendOutput::default())
    });
    backend
}

#[tokio::test]
async fn a_forged_gradebook_fails_the_job_as_tampered_and_commits_nothing() {
    let forgeries = [
        ("auto_score", json!(99.0)),
        ("manual_score", json!(2.0)),
        ("extra_credit", json!(10.0)),
    ];
    for (field, value) in forgeries {
        let dir = tempfile::tempdir().unwrap();
        let (config, job) = job(dir.path());
        let git = exporting_git("user/alice", COMMIT);
        let mut forged = graded_gradebook_json(2.0);
        forged["notebooks"]["hw1"]["grades_dict"]["q1"][field] = value;
        let exec = Executor::new(config, Arc::new(git), Arc::new(writing_backend(forged)));
        let out = exec.autograde(&job, CancellationToken::new()).await;
        assert_eq!(
            out.status,
            Status::Auto(AutoStatus::GradingFailed),
            "{field}"
        );
        let error = out.error.unwrap();
        assert!(error.contains("tampered"), "{field}: {error}");
        assert_eq!(out.failure, Some(FailureKind::Tampered));
        assert!(
            error.contains(&format!("grades_dict.q1.{field}")),
            "{error}"
        );
        assert_eq!(out.score, None);
        assert_eq!(out.commit, None, "nothing committed");
    }
}

#[tokio::test]
async fn a_score_scaling_that_would_overflow_or_is_negative_is_refused_before_any_step() {
    for scaling in [1e308, -1.0, f64::NAN, f64::INFINITY] {
        let dir = tempfile::tempdir().unwrap();
        let (config, mut job) = job(dir.path());
        job.submission.score_scaling = scaling;
        let err = config.check(&job, JobKind::Autograde).unwrap_err();
        assert!(
            err.to_string().contains("submission.score_scaling"),
            "{err}"
        );
        let mut backend = mock_backend();
        backend.expect_name().return_const("mock".to_string());
        let exec = Executor::new(config, Arc::new(MockGit::new()), Arc::new(backend));
        let out = exec.autograde(&job, CancellationToken::new()).await;
        assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
        assert_eq!(out.failure, Some(FailureKind::InvalidJob));
        assert_eq!(out.score, None);
    }
}

#[tokio::test]
async fn a_submission_without_the_assignments_notebook_is_graded_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let mut git = MockGit::new();
    git.expect_export().times(1).returning(|_, _, dest| {
        std::fs::write(dest.join("renamed.ipynb"), "{}").unwrap();
        Ok(ExportStats::default())
    });
    committed(
        &mut git,
        Arc::default(),
        "autograde/user/alice",
        "submission_0f3c9a",
    );
    let exec = Executor::new(
        config,
        Arc::new(git),
        Arc::new(writing_backend(graded_gradebook_json(0.0))),
    );
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert_eq!(out.status, Status::Auto(AutoStatus::AutomaticallyGraded));
    assert!(
        out.logs.contains("the submission has no hw1.ipynb"),
        "{}",
        out.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_submission_never_share_its_work_dirs() {
    // Each run checks, while "grading", that its input is still the one it fetched and that
    // no other run is inside the work dirs at the same time.
    let dir = tempfile::tempdir().unwrap();
    let (config, job) = job(dir.path());
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = |n: u8| {
        let mut git = MockGit::new();
        git.expect_export().times(1).returning(move |_, _, dest| {
            std::fs::write(dest.join("hw1.ipynb"), [n]).unwrap();
            Ok(ExportStats::default())
        });
        committed(
            &mut git,
            Arc::default(),
            "autograde/user/alice",
            "submission_0f3c9a",
        );
        let mut backend = mock_backend();
        backend.expect_name().return_const("mock".to_string());
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        backend.expect_run().times(1).returning(move |task, _| {
            use std::sync::atomic::Ordering::SeqCst;
            if inside.fetch_add(1, SeqCst) > 0 {
                overlaps.fetch_add(1, SeqCst);
            }
            std::thread::sleep(Duration::from_millis(300));
            let mine = std::fs::read(task.input_dir.join("hw1.ipynb")).unwrap_or_default();
            assert_eq!(mine, [n], "run {n}'s input was replaced while it graded");
            std::fs::write(
                task.output_dir.join("gradebook.json"),
                graded_gradebook_json(2.0).to_string(),
            )
            .unwrap();
            inside.fetch_sub(1, SeqCst);
            Ok(BackendOutput::default())
        });
        Executor::new(config.clone(), Arc::new(git), Arc::new(backend))
    };
    let spawn = |exec: Executor| {
        let job = job.clone();
        tokio::spawn(async move { exec.autograde(&job, CancellationToken::new()).await })
    };
    let (a, b) = (spawn(run(1)), spawn(run(2)));
    let (oa, ob) = (a.await.unwrap(), b.await.unwrap());
    for out in [&oa, &ob] {
        assert_eq!(
            out.status,
            Status::Auto(AutoStatus::AutomaticallyGraded),
            "{out:?}"
        );
        assert_eq!(out.grading_score, Some(2.0));
    }
    assert_eq!(overlaps.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(
        oa.logs.contains("waited for another run") || ob.logs.contains("waited for another run")
    );
}

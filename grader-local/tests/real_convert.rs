//! End to end with the real grading tool: the bundled example course, graded through the
//! pipeline by `grader-convert` 0.12.5, checked against the scores that tool gives.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grader_local::job_file::load_job;
use grader_local::{Executor, ExecutorConfig, LocalBackend, ProcessGit, Status};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

fn executor(service: &Path, convert: &Path, max: Duration) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = max;
    Executor::new(
        config,
        Arc::new(ProcessGit::new("git")),
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20)),
    )
}

fn expected(service: &Path, username: &str) -> (f64, f64) {
    let text =
        std::fs::read_to_string(support::repo_root().join("examples/cs101/expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let _ = service;
    (
        v[username]["score"].as_f64().unwrap(),
        v[username]["max_score"].as_f64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grades_the_example_course_exactly() {
    let Some(convert) = support::grader_convert("grades_the_example_course_exactly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let exec = executor(service, &convert, Duration::from_secs(300));
    for user in ["alice", "bob"] {
        let job = load_job(&service.join(format!("jobs/{user}.json"))).unwrap();
        let out = exec.autograde(&job, CancellationToken::new()).await;
        let (score, max) = expected(service, user);
        assert_eq!(
            out.status,
            Status::Auto(AutoStatus::AutomaticallyGraded),
            "{user}: {}",
            out.logs
        );
        assert_eq!(out.grading_score, Some(score), "{user}");
        assert_eq!(
            out.score,
            Some(score * job.submission.score_scaling),
            "{user}"
        );
        assert_eq!(out.max_score, Some(max), "{user}");

        let repo = service.join(format!("git/cs101/1/autograde/user/{user}"));
        let branch = format!("submission_{}", job.submission.commit_hash);
        assert_eq!(out.branch.as_deref(), Some(branch.as_str()));
        let files = support::git(&[
            "--git-dir",
            repo.to_str().unwrap(),
            "ls-tree",
            "-r",
            "--name-only",
            &branch,
        ]);
        let files: Vec<&str> = files.lines().collect();
        assert!(files.contains(&"hw1.ipynb"), "{files:?}");
        assert!(
            files.contains(&"data.csv"),
            "allowed_files are committed: {files:?}"
        );
        assert!(!files.contains(&"gradebook.json"), "{files:?}");
        let graded = support::git(&[
            "--git-dir",
            repo.to_str().unwrap(),
            "show",
            &format!("{branch}:hw1.ipynb"),
        ]);
        assert!(
            graded.contains("\"nbgrader\""),
            "the committed notebook is the graded one"
        );
        assert!(
            !service
                .join(format!("convert_in/submission_{}", job.submission.id))
                .exists()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_that_loops_forever_is_killed_at_max_grading_time() {
    let Some(convert) = support::grader_convert("a_notebook_that_loops_forever_is_killed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let loop_src = support::repo_root().join("examples/cs101/special/loop");
    let commit = support::commit_student(service, "loopy", &loop_src);
    let mut job = load_job(&service.join("jobs/alice.json")).unwrap();
    job.submission.username = "loopy".into();
    job.submission.id = 900;
    job.submission.commit_hash = commit;
    job.assignment.settings.cell_timeout = Some(3600);
    let exec = executor(service, &convert, Duration::from_secs(8));
    let start = Instant::now();
    let out = exec.autograde(&job, CancellationToken::new()).await;
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(
        out.error.as_deref().unwrap().contains("max_grading_time"),
        "{out:?}"
    );
    let input = service.join("convert_in/submission_900");
    let left = support::settled(|| support::processes_with(input.to_str().unwrap()));
    assert!(left.is_empty(), "stray processes: {left:?}");
    let kernels: Vec<String> = support::processes_with("ipykernel_launcher")
        .into_iter()
        .filter(|p| p.contains(&format!("{}", service.display())) || p.contains("loopy"))
        .collect();
    assert!(kernels.is_empty(), "stray kernels: {kernels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_readably() {
    let Some(convert) = support::grader_convert("bad_inputs_fail_readably") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path();
    support::make_service_dir(service, &[]);
    let job = load_job(&service.join("jobs/bob.json")).unwrap();

    // A commit that does not exist.
    let mut missing = job.clone();
    missing.submission.commit_hash = "0123456789abcdef0123456789abcdef01234567".into();
    let out = executor(service, &convert, Duration::from_secs(60))
        .autograde(&missing, CancellationToken::new())
        .await;
    assert_eq!(out.status, Status::Auto(AutoStatus::GradingFailed));
    assert!(
        out.error.as_deref().unwrap().contains("could not fetch"),
        "{out:?}"
    );

    // A missing grading tool.
    let out = executor(
        service,
        Path::new("/nonexistent/grader-convert"),
        Duration::from_secs(60),
    )
    .autograde(&job, CancellationToken::new())
    .await;
    assert!(
        out.error.as_deref().unwrap().contains("was not found"),
        "{out:?}"
    );

    // A username that climbs out of the service dir.
    let mut climbing = job.clone();
    climbing.submission.username = "../../../tmp/evil".into();
    let before: Vec<_> = std::fs::read_dir(service)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let out = executor(service, &convert, Duration::from_secs(60))
        .autograde(&climbing, CancellationToken::new())
        .await;
    assert!(
        out.error
            .as_deref()
            .unwrap()
            .contains("submission.username"),
        "{out:?}"
    );
    let after: Vec<_> = std::fs::read_dir(service)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
}

/// The assignment is built from its source notebook by the real tool, and a submission graded
/// against the freshly generated gradebook scores as the committed release says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freshly_generated_assignment_grades_like_the_release() {
    let Some(convert) = support::grader_convert("a_freshly_generated_assignment") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    let release = dir.path().join("release");
    std::fs::create_dir_all(&service).unwrap();
    std::fs::create_dir_all(&release).unwrap();
    let source = support::repo_root().join("examples/cs101/source/hw1");
    let out = Command::new(&convert)
        .args(["generate_assignment", "-i"])
        .arg(&source)
        .arg("-o")
        .arg(&release)
        .args(["-p", "*.ipynb"])
        .env("ASSIGNMENT_SETTINGS", r#"{"allowed_files": ["*"]}"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = std::fs::read_to_string(release.join("gradebook.json")).unwrap();
    assert!(
        !std::fs::read_to_string(release.join("hw1.ipynb"))
            .unwrap()
            .contains("BEGIN SOLUTION")
    );
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            support::repo_root().join("examples/cs101/release/hw1/gradebook.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let fresh: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(
        fresh["notebooks"], committed["notebooks"],
        "the release is what the tool generates"
    );

    support::make_service_dir(&service, &["--students", "bob"]);
    let mut job = load_job(&service.join("jobs/bob.json")).unwrap();
    job.gradebook = grader_model::gradebook::Gradebook::from_slice(generated.as_bytes())
        .unwrap()
        .into();
    let out = executor(&service, &convert, Duration::from_secs(300))
        .autograde(&job, CancellationToken::new())
        .await;
    let (score, max) = expected(&service, "bob");
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::AutomaticallyGraded),
        "{}",
        out.logs
    );
    assert_eq!((out.grading_score, out.max_score), (Some(score), Some(max)));
}

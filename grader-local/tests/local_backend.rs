//! The local backend with stand-in tools: arguments, environment, failures, time limit.

mod support;

use std::time::{Duration, Instant};

use grader_local::{FailureKind, GradingBackend, GradingTask, LocalBackend};
use tokio_util::sync::CancellationToken;

fn task(dir: &std::path::Path, max: Duration) -> GradingTask {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    support::task(dir, max)
}

#[tokio::test]
async fn passes_the_reference_arguments_and_the_assignment_settings() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        r#"printf '%s|' "$@"; echo; echo "settings=$ASSIGNMENT_SETTINGS"; echo "secret=${GRADER_SECRET:-unset}" >&2"#,
    );
    let t = task(dir.path(), Duration::from_secs(30));
    // SAFETY: set before the backend spawns; no other thread reads this variable.
    unsafe { std::env::set_var("GRADER_SECRET", "s3cret") };
    let out = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(&t, CancellationToken::new())
        .await
        .unwrap();
    let expected_args = format!(
        "autograde|-i|{}|-o|{}|-p|*.ipynb|--ExecutePreprocessor.timeout=42|",
        t.input_dir.display(),
        t.output_dir.display()
    );
    assert!(out.logs.contains(&expected_args), "{}", out.logs);
    assert!(
        out.logs.contains(r#""allowed_files":["*.csv"]"#),
        "{}",
        out.logs
    );
    assert!(out.logs.contains(r#""cell_timeout":7"#), "{}", out.logs);
    assert!(
        out.logs.contains("secret=unset"),
        "grader's env must not leak: {}",
        out.logs
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_failure_with_logs() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(dir.path(), "tool", "echo 'Traceback: boom' >&2; exit 3");
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.reason.contains("exit status: 3"), "{}", err.reason);
    assert_eq!(err.kind, FailureKind::ToolExited);
    assert!(err.logs.contains("Traceback: boom"));
}

#[tokio::test]
async fn a_missing_executable_is_a_readable_failure() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalBackend::new("/nonexistent/grader-convert", 1 << 20)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.reason.contains("was not found"), "{}", err.reason);
    assert_eq!(err.kind, FailureKind::ToolNotStarted);
    assert!(err.reason.contains("/nonexistent/grader-convert"));
}

#[tokio::test]
async fn max_grading_time_kills_the_whole_tree_even_other_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("grader-test-marker-{}", std::process::id());
    // A child in the group and a grandchild in its own session, like a Jupyter kernel.
    let tool = support::fake_tool(
        dir.path(),
        "tool",
        &format!(
            "sh -c 'while :; do sleep 1; done' {marker}a &\nsetsid sh -c 'while :; do sleep 1; done' {marker}b &\necho started\nwait"
        ),
    );
    let start = Instant::now();
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(
            &task(dir.path(), Duration::from_millis(700)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(err.reason.contains("max_grading_time"), "{}", err.reason);
    assert_eq!(err.kind, FailureKind::TimedOut);
    assert!(err.logs.contains("started"));
    let left = support::settled(|| support::processes_with(&marker));
    assert!(left.is_empty(), "stray processes: {left:?}");
}

#[tokio::test]
async fn cancellation_kills_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(dir.path(), "tool", "while :; do sleep 1; done");
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.cancel();
    });
    let err = LocalBackend::new(tool.to_string_lossy(), 1 << 20)
        .run(&task(dir.path(), Duration::from_secs(60)), cancel)
        .await
        .unwrap_err();
    assert!(err.reason.contains("cancelled"));
    assert_eq!(err.kind, FailureKind::Cancelled);
}

#[tokio::test]
async fn logs_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::fake_tool(dir.path(), "tool", "yes 0123456789 | head -c 5000000");
    let out = LocalBackend::new(tool.to_string_lossy(), 4096)
        .run(
            &task(dir.path(), Duration::from_secs(30)),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(out.logs.len() < 4096 + 200, "{}", out.logs.len());
    assert!(out.logs.contains("bytes of log omitted"));
}

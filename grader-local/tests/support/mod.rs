//! Shared helpers for the grader-local integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use grader_local::{GradingTask, JobKind, PoolSettings, WarmBackend};
use grader_model::{Assignment, AssignmentSettings, Lecture, Submission};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// True when running under CI, where a missing component is a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The real `grader-convert`: `$GRADER_CONVERT`, else the venv `scripts/setup-venv.sh` makes,
/// else `PATH`. `None` (after a loud message) when it is missing outside CI; panics under CI.
pub fn grader_convert(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GRADER_CONVERT").map(PathBuf::from),
        std::env::var_os("GRADER_VENV").map(|v| PathBuf::from(v).join("bin/grader-convert")),
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h).join(".cache/grader/venv-grader-service-0.12.5/bin/grader-convert")
        }),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v grader-convert"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let msg = format!(
        "{test}: grader-convert not found (set GRADER_CONVERT or run scripts/setup-venv.sh)"
    );
    if under_ci() {
        panic!("{msg}; CI=true, so this is a failure");
    }
    eprintln!(
        "\n=====================================================\nSKIPPED {msg}\n=====================================================\n"
    );
    None
}

/// Runs `examples/make-service-dir.sh` into `dir` with extra arguments.
pub fn make_service_dir(dir: &Path, args: &[&str]) {
    let status = Command::new("bash")
        .arg(repo_root().join("examples/make-service-dir.sh"))
        .arg(dir)
        .args(args)
        .status()
        .expect("run make-service-dir.sh");
    assert!(status.success(), "make-service-dir.sh failed");
}

/// Writes an executable shell script standing in for the grading tool.
pub fn fake_tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Processes whose working directory or command line is under `dir`.
pub fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        if cwd.starts_with(&needle) || cmd.contains(&needle) {
            found.push(format!("{name}: cwd={cwd} cmd={cmd}"));
        }
    }
    found
}

/// [`processes_under`], waiting a little for killed ones to disappear.
pub fn strays_under(dir: &Path) -> Vec<String> {
    settled(|| processes_under(dir))
}

/// What `find` finds once it has found nothing or 3 s have passed (killed processes take a
/// moment to disappear).
pub fn settled(find: impl Fn() -> Vec<String>) -> Vec<String> {
    let mut left = find();
    for _ in 0..30 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = find();
    }
    left
}

/// Runs git with `args`, panicking with its stderr when it fails; returns stdout.
pub fn git(args: &[&str]) -> String {
    let out = Command::new("git").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Commits the files of `src` as the only commit of a new bare repo for `user` of
/// cs101/1 in `service`; returns the commit.
pub fn commit_student(service: &Path, user: &str, src: &Path) -> String {
    let work = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        std::fs::copy(entry.path(), work.path().join(entry.file_name())).unwrap();
    }
    let w = work.path().to_str().unwrap();
    git(&["-c", "init.defaultBranch=main", "init", "-q", w]);
    git(&["-C", w, "add", "."]);
    git(&[
        "-C",
        w,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "submit",
    ]);
    let repo = service.join(format!("git/cs101/1/user/{user}"));
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q", "--bare", repo.to_str().unwrap()]);
    git(&["-C", w, "push", "-q", repo.to_str().unwrap(), "HEAD:main"]);
    git(&["-C", w, "rev-parse", "HEAD"]).trim().to_string()
}

/// A task for backend tests: input `dir/in` (created), output `dir/out` (not created, so a
/// test can leave it missing), cell timeout 42, assignment cell timeout 7, `*.csv` allowed.
pub fn task(dir: &Path, max: Duration) -> GradingTask {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    GradingTask {
        kind: JobKind::Autograde,
        lecture: Lecture {
            code: "cs101".into(),
            extra: Default::default(),
        },
        assignment: Assignment {
            id: 1,
            name: "hw1".into(),
            settings: AssignmentSettings {
                cell_timeout: Some(7),
                allowed_files: vec!["*.csv".into()],
                ..Default::default()
            },
        },
        submission: Submission {
            id: 9,
            commit_hash: "abcd".into(),
            username: "u".into(),
            edited: false,
            auto_status: Default::default(),
            manual_status: Default::default(),
            feedback_status: Default::default(),
            score_scaling: 1.0,
        },
        input_dir: dir.join("in"),
        output_dir: dir.join("out"),
        relative_input_dir: "in".into(),
        relative_output_dir: "out".into(),
        cell_timeout: 42,
        max_grading_time: max,
        resume: false,
    }
}

/// Makes a hostile submission in `dest`: the files of `examples/cs101/students/{base}/` with
/// one plain code cell holding `code` inserted right after the notebook's `setup` cell, so the
/// real grading tool runs it like any student cell. Returns `dest`.
pub fn hostile_submission(dest: &Path, base: &str, code: &str) -> PathBuf {
    let src = repo_root().join("examples/cs101/students").join(base);
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
    let nb_path = dest.join("hw1.ipynb");
    let mut nb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&nb_path).unwrap()).unwrap();
    let cells = nb["cells"].as_array_mut().unwrap();
    let at = cells
        .iter()
        .position(|c| c["id"] == "setup")
        .map_or(0, |i| i + 1);
    cells.insert(
        at,
        serde_json::json!({
            "cell_type": "code", "execution_count": null, "id": "hostile",
            "metadata": {}, "outputs": [], "source": code,
        }),
    );
    std::fs::write(&nb_path, serde_json::to_vec_pretty(&nb).unwrap()).unwrap();
    dest.to_path_buf()
}

/// A job for a hostile submission of user `user` (submission `id`) in a service dir made by
/// [`make_service_dir`]: alice's answer with `code` run in a cell of its own
/// ([`hostile_submission`]), committed as `user`'s repository.
pub fn hostile_job(service: &Path, user: &str, id: u64, code: &str) -> grader_local::Job {
    let src = tempfile::tempdir().unwrap();
    hostile_submission(src.path(), "alice", code);
    let commit = commit_student(service, user, src.path());
    let mut job = grader_local::job_file::load_job(&service.join("jobs/alice.json")).unwrap();
    job.submission.username = user.into();
    job.submission.id = id;
    job.submission.commit_hash = commit;
    job
}

/// The files of every branch of `user`'s autograde repository, by branch and path. Notebooks
/// lose the execution timestamps nbclient records per cell (they differ between any two
/// runs) and the kernel's per-process temporary file names in tracebacks.
pub fn committed_files(service: &Path, user: &str) -> BTreeMap<String, String> {
    let repo = service.join(format!("git/cs101/1/autograde/user/{user}"));
    if !repo.exists() {
        return BTreeMap::new();
    }
    let git_dir = repo.to_str().unwrap();
    let mut files = BTreeMap::new();
    let branches = git(&[
        "--git-dir",
        git_dir,
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads",
    ]);
    for branch in branches.lines() {
        let paths = git(&["--git-dir", git_dir, "ls-tree", "-r", "--name-only", branch]);
        for path in paths.lines() {
            let text = git(&["--git-dir", git_dir, "show", &format!("{branch}:{path}")]);
            let text = if path.ends_with(".ipynb") {
                normalized_notebook(&text)
            } else {
                text
            };
            files.insert(format!("{branch}:{path}"), text);
        }
    }
    files
}

/// A notebook's JSON without what differs between any two runs of the same cells.
pub fn normalized_notebook(text: &str) -> String {
    let mut nb: serde_json::Value = serde_json::from_str(text).unwrap();
    for cell in nb["cells"].as_array_mut().unwrap() {
        if let Some(meta) = cell["metadata"].as_object_mut() {
            meta.remove("execution");
        }
    }
    let text = serde_json::to_string_pretty(&nb).unwrap();
    // `/tmp/ipykernel_12345/678.py`: the kernel's pid and a hash of the cell.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("ipykernel_") {
        out.push_str(&rest[..i]);
        out.push_str("ipykernel_N");
        rest = rest[i + "ipykernel_".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// A warm backend over the real tool whose pool must start (a test that meant to grade warm
/// must not quietly grade cold): workers as `settings` says, 120 s to import the tool, job
/// logs capped at `log_cap`, the workers' logs below `work`.
pub async fn started_warm_backend(
    convert: &Path,
    settings: PoolSettings,
    work: &Path,
    log_cap: usize,
) -> WarmBackend {
    let backend =
        WarmBackend::start(convert, settings, Duration::from_secs(120), work, log_cap).await;
    assert!(
        backend.pool().is_some(),
        "warm workers start: {:?}",
        backend.unavailable()
    );
    backend
}

/// [`PoolSettings`] of one worker, the rest default.
pub fn one_worker() -> PoolSettings {
    PoolSettings {
        workers: 1,
        ..PoolSettings::default()
    }
}

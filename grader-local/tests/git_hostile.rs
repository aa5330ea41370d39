//! Git handling against hostile and unlucky repositories: exports never die of SIGPIPE, git run
//! by grader never runs code a repository holds (hooks, fsmonitor, filters, signing programs),
//! exports are the committed blobs whatever `.gitattributes` says, and a short commit hash
//! cannot be hijacked by a branch or tag of that name. The hook cases also go through the whole
//! pipeline with the real grading tool, cold and warm.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use grader_local::Git;
use grader_local::warm::PoolSettings;
use grader_local::{Executor, ExecutorConfig, GradingBackend, LocalBackend, ProcessGit, Status};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// Runs git in the work tree `dir` with a fixed identity; returns trimmed stdout.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "-C",
        dir.to_str().unwrap(),
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "commit.gpgSign=false",
    ];
    all.extend_from_slice(args);
    support::git(&all).trim().to_string()
}

/// A new repository with a work tree in `dir`.
fn init_work_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    support::git(&[
        "-c",
        "init.defaultBranch=main",
        "init",
        "-q",
        dir.to_str().unwrap(),
    ]);
}

/// Replaces the work tree's files by `files` and commits them; returns the commit.
fn commit_files(dir: &Path, files: &[(&str, &[u8])], message: &str) -> String {
    git_in(dir, &["rm", "-rq", "--cached", "--ignore-unmatch", "."]);
    for (path, bytes) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        git_in(dir, &["add", "-f", "--", path]);
    }
    git_in(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git_in(dir, &["rev-parse", "HEAD"])
}

/// Every regular file under `dir`, relative path -> contents.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

fn bytes_of_size(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"abcdefghij\n"[i % 11]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_ending_on_a_tar_block_boundary_never_dies_of_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_work_repo(&repo);
    let git = ProcessGit::new("git");

    // The size of the issue, many times: the failure was a race.
    let content = bytes_of_size(8000);
    let commit = commit_files(&repo, &[("data.bin", &content)], "8000 bytes");
    for round in 0..60 {
        let dest = dir.path().join(format!("out-8000-{round}"));
        std::fs::create_dir(&dest).unwrap();
        let stats = git
            .export(&repo, &commit, &dest)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(stats.files, 1);
        assert_eq!(std::fs::read(dest.join("data.bin")).unwrap(), content);
    }

    // A sweep around the 10240-byte block.
    for size in (7000..=11000).step_by(97) {
        let content = bytes_of_size(size);
        let commit = commit_files(&repo, &[("data.bin", &content)], &format!("{size}"));
        for round in 0..3 {
            let dest = dir.path().join(format!("out-{size}-{round}"));
            std::fs::create_dir(&dest).unwrap();
            git.export(&repo, &commit, &dest)
                .await
                .unwrap_or_else(|e| panic!("{size} bytes, round {round}: {e}"));
            assert_eq!(
                std::fs::read(dest.join("data.bin")).unwrap(),
                content,
                "{size}"
            );
        }
    }
}

#[tokio::test]
async fn an_export_is_the_committed_blobs_whatever_gitattributes_says() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let marker = dir.path().join("filter-ran");
    init_work_repo(&repo);
    let evil = support::fake_tool(
        dir.path(),
        "evil-filter",
        &format!("echo \"$0 $*\" >> '{}'; echo EVIL", marker.display()),
    );
    let files: Vec<(&str, &[u8])> = vec![
        (
            ".gitattributes",
            b"data.csv export-ignore\n*.py export-subst\n*.txt filter=evil\n*.csv text eol=crlf\n",
        ),
        ("data.csv", b"a,b\n1,2\n"),
        ("solution.py", b"# commit $Format:%H$\nprint('hi')\n"),
        ("notes.txt", b"plain notes\n"),
        ("sub/more.txt", b"more\n"),
    ];
    let commit = commit_files(&repo, &files, "attributes");
    for (key, value) in [
        ("filter.evil.smudge", evil.to_str().unwrap()),
        ("filter.evil.clean", evil.to_str().unwrap()),
        ("filter.evil.process", evil.to_str().unwrap()),
        ("filter.evil.required", "true"),
    ] {
        git_in(&repo, &["config", key, value]);
    }
    std::fs::write(repo.join(".git/info/attributes"), "* filter=evil\n").unwrap();

    let dest = dir.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let stats = ProcessGit::new("git")
        .export(&repo, &commit, &dest)
        .await
        .unwrap();
    let mut expected: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    expected.sort();
    assert_eq!(files_under(&dest), expected);
    assert_eq!(stats.files, files.len());
    assert!(
        !marker.exists(),
        "the filter ran: {:?}",
        std::fs::read_to_string(&marker)
    );
}

#[tokio::test]
async fn an_export_keeps_the_executable_bit_and_skips_symlinks_and_submodules() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_work_repo(&repo);
    std::fs::write(repo.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(repo.join("plain.txt"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", repo.join("link")).unwrap();
    git_in(&repo, &["add", "run.sh", "plain.txt", "link"]);
    init_work_repo(&dir.path().join("other"));
    let other = commit_files(&dir.path().join("other"), &[], "x");
    git_in(
        &repo,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{other},module"),
        ],
    );
    git_in(&repo, &["commit", "-qm", "kinds"]);
    let commit = git_in(&repo, &["rev-parse", "HEAD"]);

    let dest = dir.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let mut stats = ProcessGit::new("git")
        .export(&repo, &commit, &dest)
        .await
        .unwrap();
    stats.skipped.sort();
    assert_eq!(stats.files, 2);
    assert_eq!(
        stats.skipped,
        vec!["link".to_string(), "module".to_string()]
    );
    let mode = |p: &str| {
        std::fs::metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_ne!(mode("run.sh") & 0o100, 0);
    assert_eq!(mode("plain.txt") & 0o111, 0);
    assert!(std::fs::symlink_metadata(dest.join("link")).is_err());
    assert!(std::fs::symlink_metadata(dest.join("module")).is_err());
}

/// A repository whose commit `wanted` (`data.txt` = "graded") has a branch and a tag named
/// like its 8-digit prefix, both pointing at another commit (`data.txt` = "hijacked").
fn hijacked_repo(dir: &Path) -> (PathBuf, String) {
    let repo = dir.join("student");
    init_work_repo(&repo);
    let wanted = commit_files(&repo, &[("data.txt", b"graded\n")], "submit");
    let _other = commit_files(&repo, &[("data.txt", b"hijacked\n")], "later");
    let prefix = &wanted[..8];
    git_in(&repo, &["branch", prefix]);
    git_in(&repo, &["tag", prefix]);
    // The bare form the service keeps.
    let bare = dir.join("student.git");
    support::git(&[
        "clone",
        "-q",
        "--bare",
        repo.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    (bare, wanted)
}

async fn export_data(
    git: &ProcessGit,
    repo: &Path,
    rev: &str,
    dest: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(dest).unwrap();
    git.export(repo, rev, dest)
        .await
        .map(|_| std::fs::read_to_string(dest.join("data.txt")).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_branch_or_tag_named_like_the_short_hash_does_not_replace_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, wanted) = hijacked_repo(dir.path());
    let git = ProcessGit::new("git");
    let prefix = wanted[..8].to_string();
    for (i, rev) in [
        prefix.clone(),
        prefix.to_uppercase(),
        wanted.clone(),
        wanted.to_uppercase(),
    ]
    .iter()
    .enumerate()
    {
        let got = export_data(&git, &repo, rev, &dir.path().join(format!("out{i}"))).await;
        assert_eq!(got.as_deref(), Ok("graded\n"), "rev {rev}");
    }
}

#[tokio::test]
async fn an_unknown_or_ambiguous_short_hash_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("many.git");
    support::git(&["init", "-q", "--bare", repo.to_str().unwrap()]);
    // Enough commits for two to share a 4-digit prefix.
    let mut stream = String::new();
    for i in 0..3000 {
        let msg = format!("commit {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/c{i}\ncommitter t <t@t> 1700000000 +0000\ndata {}\n{msg}\n",
            msg.len()
        ));
    }
    let mut child = std::process::Command::new("git")
        .args([
            "--git-dir",
            repo.to_str().unwrap(),
            "fast-import",
            "--quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stream.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let commits = support::git(&["--git-dir", repo.to_str().unwrap(), "rev-list", "--all"]);
    let mut seen = std::collections::HashMap::new();
    let mut ambiguous = None;
    for c in commits.lines() {
        if seen.insert(c[..4].to_string(), c.to_string()).is_some() {
            ambiguous = Some(c[..4].to_string());
            break;
        }
    }
    let ambiguous = ambiguous.expect("two commits share a 4-digit prefix");
    let unknown = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| !commits.lines().any(|c| c.starts_with(p.as_str())))
        .map(|p| format!("{p}aaaa"))
        .unwrap();

    let git = ProcessGit::new("git");
    let err = export_data(&git, &repo, &ambiguous, &dir.path().join("a"))
        .await
        .unwrap_err();
    assert!(
        err.contains(&ambiguous) && err.contains("ambiguous"),
        "{err}"
    );
    let err = export_data(&git, &repo, &unknown, &dir.path().join("b"))
        .await
        .unwrap_err();
    assert!(err.contains(&unknown) && err.contains("no commit"), "{err}");
    // A full id of something that is not a commit.
    let tree = support::git(&[
        "--git-dir",
        repo.to_str().unwrap(),
        "rev-parse",
        "refs/heads/c0^{tree}",
    ]);
    let err = export_data(&git, &repo, tree.trim(), &dir.path().join("c"))
        .await
        .unwrap_err();
    assert!(
        err.contains(tree.trim()) && err.contains("not a commit"),
        "{err}"
    );
}

#[tokio::test]
async fn a_branch_name_is_read_as_a_branch_never_as_a_tag() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("edit");
    init_work_repo(&repo);
    commit_files(&repo, &[("data.txt", b"branch\n")], "main");
    git_in(&repo, &["checkout", "-qb", "other"]);
    commit_files(&repo, &[("data.txt", b"tag\n")], "tagged");
    git_in(&repo, &["tag", "submission_abcd"]);
    git_in(&repo, &["tag", "refs/heads/main"]);
    git_in(&repo, &["checkout", "-q", "main"]);
    let git = ProcessGit::new("git");
    let got = export_data(&git, &repo, "main", &dir.path().join("a")).await;
    assert_eq!(got.as_deref(), Ok("branch\n"));
    // Only a tag by that name: not found, rather than the tag.
    let err = export_data(&git, &repo, "submission_abcd", &dir.path().join("b"))
        .await
        .unwrap_err();
    assert!(err.contains("submission_abcd"), "{err}");
}

/// Hooks, a hooks path, an fsmonitor, filter drivers and a signing program that append to
/// `marker` when run, planted in the bare repository `repo` (created when missing) and an
/// attributes file in `workdir`. As a shell script, for the direct test; the notebook cell
/// does the same from Python.
const HOOK_NAMES: &[&str] = &[
    "reference-transaction",
    "pre-commit",
    "post-commit",
    "post-update",
    "update",
    "pre-receive",
    "post-receive",
    "post-index-change",
    "post-checkout",
    "post-rewrite",
    "pre-auto-gc",
];

fn plant_hostile_repo(repo: &Path, workdir: &Path, marker: &Path, scripts: &Path) {
    if !repo.join("HEAD").exists() {
        support::git(&["init", "-q", "--bare", repo.to_str().unwrap()]);
    }
    let script = format!("echo \"$0 $*\" >> '{}'; cat", marker.display());
    let hooks = repo.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for name in HOOK_NAMES {
        support::fake_tool(&hooks, name, &script);
    }
    let evil = support::fake_tool(scripts, "evil", &script);
    let evil = evil.to_str().unwrap();
    let config = repo.join("config");
    for (key, value) in [
        ("core.hooksPath", hooks.to_str().unwrap()),
        ("core.fsmonitor", evil),
        ("filter.evil.clean", evil),
        ("filter.evil.smudge", evil),
        ("filter.evil.required", "true"),
        ("commit.gpgSign", "true"),
        ("gpg.program", evil),
    ] {
        support::git(&["config", "--file", config.to_str().unwrap(), key, value]);
    }
    std::fs::create_dir_all(repo.join("info")).unwrap();
    std::fs::write(repo.join("info/attributes"), "* filter=evil\n").unwrap();
    std::fs::write(workdir.join(".gitattributes"), "* filter=evil\n").unwrap();
}

/// `path -> (mode, contents)` of the tree of `rev` in the bare repository `repo`.
fn committed(repo: &Path, rev: &str) -> Vec<(String, String, Vec<u8>)> {
    let git_dir = repo.to_str().unwrap();
    let list = support::git(&["--git-dir", git_dir, "ls-tree", "-r", rev]);
    list.lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            let parts: Vec<&str> = meta.split(' ').collect();
            let out = std::process::Command::new("git")
                .args(["--git-dir", git_dir, "cat-file", "blob", parts[2]])
                .output()
                .unwrap();
            (path.to_string(), parts[0].to_string(), out.stdout)
        })
        .collect()
}

#[tokio::test]
async fn committing_results_never_runs_what_the_repository_holds() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("autograde");
    let work = dir.path().join("out");
    let marker = dir.path().join("ran");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("a.txt"), "results\r\n").unwrap();
    std::fs::write(work.join("sub/b.ipynb"), "{}").unwrap();
    support::fake_tool(&work, "run.sh", "true");
    std::os::unix::fs::symlink("/etc/hostname", work.join("link")).unwrap();
    plant_hostile_repo(&repo, &work, &marker, dir.path());

    let git = ProcessGit::new("git");
    let files: Vec<String> = ["a.txt", "link", "run.sh", "sub/b.ipynb"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for round in 0..2 {
        let commit = git
            .commit_files(&work, &files, &repo, "submission_abcd", "abcd")
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            !marker.exists(),
            "round {round}: repository code ran: {:?}",
            std::fs::read_to_string(&marker)
        );
        let tip = support::git(&[
            "--git-dir",
            repo.to_str().unwrap(),
            "rev-parse",
            "refs/heads/submission_abcd",
        ]);
        assert_eq!(tip.trim(), commit);
        let parents = support::git(&[
            "--git-dir",
            repo.to_str().unwrap(),
            "rev-list",
            "--count",
            &commit,
        ]);
        assert_eq!(parents.trim(), "1", "one root commit per branch");
        assert_eq!(
            committed(&repo, &commit),
            vec![
                ("a.txt".into(), "100644".into(), b"results\r\n".to_vec()),
                ("link".into(), "120000".into(), b"/etc/hostname".to_vec()),
                (
                    "run.sh".into(),
                    "100755".into(),
                    b"#!/bin/sh\ntrue\n".to_vec()
                ),
                ("sub/b.ipynb".into(), "100644".into(), b"{}".to_vec()),
            ]
        );
    }
    // Feedback reads the results back by branch name, as committed (the symlink skipped).
    let back = dir.path().join("back");
    let stats = git.export(&repo, "submission_abcd", &back).await.unwrap();
    assert_eq!(stats.skipped, vec!["link".to_string()]);
    assert_eq!(
        files_under(&back),
        vec![
            ("a.txt".into(), b"results\r\n".to_vec()),
            ("run.sh".into(), b"#!/bin/sh\ntrue\n".to_vec()),
            ("sub/b.ipynb".into(), b"{}".to_vec()),
        ]
    );
    assert!(!marker.exists());
    // No files: an empty tree, still committed.
    let commit = git
        .commit_files(&work, &[], &repo, "feedback_abcd", "abcd")
        .await
        .unwrap();
    assert!(committed(&repo, &commit).is_empty());
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_new_results_repository_gets_no_template_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("new/autograde");
    let work = dir.path().join("out");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("a.txt"), "x").unwrap();
    ProcessGit::new("git")
        .commit_files(&work, &["a.txt".to_string()], &repo, "b", "abcd")
        .await
        .unwrap();
    let hooks: Vec<_> = std::fs::read_dir(repo.join("hooks"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(hooks.is_empty(), "{hooks:?}");
}

/// The Python of a notebook cell doing what [`plant_hostile_repo`] does, against the
/// autograde repository of `user` and the job's output dir.
fn hostile_cell(service: &Path, user: &str, id: u64, marker: &Path) -> String {
    let repo = service.join(format!("git/cs101/1/autograde/user/{user}"));
    let out = service.join(format!("convert_out/submission_{id}"));
    let evil = service.join("evil.sh");
    format!(
        r##"import os, subprocess
repo = {repo:?}
marker = {marker:?}
evil = {evil:?}
script = "#!/bin/sh\necho \"$0 $*\" >> '" + marker + "'\ncat\n"
if not os.path.exists(os.path.join(repo, "HEAD")):
    subprocess.run(["git", "init", "-q", "--bare", repo], check=True)
hooks = os.path.join(repo, "hooks")
os.makedirs(hooks, exist_ok=True)
for name in {hooks:?}:
    with open(os.path.join(hooks, name), "w") as f:
        f.write(script)
    os.chmod(os.path.join(hooks, name), 0o755)
with open(evil, "w") as f:
    f.write(script)
os.chmod(evil, 0o755)
for key, value in [("core.hooksPath", hooks), ("core.fsmonitor", evil),
                   ("filter.evil.clean", evil), ("filter.evil.smudge", evil),
                   ("filter.evil.required", "true"), ("commit.gpgSign", "true"),
                   ("gpg.program", evil)]:
    subprocess.run(["git", "config", "--file", os.path.join(repo, "config"), key, value],
                   check=True)
os.makedirs(os.path.join(repo, "info"), exist_ok=True)
with open(os.path.join(repo, "info", "attributes"), "w") as f:
    f.write("* filter=evil\n")
for d in [{out:?}, os.getcwd()]:
    with open(os.path.join(d, ".gitattributes"), "w") as f:
        f.write("* filter=evil\n")
print("planted")
"##,
        repo = repo.to_str().unwrap(),
        marker = marker.to_str().unwrap(),
        evil = evil.to_str().unwrap(),
        hooks = HOOK_NAMES,
        out = out.to_str().unwrap(),
    )
}

/// Grades a student whose notebook plants hooks and filters in the autograde repository twice
/// through `backend`: nothing planted runs, the results are committed both times.
async fn grade_a_hook_planting_student_twice(backend: Arc<dyn GradingBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    support::make_service_dir(&service, &["--students", "alice"]);
    let marker = dir.path().join("ran");
    let (user, id) = ("mallory", 77);
    let job = support::hostile_job(
        &service,
        user,
        id,
        &hostile_cell(&service, user, id, &marker),
    );
    let mut config = ExecutorConfig::new(&service);
    config.max_grading_time = Duration::from_secs(300);
    let exec = Executor::new(config, Arc::new(ProcessGit::new("git")), backend);
    let repo = service.join(format!("git/cs101/1/autograde/user/{user}"));
    let branch = format!("submission_{}", job.submission.commit_hash);
    for round in 0..2 {
        let out = exec.autograde(&job, CancellationToken::new()).await;
        assert_eq!(
            out.status,
            Status::Auto(AutoStatus::AutomaticallyGraded),
            "round {round}: {:?}\n{}",
            out.error,
            out.logs
        );
        assert!(
            repo.join("hooks/reference-transaction").exists(),
            "round {round}: the cell did not plant its hooks:\n{}",
            out.logs
        );
        assert!(
            !marker.exists(),
            "round {round}: repository code ran: {:?}",
            std::fs::read_to_string(&marker)
        );
        let files = committed(&repo, &format!("refs/heads/{branch}"));
        assert_eq!(
            out.commit.as_deref(),
            Some(
                support::git(&[
                    "--git-dir",
                    repo.to_str().unwrap(),
                    "rev-parse",
                    &format!("refs/heads/{branch}"),
                ])
                .trim()
            )
        );
        let notebook = files
            .iter()
            .find(|(p, _, _)| p == "hw1.ipynb")
            .unwrap_or_else(|| panic!("round {round}: no notebook committed: {files:?}"));
        let nb: serde_json::Value = serde_json::from_slice(&notebook.2)
            .unwrap_or_else(|e| panic!("round {round}: committed notebook is not JSON: {e}"));
        assert!(nb["cells"].as_array().is_some_and(|c| !c.is_empty()));
        assert!(String::from_utf8_lossy(&notebook.2).contains("planted"));
    }
    let left = support::strays_under(&service);
    assert!(left.is_empty(), "stray processes: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_a_notebook_plants_in_the_autograde_repository_never_run_cold() {
    let Some(convert) = support::grader_convert("hooks_a_notebook_plants_never_run_cold") else {
        return;
    };
    let backend = Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20));
    grade_a_hook_planting_student_twice(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_a_notebook_plants_in_the_autograde_repository_never_run_warm() {
    let Some(convert) = support::grader_convert("hooks_a_notebook_plants_never_run_warm") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let settings = PoolSettings {
        workers: 1,
        ..PoolSettings::default()
    };
    let backend = support::started_warm_backend(&convert, settings, work.path(), 1 << 20).await;
    let backend = Arc::new(backend);
    grade_a_hook_planting_student_twice(backend.clone()).await;
    backend.shutdown().await;
}

#[tokio::test]
async fn a_missing_blob_of_a_partial_clone_is_not_fetched_by_a_program_the_repository_names() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("student");
    let marker = dir.path().join("fetched");
    init_work_repo(&repo);
    let commit = commit_files(&repo, &[("data.txt", b"graded\n")], "submit");
    let blob = git_in(&repo, &["rev-parse", &format!("{commit}:data.txt")]);
    std::fs::remove_file(repo.join(format!(".git/objects/{}/{}", &blob[..2], &blob[2..]))).unwrap();
    // A promisor remote whose upload-pack is a program of the student's.
    let evil = support::fake_tool(
        dir.path(),
        "evil-upload-pack",
        &format!("echo \"$0 $*\" >> '{}'", marker.display()),
    );
    let upstream = dir.path().join("upstream");
    init_work_repo(&upstream);
    for (key, value) in [
        ("core.repositoryformatversion", "1"),
        ("extensions.partialClone", "origin"),
        ("remote.origin.url", upstream.to_str().unwrap()),
        ("remote.origin.promisor", "true"),
        ("remote.origin.uploadpack", evil.to_str().unwrap()),
        ("protocol.file.allow", "always"),
        ("protocol.allow", "always"),
    ] {
        git_in(&repo, &["config", key, value]);
    }
    let dest = dir.path().join("out");
    let result = ProcessGit::new("git").export(&repo, &commit, &dest).await;
    assert!(
        !marker.exists(),
        "the repository's program ran: {:?}",
        std::fs::read_to_string(&marker)
    );
    let err = result.unwrap_err().to_string();
    assert!(err.contains(&blob), "{err}");
}

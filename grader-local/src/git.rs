//! Git, the one seam to the repositories.
//!
//! Git always runs as a program with an argument list (the executable is configurable), never
//! through a shell. Submissions are exported with `git archive` and unpacked here, skipping
//! symlinks and anything else that is not a plain file or directory, so a student cannot make the
//! grader read or commit a file outside the submission. Results are written straight into the
//! bare autograde repository through a private index: one root commit per branch, replaced on
//! every run (the force-push of the reference, without a work-tree repository or a push).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use async_trait::async_trait;

/// A git operation that failed, with the command and what git said.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("repository {path} does not exist")]
    MissingRepo { path: PathBuf },
    #[error("could not run {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not unpack the submission into {dest}: {source}")]
    Unpack {
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git task stopped unexpectedly: {0}")]
    Join(String),
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Files written.
    pub files: usize,
    /// Paths that were not written: symlinks, hard links, devices, paths leaving the directory.
    pub skipped: Vec<String>,
}

/// The git operations the pipeline needs.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Git: Send + Sync {
    /// Writes the tree of `rev` in repository `repo` into the existing directory `dest`.
    async fn export(&self, repo: &Path, rev: &str, dest: &Path) -> Result<ExportStats, GitError>;

    /// Makes `branch` of the bare repository `repo` (created when missing) a single commit
    /// holding `files` (paths relative to `workdir`) with message `message`; returns its id.
    async fn commit_files(
        &self,
        workdir: &Path,
        files: &[String],
        repo: &Path,
        branch: &str,
        message: &str,
    ) -> Result<String, GitError>;
}

/// [`Git`] by running the git executable.
#[derive(Debug, Clone)]
pub struct ProcessGit {
    executable: String,
    /// Bounds the git work running at once (each holds a blocking thread).
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ProcessGit {
    /// Git run as `executable` (a name looked up in `PATH`, or a path).
    pub fn new(executable: impl Into<String>) -> Self {
        let permits = std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4));
        ProcessGit {
            executable: executable.into(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }

    fn command(&self, git_dir: &Path) -> Command {
        let mut cmd = Command::new(&self.executable);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
            "GIT_CEILING_DIRECTORIES",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .arg("--git-dir")
            .arg(git_dir)
            .stdin(Stdio::null());
        cmd
    }

    fn spawn_error(&self) -> impl Fn(std::io::Error) -> GitError + '_ {
        |source| GitError::Spawn {
            program: self.executable.clone(),
            source,
        }
    }

    fn run(&self, mut cmd: Command, input: Option<&[u8]>) -> Result<String, GitError> {
        let describe = describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(self.spawn_error())?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(bytes).map_err(self.spawn_error())?;
        }
        let out = child.wait_with_output().map_err(self.spawn_error())?;
        succeeded(describe, &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn export_blocking(
        &self,
        repo: &Path,
        rev: &str,
        dest: &Path,
    ) -> Result<ExportStats, GitError> {
        if !repo.is_dir() {
            return Err(GitError::MissingRepo {
                path: repo.to_path_buf(),
            });
        }
        let mut cmd = self.command(&git_dir_of(repo));
        cmd.args(["archive", "--format=tar", rev]);
        let describe = describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(self.spawn_error())?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // `unpack` consumes the pipe, so git sees it closed even if unpacking stops early.
        let unpacked = unpack(stdout, dest);
        let out = child.wait_with_output().map_err(self.spawn_error())?;
        succeeded(describe, &out)?;
        unpacked.map_err(|source| GitError::Unpack {
            dest: dest.to_path_buf(),
            source,
        })
    }

    fn commit_blocking(
        &self,
        workdir: &Path,
        files: &[String],
        repo: &Path,
        branch: &str,
        message: &str,
    ) -> Result<String, GitError> {
        if !repo.join("HEAD").is_file() {
            std::fs::create_dir_all(repo).map_err(|source| GitError::Spawn {
                program: format!("mkdir {}", repo.display()),
                source,
            })?;
            let mut init = Command::new(&self.executable);
            init.args(["init", "--quiet", "--bare", "--initial-branch=main"])
                .arg(repo)
                .env_remove("GIT_DIR")
                .stdin(Stdio::null());
            self.run(init, None)?;
        }
        let index = repo.join(format!("grader-index-{branch}"));
        let _ = std::fs::remove_file(&index);
        let result = (|| {
            let mut pathspecs = Vec::new();
            for f in files {
                pathspecs.extend_from_slice(f.as_bytes());
                pathspecs.push(0);
            }
            let mut add = self.command(repo);
            add.env("GIT_INDEX_FILE", &index)
                .arg("--work-tree")
                .arg(workdir)
                .args([
                    "add",
                    "--force",
                    "--pathspec-from-file=-",
                    "--pathspec-file-nul",
                ]);
            if !files.is_empty() {
                self.run(add, Some(&pathspecs))?;
            }
            let mut write_tree = self.command(repo);
            write_tree.env("GIT_INDEX_FILE", &index).arg("write-tree");
            let tree = if files.is_empty() {
                let mut empty = self.command(repo);
                empty.args(["hash-object", "-t", "tree", "-w", "--stdin"]);
                self.run(empty, Some(b""))?
            } else {
                self.run(write_tree, None)?
            };
            let mut commit = self.command(repo);
            commit
                .env("GIT_AUTHOR_NAME", "grader")
                .env("GIT_AUTHOR_EMAIL", "grader@localhost")
                .env("GIT_COMMITTER_NAME", "grader")
                .env("GIT_COMMITTER_EMAIL", "grader@localhost")
                .args(["commit-tree", &tree, "-m", message]);
            let commit_id = self.run(commit, None)?;
            let mut update = self.command(repo);
            update.args(["update-ref", &format!("refs/heads/{branch}"), &commit_id]);
            self.run(update, None)?;
            Ok(commit_id)
        })();
        let _ = std::fs::remove_file(&index);
        result
    }
}

#[async_trait]
impl Git for ProcessGit {
    async fn export(&self, repo: &Path, rev: &str, dest: &Path) -> Result<ExportStats, GitError> {
        let (this, repo, rev, dest) = (
            self.clone(),
            repo.to_path_buf(),
            rev.to_string(),
            dest.to_path_buf(),
        );
        let _permit = self.permits.acquire().await.ok();
        tokio::task::spawn_blocking(move || this.export_blocking(&repo, &rev, &dest))
            .await
            .map_err(|e| GitError::Join(e.to_string()))?
    }

    async fn commit_files(
        &self,
        workdir: &Path,
        files: &[String],
        repo: &Path,
        branch: &str,
        message: &str,
    ) -> Result<String, GitError> {
        let this = self.clone();
        let (workdir, files, repo, branch, message) = (
            workdir.to_path_buf(),
            files.to_vec(),
            repo.to_path_buf(),
            branch.to_string(),
            message.to_string(),
        );
        let _permit = self.permits.acquire().await.ok();
        tokio::task::spawn_blocking(move || {
            this.commit_blocking(&workdir, &files, &repo, &branch, &message)
        })
        .await
        .map_err(|e| GitError::Join(e.to_string()))?
    }
}

/// `repo/.git` for a repository with a work tree, `repo` itself for a bare one.
fn git_dir_of(repo: &Path) -> PathBuf {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        dot_git
    } else {
        repo.to_path_buf()
    }
}

/// `Ok` when git exited successfully, else what it said.
fn succeeded(command: String, out: &std::process::Output) -> Result<(), GitError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(GitError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Unpacks plain files and directories of a tar stream into `dest`; everything else is skipped.
fn unpack(reader: impl std::io::Read, dest: &Path) -> std::io::Result<ExportStats> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_overwrite(true);
    let mut stats = ExportStats::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let path = entry.path()?.to_string_lossy().into_owned();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {
                if entry.unpack_in(dest)? {
                    if kind == tar::EntryType::Regular {
                        stats.files += 1;
                    }
                } else {
                    stats.skipped.push(path);
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => stats.skipped.push(path),
        }
    }
    Ok(stats)
}

/// True for a plausible git object id (4 to 64 hex digits), the only form a job may give.
pub fn is_commit_hash(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

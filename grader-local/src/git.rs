//! Git, the one seam to the repositories.
//!
//! Git always runs as a program with an argument list (the executable is configurable), never
//! through a shell, and never runs code or configuration a repository holds: every command gets
//! a cleared environment, no system or global configuration, and command-line settings that
//! switch off hooks, fsmonitor, transports and replace objects (see [`HARDENING`]). Student
//! code can write into the repositories grader reads and writes, so nothing in them is trusted.
//!
//! Submissions are exported as committed: the tree is listed with `ls-tree` and the blobs are
//! read raw with one `cat-file --batch`, so no attribute (`export-ignore`, `export-subst`,
//! `eol`, `filter`) changes what the grading tool sees. Only regular files are written, to
//! paths made of plain names, never through a symlink; symlinks, submodules and anything else
//! are reported as skipped. A job's commit is resolved among objects only, so no branch or
//! tag can stand in for it; named revisions are resolved as branches only.
//!
//! Results are written straight into the bare autograde repository without `git add` (which
//! would apply attributes and filter drivers): the files are read here without following
//! symlinks, hashed with `hash-object --no-filters`, put in a private index and committed as
//! one root commit per branch, replaced on every run (the force-push of the reference,
//! without a work-tree repository or a push).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
    #[error("could not write the submission into {dest}: {source}")]
    Unpack {
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing revision {0:?}: neither a commit id (4 to 64 hex digits) nor a branch name")]
    BadRevision(String),
    #[error("there is no commit {rev} in {repo}")]
    NoCommit { rev: String, repo: PathBuf },
    #[error("{rev} in {repo} is a {kind}, not a commit")]
    NotACommit {
        rev: String,
        repo: PathBuf,
        kind: String,
    },
    #[error("commit hash {rev} is ambiguous in {repo}: it matches the commits {candidates}")]
    Ambiguous {
        rev: String,
        repo: PathBuf,
        candidates: String,
    },
    #[error("there is no branch {branch} in {repo}")]
    NoBranch { branch: String, repo: PathBuf },
    #[error("`{command}` gave unexpected output: {detail}")]
    Protocol { command: String, detail: String },
    #[error("could not commit {path}: {reason}")]
    ResultFile { path: String, reason: String },
    #[error("git task stopped unexpectedly: {0}")]
    Join(String),
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Files written.
    pub files: usize,
    /// Paths that were not written: symlinks, submodules, paths that are not plain names.
    pub skipped: Vec<String>,
}

/// The git operations the pipeline needs.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Git: Send + Sync {
    /// Writes the tree of `rev` in repository `repo` into the directory `dest`. `rev` is a
    /// commit id or a unique prefix of one (never read as a ref name), or a branch name
    /// (`main`, `refs/heads/main`; never a tag).
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

/// Settings given on every git command line. Command-line settings beat every configuration
/// file, including the repository's own `config` and anything it includes.
pub const HARDENING: &[&str] = &[
    // No hooks (`reference-transaction`, `post-index-change`, ...).
    "core.hooksPath=/dev/null",
    // No fsmonitor hook or daemon, no untracked cache or split index to trust.
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.splitIndex=false",
    // The commit's tree is read from the commit object, not a commit-graph file.
    "core.commitGraph=false",
    // No signing program.
    "commit.gpgSign=false",
    // No transport at all: a lazy fetch of a partial clone would run `uploadpack`, ssh, ....
    "protocol.allow=never",
];

/// The only variables of grader's environment git gets (all `GIT_*` are dropped).
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
];

/// The environment of every git command: [`KEPT_ENV`] from `parent`, then settings that shut
/// out system and user configuration, replace objects, prompts, pagers and transports.
fn hardened_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| KEPT_ENV.iter().any(|kept| k == OsStr::new(kept)))
        .collect();
    for (k, v) in [
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_SYSTEM", "/dev/null"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        ("GIT_NO_REPLACE_OBJECTS", "1"),
        ("GIT_NO_LAZY_FETCH", "1"),
        ("GIT_ALLOW_PROTOCOL", "none"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_PAGER", "cat"),
        ("GIT_LITERAL_PATHSPECS", "1"),
    ] {
        env.push((k.into(), v.into()));
    }
    env
}

/// [`Git`] by running the git executable.
#[derive(Debug, Clone)]
pub struct ProcessGit {
    executable: String,
    /// Bounds the git work running at once (each holds a blocking thread).
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// One git command line and how to describe it in errors.
struct GitCommand {
    cmd: Command,
    describe: String,
}

impl GitCommand {
    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.describe.push(' ');
        self.describe.push_str(&arg.as_ref().to_string_lossy());
        self.cmd.arg(arg);
        self
    }

    fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }
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

    /// Git with the hardened environment and settings, not yet bound to a repository.
    fn bare_command(&self) -> GitCommand {
        let mut cmd = Command::new(&self.executable);
        cmd.env_clear()
            .envs(hardened_env(std::env::vars_os()))
            .stdin(Stdio::null());
        let mut git = GitCommand {
            cmd,
            describe: self.executable.clone(),
        };
        for setting in HARDENING {
            git.cmd.arg("-c").arg(setting);
        }
        git.cmd.arg("--no-replace-objects");
        git
    }

    /// Git bound to the repository `git_dir` (no discovery, no work tree).
    fn command(&self, git_dir: &Path) -> GitCommand {
        self.bare_command().arg("--git-dir").arg(git_dir)
    }

    fn spawn_error(&self) -> impl Fn(std::io::Error) -> GitError + '_ {
        |source| GitError::Spawn {
            program: self.executable.clone(),
            source,
        }
    }

    /// Runs `git` to the end with `input` on its stdin (written from a thread of its own, so
    /// git never blocks on a full pipe either way); returns its stdout.
    fn run(&self, git: GitCommand, input: Option<Vec<u8>>) -> Result<Vec<u8>, GitError> {
        let GitCommand { mut cmd, describe } = git;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(self.spawn_error())?;
        let writer = match (input, child.stdin.take()) {
            (Some(bytes), Some(mut stdin)) => {
                Some(std::thread::spawn(move || stdin.write_all(&bytes)))
            }
            _ => None,
        };
        let out = child.wait_with_output().map_err(self.spawn_error())?;
        let written = writer.map(|w| w.join());
        succeeded(&describe, &out.status, &out.stderr)?;
        match written {
            Some(Ok(Err(source))) => Err(self.spawn_error()(source)),
            Some(Err(_)) => Err(GitError::Join(format!("writing to `{describe}`"))),
            _ => Ok(out.stdout),
        }
    }

    /// [`ProcessGit::run`], stdout as trimmed text.
    fn run_text(&self, git: GitCommand, input: Option<Vec<u8>>) -> Result<String, GitError> {
        let out = self.run(git, input)?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// The commit `rev` names in `git_dir`: a commit id or a unique prefix of one among the
    /// repository's objects (case-insensitive), or a branch.
    fn resolve(&self, git_dir: &Path, rev: &str) -> Result<String, GitError> {
        if is_commit_hash(rev) {
            let hex = rev.to_ascii_lowercase();
            // `--disambiguate` lists the objects with this prefix; refs are never consulted.
            let candidates = self.run_text(
                self.command(git_dir)
                    .arg("rev-parse")
                    .arg(format!("--disambiguate={hex}")),
                None,
            )?;
            let candidates: Vec<&str> = candidates.split_whitespace().collect();
            let types = self.object_types(git_dir, &candidates)?;
            let commits: Vec<&str> = candidates
                .iter()
                .zip(&types)
                .filter(|(_, t)| t.as_str() == "commit")
                .map(|(c, _)| *c)
                .collect();
            match (commits.as_slice(), types.as_slice()) {
                ([one], _) => Ok(one.to_string()),
                ([], [kind]) => Err(GitError::NotACommit {
                    rev: hex,
                    repo: git_dir.to_path_buf(),
                    kind: kind.clone(),
                }),
                ([], _) => Err(GitError::NoCommit {
                    rev: hex,
                    repo: git_dir.to_path_buf(),
                }),
                (many, _) => Err(GitError::Ambiguous {
                    rev: hex,
                    repo: git_dir.to_path_buf(),
                    candidates: many.join(", "),
                }),
            }
        } else if let Some(refname) = branch_ref(rev) {
            let listed = self.run_text(
                self.command(git_dir)
                    .args([
                        "for-each-ref",
                        "--format=%(objectname) %(objecttype) %(refname)",
                    ])
                    .arg(&refname),
                None,
            )?;
            let found = listed.lines().find_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let (oid, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
                (name == refname).then(|| (oid.to_string(), kind.to_string()))
            });
            match found {
                Some((oid, kind)) if kind == "commit" => Ok(oid),
                Some((_, kind)) => Err(GitError::NotACommit {
                    rev: refname,
                    repo: git_dir.to_path_buf(),
                    kind,
                }),
                None => Err(GitError::NoBranch {
                    branch: rev.to_string(),
                    repo: git_dir.to_path_buf(),
                }),
            }
        } else {
            Err(GitError::BadRevision(rev.to_string()))
        }
    }

    /// The type of each of the full object ids `oids`, in order.
    fn object_types(&self, git_dir: &Path, oids: &[&str]) -> Result<Vec<String>, GitError> {
        if oids.is_empty() {
            return Ok(vec![]);
        }
        let git = self
            .command(git_dir)
            .args(["cat-file", "--batch-check=%(objectname) %(objecttype)"]);
        let describe = git.describe.clone();
        let input: Vec<u8> = oids
            .iter()
            .flat_map(|o| format!("{o}\n").into_bytes())
            .collect();
        let out = self.run_text(git, Some(input))?;
        let types: Vec<String> = out
            .lines()
            .map(|l| l.split_once(' ').map_or("missing", |(_, t)| t).to_string())
            .collect();
        if types.len() != oids.len() {
            return Err(GitError::Protocol {
                command: describe,
                detail: format!("{} answers for {} objects", types.len(), oids.len()),
            });
        }
        Ok(types)
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
        let git_dir = git_dir_of(repo);
        let commit = self.resolve(&git_dir, rev)?;
        let list = self
            .command(&git_dir)
            .args(["ls-tree", "-r", "-z", "--full-tree", "--end-of-options"])
            .arg(&commit);
        let describe = list.describe.clone();
        let listing = self.run(list, None)?;

        let mut stats = ExportStats::default();
        let mut wanted = Vec::new();
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = TreeEntry::parse(entry).ok_or_else(|| GitError::Protocol {
                command: describe.clone(),
                detail: format!("unreadable entry {:?}", String::from_utf8_lossy(entry)),
            })?;
            let executable = match (entry.mode, entry.kind) {
                (b"100644", b"blob") => false,
                (b"100755", b"blob") => true,
                _ => {
                    stats.skipped.push(entry.display_path());
                    continue;
                }
            };
            match plain_components(entry.path) {
                Some(parts) => wanted.push(Wanted {
                    oid: String::from_utf8_lossy(entry.oid).into_owned(),
                    parts,
                    executable,
                    display: entry.display_path(),
                }),
                None => stats.skipped.push(entry.display_path()),
            }
        }
        std::fs::create_dir_all(dest).map_err(|source| GitError::Unpack {
            dest: dest.to_path_buf(),
            source,
        })?;
        self.write_blobs(&git_dir, &wanted, dest, &mut stats)?;
        Ok(stats)
    }

    /// Reads the blobs of `wanted` with one `cat-file --batch` and writes them under `dest`.
    /// Git's output is always read to the end, whatever fails here.
    fn write_blobs(
        &self,
        git_dir: &Path,
        wanted: &[Wanted<'_>],
        dest: &Path,
        stats: &mut ExportStats,
    ) -> Result<(), GitError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let GitCommand { mut cmd, describe } = self.command(git_dir).args(["cat-file", "--batch"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(self.spawn_error())?;
        let mut requests = Vec::with_capacity(wanted.len() * 41);
        for w in wanted {
            requests.extend_from_slice(w.oid.as_bytes());
            requests.push(b'\n');
        }
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let writer = std::thread::spawn(move || stdin.write_all(&requests));
        let stderr = drain_in_thread(&mut child);
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));

        let mut failure: Option<GitError> = None;
        for w in wanted {
            let mut header = String::new();
            match stdout.read_line(&mut header) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let size = match parse_batch_header(&header, &w.oid) {
                Ok(size) => size,
                Err(detail) => {
                    failure.get_or_insert(GitError::Protocol {
                        command: describe.clone(),
                        detail,
                    });
                    break;
                }
            };
            let mut blob = (&mut stdout).take(size);
            if failure.is_none() {
                match write_file(dest, &w.parts, w.executable, &mut blob) {
                    Ok(true) => stats.files += 1,
                    Ok(false) => stats.skipped.push(w.display.clone()),
                    Err(source) => {
                        failure = Some(GitError::Unpack {
                            dest: dest.to_path_buf(),
                            source,
                        })
                    }
                }
            }
            // Whatever was not written (a skipped path, a failure) is still read.
            let _ = std::io::copy(&mut blob, &mut std::io::sink());
            let mut newline = [0u8; 1];
            let _ = stdout.read_exact(&mut newline);
        }
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        let status = child.wait().map_err(self.spawn_error())?;
        let written = writer.join();
        let stderr = stderr.join().unwrap_or_default();
        succeeded(&describe, &status, &stderr)?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        match written {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(self.spawn_error()(source)),
            Err(_) => return Err(GitError::Join(format!("writing to `{describe}`"))),
        }
        let done = stats.files + stats.skipped.len();
        if done < wanted.len() {
            return Err(GitError::Protocol {
                command: describe,
                detail: "output ended early".into(),
            });
        }
        Ok(())
    }

    /// Creates the bare repository `repo` when it has no `HEAD`, without templates (no
    /// sample hooks, nothing from an `init.templateDir`).
    fn ensure_repo(&self, repo: &Path) -> Result<(), GitError> {
        if repo.join("HEAD").is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(repo).map_err(|source| GitError::Spawn {
            program: format!("mkdir {}", repo.display()),
            source,
        })?;
        let init = self
            .bare_command()
            .args([
                "init",
                "--quiet",
                "--bare",
                "--template=",
                "--initial-branch=main",
            ])
            .arg(repo);
        self.run(init, None).map(drop)
    }

    fn commit_blocking(
        &self,
        workdir: &Path,
        files: &[String],
        repo: &Path,
        branch: &str,
        message: &str,
    ) -> Result<String, GitError> {
        self.ensure_repo(repo)?;
        let scratch = Scratch::new().map_err(|source| GitError::Spawn {
            program: "mkdir (a private scratch directory)".into(),
            source,
        })?;

        // Each file as this process reads it, copied where nothing else writes.
        let mut modes = Vec::with_capacity(files.len());
        let mut copies = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let copy = scratch.path().join(i.to_string());
            let mode = stage_file(workdir, file, &copy).map_err(|reason| GitError::ResultFile {
                path: file.clone(),
                reason,
            })?;
            modes.push(mode);
            copies.push(copy);
        }

        let tree = if files.is_empty() {
            let empty = self
                .command(repo)
                .args(["hash-object", "-t", "tree", "-w", "--stdin"]);
            self.run_text(empty, Some(vec![]))?
        } else {
            let hash =
                self.command(repo)
                    .args(["hash-object", "-w", "--no-filters", "--stdin-paths"]);
            let describe = hash.describe.clone();
            let mut paths = Vec::new();
            for copy in &copies {
                paths.extend_from_slice(copy.as_os_str().as_bytes());
                paths.push(b'\n');
            }
            let oids = self.run_text(hash, Some(paths))?;
            let oids: Vec<&str> = oids.lines().collect();
            if oids.len() != files.len() {
                return Err(GitError::Protocol {
                    command: describe,
                    detail: format!("{} ids for {} files", oids.len(), files.len()),
                });
            }
            let index = scratch.path().join("index");
            let mut entries = Vec::new();
            for ((file, mode), oid) in files.iter().zip(&modes).zip(&oids) {
                entries.extend_from_slice(format!("{mode} blob {oid}\t{file}").as_bytes());
                entries.push(0);
            }
            let update = self.command(repo).env("GIT_INDEX_FILE", &index).args([
                "update-index",
                "-z",
                "--index-info",
            ]);
            self.run(update, Some(entries))?;
            let write_tree = self
                .command(repo)
                .env("GIT_INDEX_FILE", &index)
                .arg("write-tree");
            self.run_text(write_tree, None)?
        };

        let commit = self
            .command(repo)
            .env("GIT_AUTHOR_NAME", "grader")
            .env("GIT_AUTHOR_EMAIL", "grader@localhost")
            .env("GIT_COMMITTER_NAME", "grader")
            .env("GIT_COMMITTER_EMAIL", "grader@localhost")
            .args(["commit-tree", "--no-gpg-sign", &tree, "-m", message]);
        let commit_id = self.run_text(commit, None)?;
        let update = self
            .command(repo)
            .args(["update-ref", "--no-deref"])
            .arg(format!("refs/heads/{branch}"))
            .arg(&commit_id);
        self.run(update, None)?;
        Ok(commit_id)
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

/// One line of `ls-tree -z`: `<mode> SP <type> SP <object> TAB <path>`.
struct TreeEntry<'a> {
    mode: &'a [u8],
    kind: &'a [u8],
    oid: &'a [u8],
    path: &'a [u8],
}

impl<'a> TreeEntry<'a> {
    fn parse(line: &'a [u8]) -> Option<Self> {
        let tab = line.iter().position(|b| *b == b'\t')?;
        let (meta, path) = (&line[..tab], &line[tab + 1..]);
        let mut parts = meta.split(|b| *b == b' ');
        let (mode, kind, oid) = (parts.next()?, parts.next()?, parts.next()?);
        let hex = oid.iter().all(u8::is_ascii_hexdigit) && !oid.is_empty();
        (parts.next().is_none() && hex && !path.is_empty()).then_some(TreeEntry {
            mode,
            kind,
            oid,
            path,
        })
    }

    fn display_path(&self) -> String {
        String::from_utf8_lossy(self.path).into_owned()
    }
}

/// A blob to write: its id, the path's components, and its executable bit.
struct Wanted<'a> {
    oid: String,
    parts: Vec<&'a OsStr>,
    executable: bool,
    display: String,
}

/// The components of a `/`-separated tree path when every one is a plain name: not empty,
/// `.`, `..` or `.git` (any case); `None` otherwise (which also refuses absolute paths).
fn plain_components(path: &[u8]) -> Option<Vec<&OsStr>> {
    path.split(|b| *b == b'/')
        .map(|c| {
            let plain =
                !c.is_empty() && c != b"." && c != b".." && !c.eq_ignore_ascii_case(b".git");
            plain.then(|| OsStr::from_bytes(c))
        })
        .collect()
}

/// Parses `<oid> blob <size>\n` of `cat-file --batch` for the object `oid`.
fn parse_batch_header(header: &str, oid: &str) -> Result<u64, String> {
    let mut parts = header.trim_end_matches('\n').split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(got), Some("blob"), Some(size), None) if got == oid => {
            size.parse().map_err(|_| format!("bad size in {header:?}"))
        }
        (Some(got), Some("missing"), None, None) if got == oid => {
            Err(format!("object {oid} is missing"))
        }
        _ => Err(format!("{header:?} for blob {oid}")),
    }
}

/// Writes `contents` to `dest/parts...`, creating directories as needed and never following
/// a symlink. `Ok(false)` when the path cannot be a new file: something already there (a
/// repeated path) or a parent that is not a directory.
fn write_file(
    dest: &Path,
    parts: &[&OsStr],
    executable: bool,
    contents: &mut impl Read,
) -> std::io::Result<bool> {
    let Some((name, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let mut path = dest.to_path_buf();
    for part in parents {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::DirBuilder::new().mode(0o777).create(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if !std::fs::symlink_metadata(&path)?.is_dir() {
                            return Ok(false);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    path.push(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o777 } else { 0o666 })
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    std::io::copy(contents, &mut file)?;
    Ok(true)
}

/// Copies the result file `workdir/rel` to `copy` as this process sees it, without following
/// a symlink anywhere on the way; returns its git mode. A symlink is committed as a symlink
/// (its target is the content), as `git add` would; anything but a regular file or a symlink
/// is refused.
fn stage_file(workdir: &Path, rel: &str, copy: &Path) -> Result<&'static str, String> {
    let parts = plain_components(rel.as_bytes()).ok_or("not a plain relative path")?;
    let mut path = workdir.to_path_buf();
    let (name, parents) = parts.split_last().ok_or("empty path")?;
    for part in parents {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", path.display())),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    path.push(name);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(copy)
        .map_err(|e| format!("could not copy it to {}: {e}", copy.display()))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path).map_err(|e| e.to_string())?;
        out.write_all(target.as_os_str().as_bytes())
            .map_err(|e| e.to_string())?;
        return Ok("120000");
    }
    // O_NONBLOCK: a FIFO swapped in after the check above must not hang the open.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file or a symlink".into());
    }
    std::io::copy(&mut file, &mut out).map_err(|e| e.to_string())?;
    Ok(if meta.permissions().mode() & 0o100 != 0 {
        "100755"
    } else {
        "100644"
    })
}

/// `refs/heads/NAME` for a branch name given as `NAME` or `refs/heads/NAME`, when the name is
/// made of plain ref characters; `None` otherwise.
fn branch_ref(rev: &str) -> Option<String> {
    let name = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !name.starts_with(['-', '.', '/'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("/.");
    plain.then(|| format!("refs/heads/{name}"))
}

/// A directory only this process uses, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("grader-git-{}-{n}-{nanos}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Scratch(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads the child's stderr to the end in a thread of its own.
fn drain_in_thread(child: &mut Child) -> std::thread::JoinHandle<Vec<u8>> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    })
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
fn succeeded(
    command: &str,
    status: &std::process::ExitStatus,
    stderr: &[u8],
) -> Result<(), GitError> {
    if status.success() {
        Ok(())
    } else {
        Err(GitError::Failed {
            command: command.to_string(),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        })
    }
}

/// True for a plausible git object id (4 to 64 hex digits), the only form a job may give.
pub fn is_commit_hash(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_gets_no_git_variable_and_no_secret_of_graders_environment() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("GIT_DIR", "/elsewhere"),
            ("GIT_CONFIG_PARAMETERS", "'core.hooksPath'='/evil'"),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_EXEC_PATH", "/evil"),
            ("GIT_ALLOW_PROTOCOL", "file:ext"),
            ("KUBECONFIG", "/secret"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = hardened_env(parent);
        let get = |key: &str| {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("PATH"), ["/usr/bin"]);
        assert_eq!(get("HOME"), ["/root"]);
        for gone in [
            "GIT_DIR",
            "GIT_CONFIG_PARAMETERS",
            "GIT_CONFIG_COUNT",
            "GIT_EXEC_PATH",
            "KUBECONFIG",
        ] {
            assert!(get(gone).is_empty(), "{gone}");
        }
        assert_eq!(get("GIT_ALLOW_PROTOCOL"), ["none"]);
        assert_eq!(get("GIT_CONFIG_GLOBAL"), ["/dev/null"]);
        assert_eq!(get("GIT_CONFIG_NOSYSTEM"), ["1"]);
        assert_eq!(get("GIT_NO_REPLACE_OBJECTS"), ["1"]);
    }

    #[test]
    fn only_plain_names_make_a_path() {
        assert!(plain_components(b"a/b.txt").is_some_and(|p| p.len() == 2));
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"a/../../x",
            b"a/./b",
            b".git/config",
            b"a/.GIT/hooks/x",
            b"a//b",
            b"a/",
            b"",
        ] {
            assert!(
                plain_components(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn branch_names_become_full_branch_refs() {
        assert_eq!(branch_ref("main").as_deref(), Some("refs/heads/main"));
        assert_eq!(
            branch_ref("refs/heads/submission_ab12").as_deref(),
            Some("refs/heads/submission_ab12")
        );
        for bad in [
            "", "-x", "a..b", "a b", "a*", "x.lock", "a/", "/a", ".a", "a/.b", "a\nb",
        ] {
            assert_eq!(branch_ref(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn batch_headers_must_name_the_blob_asked_for() {
        assert_eq!(parse_batch_header("abc blob 12\n", "abc"), Ok(12));
        assert!(parse_batch_header("abc missing\n", "abc").is_err());
        assert!(parse_batch_header("abd blob 12\n", "abc").is_err());
        assert!(parse_batch_header("abc tree 12\n", "abc").is_err());
    }

    #[test]
    fn a_file_is_never_written_through_a_symlink_or_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), dir.path().join("f")).unwrap();
        let parts = |p: &'static str| plain_components(p.as_bytes()).unwrap();
        let mut data: &[u8] = b"x";
        assert!(!write_file(dir.path(), &parts("sub/x"), false, &mut data).unwrap());
        assert!(!write_file(dir.path(), &parts("f"), false, &mut data).unwrap());
        assert!(write_file(dir.path(), &parts("new/deep/x"), true, &mut data).unwrap());
        assert!(!write_file(dir.path(), &parts("new/deep/x"), false, &mut data).unwrap());
        assert!(!write_file(dir.path(), &parts("new/deep/x/y"), false, &mut data).unwrap());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

//! Which files of a grading result are committed: those matching the whitelist patterns,
//! read exactly as the reference reads them (Python's `fnmatch`, see
//! [`grader_model::fnmatch`]), so that `{txt,csv}` or an unclosed `[` commit the same files
//! here as there instead of more files or a failed job.

use std::path::{Path, PathBuf};

use grader_model::fnmatch::Pattern;

use crate::executor::GRADEBOOK_FILE;

/// The result directory could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("could not list {}: {source}", dir.display())]
pub struct WhitelistError {
    /// The directory being listed.
    pub dir: PathBuf,
    /// What went wrong.
    #[source]
    pub source: walkdir::Error,
}

/// Files under `dir` (relative, `/`-separated) matching any of `patterns` with Python
/// `fnmatch` semantics (`*` also matches `/`; case-sensitive; no braces; an unclosed `[` is
/// literal), never `.git` or its contents at any depth, never the top-level
/// `gradebook.json`, sorted. Symbolic links are not followed (a link is listed as itself).
/// A name that is not valid UTF-8 cannot be committed by name and is left out, with a
/// warning.
pub fn whitelisted_files(dir: &Path, patterns: &[String]) -> Result<Vec<String>, WhitelistError> {
    let patterns: Vec<Pattern> = patterns.iter().map(|p| Pattern::new(p)).collect();
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for entry in walker {
        let entry = entry.map_err(|source| WhitelistError {
            dir: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            tracing::warn!(
                file = %rel.display(),
                "a result file whose name is not UTF-8 is not committed"
            );
            continue;
        };
        if rel == GRADEBOOK_FILE {
            continue;
        }
        if patterns.iter().any(|p| p.matches(rel)) {
            files.push(rel.to_string());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    fn patterns(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn star_crosses_directories_and_git_and_the_gradebook_are_left_out() {
        let dir = dir_with(&[
            "a.ipynb",
            "sub/b.ipynb",
            "gradebook.json",
            "sub/gradebook.json",
            ".git/x.ipynb",
            "sub/.git/y.ipynb",
            "c.py",
        ]);
        let files = whitelisted_files(dir.path(), &patterns(&["*.ipynb", "*.json"])).unwrap();
        assert_eq!(files, vec!["a.ipynb", "sub/b.ipynb", "sub/gradebook.json"]);
    }

    #[test]
    fn braces_are_a_literal_name_not_an_alternation() {
        let dir = dir_with(&["a.ipynb", "data.txt", "data.csv", "x.{txt,csv}"]);
        let files = whitelisted_files(dir.path(), &patterns(&["*.ipynb", "*.{txt,csv}"])).unwrap();
        assert_eq!(files, vec!["a.ipynb", "x.{txt,csv}"]);
    }

    #[test]
    fn an_unclosed_bracket_is_a_literal_bracket_not_an_error() {
        let dir = dir_with(&["notes[1", "notes1", "n[1].md", "n1.md"]);
        let files = whitelisted_files(dir.path(), &patterns(&["notes[1", "*[1].md"])).unwrap();
        assert_eq!(files, vec!["n1.md", "notes[1"]);
    }

    #[test]
    fn matching_is_case_sensitive_like_the_reference() {
        let dir = dir_with(&["A.IPYNB", "b.ipynb"]);
        let files = whitelisted_files(dir.path(), &patterns(&["*.ipynb"])).unwrap();
        assert_eq!(files, vec!["b.ipynb"]);
    }

    #[test]
    fn links_are_not_followed() {
        let outside = dir_with(&["secret.ipynb"]);
        let dir = dir_with(&["a.ipynb"]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        let files = whitelisted_files(dir.path(), &patterns(&["*.ipynb"])).unwrap();
        assert_eq!(files, vec!["a.ipynb"]);
    }

    #[test]
    fn a_directory_that_cannot_be_listed_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = whitelisted_files(&missing, &patterns(&["*"])).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

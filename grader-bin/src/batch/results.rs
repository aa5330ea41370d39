//! Outcome files: where each job's outcome goes in a results dir, written so that a reader
//! never sees half of one. Shared by `grader batch` and `grader serve`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use grader_local::JobKind;

use crate::Usage;

/// The file an outcome is written to.
pub fn outcome_path(results: &Path, kind: JobKind, submission_id: u64) -> PathBuf {
    match kind {
        JobKind::Autograde => results.join(format!("submission_{submission_id}.json")),
        JobKind::Feedback => results.join(format!("feedback_{submission_id}.json")),
    }
}

/// Writes `text` to `path` through a temporary file renamed into place, so that a reader
/// never sees half an outcome; on failure the temporary file is removed again (a full disk
/// must not leave empty `.json.tmp` files behind).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Refuses, before anything is graded, a results dir that cannot take a file (read-only,
/// full): outcomes of graded jobs would be lost.
pub fn check_writable(results: &Path) -> Result<(), Usage> {
    let probe = results.join(format!(".grader-write-check-{}", std::process::id()));
    let written = std::fs::write(&probe, b"grader checks that outcomes can be written here\n");
    let _ = std::fs::remove_file(&probe);
    written.with_context(|| {
        format!(
            "results dir {} cannot be written, nothing was graded",
            results.display()
        )
    })?;
    Ok(())
}

//! Helpers every `grader` binary test shares: where the repository is, the real grading tool,
//! and the binary with a quiet, file-free configuration.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

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

/// The real grading tool (`$GRADER_CONVERT`, else the venv of `scripts/setup-venv.sh`), or
/// `None` after a loud message; a failure under CI.
pub fn grader_convert(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GRADER_CONVERT").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| {
            PathBuf::from(h).join(".cache/grader/venv-grader-service-0.12.5/bin/grader-convert")
        }),
    ];
    if let Some(c) = candidates.into_iter().flatten().find(|c| c.is_file()) {
        return Some(c);
    }
    let msg = format!(
        "{test}: grader-convert not found (set GRADER_CONVERT or run scripts/setup-venv.sh)"
    );
    if under_ci() {
        panic!("{msg}; CI=true, so this is a failure");
    }
    eprintln!("\n==========\nSKIPPED {msg}\n==========\n");
    None
}

/// The `grader` binary with no configuration file from the environment and warnings only.
pub fn grader() -> Command {
    let mut cmd = Command::cargo_bin("grader").unwrap();
    cmd.env_remove("GRADER_CONFIG").env("GRADER_LOG", "warn");
    cmd
}

//! Shared helpers for the grader-local integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

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

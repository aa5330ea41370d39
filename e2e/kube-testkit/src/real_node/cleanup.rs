//! Tearing a node down: its containers, containerd's shims (they outlive containerd by
//! design), the mounts under its directory (container root file systems, kubelet's volumes)
//! and the pod bridge; also for the nodes of test processes that died without stopping them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::DIR_PREFIX;
use super::config::BRIDGE;

/// Kills and removes every container of containerd's `k8s.io` namespace (kubelet is
/// stopped first, so nothing restarts them).
pub(super) fn remove_containers(ctr: &Path, socket: &Path) {
    let ctr_cmd = |args: &[&str]| {
        Command::new(ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
    };
    let Ok(out) = ctr_cmd(&["containers", "ls", "-q"]) else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for id in &ids {
        let _ = ctr_cmd(&["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
    }
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctr_cmd(&["tasks", "delete", "--force", id])
            .map(|o| {
                !o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not found")
            })
            .unwrap_or(false)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = ctr_cmd(&["containers", "delete", id]);
    }
}

/// Kills what still runs from `dir` (container processes, whose root is there; shims, whose
/// command line names its socket), unmounts everything under it, deletes the bridge.
pub(super) fn teardown(dir: &Path) {
    let dir_str = dir.display().to_string();
    for _ in 0..3 {
        let mut killed = false;
        for pid in pids() {
            let root = std::fs::read_link(format!("/proc/{pid}/root"))
                .map(|r| r.display().to_string())
                .unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            if root.starts_with(&dir_str) || cmdline.contains(&dir_str) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
            }
        }
        if !killed {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unmount_under(dir);
    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).output();
}

/// Unmounts (lazily, deepest first) every mount point under `dir`.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let Ok(c) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&code, 8) {
                out.push(n as char);
                continue;
            }
            out.push(c);
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

/// Every process id in `/proc`.
pub(super) fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Tears down and removes the node directories of test processes that are gone.
pub(super) fn reap_stale_nodes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join("kube-testkit-owner.pid"));
        let Ok(pid) = owner.unwrap_or_default().trim().parse::<i32>() else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            tracing::warn!(dir = %entry.path().display(), "tearing down the node of a dead test process");
            teardown(&entry.path());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

//! Stopping a process and everything it started.
//!
//! Killing the grading tool's process group is not enough: Jupyter starts each kernel in a new
//! session, so a notebook stuck in a loop would outlive its group. The tree is found through
//! `/proc` (parent links), frozen with SIGSTOP so that nothing forks while it is walked, and
//! then killed. Linux only, like the rest of the local backend.

use std::collections::BTreeSet;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Every live process whose chain of parents reaches `root` (excluding `root`).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for &(pid, ppid) in &parents {
            if found.contains(&ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.remove(&root);
    found.into_iter().collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 1)?.parse().ok()
}

/// Field `n` (0-based) of `/proc/{pid}/stat` after the command name: 0 is the state, 1 the
/// parent pid, 19 the start time.
pub(crate) fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(n).map(str::to_string)
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

/// Kills `root`, its process group and all its descendants (in any session).
pub fn kill_tree(root: u32) {
    let mut frozen = BTreeSet::new();
    signal(root, Signal::SIGSTOP);
    // Freeze until no new descendant appears: a stopped process cannot fork.
    for _ in 0..16 {
        let now: BTreeSet<u32> = descendants(root).into_iter().collect();
        let new: Vec<u32> = now.difference(&frozen).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            signal(pid, Signal::SIGSTOP);
            frozen.insert(pid);
        }
    }
    if let Ok(raw) = i32::try_from(root) {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
    for pid in frozen.iter().copied().chain([root]) {
        signal(pid, Signal::SIGKILL);
    }
}

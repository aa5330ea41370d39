//! Running a container as a local child process: argv, environment, mounts.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

/// A bind mount of `source` (host) onto `target` (the container's `mountPath`).
#[derive(Clone, Debug)]
pub(crate) struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start the container process.
#[derive(Debug)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub mounts: Vec<Mount>,
    pub private_mounts: bool,
}

/// Expands `$(VAR)` references as Kubernetes does for command, args and env values: a
/// defined variable is replaced, an undefined reference is left as is, `$$` is a literal `$`.
pub(crate) fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos + 1..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Whether this process can give children a private mount namespace (root with
/// CAP_SYS_ADMIN): probed once by starting `true` inside one.
pub(crate) fn private_mounts_available() -> bool {
    use std::os::unix::process::CommandExt;
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let mut probe = std::process::Command::new("true");
        probe
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            probe.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        probe.status().map(|s| s.success()).unwrap_or(false)
    })
}

/// Lexically normalizes an absolute path (`.`/`..` resolved), for mount bookkeeping.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Orders mounts parent-first and creates every mount point where it will physically be:
/// under an earlier mount's *source* when it lies inside that mount, else on the host.
pub(crate) fn prepare_mount_points(mounts: &mut [Mount]) -> std::io::Result<()> {
    for mount in mounts.iter_mut() {
        mount.target = normalize(&mount.target);
    }
    mounts.sort_by_key(|m| m.target.components().count());
    for i in 0..mounts.len() {
        let target = &mounts[i].target;
        let physical = mounts[..i]
            .iter()
            .rev()
            .find_map(|outer| {
                target
                    .strip_prefix(&outer.target)
                    .ok()
                    .map(|rel| outer.source.join(rel))
            })
            .unwrap_or_else(|| target.clone());
        if mounts[i].source.is_dir() {
            std::fs::create_dir_all(&physical)?;
        } else if !physical.exists() {
            if let Some(parent) = physical.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::create(&physical)?;
        }
    }
    Ok(())
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Starts the container process: its own process group, stdin from /dev/null, stdout and
/// stderr appended to `log`; with `private_mounts`, inside a new mount namespace with the
/// bind mounts applied; then `chdir(working_dir)` and exec.
pub(crate) fn spawn(
    launch: &Launch,
    log: &std::fs::File,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0)
        .kill_on_drop(true);
    // Everything the child needs is allocated before fork.
    let mounts = launch
        .mounts
        .iter()
        .map(|m| Ok((cstring(&m.source)?, cstring(&m.target)?, m.read_only)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let working_dir = cstring(&launch.working_dir)?;
    let private = launch.private_mounts;
    // SAFETY: the closure only makes async-signal-safe syscalls on pre-allocated data.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            if private {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let null = std::ptr::null();
                check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (source, target, read_only) in &mounts {
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    if *read_only {
                        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                        check(libc::mount(
                            null,
                            target.as_ptr(),
                            null,
                            flags,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            check(libc::chdir(working_dir.as_ptr()))
        });
    }
    cmd.spawn()
}

/// Sends `signal` to process group `pgid` (errors such as "no such process" are ignored).
pub(crate) fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)/$(B)/$$(A)/$A/$", &env), "x/$(B)/$(A)/$A/$");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn mount_points_follow_outer_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let inner = dir.path().join("inner");
        std::fs::create_dir_all(&outer).unwrap();
        std::fs::create_dir_all(&inner).unwrap();
        let base = dir.path().join("view");
        let mut mounts = vec![
            Mount {
                source: inner,
                target: base.join("a/b/../b/c"),
                read_only: false,
            },
            Mount {
                source: outer.clone(),
                target: base.join("a"),
                read_only: false,
            },
        ];
        prepare_mount_points(&mut mounts).unwrap();
        assert_eq!(mounts[0].target, base.join("a"));
        assert_eq!(mounts[1].target, base.join("a/b/c"));
        assert!(base.join("a").is_dir());
        assert!(
            outer.join("b/c").is_dir(),
            "inner mount point is created inside the outer source"
        );
        assert!(!base.join("a/b").exists());
    }
}

//! Which TCP sockets the test process and its descendants hold (the control plane, the
//! node's programs, the `grader` binary), read from `/proc`, so that a test can show that
//! none of them listens on or talks to an address outside loopback.
//!
//! Sockets of containers are not seen: a pod lives in its own network namespace (made by
//! the runtime), whose sockets are not in this namespace's `/proc/net/tcp*`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One TCP socket of a process of the test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    /// The process holding it and its name (`comm`).
    pub pid: i32,
    pub process: String,
    /// The socket's state as the kernel numbers it (`0A` = LISTEN, `01` = ESTABLISHED, ...).
    pub state: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl TcpSocket {
    /// Whether both ends are loopback addresses (for a listener: its bound address;
    /// `0.0.0.0`/`::` are not loopback, they listen on every interface).
    pub fn is_loopback(&self) -> bool {
        let listening = self.state == "0A";
        is_loopback(self.local.ip()) && (listening || is_loopback(self.remote.ip()))
    }
}

impl fmt::Display for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.as_str() {
            "01" => "ESTAB",
            "0A" => "LISTEN",
            "06" => "TIME-WAIT",
            "02" => "SYN-SENT",
            other => other,
        };
        write!(
            f,
            "{} ({}) {state} {} -> {}",
            self.process, self.pid, self.local, self.remote
        )
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The TCP sockets held by this process and every process descending from it.
pub(super) fn tcp_sockets_of_this_process_tree() -> Vec<TcpSocket> {
    let me = std::process::id() as i32;
    let parents: BTreeMap<i32, i32> = super::cleanup::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let descends = |mut pid: i32| {
        for _ in 0..64 {
            if pid == me {
                return true;
            }
            match parents.get(&pid) {
                Some(&parent) if parent > 0 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    // inode -> (pid, comm)
    let mut owners: BTreeMap<u64, (i32, String)> = BTreeMap::new();
    for &pid in parents.keys().filter(|&&pid| descends(pid)) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.display().to_string();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                owners.entry(inode).or_insert((pid, comm.clone()));
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut sockets = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) = (
                fields.get(1),
                fields.get(2),
                fields.get(3),
                fields.get(9).and_then(|i| i.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let Some((pid, process)) = owners.get(&inode) else {
                continue;
            };
            let (Some(local), Some(remote)) = (parse_addr(local, v6), parse_addr(remote, v6))
            else {
                continue;
            };
            if seen.insert((inode, local, remote)) {
                sockets.push(TcpSocket {
                    pid: *pid,
                    process: process.clone(),
                    state: state.to_string(),
                    local,
                    remote,
                });
            }
        }
    }
    sockets
}

/// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised `comm`).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `0100007F:1F90` (IPv4, each 32-bit word in host byte order) or the 32-hex-digit IPv6
/// form, as in `/proc/net/tcp*`.
fn parse_addr(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match (v6, bytes.len()) {
        (false, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        (true, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses_are_decoded() {
        // As the kernel prints them on a little-endian machine.
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_addr("0100007F:1F90", false),
                Some("127.0.0.1:8080".parse().unwrap())
            );
            assert_eq!(
                parse_addr("00000000000000000000000001000000:0016", true),
                Some("[::1]:22".parse().unwrap())
            );
            assert_eq!(
                parse_addr("0200A8C0:0050", false),
                Some("192.168.0.2:80".parse().unwrap())
            );
        }
    }

    #[test]
    fn a_listener_on_every_interface_is_not_loopback() {
        let socket = |state: &str, local: &str, remote: &str| TcpSocket {
            pid: 1,
            process: "p".into(),
            state: state.into(),
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        };
        assert!(socket("0A", "127.0.0.1:10250", "0.0.0.0:0").is_loopback());
        assert!(!socket("0A", "0.0.0.0:10250", "0.0.0.0:0").is_loopback());
        assert!(!socket("0A", "192.0.2.2:10250", "0.0.0.0:0").is_loopback());
        assert!(socket("01", "[::1]:1", "[::1]:2").is_loopback());
        assert!(!socket("01", "127.0.0.1:1", "192.0.2.2:10250").is_loopback());
    }
}

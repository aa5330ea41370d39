//! The messages between `grader` and a warm worker: one JSON object per line, requests on the
//! worker's stdin, events on its stdout. The worker's hello names the protocol version it
//! speaks; `grader` refuses any other.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

/// The protocol version this `grader` speaks (and asks the worker for).
pub const PROTOCOL: u32 = 2;

/// A request to a worker.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request<'a> {
    /// Fork a child that runs the tool's main with `argv` in `cwd` with exactly `env`. Its
    /// output goes to the existing file `log_path`: the first `log_head` bytes and the last
    /// `log_tail` bytes, never more (what lies between is counted in `exited`).
    Run {
        id: u64,
        argv: &'a [String],
        env: &'a BTreeMap<&'a str, String>,
        cwd: &'a str,
        log_path: &'a str,
        log_head: u64,
        log_tail: u64,
    },
    /// Kill the process tree of job `id`; its `exited` event follows.
    Kill { id: u64 },
    /// Answer with `pong`.
    Ping { id: u64 },
}

impl Request<'_> {
    /// The request as one protocol line (with its newline).
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        line.push('\n');
        line
    }
}

/// The first line of a worker: whether it could import the tool, and what it imported.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hello {
    /// The protocol version the worker speaks.
    pub v: u32,
    pub ok: bool,
    /// Why the worker cannot serve (`ok` false).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    /// The distribution that provides the entry point (`grader-service`).
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub tool_version: Option<String>,
    #[serde(default)]
    pub python: Option<String>,
    /// Whether the worker could make itself the reaper of its jobs' orphans.
    #[serde(default)]
    pub subreaper: bool,
    /// Whether the worker starts its jobs' kernels ahead of need: asked to
    /// ([`WorkerSpec::prestart_kernels`](super::WorkerSpec)) and the tool's environment has
    /// Jupyter's kernel machinery.
    #[serde(default)]
    pub prestart_kernels: bool,
}

/// A line from a worker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Hello(Hello),
    /// The job's child was forked.
    Started {
        id: u64,
        pid: u32,
    },
    /// The job's child ended and everything it left behind was killed (`strays` processes);
    /// `log_dropped` bytes of its output were left out of its log, between head and tail.
    Exited {
        id: u64,
        #[serde(default)]
        exit_code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
        #[serde(default)]
        strays: u32,
        #[serde(default)]
        log_dropped: u64,
    },
    Pong {
        #[serde(default)]
        id: Option<u64>,
        busy: bool,
    },
    /// A request the worker could not take.
    Error {
        #[serde(default)]
        id: Option<u64>,
        message: String,
    },
}

impl Event {
    /// Parses one line; the error describes the line.
    pub fn parse(line: &str) -> Result<Event, String> {
        serde_json::from_str(line).map_err(|e| format!("unreadable line {line:?}: {e}"))
    }
}

/// The exit status of an `exited` event, built from the raw wait status so that it prints like
/// the one of a process `grader` waited for itself (`exit status: 1`, `signal: 9 (SIGKILL)`).
pub fn exit_status(exit_code: Option<i32>, signal: Option<i32>) -> ExitStatus {
    match (exit_code, signal) {
        (_, Some(s)) => ExitStatus::from_raw(s & 0x7f),
        (Some(c), None) => ExitStatus::from_raw((c & 0xff) << 8),
        (None, None) => ExitStatus::from_raw(1 << 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_lines() {
        let argv = vec!["autograde".to_string()];
        let env = BTreeMap::from([("ASSIGNMENT_SETTINGS", "{}".to_string())]);
        let line = Request::Run {
            id: 3,
            argv: &argv,
            env: &env,
            cwd: "/w/in",
            log_path: "/w/log",
            log_head: 32,
            log_tail: 32,
        }
        .line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["op"], "run");
        assert_eq!(v["id"], 3);
        assert_eq!(v["env"]["ASSIGNMENT_SETTINGS"], "{}");
        assert_eq!((&v["log_head"], &v["log_tail"]), (&32.into(), &32.into()));
        assert_eq!(
            Request::Kill { id: 4 }.line(),
            "{\"op\":\"kill\",\"id\":4}\n"
        );
    }

    #[test]
    fn events_parse_and_unknown_ones_are_errors() {
        assert_eq!(
            Event::parse(r#"{"event":"started","id":1,"pid":42}"#),
            Ok(Event::Started { id: 1, pid: 42 })
        );
        assert_eq!(
            Event::parse(r#"{"event":"exited","id":1,"signal":9,"strays":2,"log_dropped":5}"#),
            Ok(Event::Exited {
                id: 1,
                exit_code: None,
                signal: Some(9),
                strays: 2,
                log_dropped: 5
            })
        );
        let Ok(Event::Hello(h)) = Event::parse(
            r#"{"event":"hello","v":2,"ok":true,"pid":7,"tool":"grader-service","tool_version":"0.12.5","python":"3.11.7","subreaper":true}"#,
        ) else {
            panic!("hello");
        };
        assert_eq!(h.tool_version.as_deref(), Some("0.12.5"));
        assert!(h.subreaper);
        let e = Event::parse(r#"{"event":"explode"}"#).unwrap_err();
        assert!(e.contains("explode"), "{e}");
        assert!(Event::parse("not json").unwrap_err().contains("not json"));
    }

    #[test]
    fn exit_statuses_print_like_waited_ones() {
        assert_eq!(exit_status(Some(0), None).to_string(), "exit status: 0");
        assert_eq!(exit_status(Some(1), None).to_string(), "exit status: 1");
        assert_eq!(
            exit_status(None, Some(9)).to_string(),
            "signal: 9 (SIGKILL)"
        );
        assert!(!exit_status(None, None).success());
    }
}

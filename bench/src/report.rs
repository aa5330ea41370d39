//! Writing results: a markdown table for people, JSON for programs.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// A markdown table.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut s = format!("| {} |\n", self.header.join(" | "));
        s.push_str(&format!(
            "|{}\n",
            self.header.iter().map(|_| " --- |").collect::<String>()
        ));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

/// Milliseconds with a sensible number of decimals.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes `<name>.json` and `<name>.md` to `out` and prints the markdown.
pub fn write(out: &Path, name: &str, json: &impl Serialize, markdown: &str) -> anyhow::Result<()> {
    let json_path = out.join(format!("{name}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("write {}", json_path.display()))?;
    let md_path = out.join(format!("{name}.md"));
    std::fs::write(&md_path, markdown).with_context(|| format!("write {}", md_path.display()))?;
    println!("{markdown}");
    eprintln!(
        "grader-bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .take(3)
                .map(str::to_string)
                .reduce(|a, b| a + " " + &b)
        })
        .unwrap_or_else(|| "?".into())
}

/// The times of every JSON log line whose message is `message` (or starts with it, if
/// `prefix`), in order.
pub fn log_times(stderr: &Path, message: &str, prefix: bool) -> anyhow::Result<Vec<SystemTime>> {
    let text =
        std::fs::read_to_string(stderr).with_context(|| format!("read {}", stderr.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"].as_str().is_some_and(|m| {
                if prefix {
                    m.starts_with(message)
                } else {
                    m == message
                }
            })
        })
        .filter_map(|v| v["timestamp"].as_str()?.parse::<Timestamp>().ok())
        .map(SystemTime::from)
        .collect())
}

//! The criterion results under a target directory as a table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::report::{self, Table};

/// Options of `criterion-summary`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// criterion's output directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))]
    dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Bench {
    id: String,
    median_ns: f64,
    mean_ns: f64,
    mean_low_ns: f64,
    mean_high_ns: f64,
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

pub fn run(out: &Path, args: Args) -> anyhow::Result<()> {
    let mut benches = Vec::new();
    for entry in
        std::fs::read_dir(&args.dir).with_context(|| format!("read {}", args.dir.display()))?
    {
        let dir = entry?.path();
        let (Ok(est), Ok(meta)) = (
            std::fs::read(dir.join("new/estimates.json")),
            std::fs::read(dir.join("new/benchmark.json")),
        ) else {
            continue;
        };
        let est: Value = serde_json::from_slice(&est)?;
        let meta: Value = serde_json::from_slice(&meta)?;
        let f = |k: &str, p: &str| est[k][p].as_f64().unwrap_or(f64::NAN);
        benches.push(Bench {
            id: meta["full_id"].as_str().unwrap_or_default().to_string(),
            median_ns: f("median", "point_estimate"),
            mean_ns: f("mean", "point_estimate"),
            mean_low_ns: est["mean"]["confidence_interval"]["lower_bound"]
                .as_f64()
                .unwrap_or(f64::NAN),
            mean_high_ns: est["mean"]["confidence_interval"]["upper_bound"]
                .as_f64()
                .unwrap_or(f64::NAN),
        });
    }
    benches.sort_by(|a, b| a.id.cmp(&b.id));
    let mut t = Table::new(&["benchmark", "median", "mean (95% CI)"]);
    for b in &benches {
        t.row(vec![
            format!("`{}`", b.id),
            ns(b.median_ns),
            format!(
                "{} ({} – {})",
                ns(b.mean_ns),
                ns(b.mean_low_ns),
                ns(b.mean_high_ns)
            ),
        ]);
    }
    let md = format!(
        "### Pure utilities (criterion, `cargo bench -p grader-model --bench model`)\n\n{}",
        t.render()
    );
    report::write(out, "criterion", &benches, &md)
}

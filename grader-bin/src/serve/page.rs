//! `GET /`: a status page for people, and `GET /v1/status`, the JSON it polls.
//!
//! The page is static (HTML, CSS and a few lines of vanilla JavaScript embedded in the
//! binary, no external URLs) and holds no data: its script fetches `/v1/status` every two
//! seconds and draws the running and queued jobs, the recent outcomes and a score histogram
//! per assignment. So the page itself is open on every listener, while the data behind it
//! follows the API's rule: open on the Unix socket (its file mode guards it), the bearer
//! token on TCP, which the page takes from its address (`/#token=TOKEN`: a fragment is never
//! sent to the server, so it lands in no log) and keeps in the tab's session storage.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::metrics::BackendStats;
use super::registry::{JobView, Snapshot, kind_name, status_name};

const INDEX_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

/// Most recent outcomes the status lists (newest first).
pub const RECENT_SHOWN: usize = 50;

/// Only this origin's own script and style, and requests back to it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /status/page.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

/// `GET /status/page.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

fn job_row(view: &JobView) -> Value {
    let i = &view.info;
    let mut row = json!({
        "id": i.id,
        "kind": kind_name(i.kind),
        "submission_id": i.submission_id,
        "username": i.username,
        "lecture": i.lecture,
        "assignment": i.assignment,
        "state": view.state,
        "submitted_at_ms": i.submitted_at_ms,
        "started_at_ms": i.started_at_ms,
        "finished_at_ms": i.finished_at_ms,
        "queue_position": view.queue_position,
        "succeeded": view.succeeded,
        "stopping": view.stopping,
    });
    if let Some(o) = &view.outcome {
        let o = &o.0;
        row["status"] = json!(status_name(o.status));
        row["failure"] = json!(o.failure.map(|f| f.as_str()));
        row["score"] = json!(o.score);
        row["max_score"] = json!(o.max_score);
        row["duration_ms"] = json!(o.duration_ms);
    }
    row
}

/// The JSON behind the page: running and queued jobs, the latest [`RECENT_SHOWN`]
/// outcomes (newest first), score histograms by assignment, counters and the backend's
/// workers or pods.
pub fn status(snap: &Snapshot, backend: Option<(&str, BackendStats)>) -> Value {
    let recent: Vec<Value> = snap
        .recent
        .iter()
        .rev()
        .take(RECENT_SHOWN)
        .map(job_row)
        .collect();
    let scores: Vec<Value> = snap
        .counters
        .scores
        .iter()
        .map(|(assignment, h)| {
            json!({ "assignment": assignment, "buckets": h.buckets, "max_score": h.max_score })
        })
        .collect();
    let (name, stats) = match backend {
        Some((name, stats)) => (Some(name), stats),
        None => (None, BackendStats::default()),
    };
    json!({
        "backend": name,
        "ready": name.is_some(),
        "accepting": snap.accepting,
        "concurrency": snap.concurrency,
        "queue_limit": snap.queue_limit,
        "running": snap.running.iter().map(job_row).collect::<Vec<_>>(),
        "queued": snap.queued.iter().map(job_row).collect::<Vec<_>>(),
        "recent": recent,
        "scores": scores,
        "counters": {
            "accepted": snap.counters.accepted,
            "deduplicated": snap.counters.deduplicated,
            "refused_full": snap.counters.refused_full,
        },
        "warm": stats.warm.map(|((busy, idle), _)| json!({ "busy": busy, "idle": idle })),
        "kube": stats.kube.map(|k| json!({ "pods_in_flight": k.pods_in_flight })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        for url in ["http:", "https:", "=\"//", "url("] {
            assert!(!INDEX_HTML.contains(url), "an external URL in the page");
            assert!(!PAGE_JS.contains(url), "an external URL in the script");
            assert!(!PAGE_CSS.contains(url), "an external URL in the style");
        }
        assert!(INDEX_HTML.contains("src=\"/status/page.js\""));
        assert!(INDEX_HTML.contains("href=\"/status/page.css\""));
        assert!(!PAGE_JS.contains("innerHTML"), "text is set as text");
    }
}

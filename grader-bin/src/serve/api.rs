//! The HTTP API (JSON over HTTP/1.1), versioned under `/v1`:
//!
//! * `POST /v1/jobs?kind=autograde|feedback`, body: a job file's JSON with its gradebooks
//!   inline → 202 and the job (`id`, `state`), or 200 and the job already queued or running
//!   for the same submission, commit and kind;
//! * `GET /v1/jobs` → the running, queued and recently finished jobs, and counters;
//! * `GET /v1/jobs/{id}[?wait=SECONDS]` → the job, with its outcome once final; `wait`
//!   long-polls until it is final (at most [`MAX_WAIT`]);
//! * `GET /v1/jobs/{id}/outcome[?wait=SECONDS]` → the outcome exactly as `grader autograde`
//!   prints it, the job's state in the `grader-job-state` header (202 and the job while it
//!   has no outcome yet);
//! * `DELETE /v1/jobs/{id}` → cancels it;
//! * `GET /v1/status` → what the status page draws (see [`super::page`]);
//! * `GET /metrics` → Prometheus text format (see [`super::metrics`]);
//! * `GET /` → the status page (static HTML, its script and style under `/status/`);
//! * `GET /healthz` (alive), `GET /readyz` (the backend is built and jobs are accepted).
//!
//! Every error is `{"error": "..."}` with a 4xx/5xx status. On TCP every route but the two
//! probes and the page's static files needs `Authorization: Bearer TOKEN` (`/metrics` and
//! `/v1/status` included); on the Unix socket none does (its file mode, 0660, guards it).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use grader_local::job_file::parse_job;
use grader_local::{ExecutorConfig, JobKind};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::metrics::BackendStats;
use super::registry::{Registry, Submitted};
use super::runner::{ExecutorCell, Runner};

/// Longest a `?wait=` long-poll lasts, in seconds.
pub const MAX_WAIT: f64 = 300.0;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub runner: Arc<Runner>,
    /// Checks jobs before they are queued (the executor's own settings).
    pub pipeline: Arc<ExecutorConfig>,
    pub executor: ExecutorCell,
    /// Cancelled when the service starts shutting down.
    pub stopping: CancellationToken,
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// The routes; `token`, when given, is required as a bearer token on every route but the
/// probes (the TCP listener).
pub fn router(state: ApiState, max_request_bytes: usize, token: Option<Arc<str>>) -> Router {
    let mut v1 = Router::new()
        .route("/v1/jobs", get(list_jobs).post(submit))
        .route("/v1/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/v1/jobs/{id}/outcome", get(get_outcome))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics));
    if let Some(token) = token {
        v1 = v1.route_layer(axum::middleware::from_fn_with_state(token, bearer));
    }
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(super::page::index))
        .route("/status/page.js", get(super::page::script))
        .route("/status/page.css", get(super::page::style))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route (the API is under /v1; also /, /metrics, /healthz, /readyz)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// Checks `Authorization: Bearer TOKEN` in constant time.
async fn bearer(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_secret(given.trim().as_bytes(), token.as_bytes()) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer TOKEN, see serve.token_file)",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares two secrets without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.stopping.is_cancelled() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let backend = s
        .executor
        .borrow()
        .as_ref()
        .map(|e| e.backend_name().to_string());
    match backend {
        Some(backend) => axum::Json(json!({ "ready": true, "backend": backend })).into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the grading backend is not ready yet (warm workers importing the tool, or connecting to Kubernetes)",
        )
        .into_response(),
    }
}

/// The backend's name and statistics once it is built.
fn backend_of(s: &ApiState) -> Option<(String, BackendStats)> {
    let exec = s.executor.borrow().clone()?;
    Some((exec.backend_name().to_string(), BackendStats::of(&exec)))
}

/// `GET /metrics`.
async fn metrics(State(s): State<ApiState>) -> Response {
    let snap = s.registry.snapshot();
    let backend = backend_of(&s);
    let text = super::metrics::render(
        &snap,
        backend.as_ref().map(|(n, b)| (n.as_str(), b.clone())),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// `GET /v1/status`.
async fn status(State(s): State<ApiState>) -> Response {
    let snap = s.registry.snapshot();
    let backend = backend_of(&s);
    let mut response = axum::Json(super::page::status(
        &snap,
        backend.as_ref().map(|(n, b)| (n.as_str(), b.clone())),
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct SubmitParams {
    kind: Option<String>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

async fn submit(
    State(s): State<ApiState>,
    params: Result<Query<SubmitParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The extractors above have read the whole request.
    let received = std::time::SystemTime::now();
    let Query(params) = params.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let kind = match params.kind.as_deref() {
        None | Some("autograde") => JobKind::Autograde,
        Some("feedback") => JobKind::Feedback,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `kind`: {other:?} is neither `autograde` nor `feedback`"),
            ));
        }
    };
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "request body too large (serve.max_request_bytes)",
            )
        } else {
            ApiError::new(e.status(), e.body_text())
        }
    })?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("request body: not UTF-8: {e}"),
        )
    })?;
    refuse_gradebook_paths(text)?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    // No file is read on a client's behalf: gradebooks come inline (checked above).
    let job = parse_job(text, std::path::Path::new("/"), "request body")
        .map_err(|e| bad(e.to_string()))?;
    s.pipeline
        .check(&job, kind)
        .map_err(|e| bad(format!("request body: {e}")))?;
    match s.registry.submit(&job, kind, received) {
        Submitted::New(view, cancel) => {
            let id = view.info.id.clone();
            s.runner.spawn(id.clone(), job, kind, cancel);
            tracing::info!(
                job = %id,
                submission = view.info.submission_id,
                kind = super::registry::kind_name(kind),
                "job queued"
            );
            Ok(created(StatusCode::ACCEPTED, &id, axum::Json(view)))
        }
        Submitted::Existing(view) => {
            let id = view.info.id.clone();
            Ok(created(StatusCode::OK, &id, axum::Json(view)))
        }
        Submitted::Full { queued, running } => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "queue full: {queued} job(s) waiting (serve.queue_limit) and {running} running; try again later"
            ),
        )),
        Submitted::Closed => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "grader serve is shutting down and takes no new jobs",
        )),
    }
}

fn created(status: StatusCode, id: &str, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The API never reads a file for a client: `gradebook_path` is refused with the field's
/// name (`grader submit` inlines the files).
fn refuse_gradebook_paths(text: &str) -> Result<(), ApiError> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        // Malformed: the job parser names what is wrong.
        return Ok(());
    };
    for owner in ["assignment", "submission"] {
        if value
            .get(owner)
            .and_then(|o| o.get("gradebook_path"))
            .is_some()
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "request body: field `{owner}.gradebook_path`: not accepted over the API \
                     (the service reads no files for clients); give the gradebook inline as \
                     `{owner}.gradebook` (`grader submit` does this)"
                ),
            ));
        }
    }
    Ok(())
}

/// Running and queued jobs, the finished ones still retained (without their outcomes:
/// fetch those one by one), and counters since start-up.
async fn list_jobs(State(s): State<ApiState>) -> impl IntoResponse {
    let snap = s.registry.snapshot();
    let recent: Vec<_> = snap
        .recent
        .into_iter()
        .map(|mut view| {
            let score = view.outcome.take().and_then(|o| o.0.score);
            json!({ "job": view, "score": score })
        })
        .collect();
    let finished: Vec<_> = snap
        .counters
        .finished
        .iter()
        .map(|((kind, result), count)| json!({ "kind": kind, "result": result, "count": count }))
        .collect();
    axum::Json(json!({
        "running": snap.running,
        "queued": snap.queued,
        "recent": recent,
        "counters": {
            "accepted": snap.counters.accepted,
            "deduplicated": snap.counters.deduplicated,
            "refused_full": snap.counters.refused_full,
            "finished": finished,
        },
        "accepting": snap.accepting,
        "concurrency": snap.concurrency,
        "queue_limit": snap.queue_limit,
    }))
}

#[derive(Deserialize)]
struct WaitParams {
    wait: Option<String>,
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no job {id:?} (unknown, or finished longer ago than serve.retain)"),
    )
}

async fn get_job(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let wait = wait_of(params)?;
    wait_final(&s, &id, wait).await?;
    let (view, _) = s.registry.get(&id).ok_or_else(|| unknown(&id))?;
    Ok(axum::Json(view).into_response())
}

/// The answer header naming a job's state next to its outcome.
pub const STATE_HEADER: &str = "grader-job-state";

/// Parses `?wait=SECONDS` (fractions allowed), capped at [`MAX_WAIT`].
fn wait_of(params: Result<Query<WaitParams>, QueryRejection>) -> Result<Duration, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    match params.wait.as_deref() {
        None => Ok(Duration::ZERO),
        Some(w) => match w.parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => Ok(Duration::from_secs_f64(w.min(MAX_WAIT))),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `wait`: {w:?} is not a number of seconds"),
            )),
        },
    }
}

/// Waits up to `wait` for job `id` to end.
async fn wait_final(s: &ApiState, id: &str, wait: Duration) -> Result<(), ApiError> {
    let (view, mut changes) = s.registry.get(id).ok_or_else(|| unknown(id))?;
    if !view.state.is_final() && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, changes.wait_for(|state| state.is_final())).await;
    }
    Ok(())
}

/// The outcome, exactly as `grader autograde` prints it, with the state in
/// [`STATE_HEADER`]; 202 and the job while it has none (after `?wait=` if given).
async fn get_outcome(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let wait = wait_of(params)?;
    wait_final(&s, &id, wait).await?;
    let (state, outcome) = s.registry.outcome(&id).ok_or_else(|| unknown(&id))?;
    let Some(outcome) = outcome else {
        let (view, _) = s.registry.get(&id).ok_or_else(|| unknown(&id))?;
        return Ok((StatusCode::ACCEPTED, axum::Json(view)).into_response());
    };
    let text = crate::wiring::outcome_json(&outcome) + "\n";
    let state = serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&state) {
        response.headers_mut().insert(STATE_HEADER, value);
    }
    s.registry.answered(&id);
    Ok(response)
}

async fn cancel_job(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = s.registry.cancel(&id).ok_or_else(|| unknown(&id))?;
    let status = if view.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(view)).into_response())
}

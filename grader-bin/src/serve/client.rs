//! `grader submit`: the client of `grader serve`. Sends a job file (its gradebook files
//! inlined: the service reads no files for clients), and with `--wait` long-polls until the
//! job ends and prints the outcome exactly as `grader autograde` prints it, with the same exit
//! codes (0 graded, 1 failed, 2 bad input or refused, 130 interrupted or cancelled).
//! Ctrl-C while waiting cancels the job on the service, as it would stop `grader autograde`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use grader_local::JobKind;
use grader_local::job_file::parse_job;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cli::{Cli, SubmitArgs};
use crate::wiring::{interrupt_token, load_config};
use crate::{Exit, Usage};

/// Seconds one long-poll asks the service to wait.
const POLL_SECONDS: u32 = 60;

/// Where the service listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// `host:port` over plain HTTP.
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

impl Endpoint {
    /// `http://host:port` (no path, no TLS: put a proxy in front for that).
    pub fn from_url(url: &str) -> Result<Endpoint, Usage> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(Usage(anyhow::anyhow!(
                "--url {url:?}: only http:// is supported (terminate TLS in a proxy)"
            )));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(Usage(anyhow::anyhow!(
                "--url {url:?}: give only the scheme, host and port"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Usage(anyhow::anyhow!("--url {url:?} has no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Endpoint::Tcp(format!("{}:{port}", authority.host())))
    }

    /// A request for `path` with the headers every request carries.
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let host = match self {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp(a) => a.as_str(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Ok(request.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
    }

    /// Opens an HTTP/1.1 connection; its driver runs as a task until the connection closes.
    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let reached = || format!("cannot reach grader serve at {self}");
        match self {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(reached)?;
                handshake(TokioIo::new(stream)).await
            }
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(reached)?;
                // Requests are small and answered at once: do not hold them back (Nagle).
                let _ = stream.set_nodelay(true);
                handshake(TokioIo::new(stream)).await
            }
        }
        .with_context(|| format!("talking to grader serve at {self}"))
    }

    /// Sends one request on a fresh connection and reads the whole answer: status, headers
    /// and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> anyhow::Result<hyper::Response<Bytes>> {
        let request = self.request(method, path, body, token)?;
        let mut sender = self.connect().await?;
        exchange(&mut sender, request)
            .await
            .with_context(|| format!("talking to grader serve at {self}"))
    }
}

/// A client's conversation with the service: one HTTP/1.1 connection kept open between its
/// requests (the submission and each long-poll), opened again when the service closed it.
struct Session<'a> {
    endpoint: &'a Endpoint,
    token: Option<&'a str>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl<'a> Session<'a> {
    fn new(endpoint: &'a Endpoint, token: Option<&'a str>) -> Self {
        Session {
            endpoint,
            token,
            connection: None,
        }
    }

    /// Sends one request on the kept connection and reads the whole answer. A `GET` that
    /// fails on a kept connection (closed by the service meanwhile) is sent once more on a
    /// new one; anything else is not repeated.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<hyper::Response<Bytes>> {
        let kept = self.connection.take().filter(|c| !c.is_closed());
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(c) => c,
            None => self.endpoint.connect().await?,
        };
        let retry = (reused && method == Method::GET).then(|| (method.clone(), body.clone()));
        let request = self.endpoint.request(method, path, body, self.token)?;
        let answer = match exchange(&mut sender, request).await {
            Err(_) if retry.is_some() => {
                let (method, body) = retry.unwrap_or((Method::GET, None));
                tracing::debug!("the kept connection to grader serve closed; reconnecting");
                sender = self.endpoint.connect().await?;
                let request = self.endpoint.request(method, path, body, self.token)?;
                exchange(&mut sender, request).await
            }
            answer => answer,
        }
        .with_context(|| format!("talking to grader serve at {}", self.endpoint))?;
        self.connection = Some(sender);
        Ok(answer)
    }

    /// Forgets the kept connection (a request on it was abandoned mid-way).
    fn drop_connection(&mut self) {
        self.connection = None;
    }
}

/// Handshakes HTTP/1.1 on `io` and runs the connection as a task.
async fn handshake<IO>(io: IO) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection to grader serve ended");
        }
    });
    Ok(sender)
}

/// One request on `sender`'s connection, its answer read whole.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<Bytes>> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(hyper::Response::from_parts(parts, bytes))
}

/// The `error` of a JSON error answer, else the body as text.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// The job file's JSON with each `gradebook_path` replaced by the gradebook it names.
fn inline_gradebooks(text: &str, base: &Path, origin: &str) -> Result<Value, Usage> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut job: Value = serde_json::from_str(text).with_context(|| origin.to_string())?;
    for owner in ["assignment", "submission"] {
        let Some(object) = job.get_mut(owner).and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(path) = object.remove("gradebook_path") else {
            continue;
        };
        let rel = path.as_str().unwrap_or_default();
        let file = base.join(rel);
        let gradebook: Value = std::fs::read(&file)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
            .with_context(|| {
                format!(
                    "{origin}: cannot read gradebook {} (field `{owner}.gradebook_path`)",
                    file.display()
                )
            })?;
        object.insert("gradebook".into(), gradebook);
    }
    Ok(job)
}

/// `grader submit`.
pub async fn run(cli: &Cli, args: &SubmitArgs) -> Result<Exit, Usage> {
    let loaded = load_config(cli, None)?;
    let serve = &loaded.config.serve;
    let endpoint = match (&args.url, &args.socket) {
        (Some(url), _) => Endpoint::from_url(url)?,
        (None, Some(socket)) => Endpoint::Unix(socket.clone()),
        (None, None) => Endpoint::Unix(serve.socket.clone()),
    };
    let token_file = args.token_file.clone().or_else(|| match endpoint {
        Endpoint::Tcp(_) => serve.token_file.clone(),
        Endpoint::Unix(_) => None,
    });
    let token = match &token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let kind = if args.feedback {
        JobKind::Feedback
    } else {
        JobKind::Autograde
    };

    // The same checks and messages as `grader autograde`, before anything is sent.
    let origin = args.job.display().to_string();
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("cannot read job file {origin}"))?;
    let base = args.job.parent().unwrap_or(Path::new("."));
    let job = parse_job(&text, base, &origin)?;
    loaded
        .settings
        .executor
        .check(&job, kind)
        .with_context(|| format!("job file {origin}"))?;
    let body = serde_json::to_vec(&inline_gradebooks(&text, base, &origin)?)
        .context("cannot encode the job")?;

    let kind_name = super::registry::kind_name(kind);
    let mut session = Session::new(&endpoint, token.as_deref());
    let answer = session
        .send(
            Method::POST,
            &format!("/v1/jobs?kind={kind_name}"),
            Some(body),
        )
        .await?;
    if !matches!(answer.status(), StatusCode::OK | StatusCode::ACCEPTED) {
        return Err(Usage(anyhow::anyhow!(
            "grader serve refused the job (HTTP {}): {}",
            answer.status(),
            error_text(answer.body())
        )));
    }
    let view: Value = serde_json::from_slice(answer.body()).context("unreadable answer")?;
    let id = view
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Usage(anyhow::anyhow!("grader serve answered without a job id")))?
        .to_string();
    if !args.wait {
        println!("{id}");
        return Ok(Exit::Graded);
    }
    tracing::info!(job = %id, "submitted; waiting for the outcome");

    let interrupted = interrupt_token();
    let mut cancel_sent = false;
    let poll = format!("/v1/jobs/{id}/outcome?wait={POLL_SECONDS}");
    loop {
        let answer = tokio::select! {
            answer = session.send(Method::GET, &poll, None) => answer?,
            () = interrupted.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                // The long-poll was abandoned mid-way: its connection is of no more use, and
                // the cancel goes on a connection of its own.
                session.drop_connection();
                let path = format!("/v1/jobs/{id}");
                if let Err(e) = endpoint.send(Method::DELETE, &path, None, token.as_deref()).await {
                    tracing::warn!(error = %e, "cannot cancel the job");
                }
                continue;
            }
        };
        match answer.status() {
            StatusCode::OK => {
                print!("{}", String::from_utf8_lossy(answer.body()));
                let state = answer
                    .headers()
                    .get(super::api::STATE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("done");
                let outcome: Value = serde_json::from_slice(answer.body()).unwrap_or_default();
                let graded = matches!(
                    outcome.get("status").and_then(Value::as_str),
                    Some("automatically_graded" | "generated")
                );
                return Ok(if interrupted.is_cancelled() || state != "done" {
                    Exit::Interrupted
                } else if graded {
                    Exit::Graded
                } else {
                    Exit::Failed
                });
            }
            StatusCode::ACCEPTED => continue,
            status => {
                return Err(Usage(anyhow::anyhow!(
                    "waiting for job {id} (HTTP {status}): {}",
                    error_text(answer.body())
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::body::Incoming;
    use hyper::service::service_fn;

    use super::*;

    /// A test service on a Unix socket that counts the connections it accepted and answers
    /// every request with its path; with `close`, it ends each connection after one answer.
    async fn counting_service(socket: &Path, close: bool) -> Arc<AtomicUsize> {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let answer = service_fn(move |request: Request<Incoming>| async move {
                        let mut response =
                            hyper::Response::new(Full::new(Bytes::from(request.uri().to_string())));
                        if close {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, "close".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer)
                        .await;
                });
            }
        });
        accepted
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_session_sends_its_requests_on_one_kept_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        runtime().block_on(async {
            let accepted = counting_service(&socket, false).await;
            let endpoint = Endpoint::Unix(socket.clone());
            let mut session = Session::new(&endpoint, None);
            let a = session
                .send(Method::POST, "/v1/jobs", Some(b"{}".to_vec()))
                .await
                .unwrap();
            let b = session.send(Method::GET, "/v1/jobs/1", None).await.unwrap();
            assert_eq!(a.body().as_ref(), b"/v1/jobs");
            assert_eq!(b.body().as_ref(), b"/v1/jobs/1");
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                1,
                "one connection for both"
            );

            // After an abandoned request, the next one goes on a new connection.
            session.drop_connection();
            session.send(Method::GET, "/v1/jobs/2", None).await.unwrap();
            assert_eq!(accepted.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_session_reconnects_when_the_service_closed_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        runtime().block_on(async {
            let accepted = counting_service(&socket, true).await;
            let endpoint = Endpoint::Unix(socket.clone());
            let mut session = Session::new(&endpoint, None);
            for path in ["/v1/jobs", "/v1/jobs/1", "/v1/jobs/1"] {
                let answer = session.send(Method::GET, path, None).await.unwrap();
                assert_eq!(answer.body().as_ref(), path.as_bytes());
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        });
    }
}

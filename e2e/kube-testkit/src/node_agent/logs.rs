//! Container log files and the kubelet-style HTTPS endpoint that serves them to the API
//! server: `GET /containerLogs/{namespace}/{pod}/{container}`.
//!
//! The endpoint has a self-signed certificate (the API server runs without
//! `--kubelet-certificate-authority`, so it does not verify it) and does not authenticate its
//! caller: it listens on loopback only, for tests.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::shared::Shared;

/// One container's log: its file and whether the container has finished.
#[derive(Clone)]
pub(crate) struct LogEntry {
    pub uid: String,
    pub path: PathBuf,
    pub finished: watch::Receiver<bool>,
}

/// Log files by (namespace, pod name, container name); the newest pod of a name wins.
#[derive(Default)]
pub(crate) struct LogRegistry {
    entries: Mutex<HashMap<(String, String, String), LogEntry>>,
}

impl LogRegistry {
    pub(crate) fn register(&self, namespace: &str, pod: &str, container: &str, entry: LogEntry) {
        self.lock()
            .insert((namespace.into(), pod.into(), container.into()), entry);
    }

    fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<LogEntry> {
        self.lock()
            .get(&(namespace.into(), pod.into(), container.into()))
            .cloned()
    }

    /// Forgets the logs of a deleted pod.
    pub(crate) fn forget_pod(&self, uid: &str) {
        self.lock().retain(|_, entry| entry.uid != uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), LogEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds the log endpoint on a free loopback port, with a fresh self-signed certificate.
pub(crate) async fn bind() -> Result<(TcpListener, TlsAcceptor)> {
    let (cert, key) =
        crate::certs::self_signed_serving_der(&["127.0.0.1".into(), "localhost".into()])?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    Ok((listener, TlsAcceptor::from(Arc::new(config))))
}

/// Accepts connections until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = async {
                let mut tls = acceptor.accept(stream).await?;
                handle(&mut tls, &shared).await?;
                tls.shutdown().await?;
                anyhow::Ok(())
            };
            if let Err(e) = result.await {
                tracing::debug!(error = %e, "test node agent: log request failed");
            }
        });
    }
}

/// Query parameters of a container log request.
#[derive(Debug, Default, PartialEq)]
struct LogQuery {
    follow: bool,
    previous: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

fn parse_query(query: &str) -> LogQuery {
    let mut q = LogQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "follow" => q.follow = value == "true",
            "previous" => q.previous = value == "true",
            "tailLines" => q.tail_lines = value.parse().ok(),
            "limitBytes" => q.limit_bytes = value.parse().ok(),
            _ => {}
        }
    }
    q
}

/// The offset where the last `n` lines of `content` start.
fn tail_offset(content: &[u8], n: usize) -> usize {
    if n == 0 {
        return content.len();
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: u16,
    reason: &str,
    body: &str,
) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    Ok(())
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, shared: &Shared) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed before the request head ended");
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            bail!("request head too large");
        }
    }
    let head = String::from_utf8_lossy(&head);
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["containerLogs", namespace, pod, container] = segments[..] else {
        return respond(stream, 404, "Not Found", "404 page not found\n").await;
    };
    if method != "GET" {
        return respond(stream, 405, "Method Not Allowed", "only GET is supported\n").await;
    }
    let query = parse_query(query);
    let Some(entry) = shared.logs.get(namespace, pod, container) else {
        let body = format!(
            "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating\n"
        );
        return respond(stream, 400, "Bad Request", &body).await;
    };
    if query.previous {
        let body =
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found\n");
        return respond(stream, 400, "Bad Request", &body).await;
    }
    let content = tokio::fs::read(&entry.path)
        .await
        .with_context(|| format!("read {}", entry.path.display()))?;
    let start = query.tail_lines.map_or(0, |n| tail_offset(&content, n));
    let mut budget = query.limit_bytes.unwrap_or(usize::MAX);
    let initial = &content[start..content.len().min(start.saturating_add(budget))];
    budget -= initial.len();
    if !query.follow {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            initial.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(initial).await?;
        return Ok(());
    }
    // follow: chunked, until the container has finished and everything was sent.
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await?;
    write_chunk(stream, initial).await?;
    let mut offset = content.len() as u64;
    let mut file = tokio::fs::File::open(&entry.path).await?;
    let mut finished = entry.finished.clone();
    while budget > 0 {
        // A dropped sender also means the container is done.
        let done = *finished.borrow_and_update() || finished.has_changed().is_err();
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut fresh = Vec::new();
        (&mut file)
            .take(budget.min(1 << 20) as u64)
            .read_to_end(&mut fresh)
            .await?;
        offset += fresh.len() as u64;
        budget -= fresh.len();
        write_chunk(stream, &fresh).await?;
        if fresh.is_empty() {
            if done {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), finished.changed()).await;
        }
    }
    stream.write_all(b"0\r\n\r\n").await?;
    Ok(())
}

async fn write_chunk<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) -> Result<()> {
    if !data.is_empty() {
        stream
            .write_all(format!("{:x}\r\n", data.len()).as_bytes())
            .await?;
        stream.write_all(data).await?;
        stream.write_all(b"\r\n").await?;
        stream.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines() {
        assert_eq!(tail_offset(b"a\nb\nc\n", 2), 2);
        assert_eq!(tail_offset(b"a\nb\nc", 2), 2);
        assert_eq!(tail_offset(b"a\nb\nc\n", 5), 0);
        assert_eq!(tail_offset(b"a\nb\nc\n", 0), 6);
    }

    #[test]
    fn query() {
        let q = parse_query("follow=true&tailLines=3&limitBytes=10&timestamps=true");
        assert_eq!(
            q,
            LogQuery {
                follow: true,
                previous: false,
                tail_lines: Some(3),
                limit_bytes: Some(10)
            }
        );
    }
}

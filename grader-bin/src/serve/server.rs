//! Start-up and shutdown of `grader serve`.
//!
//! Start-up: configuration (same layers as every command), the socket (and the TCP listener
//! when configured) bound first so that clients can queue jobs while the backend starts, then
//! the one [`grader_local::Executor`] of the service (warm workers imported, or the kube
//! client connected), after which `/readyz` answers 200.
//!
//! Shutdown on SIGTERM/SIGINT: no new jobs (503), queued jobs end `interrupted`, running jobs
//! get `serve.shutdown_grace` to finish and are then cancelled (process trees killed, pods
//! deleted) and end `interrupted`; every waiter is answered, the HTTP listeners close, the
//! executor shuts down (warm workers exit), the socket is removed, exit 0.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use grader_local::Executor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api::{ApiState, router};
use super::registry::Registry;
use super::runner::Runner;
use crate::cli::{Cli, ServeArgs};
use crate::wiring::{executor, interrupt_token, load_config, warm_by_default};
use crate::{Exit, Usage};

/// How long the HTTP listeners may take to close once every job has ended.
const HTTP_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `grader serve`.
pub async fn run(cli: &Cli, args: &ServeArgs) -> Result<Exit, Usage> {
    let mut loaded = load_config(cli, Some(&args.backend))?;
    let serve = loaded.config.serve.clone();
    warm_by_default(&mut loaded, serve.concurrency);
    let pipeline = Arc::new(loaded.settings.executor.clone());
    let token = match (&serve.listen, &serve.token_file) {
        (Some(_), Some(file)) => Some(read_token(file)?),
        _ => None,
    };
    if let Some(dir) = &serve.results_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create serve.results_dir {}", dir.display()))?;
        crate::batch::check_writable(dir)?;
    }

    let bound = BoundSocket::bind(&serve.socket)?;
    let socket = SocketGuard {
        path: bound.path.clone(),
        inode: bound.inode,
    };
    let tcp = match &serve.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on serve.listen = {addr}"))?,
        ),
        None => None,
    };

    let registry = Arc::new(Registry::new(
        serve.concurrency,
        serve.queue_limit,
        Duration::from_secs(serve.retain),
        loaded.config.backend.as_str(),
    ));
    let (executor_tx, executor_rx) = watch::channel::<Option<Arc<Executor>>>(None);
    let runner = Arc::new(Runner::new(
        registry.clone(),
        serve.concurrency,
        executor_rx.clone(),
        serve.results_dir.clone(),
    ));
    let interrupted = interrupt_token();
    let state = ApiState {
        registry: registry.clone(),
        runner,
        pipeline,
        executor: executor_rx,
        stopping: interrupted.clone(),
    };
    let max_body = usize::try_from(serve.max_request_bytes).unwrap_or(usize::MAX);
    let close_http = CancellationToken::new();
    let mut servers = Vec::new();
    let unix_app = router(state.clone(), max_body, None);
    let (listener, path) = (bound.listener, bound.path);
    let stop = close_http.clone();
    servers.push(tokio::spawn(async move {
        axum::serve(listener, unix_app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    }));
    tracing::info!(socket = %path.display(), "grader serve: listening on the Unix socket");
    if let Some(tcp) = tcp {
        let addr = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let tcp_app = router(state.clone(), max_body, token);
        let stop = close_http.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, tcp_app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }));
        tracing::info!(%addr, "grader serve: listening on TCP (bearer token required)");
    }

    // The one executor of the service; its warm workers and kube watch serve every job.
    let built = tokio::select! {
        built = executor(&loaded) => Some(built),
        () = interrupted.cancelled() => None,
    };
    let exec = match built {
        Some(Ok(exec)) => Some(Arc::new(exec)),
        Some(Err(e)) => {
            registry.close();
            close_servers(&close_http, servers).await;
            drop(socket);
            return Err(e);
        }
        None => None,
    };
    if let Some(exec) = &exec {
        registry.set_backend(exec.backend_name());
        executor_tx.send_replace(Some(exec.clone()));
        tracing::info!(
            backend = exec.backend_name(),
            concurrency = serve.concurrency,
            "grader serve: ready"
        );
        interrupted.cancelled().await;
    }

    tracing::info!("grader serve: shutting down; no new jobs");
    registry.close();
    let grace = Duration::from_secs(serve.shutdown_grace);
    if tokio::time::timeout(grace, registry.idle()).await.is_err() {
        tracing::warn!(
            running = registry.active(),
            "serve.shutdown_grace is over: cancelling the running jobs"
        );
        registry.interrupt_running();
        registry.idle().await;
    }
    // Queued jobs of a backend that never came up end now.
    drop(executor_tx);
    close_servers(&close_http, servers).await;
    if let Some(exec) = exec {
        exec.shutdown().await;
    }
    drop(socket);
    tracing::info!("grader serve: stopped");
    Ok(Exit::Done)
}

/// Lets the HTTP listeners close (in-flight answers are sent), within a bound.
async fn close_servers(
    close: &CancellationToken,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
) {
    close.cancel();
    for server in servers {
        match tokio::time::timeout(HTTP_CLOSE_TIMEOUT, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP listener failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP listener task failed"),
            Err(_) => tracing::warn!("HTTP listener did not close in time"),
        }
    }
}

/// The bearer token in `file`, trimmed; an empty one is refused.
fn read_token(file: &Path) -> Result<Arc<str>, Usage> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read serve.token_file {}", file.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Usage(anyhow::anyhow!(
            "serve.token_file {} is empty; a TCP listener needs a token",
            file.display()
        )));
    }
    Ok(Arc::from(token))
}

/// A Unix socket bound at its configured path with mode 0660.
struct BoundSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    /// Binds `path`: its directory is created if missing; a stale socket there (nobody
    /// answers) is replaced; a live one, or any other kind of file, is refused. The socket is
    /// bound under a temporary name, given mode 0660, then renamed into place, so it never
    /// exists at `path` with wider permissions.
    fn bind(path: &Path) -> Result<BoundSocket, Usage> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("serve.socket {shown}: cannot create its directory"))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => {
                        return Err(Usage(anyhow::anyhow!(
                            "serve.socket {shown}: another server is listening there"
                        )));
                    }
                    Err(_) => {
                        tracing::info!(socket = %shown, "removing a stale socket");
                        std::fs::remove_file(path).with_context(|| {
                            format!("serve.socket {shown}: cannot remove the stale socket")
                        })?;
                    }
                }
            }
            Ok(_) => {
                return Err(Usage(anyhow::anyhow!(
                    "serve.socket {shown} exists and is not a socket; refusing to replace it"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Usage(anyhow::anyhow!("serve.socket {shown}: {e}")));
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{}", std::process::id()));
        let fits = temporary.as_os_str().len() <= grader_config::MAX_SOCKET_PATH_BYTES;
        let bind_at = if fits { temporary.as_path() } else { path };
        let std_listener = std::os::unix::net::UnixListener::bind(bind_at)
            .with_context(|| format!("serve.socket {shown}: cannot bind"))?;
        let placed = std::fs::set_permissions(bind_at, std::fs::Permissions::from_mode(0o660))
            .and_then(|()| {
                if fits {
                    std::fs::rename(bind_at, path)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = placed {
            let _ = std::fs::remove_file(bind_at);
            return Err(Usage(anyhow::anyhow!("serve.socket {shown}: {e}")));
        }
        let inode = std::fs::symlink_metadata(path)
            .map(|m| m.ino())
            .unwrap_or(0);
        std_listener
            .set_nonblocking(true)
            .with_context(|| format!("serve.socket {shown}"))?;
        let listener = tokio::net::UnixListener::from_std(std_listener)
            .with_context(|| format!("serve.socket {shown}"))?;
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            inode,
        })
    }
}

/// Removes the socket when the service ends, unless another server has replaced it.
struct SocketGuard {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.ino() == self.inode);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_holding_a_regular_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grader.sock");
        std::fs::write(&path, "precious").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(async { BoundSocket::bind(&path).map(|_| ()) })
            .unwrap_err();
        assert!(
            format!("{:#}", err.0).contains("not a socket"),
            "{:#}",
            err.0
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn a_bound_socket_has_mode_0660_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/grader.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = BoundSocket::bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o660);
            // A live socket is not taken over.
            assert!(BoundSocket::bind(&path).is_err());
            drop(first);
            // Left behind by a server that died: replaced.
            let second = BoundSocket::bind(&path).unwrap();
            drop(second);
        });
    }
}

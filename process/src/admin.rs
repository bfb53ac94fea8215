//! The admin HTTP server (`/metrics`, `/healthz`, `/readyz` in both binaries): bound before
//! anything else starts, so a taken port fails the start-up, then served in the background
//! until the stop request.

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;

/// The admin address could not be bound (or read back).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves `router` on a spawned task until `shutdown` completes (then
/// finishes the requests in flight). Returns the bound address, which tells the port when
/// `addr` asks for port 0. A failure after the bind is logged; the process keeps running.
pub async fn serve_admin(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, ListenError> {
    let listen_error = |source| ListenError { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shutdown;
    use axum::routing::get;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const DEADLINE: Duration = Duration::from_secs(5);

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    async fn get_text(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut response = String::new();
        tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
            .await
            .expect("response within the deadline")
            .expect("read response");
        response
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_listen_error_naming_the_address() {
        let taken = std::net::TcpListener::bind(loopback()).expect("bind a free port");
        let addr = taken.local_addr().expect("bound address");
        let err = serve_admin(addr, Router::new(), std::future::pending())
            .await
            .expect_err("the port is taken");
        assert_eq!(err.addr, addr);
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on {addr}: ")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_router_is_served_until_the_stop_request() {
        let (trigger, shutdown) = Shutdown::channel();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let bound = serve_admin(loopback(), router, shutdown.wait())
            .await
            .expect("serve on a free port");
        assert_ne!(bound.port(), 0);
        let response = get_text(bound, "/healthz").await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("\r\n\r\nok"), "{response}");

        trigger.trigger();
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(bound).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "still accepting connections after the stop request"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

//! The agent's Kubernetes clients: kube's own middleware over a TCP connector with
//! `TCP_NODELAY`. Without it, the first request on a resumed TLS connection waits for the
//! API server's delayed ACK (40 ms on Linux), since Nagle's algorithm holds it back.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// A client for `config`, as `Client::try_from` builds it (base URI, retries of throttled
/// requests, authentication, extra headers, timeouts) except for `TCP_NODELAY` and kube's
/// request tracing. No proxy: the agent talks to the API server directly (the agent says so
/// once at start when its kubeconfig names one).
pub fn client(config: &Config) -> Result<Client, kube::Error> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let tls = config.rustls_https_connector_with_connector(tcp)?;
    let mut timed = hyper_timeout::TimeoutConnector::new(tls);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    timed.set_reset_reader_on_write(config.reset_reader_on_write);
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(timed);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use kube::api::Api;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request to a local server that answers a Node; returns what it received.
    async fn serve_once(listener: tokio::net::TcpListener) -> String {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.ends_with(b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed mid-request");
            request.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","uid":"u-1"}}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&request).into_owned()
    }

    #[tokio::test]
    async fn requests_reach_the_configured_server_with_the_configured_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(serve_once(listener));
        let mut config = Config::new(format!("http://{address}").parse().expect("url"));
        config.auth_info.token = Some("t0ken".to_string().into());
        let node = Api::<Node>::all(client(&config).expect("client"))
            .get("n1")
            .await
            .expect("get");
        assert_eq!(node.metadata.uid.as_deref(), Some("u-1"));
        let request = server.await.expect("server").to_ascii_lowercase();
        assert!(request.starts_with("get /api/v1/nodes/n1 "), "{request}");
        assert!(request.contains("authorization: bearer t0ken"), "{request}");
    }
}

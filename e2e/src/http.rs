//! A minimal HTTP/1.1 GET for probing admin endpoints on loopback in tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` from `addr`; returns the status code and body.
pub async fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum over every label set of the samples of metric `name` in Prometheus text, or
/// `None` when it has no sample.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_sums_label_sets_and_ignores_longer_names() {
        let text =
            "# HELP x_total help\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_total_more 7\ny 1\n";
        assert_eq!(super::metric(text, "x_total"), Some(5.0));
        assert_eq!(super::metric(text, "y"), Some(1.0));
        assert_eq!(super::metric(text, "z"), None);
    }
}

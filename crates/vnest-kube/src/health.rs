//! Liveness and readiness over plain HTTP for the kubelet's probes:
//! `/healthz` answers 200 while the process serves, `/readyz` 200 once the
//! component says it is ready and 503 before. Nothing else is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Whether the component is ready; cheap to clone and share.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Renders `/metrics` in Prometheus' text format.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `address` and serves the probes (and `/metrics` when given) until
/// the task is dropped.
pub async fn serve(
    address: SocketAddr,
    readiness: Readiness,
    metrics: Option<MetricsRenderer>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            let Ok(read) = stream.read(&mut buffer).await else {
                return;
            };
            let request = String::from_utf8_lossy(&buffer[..read]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match (path, &metrics) {
                ("/healthz" | "/livez", _) => ("200 OK", "ok".to_owned()),
                ("/readyz", _) if readiness.is_ready() => ("200 OK", "ok".to_owned()),
                ("/readyz", _) => ("503 Service Unavailable", "not ready".to_owned()),
                ("/metrics", Some(render)) => ("200 OK", render()),
                _ => ("404 Not Found", "not found".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn readiness_follows_the_component_and_liveness_is_always_ok() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let readiness = Readiness::default();
        tokio::spawn(serve(
            address,
            readiness.clone(),
            Some(Arc::new(|| "m 1\n".to_owned())),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(get(address, "/healthz").await, "HTTP/1.1 200 OK");
        assert_eq!(
            get(address, "/readyz").await,
            "HTTP/1.1 503 Service Unavailable"
        );
        readiness.set(true);
        assert_eq!(get(address, "/readyz").await, "HTTP/1.1 200 OK");
        assert_eq!(get(address, "/metrics").await, "HTTP/1.1 200 OK");
        assert_eq!(get(address, "/other").await, "HTTP/1.1 404 Not Found");
    }
}

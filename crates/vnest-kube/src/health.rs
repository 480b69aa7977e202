//! Liveness and readiness over plain HTTP for the kubelet's probes:
//! `/healthz` answers 200 while the process serves, `/readyz` 200 once the
//! component says it is ready and 503 before. Nothing else is served.
//!
//! Whoever can reach the port must not be able to silence it (a dead
//! listener fails the liveness probe and restarts the pod): each
//! connection gets [`Limits::request_timeout`] for its whole exchange, at
//! most [`Limits::max_connections`] are answered at once (more are closed
//! at once), and a failed `accept` (out of file descriptors) is waited out,
//! never fatal. vnest's NetworkPolicies keep tenants away from the port in
//! the first place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How much one client may take of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// For reading the request and writing the answer, together.
    pub request_timeout: Duration,
    /// Connections answered at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(2),
            max_connections: 128,
        }
    }
}

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
/// the task is dropped, with the default [`Limits`].
pub async fn serve(
    address: SocketAddr,
    readiness: Readiness,
    metrics: Option<MetricsRenderer>,
) -> std::io::Result<()> {
    serve_with(address, readiness, metrics, Limits::default()).await
}

/// [`serve`] with `limits`.
pub async fn serve_with(
    address: SocketAddr,
    readiness: Readiness,
    metrics: Option<MetricsRenderer>,
    limits: Limits,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, or a connection reset before it
            // was accepted: the listener itself is fine.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let exchange = answer(stream, &readiness, metrics.as_ref());
            let _ = tokio::time::timeout(limits.request_timeout, exchange).await;
        });
    }
}

/// Reads one request from `stream` and writes the answer.
async fn answer(mut stream: TcpStream, readiness: &Readiness, metrics: Option<&MetricsRenderer>) {
    let mut buffer = [0u8; 1024];
    let Ok(read) = stream.read(&mut buffer).await else {
        return;
    };
    let request = String::from_utf8_lossy(&buffer[..read]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match (path, metrics) {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
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

    #[tokio::test]
    async fn idle_connections_neither_pile_up_nor_silence_the_probes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let limits = Limits {
            request_timeout: std::time::Duration::from_millis(300),
            max_connections: 8,
        };
        let server = tokio::spawn(serve_with(address, Readiness::default(), None, limits));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Four times as many idle clients as the server answers at once,
        // sending nothing.
        let mut idle = Vec::new();
        for _ in 0..32 {
            idle.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        // Each is closed once its time is up (or at once, past the limit).
        for stream in &mut idle {
            let mut byte = [0u8; 1];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut byte))
                    .await
                    .expect("the server closes an idle connection");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        // The probe is answered afterwards, the server still up.
        assert_eq!(get(address, "/healthz").await, "HTTP/1.1 200 OK");
        assert!(!server.is_finished());
    }
}

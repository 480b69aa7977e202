//! Probes used while waiting for components, and free-port selection.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{IoContext, Result};

/// Asks the OS for a free port on 127.0.0.1.
///
/// The port is released before the component binds it, so another process may
/// take it in between; start-up retries with fresh ports when a component
/// reports its address in use.
pub(crate) fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context(|| "picking a free loopback port".to_owned())?;
    let port = listener
        .local_addr()
        .context(|| "reading the picked port".to_owned())?
        .port();
    Ok(port)
}

/// A plain-HTTP GET on loopback; `true` when the answer is `200`.
///
/// Only used for etcd's `/readyz` on its metrics listener, which kubeadm also
/// probes over plain HTTP; everything TLS goes through `kube::Client`.
pub(crate) async fn http_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head).await {
        Ok(_) => head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200",
        Err(_) => false,
    }
}

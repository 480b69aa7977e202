//! A connection to one etcd member over mutual TLS, and the maintenance
//! calls vnest makes on it.

use std::time::Duration;

use http::uri::PathAndQuery;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_prost::ProstCodec;

use crate::proto::{self, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd endpoint {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("etcd refused {call}: {} ({:?})", .status.message(), .status.code())]
    Call {
        call: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("writing the snapshot: {0}")]
    Write(#[source] std::io::Error),
    #[error(
        "the snapshot stream ended before its checksum (received {received} bytes); nothing usable was written"
    )]
    Incomplete { received: u64 },
}

/// How long a connection may take to open: a member a few hops away that
/// has not answered by then will not (the caller tries again or another).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach a member: its CA, a client certificate it accepts, and the
/// name its serving certificate carries.
#[derive(Clone)]
pub struct Tls {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub server_name: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// How far a snapshot has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub received: u64,
    /// What the member still has to send.
    pub remaining: u64,
}

/// What a finished snapshot stream held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes written: the database and its 32-byte checksum.
    pub bytes: u64,
    /// The storage version the member reported ("3.7.0").
    pub storage_version: String,
}

/// One member of an etcd cluster.
#[derive(Clone, Debug)]
pub struct Member {
    channel: Channel,
}

impl Member {
    /// Connects to `endpoint` (`https://host:port`) with `tls`.
    pub async fn connect(endpoint: &str, tls: &Tls) -> Result<Self, EtcdError> {
        let failed = |source| EtcdError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .identity(Identity::from_pem(
                &tls.client_cert_pem,
                &tls.client_key_pem,
            ))
            .domain_name(tls.server_name.clone());
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(failed)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_config(config)
            .map_err(failed)?
            .connect()
            .await
            .map_err(failed)?;
        Ok(Self { channel })
    }

    async fn ready(&self) -> Result<tonic::client::Grpc<Channel>, EtcdError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| EtcdError::Call {
            call: "a call (the connection is not ready)",
            status: Box::new(tonic::Status::unavailable(e.to_string())),
        })?;
        Ok(grpc)
    }

    /// The member's status: its version, database size and revision.
    pub async fn status(&self) -> Result<StatusResponse, EtcdError> {
        let response = self
            .ready()
            .await?
            .unary(
                tonic::Request::new(StatusRequest {}),
                PathAndQuery::from_static(proto::paths::STATUS),
                ProstCodec::<StatusRequest, StatusResponse>::default(),
            )
            .await
            .map_err(|status| EtcdError::Call {
                call: "Status",
                status: Box::new(status),
            })?;
        Ok(response.into_inner())
    }

    /// Streams a consistent snapshot of the member's database into `out`:
    /// the database, then the SHA-256 etcd computed over it (the file
    /// format `etcdutl snapshot restore` reads). The member keeps serving
    /// meanwhile. `progress` is called after every chunk.
    pub async fn snapshot(
        &self,
        out: &mut (impl AsyncWrite + Unpin),
        mut progress: impl FnMut(Progress),
    ) -> Result<Snapshot, EtcdError> {
        let call = |status| EtcdError::Call {
            call: "Snapshot",
            status: Box::new(status),
        };
        let mut stream = self
            .ready()
            .await?
            .server_streaming(
                tonic::Request::new(SnapshotRequest {}),
                PathAndQuery::from_static(proto::paths::SNAPSHOT),
                ProstCodec::<SnapshotRequest, SnapshotResponse>::default(),
            )
            .await
            .map_err(call)?
            .into_inner();
        let mut received = 0u64;
        let mut storage_version = String::new();
        let mut checksum_seen = false;
        while let Some(chunk) = stream.message().await.map_err(call)? {
            out.write_all(&chunk.blob).await.map_err(EtcdError::Write)?;
            received += chunk.blob.len() as u64;
            if !chunk.version.is_empty() {
                storage_version = chunk.version;
            }
            // The checksum comes alone, last, after the chunk that left
            // nothing remaining.
            checksum_seen = chunk.remaining_bytes == 0
                && chunk.blob.len() as u64 == crate::snapshot_file::CHECKSUM_LEN;
            progress(Progress {
                received,
                remaining: chunk.remaining_bytes,
            });
        }
        out.flush().await.map_err(EtcdError::Write)?;
        if !checksum_seen {
            return Err(EtcdError::Incomplete { received });
        }
        Ok(Snapshot {
            bytes: received,
            storage_version,
        })
    }
}

//! The messages of etcd's `etcdserverpb.Maintenance` service that vnest
//! uses, written out with prost's derive instead of generated from
//! `rpc.proto` (field numbers and types as in etcd v3.7's
//! `api/etcdserverpb/rpc.proto`; fields vnest does not read are left out,
//! which protobuf decoding skips).

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// The key-value store's revision when the response was made.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `etcdserverpb.SnapshotRequest`: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRequest {}

/// `etcdserverpb.SnapshotResponse`: one chunk of the snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// How many bytes the server still has to send after this chunk.
    #[prost(uint64, tag = "2")]
    pub remaining_bytes: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub blob: Vec<u8>,
    /// The storage version of the snapshot (etcd 3.6 and later).
    #[prost(string, tag = "4")]
    pub version: String,
}

/// `etcdserverpb.StatusRequest`: no fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// `etcdserverpb.StatusResponse`, the fields vnest reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The member's etcd version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// The size of the member's database file in bytes.
    #[prost(int64, tag = "3")]
    pub db_size: i64,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
    #[prost(string, tag = "11")]
    pub storage_version: String,
}

/// The gRPC paths of the calls above.
pub mod paths {
    pub const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
    pub const STATUS: &str = "/etcdserverpb.Maintenance/Status";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message as _;

    /// The wire bytes of a SnapshotResponse as etcd's generated Go code
    /// encodes it (header{cluster_id: 1, revision: 7}, remaining_bytes: 5,
    /// blob: "ab", version: "3.7.0"), written out by hand from the
    /// protobuf encoding rules: each field is (tag << 3 | wire type).
    #[test]
    fn decodes_etcds_encoding() {
        let wire = [
            0x0a, 0x04, 0x08, 0x01, 0x18, 0x07, // 1: header {1: 1, 3: 7}
            0x10, 0x05, // 2: remaining_bytes 5
            0x1a, 0x02, b'a', b'b', // 3: blob "ab"
            0x22, 0x05, b'3', b'.', b'7', b'.', b'0', // 4: version
        ];
        let decoded = SnapshotResponse::decode(&wire[..]).unwrap();
        assert_eq!(decoded.remaining_bytes, 5);
        assert_eq!(decoded.blob, b"ab");
        assert_eq!(decoded.version, "3.7.0");
        let header = decoded.header.clone().unwrap();
        assert_eq!((header.cluster_id, header.revision), (1, 7));
        assert_eq!(decoded.encode_to_vec(), wire);
    }

    #[test]
    fn skips_fields_vnest_does_not_read() {
        // StatusResponse with raftIndex (5) = 9 and isLearner (10) = true,
        // neither declared above, and version "3.7.3".
        let wire = [
            0x12, 0x05, b'3', b'.', b'7', b'.', b'3', 0x28, 0x09, 0x50, 0x01,
        ];
        let decoded = StatusResponse::decode(&wire[..]).unwrap();
        assert_eq!(decoded.version, "3.7.3");
    }
}

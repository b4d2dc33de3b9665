//! Messages (frame bodies), archived with rkyv.

use rkyv::{Archive, Deserialize, Serialize};

/// Protocol versions this build speaks, lowest first. Version 1 (fullsync
/// without tree digests and sub-bucket hashes) is no longer spoken.
pub const PROTOCOL_VERSIONS: &[u16] = &[2];

/// Role a connection plays, announced in the hello.
pub const ROLE_SOURCE: u8 = 1;
pub const ROLE_SINK: u8 = 2;

/// Cluster-manager hello: who we are and how we are built.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub cluster_name: String,
    pub cluster_id: u64,
    pub versions: Vec<u16>,
    pub ring_size: u32,
    pub n_val: u32,
    pub tls_required: bool,
    /// Cluster-manager address of the node.
    pub node_addr: String,
    /// Data address of each core (the sink's source cores connect to them).
    pub core_addrs: Vec<String>,
    pub tree_segments: u32,
    pub role: u8,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    pub hello: Hello,
    pub version: u16,
}

/// First frame on a data connection.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DataHello {
    pub cluster_id: u64,
    pub cluster_name: String,
    pub version: u16,
    pub source_core: u32,
    /// Partitions this connection carries (realtime; empty for fullsync)...
    pub partitions: Vec<u32>,
    /// ...and the source's durable cursor of each: the sink treats
    /// everything up to it as applied.
    pub cursors: Vec<u64>,
    /// Random per start of the source process: what a sink remembers about
    /// LSNs applied from a source is only valid for the same incarnation.
    pub incarnation: u64,
    /// 1 = realtime, 2 = fullsync.
    pub purpose: u8,
}

pub const PURPOSE_REALTIME: u8 = 1;
pub const PURPOSE_FULLSYNC: u8 = 2;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DataHelloReply {
    pub sink_core: u32,
}

/// Realtime batch: the records of one partition with LSN in
/// `(after_lsn, upto_lsn]` that the sink needs (records the source skipped
/// are covered by the range too). Consecutive batches of a partition are
/// contiguous: each starts where the previous one ended. The payload is the
/// records as stored, each padded to 16 bytes; `records` of them.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub partition: u32,
    pub after_lsn: u64,
    pub upto_lsn: u64,
    pub records: u32,
}

/// Cumulative: every batch of `partition` up to `upto_lsn` is applied and
/// durable on the sink.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub partition: u32,
    pub upto_lsn: u64,
    pub seq: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub now_ms: u64,
}

/// A refusal or protocol error, with a message for the operator.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: u16,
    pub message: String,
}

pub const ERR_PROTOCOL: u16 = 1;
pub const ERR_RING_SIZE: u16 = 2;
pub const ERR_VERSION: u16 = 3;
pub const ERR_TLS_REQUIRED: u16 = 4;
pub const ERR_SAME_CLUSTER: u16 = 5;
pub const ERR_BUSY: u16 = 6;
pub const ERR_TREE: u16 = 7;
pub const ERR_INTERNAL: u16 = 8;
/// The sink could not store what it received because its disk is full; the
/// source retries after its reconnect backoff.
pub const ERR_NO_SPACE: u16 = 9;

/// The sink asks its source for records by key (blocks for proxy_get).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProxyGet {
    pub req_id: u64,
    pub keys: Vec<Vec<u8>>,
}

/// Answer: the records found, in the payload, in request order; `found`
/// says which keys they are.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProxyGetReply {
    pub req_id: u64,
    pub found: Vec<bool>,
    pub error: String,
}

/// Fullsync of one partition starts (source → sink).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsStart {
    pub partition: u32,
    pub tree_segments: u32,
    /// `fullsync::tree_digest` of the source's segment hashes: a sink whose
    /// own digest is the same answers with no hashes (nothing differs).
    pub digest: u64,
}

/// Hashes of one level of the sink's tree (sink → source): level 0 (all
/// its nodes) in answer to `FsStart`, none when the sink's tree digest
/// equals the one there; a deeper level in answer to `FsTreeAsk`, the
/// children of the nodes asked for, in order. The last level's nodes are
/// the tree segments.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsSegmentHashes {
    pub partition: u32,
    pub level: u8,
    pub hashes: Vec<u64>,
}

/// Asks for the children (at `level`) of the given nodes of level
/// `level - 1`, those whose hashes differ (source → sink); ascending.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsTreeAsk {
    pub partition: u32,
    pub level: u8,
    pub nodes: Vec<u32>,
}

/// Segments whose hashes differ (source → sink): `segments` with the
/// source's sub-bucket hashes of each (`FS_SUB_BUCKETS` per segment, in the
/// order of `segments`), and `whole_segments` to be listed in full (empty
/// or nearly empty ones, where sub-hashes would cost more than the list).
/// A partition with many differing segments sends several.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsDiff {
    pub partition: u32,
    pub segments: Vec<u32>,
    pub sub_hashes: Vec<u64>,
    pub whole_segments: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    pub key: Vec<u8>,
    pub hlc: u64,
    pub cluster: u64,
    pub vhash: u64,
}

/// The sink's entries of one differing segment (sink → source), only those
/// of the sub-buckets in `sub_mask` (bit i: sub-bucket i, whose hashes
/// differ); a segment may take several lists, the last has `last` set and
/// its mask is the one that counts.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsKeyList {
    pub partition: u32,
    pub segment: u32,
    pub sub_mask: u32,
    pub entries: Vec<FsEntry>,
    pub last: bool,
}

/// Records the sink lacks or holds older (source → sink), in the payload.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsPush {
    pub partition: u32,
    pub seq: u64,
    pub records: u32,
}

/// The sink applied pushes up to `seq` (sink → source).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsPushAck {
    pub partition: u32,
    pub seq: u64,
}

/// The partition is done (source → sink, then echoed by the sink once
/// everything is durable).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FsDone {
    pub partition: u32,
    pub segments_differing: u32,
    pub keys_compared: u64,
    pub objects_sent: u64,
    pub bytes_sent: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Hello(Hello),
    HelloReply(HelloReply),
    DataHello(DataHello),
    DataHelloReply(DataHelloReply),
    Batch(Batch),
    Ack(Ack),
    Heartbeat(Heartbeat),
    Error(ErrorMsg),
    ProxyGet(ProxyGet),
    ProxyGetReply(ProxyGetReply),
    FsStart(FsStart),
    FsSegmentHashes(FsSegmentHashes),
    FsDiff(FsDiff),
    FsKeyList(FsKeyList),
    FsPush(FsPush),
    FsPushAck(FsPushAck),
    FsDone(FsDone),
    FsTreeAsk(FsTreeAsk),
}

/// Frame kinds, one per message variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MsgKind {
    Hello = 1,
    HelloReply = 2,
    DataHello = 3,
    DataHelloReply = 4,
    Batch = 5,
    Ack = 6,
    Heartbeat = 7,
    Error = 8,
    ProxyGet = 9,
    ProxyGetReply = 10,
    FsStart = 11,
    FsSegmentHashes = 12,
    FsDiff = 13,
    FsKeyList = 14,
    FsPush = 15,
    FsPushAck = 16,
    FsDone = 17,
    FsTreeAsk = 18,
}

impl MsgKind {
    pub fn from_u16(v: u16) -> Option<MsgKind> {
        use MsgKind::*;
        Some(match v {
            1 => Hello,
            2 => HelloReply,
            3 => DataHello,
            4 => DataHelloReply,
            5 => Batch,
            6 => Ack,
            7 => Heartbeat,
            8 => Error,
            9 => ProxyGet,
            10 => ProxyGetReply,
            11 => FsStart,
            12 => FsSegmentHashes,
            13 => FsDiff,
            14 => FsKeyList,
            15 => FsPush,
            16 => FsPushAck,
            17 => FsDone,
            18 => FsTreeAsk,
            _ => return None,
        })
    }

    /// Data frames carry raw records after the body.
    pub fn has_payload(self) -> bool {
        matches!(self, MsgKind::Batch | MsgKind::ProxyGetReply | MsgKind::FsPush)
    }
}

impl Msg {
    pub fn kind(&self) -> MsgKind {
        match self {
            Msg::Hello(_) => MsgKind::Hello,
            Msg::HelloReply(_) => MsgKind::HelloReply,
            Msg::DataHello(_) => MsgKind::DataHello,
            Msg::DataHelloReply(_) => MsgKind::DataHelloReply,
            Msg::Batch(_) => MsgKind::Batch,
            Msg::Ack(_) => MsgKind::Ack,
            Msg::Heartbeat(_) => MsgKind::Heartbeat,
            Msg::Error(_) => MsgKind::Error,
            Msg::ProxyGet(_) => MsgKind::ProxyGet,
            Msg::ProxyGetReply(_) => MsgKind::ProxyGetReply,
            Msg::FsStart(_) => MsgKind::FsStart,
            Msg::FsSegmentHashes(_) => MsgKind::FsSegmentHashes,
            Msg::FsDiff(_) => MsgKind::FsDiff,
            Msg::FsKeyList(_) => MsgKind::FsKeyList,
            Msg::FsPush(_) => MsgKind::FsPush,
            Msg::FsPushAck(_) => MsgKind::FsPushAck,
            Msg::FsDone(_) => MsgKind::FsDone,
            Msg::FsTreeAsk(_) => MsgKind::FsTreeAsk,
        }
    }

    pub fn error(code: u16, message: impl Into<String>) -> Msg {
        Msg::Error(ErrorMsg { code, message: message.into() })
    }
}

pub fn encode_body(m: &Msg) -> Vec<u8> {
    rkyv::to_bytes::<rkyv::rancor::Error>(m).expect("messages encode").into_vec()
}

/// Validates (bytecheck) and decodes a body. The bytes are copied into an
/// aligned buffer first: rkyv needs alignment and bodies are small.
pub fn decode_body(body: &[u8]) -> Result<Msg, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<Msg, rkyv::rancor::Error>(&aligned).map_err(|e| e.to_string())
}

//! Cluster manager: the hello exchange that opens every control connection.
//!
//! ```text
//! source                              sink
//!   ── Hello(source) ─────────────────▶  negotiate(sink, source)
//!   ◀──────── HelloReply(sink, version)   or Error(code, message), close
//! negotiate(source, sink)                
//!   (on failure: Error(code, message), close)
//!   ◀───── Heartbeat ──── Heartbeat ───▶  every heartbeat_ms; silence for
//!                                         peer_timeout_ms ends the connection
//! ```

use crate::msg::*;
use crate::ProtoError;

/// The highest protocol version both sides speak.
pub fn common_version(a: &[u16], b: &[u16]) -> Option<u16> {
    a.iter().filter(|v| b.contains(v)).max().copied()
}

/// Checks a peer's hello against ours. The error is what we send the peer
/// and log: it names both sides and says what to do.
pub fn negotiate(local: &Hello, peer: &Hello) -> Result<u16, ErrorMsg> {
    if peer.cluster_id == local.cluster_id {
        return Err(ErrorMsg {
            code: ERR_SAME_CLUSTER,
            message: format!("cluster {:?} tried to replicate to itself (cluster id {:016x}); connect to another cluster's repl address", local.cluster_name, local.cluster_id),
        });
    }
    if peer.ring_size != local.ring_size {
        return Err(ErrorMsg {
            code: ERR_RING_SIZE,
            message: format!(
                "ring size mismatch: cluster {:?} has {} partitions, cluster {:?} has {}; both clusters must use the same ring_size",
                local.cluster_name, local.ring_size, peer.cluster_name, peer.ring_size
            ),
        });
    }
    if peer.tree_segments != local.tree_segments {
        return Err(ErrorMsg {
            code: ERR_TREE,
            message: format!(
                "hash tree mismatch: cluster {:?} uses {} tree segments, cluster {:?} uses {}; both clusters must use the same storage.tree_segments",
                local.cluster_name, local.tree_segments, peer.cluster_name, peer.tree_segments
            ),
        });
    }
    common_version(&local.versions, &peer.versions).ok_or_else(|| ErrorMsg {
        code: ERR_VERSION,
        message: format!(
            "no common protocol version: cluster {:?} speaks {:?}, cluster {:?} speaks {:?}; upgrade the older one",
            local.cluster_name, local.versions, peer.cluster_name, peer.versions
        ),
    })
}

/// Client (source) side of the hello exchange.
#[derive(Debug)]
pub struct CmClient {
    local: Hello,
    state: ClientState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientState {
    SentHello,
    Established { version: u16, peer: Hello },
    Refused(String),
}

impl CmClient {
    /// Returns the machine and the hello to send.
    pub fn start(local: Hello) -> (CmClient, Msg) {
        let m = Msg::Hello(local.clone());
        (CmClient { local, state: ClientState::SentHello }, m)
    }

    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// Handles the peer's answer. Returns a frame to send back, if any.
    pub fn on_msg(&mut self, m: Msg) -> Result<Option<Msg>, ProtoError> {
        match (&self.state, m) {
            (ClientState::SentHello, Msg::HelloReply(r)) => match negotiate(&self.local, &r.hello) {
                Ok(v) if v == r.version => {
                    self.state = ClientState::Established { version: v, peer: r.hello };
                    Ok(None)
                }
                Ok(v) => {
                    let msg = format!("peer chose protocol version {} but the highest common one is {v}", r.version);
                    self.state = ClientState::Refused(msg.clone());
                    Ok(Some(Msg::error(ERR_VERSION, msg)))
                }
                Err(e) => {
                    self.state = ClientState::Refused(e.message.clone());
                    Ok(Some(Msg::Error(e)))
                }
            },
            (ClientState::SentHello, Msg::Error(e)) => {
                self.state = ClientState::Refused(e.message);
                Ok(None)
            }
            (ClientState::Established { .. }, Msg::Heartbeat(_)) => Ok(None),
            (ClientState::Established { .. }, Msg::Error(e)) => {
                self.state = ClientState::Refused(e.message);
                Ok(None)
            }
            (s, other) => Err(ProtoError::new(format!("unexpected {:?} frame in state {s:?}", other.kind()))),
        }
    }
}

/// Server (sink) side: answers a hello.
pub fn answer_hello(local: &Hello, peer: &Hello) -> (Msg, Option<u16>) {
    match negotiate(local, peer) {
        Ok(v) => (Msg::HelloReply(HelloReply { hello: local.clone(), version: v }), Some(v)),
        Err(e) => (Msg::Error(e), None),
    }
}

/// Heartbeats and dead-peer detection for any connection.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    last_rx: u64,
    last_tx: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveAction {
    Nothing,
    SendHeartbeat,
    /// The peer has been silent too long: close with this reason.
    Dead(String),
}

impl Liveness {
    pub fn new(heartbeat_ms: u64, timeout_ms: u64, now: u64) -> Liveness {
        assert!(timeout_ms > heartbeat_ms, "peer timeout must exceed the heartbeat interval");
        Liveness { heartbeat_ms, timeout_ms, last_rx: now, last_tx: now }
    }
    pub fn received(&mut self, now: u64) {
        self.last_rx = self.last_rx.max(now);
    }
    pub fn sent(&mut self, now: u64) {
        self.last_tx = self.last_tx.max(now);
    }
    pub fn tick(&mut self, now: u64) -> LiveAction {
        if now.saturating_sub(self.last_rx) >= self.timeout_ms {
            return LiveAction::Dead(format!("peer silent for {} ms (timeout {} ms)", now - self.last_rx, self.timeout_ms));
        }
        if now.saturating_sub(self.last_tx) >= self.heartbeat_ms {
            self.last_tx = now;
            return LiveAction::SendHeartbeat;
        }
        LiveAction::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str, id: u64, ring: u32, versions: Vec<u16>) -> Hello {
        Hello {
            cluster_name: name.into(),
            cluster_id: id,
            versions,
            ring_size: ring,
            n_val: 1,
            tls_required: false,
            node_addr: "127.0.0.1:9080".into(),
            core_addrs: vec!["127.0.0.1:9081".into()],
            tree_segments: 4096,
            role: ROLE_SOURCE,
        }
    }

    #[test]
    fn hello_exchange_picks_highest_common_version() {
        let a = hello("dc1", 1, 64, vec![1, 2, 3]);
        let b = hello("dc2", 2, 64, vec![1, 2]);
        let (mut client, first) = CmClient::start(a.clone());
        let Msg::Hello(h) = first else { panic!() };
        let (reply, v) = answer_hello(&b, &h);
        assert_eq!(v, Some(2));
        assert_eq!(client.on_msg(reply).unwrap(), None);
        assert_eq!(client.state(), &ClientState::Established { version: 2, peer: b });
    }

    #[test]
    fn ring_mismatch_is_refused_on_both_sides_naming_both_sizes() {
        let a = hello("dc1", 1, 64, vec![1]);
        let b = hello("dc2", 2, 128, vec![1]);
        let (reply, v) = answer_hello(&b, &a);
        assert_eq!(v, None);
        let Msg::Error(e) = &reply else { panic!() };
        assert_eq!(e.code, ERR_RING_SIZE);
        assert!(e.message.contains("64") && e.message.contains("128") && e.message.contains("ring_size"), "{}", e.message);
        // The client side computes the same refusal from the other direction.
        let err = negotiate(&a, &b).unwrap_err();
        assert!(err.message.contains("\"dc1\" has 64") && err.message.contains("\"dc2\" has 128"));
        let (mut client, _) = CmClient::start(a);
        client.on_msg(reply).unwrap();
        assert!(matches!(client.state(), ClientState::Refused(m) if m.contains("ring size mismatch")));
    }

    #[test]
    fn no_common_version_and_self_connection_are_refused() {
        let a = hello("dc1", 1, 64, vec![1]);
        let b = hello("dc2", 2, 64, vec![2]);
        assert_eq!(negotiate(&a, &b).unwrap_err().code, ERR_VERSION);
        let c = hello("dc1-again", 1, 64, vec![1]);
        assert_eq!(negotiate(&a, &c).unwrap_err().code, ERR_SAME_CLUSTER);
    }

    #[test]
    fn unexpected_frames_are_protocol_errors() {
        let (mut client, _) = CmClient::start(hello("a", 1, 8, vec![1]));
        assert!(client.on_msg(Msg::Ack(Ack { partition: 0, upto_lsn: 1, seq: 1 })).is_err());
    }

    #[test]
    fn liveness_heartbeats_and_detects_dead_peers() {
        let mut l = Liveness::new(1000, 5000, 0);
        assert_eq!(l.tick(500), LiveAction::Nothing);
        assert_eq!(l.tick(1000), LiveAction::SendHeartbeat);
        assert_eq!(l.tick(1500), LiveAction::Nothing);
        l.received(4000);
        assert_eq!(l.tick(8999), LiveAction::SendHeartbeat);
        assert!(matches!(l.tick(9000), LiveAction::Dead(_)));
    }
}

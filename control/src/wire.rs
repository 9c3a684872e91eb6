//! The exchange on the wire: heartbeats and consensus messages, each in one
//! authenticated UDP datagram.
//!
//! ```text
//! header  magic "SSX2" | version 3 | kind | key id | flags | segment u16 |
//!         member u32 | incarnation u64 | nonce u32
//! body    heartbeat: seq u64 | weight u32 | connections u32 | held u32 |
//!                    applied u64 | log_last u64 |
//!                    agreed: lease u32 | timeout u32 | interval u32 | drain u32 |
//!                            log2 buckets u8 | layout u8 | rules u32 |
//!                    serving u32 |
//!                    n u16 | n × (member u32, incarnation u64, seq u64, flags u8)
//!         serving:   seq u64 | applied u64 | flags u8 | n u32 |
//!                    n × (first u32, count u32), or (flag 2) n × u64 bitmap words
//!         consensus: one raft message (protobuf)
//! tag     HMAC-SHA256 over everything before it, truncated to 16 bytes,
//!         keyed with the key the key id names
//! ```
//!
//! Decoding checks the length, magic, version and the key id before the
//! tag, and the tag before reading any field; every count is checked
//! against the bytes present: garbage, truncation and forgery are errors,
//! never panics. A heartbeat never exceeds [`MAX_HEARTBEAT`] bytes (one
//! Ethernet MTU less the IP and UDP headers): [`MAX_MEMBERS`] is sized for
//! that, and encoding refuses more rather than truncating.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// "SSX2"
const MAGIC: [u8; 4] = *b"SSX2";
/// 4: the port rules' digest among the settings that must agree (3 had
/// none); 3: the start's nonce, the settings that must agree, and the
/// incarnation each grant is for. Versions do not mix: a datagram of
/// another version is refused as malformed before its tag is checked.
const VERSION: u8 = 4;
/// Bytes of the truncated HMAC-SHA256 tag.
pub const TAG_LEN: usize = 16;
/// magic, version, kind, key id, flags, segment, member, incarnation, nonce.
const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 1 + 2 + 4 + 8 + 4;
/// seq, weight, connections, held, applied, log_last, agreed, serving, count.
const HEARTBEAT_FIXED: usize = 8 + 4 + 4 + 4 + 8 + 8 + AGREED_LEN + 4 + 2;
/// lease, timeout, interval, drain, log2 buckets, layout, rules.
const AGREED_LEN: usize = 4 * 4 + 1 + 1 + 4;
const ACK_LEN: usize = 4 + 8 + 8 + 1;
/// The largest heartbeat: a 1500-byte MTU less IPv6 (40) and UDP (8).
pub const MAX_HEARTBEAT: usize = 1452;
/// The most members a segment may have: every heartbeat lists what its
/// sender hears from each of the others, and must fit [`MAX_HEARTBEAT`].
pub const MAX_MEMBERS: usize = 64;
/// The largest consensus datagram accepted.
pub const MAX_CONSENSUS: usize = 16 * 1024;

const KIND_HEARTBEAT: u8 = 1;
const KIND_CONSENSUS: u8 = 2;
const KIND_SERVING: u8 = 3;
/// seq, applied, flags, count.
const SERVING_FIXED: usize = 8 + 8 + 1 + 4;
/// The most bucket ranges one serving datagram lists.
pub const MAX_SERVING_RANGES: usize = (MAX_CONSENSUS - HEADER_LEN - SERVING_FIXED - TAG_LEN) / 8;

/// What a sender is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A node: holds buckets, serves connections.
    Node,
    /// A coordinator (or witness): votes and leads, holds nothing.
    Coordinator,
}

/// One shared key and the id that names it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Its id, carried in every datagram.
    pub id: u8,
    /// The secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ id: {}, .. }}", self.id)
    }
}

/// The keys of a member: it sends with the first and accepts any of them,
/// so a rolling rotation (add the new key everywhere, then send with it
/// everywhere, then drop the old one) never splits the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    /// Keys with the sending one first. `None` if empty or two share an id.
    pub fn new(keys: Vec<Key>) -> Option<Keys> {
        let unique = keys
            .iter()
            .enumerate()
            .all(|(i, k)| keys[..i].iter().all(|o| o.id != k.id));
        (!keys.is_empty() && unique).then_some(Keys { keys })
    }

    /// One key, id 0 (tests, simulations).
    pub fn single(secret: &[u8]) -> Keys {
        Keys {
            keys: vec![Key {
                id: 0,
                secret: secret.to_vec(),
            }],
        }
    }

    /// The key datagrams are sent with.
    pub fn sending(&self) -> &Key {
        &self.keys[0]
    }

    /// The key with id `id`, if accepted.
    pub fn get(&self, id: u8) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The ids accepted.
    pub fn ids(&self) -> Vec<u8> {
        self.keys.iter().map(|k| k.id).collect()
    }
}

/// Who sent a datagram.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sender {
    /// Its segment.
    pub segment: u16,
    /// Its member id.
    pub member: u32,
    /// Its incarnation: grows with every restart (see the protocol).
    pub incarnation: u64,
    /// Drawn at random at each start: two processes started from one copy
    /// of a state file have equal incarnations and different nonces.
    pub nonce: u32,
    /// Node or coordinator.
    pub role: Role,
    /// Taking no new connections.
    pub draining: bool,
}

/// What a heartbeat says about one peer of its sender.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Heard {
    /// The peer.
    pub member: u32,
    /// The incarnation of the peer this is about: a grant to an earlier
    /// incarnation (a replay of a past run) counts for nothing.
    pub incarnation: u64,
    /// The highest sequence number of the peer's current incarnation heard.
    pub seq: u64,
    /// The sender's log held no table change beyond what that heartbeat
    /// said the peer enforces, when this heartbeat was sent: the peer's
    /// lease may count on this heartbeat.
    pub lease: bool,
}

/// The settings that the safety argument compares across members: a
/// member whose settings differ from ours is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Agreed {
    /// Lease, ms.
    pub lease_ms: u32,
    /// Liveness timeout, ms.
    pub timeout_ms: u32,
    /// Heartbeat interval, ms.
    pub interval_ms: u32,
    /// Drain period, ms.
    pub drain_ms: u32,
    /// Buckets: a power of two, carried as its log2.
    pub buckets: u32,
    /// Table layout (0 ranges, 1 rendezvous).
    pub layout: u8,
    /// The digest of the port rules that choose a connection's value
    /// ([`rules_digest`]): two nodes whose rules give one connection two
    /// values would both take it. 0: a member with no rules (a
    /// coordinator), which agrees with any.
    pub rules: u32,
}

/// The digest of the canonical description of what decides connection
/// values (the dataplane writes it: `Vip::value_rules`): the first four
/// bytes of its SHA-256, never 0 (0 is a coordinator's "no rules").
pub fn rules_digest(canonical: &[u8]) -> u32 {
    use sha2::Digest;
    let d = Sha256::digest(canonical);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]).max(1)
}

impl Agreed {
    /// The first field that differs from `other`: its name, ours, theirs.
    /// A drain period of 0 and rules of 0 are a coordinator's (it holds
    /// nothing and takes no connection): they agree with any.
    pub fn differs(&self, other: &Agreed) -> Option<(&'static str, u32, u32)> {
        let drain_applies = self.drain_ms != 0 && other.drain_ms != 0;
        let rules_apply = self.rules != 0 && other.rules != 0;
        [
            ("lease_ms", self.lease_ms, other.lease_ms),
            ("timeout_ms", self.timeout_ms, other.timeout_ms),
            ("interval_ms", self.interval_ms, other.interval_ms),
            (
                "drain_ms",
                self.drain_ms,
                if drain_applies { other.drain_ms } else { self.drain_ms },
            ),
            ("buckets", self.buckets, other.buckets),
            ("layout", u32::from(self.layout), u32::from(other.layout)),
            ("rules", self.rules, if rules_apply { other.rules } else { self.rules }),
        ]
        .into_iter()
        .find(|(_, a, b)| a != b)
    }
}

/// One heartbeat.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Heartbeat {
    /// The sender.
    pub from: Sender,
    /// Grows with every heartbeat of one incarnation.
    pub seq: u64,
    /// The sender's availability times its configured weight, thousandths.
    pub weight_milli: u32,
    /// Connections the sender holds.
    pub connections: u32,
    /// Buckets the sender holds now.
    pub held: u32,
    /// The log index whose table every one of the sender's workers
    /// enforces.
    pub applied: u64,
    /// The last table or membership change in the sender's log.
    pub log_last: u64,
    /// The sender's settings that must agree.
    pub agreed: Agreed,
    /// Buckets the sender does not hold and still serves flows in (0: none;
    /// otherwise a serving datagram with the same seq lists them).
    pub serving: u32,
    /// What the sender hears from each peer.
    pub heard: Vec<Heard>,
}

/// The buckets a member does not hold and still serves flows in, sent with
/// a heartbeat whose `serving` is not 0.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Serving {
    /// The sender.
    pub from: Sender,
    /// The seq of the heartbeat it goes with.
    pub seq: u64,
    /// The table index the sender's workers enforced when it was made.
    pub applied: u64,
    /// Too many buckets to list: take it as serving every bucket.
    pub all: bool,
    /// (first bucket, count), ascending and apart.
    pub ranges: Vec<(u32, u32)>,
    /// Or one bit per bucket, when the ranges would not fit (then `ranges`
    /// is empty).
    pub bitmap: Vec<u64>,
}

/// One datagram of the exchange.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Datagram {
    /// A heartbeat.
    Heartbeat(Heartbeat),
    /// What its sender still serves in buckets it no longer holds.
    Serving(Serving),
    /// A consensus (raft) message, protobuf-encoded.
    Consensus {
        /// The sender.
        from: Sender,
        /// The message.
        message: Vec<u8>,
    },
}

impl Datagram {
    /// The sender.
    pub fn from(&self) -> &Sender {
        match self {
            Datagram::Heartbeat(h) => &h.from,
            Datagram::Consensus { from, .. } => from,
            Datagram::Serving(s) => &s.from,
        }
    }
}

/// Why a datagram was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Too short or too long.
    BadLength,
    /// Not ours (magic) or another version.
    NotHeartbeat,
    /// A key id this member does not accept.
    UnknownKey,
    /// The tag does not verify: wrong key, or tampered with.
    BadTag,
    /// Authentic but inconsistent (counts, flags).
    Malformed,
}

impl DecodeError {
    /// A snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::BadLength => "bad_length",
            DecodeError::NotHeartbeat => "not_heartbeat",
            DecodeError::UnknownKey => "unknown_key",
            DecodeError::BadTag => "bad_tag",
            DecodeError::Malformed => "malformed",
        }
    }
}

/// Why a datagram could not be encoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EncodeError {
    /// More peers than [`MAX_MEMBERS`] allows.
    TooManyMembers,
    /// A consensus message over [`MAX_CONSENSUS`].
    TooLarge,
    /// A bucket count that is no power of two (the configuration refuses
    /// those; the wire carries its log2).
    Buckets,
}

fn mac(key: &Key, data: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.secret).expect("HMAC takes any key length");
    m.update(data);
    m
}

fn header(b: &mut Vec<u8>, kind: u8, key: &Key, from: &Sender) {
    b.extend_from_slice(&MAGIC);
    b.push(VERSION);
    b.push(kind);
    b.push(key.id);
    b.push(u8::from(from.role == Role::Coordinator) | (u8::from(from.draining) << 1));
    b.extend_from_slice(&from.segment.to_be_bytes());
    b.extend_from_slice(&from.member.to_be_bytes());
    b.extend_from_slice(&from.incarnation.to_be_bytes());
    b.extend_from_slice(&from.nonce.to_be_bytes());
}

fn seal(mut b: Vec<u8>, key: &Key) -> Vec<u8> {
    let full = mac(key, &b).finalize().into_bytes();
    b.extend_from_slice(&full[..TAG_LEN]);
    b
}

/// Encodes and authenticates a heartbeat with the sending key.
pub fn encode_heartbeat(hb: &Heartbeat, keys: &Keys) -> Result<Vec<u8>, EncodeError> {
    if hb.heard.len() > MAX_MEMBERS {
        return Err(EncodeError::TooManyMembers);
    }
    if !hb.agreed.buckets.is_power_of_two() {
        return Err(EncodeError::Buckets);
    }
    let key = keys.sending();
    let mut b = Vec::with_capacity(HEADER_LEN + HEARTBEAT_FIXED + hb.heard.len() * ACK_LEN + TAG_LEN);
    header(&mut b, KIND_HEARTBEAT, key, &hb.from);
    b.extend_from_slice(&hb.seq.to_be_bytes());
    b.extend_from_slice(&hb.weight_milli.to_be_bytes());
    b.extend_from_slice(&hb.connections.to_be_bytes());
    b.extend_from_slice(&hb.held.to_be_bytes());
    b.extend_from_slice(&hb.applied.to_be_bytes());
    b.extend_from_slice(&hb.log_last.to_be_bytes());
    let a = &hb.agreed;
    for v in [a.lease_ms, a.timeout_ms, a.interval_ms, a.drain_ms] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.push(a.buckets.trailing_zeros() as u8);
    b.push(a.layout);
    b.extend_from_slice(&a.rules.to_be_bytes());
    b.extend_from_slice(&hb.serving.to_be_bytes());
    b.extend_from_slice(&(hb.heard.len() as u16).to_be_bytes());
    for h in &hb.heard {
        b.extend_from_slice(&h.member.to_be_bytes());
        b.extend_from_slice(&h.incarnation.to_be_bytes());
        b.extend_from_slice(&h.seq.to_be_bytes());
        b.push(u8::from(h.lease));
    }
    Ok(seal(b, key))
}

/// Encodes and authenticates a serving list with the sending key.
pub fn encode_serving(sv: &Serving, keys: &Keys) -> Result<Vec<u8>, EncodeError> {
    if sv.ranges.len() > MAX_SERVING_RANGES
        || sv.bitmap.len() > MAX_SERVING_RANGES
        || !(sv.ranges.is_empty() || sv.bitmap.is_empty())
    {
        return Err(EncodeError::TooLarge);
    }
    let key = keys.sending();
    let mut b = Vec::with_capacity(HEADER_LEN + SERVING_FIXED + sv.ranges.len() * 8 + TAG_LEN);
    header(&mut b, KIND_SERVING, key, &sv.from);
    b.extend_from_slice(&sv.seq.to_be_bytes());
    b.extend_from_slice(&sv.applied.to_be_bytes());
    b.push(u8::from(sv.all) | (u8::from(!sv.bitmap.is_empty()) << 1));
    b.extend_from_slice(&((sv.ranges.len() + sv.bitmap.len()) as u32).to_be_bytes());
    for (first, count) in &sv.ranges {
        b.extend_from_slice(&first.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
    }
    for w in &sv.bitmap {
        b.extend_from_slice(&w.to_be_bytes());
    }
    Ok(seal(b, key))
}

/// Encodes and authenticates a consensus message with the sending key.
pub fn encode_consensus(from: &Sender, message: &[u8], keys: &Keys) -> Result<Vec<u8>, EncodeError> {
    if HEADER_LEN + message.len() + TAG_LEN > MAX_CONSENSUS {
        return Err(EncodeError::TooLarge);
    }
    let key = keys.sending();
    let mut b = Vec::with_capacity(HEADER_LEN + message.len() + TAG_LEN);
    header(&mut b, KIND_CONSENSUS, key, from);
    b.extend_from_slice(message);
    Ok(seal(b, key))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.b.get(self.at..self.at + N).ok_or(DecodeError::Malformed)?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
}

/// Verifies and decodes a datagram.
pub fn decode(datagram: &[u8], keys: &Keys) -> Result<Datagram, DecodeError> {
    if datagram.len() < HEADER_LEN + TAG_LEN || datagram.len() > MAX_CONSENSUS {
        return Err(DecodeError::BadLength);
    }
    if datagram[..4] != MAGIC || datagram[4] != VERSION {
        return Err(DecodeError::NotHeartbeat);
    }
    let key = keys.get(datagram[6]).ok_or(DecodeError::UnknownKey)?;
    let (body, t) = datagram.split_at(datagram.len() - TAG_LEN);
    // Constant-time comparison of the truncated tag.
    mac(key, body)
        .verify_truncated_left(t)
        .map_err(|_| DecodeError::BadTag)?;

    let mut r = Reader { b: body, at: 5 };
    let kind = r.u8()?;
    let _key_id = r.u8()?;
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::Malformed);
    }
    let from = Sender {
        segment: r.u16()?,
        member: r.u32()?,
        incarnation: r.u64()?,
        nonce: r.u32()?,
        role: if flags & 1 == 1 { Role::Coordinator } else { Role::Node },
        draining: flags & 2 != 0,
    };
    match kind {
        KIND_CONSENSUS => Ok(Datagram::Consensus {
            from,
            message: body[HEADER_LEN..].to_vec(),
        }),
        KIND_HEARTBEAT => decode_heartbeat(from, body, &mut r),
        KIND_SERVING => decode_serving(from, body, &mut r),
        _ => Err(DecodeError::Malformed),
    }
}

/// A heartbeat's body, from `r` (past the header) of the authenticated
/// `body`.
fn decode_heartbeat(from: Sender, body: &[u8], r: &mut Reader) -> Result<Datagram, DecodeError> {
    if body.len() > MAX_HEARTBEAT - TAG_LEN {
        return Err(DecodeError::BadLength);
    }
    let seq = r.u64()?;
    let weight_milli = r.u32()?;
    let connections = r.u32()?;
    let held = r.u32()?;
    let applied = r.u64()?;
    let log_last = r.u64()?;
    let agreed = Agreed {
        lease_ms: r.u32()?,
        timeout_ms: r.u32()?,
        interval_ms: r.u32()?,
        drain_ms: r.u32()?,
        buckets: match r.u8()? {
            log2 @ 0..=31 => 1 << log2,
            _ => return Err(DecodeError::Malformed),
        },
        layout: r.u8()?,
        rules: r.u32()?,
    };
    let serving = r.u32()?;
    let n = usize::from(r.u16()?);
    if n > MAX_MEMBERS || body.len() != HEADER_LEN + HEARTBEAT_FIXED + n * ACK_LEN {
        return Err(DecodeError::Malformed);
    }
    let mut heard = Vec::with_capacity(n);
    for _ in 0..n {
        let member = r.u32()?;
        let incarnation = r.u64()?;
        let seq = r.u64()?;
        let lease = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Malformed),
        };
        heard.push(Heard {
            member,
            incarnation,
            seq,
            lease,
        });
    }
    if applied > log_last || !heard.windows(2).all(|w| w[0].member < w[1].member) {
        return Err(DecodeError::Malformed);
    }
    Ok(Datagram::Heartbeat(Heartbeat {
        from,
        seq,
        weight_milli,
        connections,
        held,
        applied,
        log_last,
        agreed,
        serving,
        heard,
    }))
}

/// A serving list's body, from `r` (past the header) of the authenticated
/// `body`.
fn decode_serving(from: Sender, body: &[u8], r: &mut Reader) -> Result<Datagram, DecodeError> {
    let seq = r.u64()?;
    let applied = r.u64()?;
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::Malformed);
    }
    let (all, as_bitmap) = (flags & 1 != 0, flags & 2 != 0);
    let n = r.u32()? as usize;
    // An empty bitmap is written as no ranges: one encoding each.
    if n > MAX_SERVING_RANGES || (as_bitmap && n == 0) || body.len() != HEADER_LEN + SERVING_FIXED + n * 8 {
        return Err(DecodeError::Malformed);
    }
    let mut ranges = Vec::new();
    let mut bitmap = Vec::new();
    if as_bitmap {
        for _ in 0..n {
            bitmap.push(r.u64()?);
        }
    }
    let mut next = 0u64;
    for _ in 0..if as_bitmap { 0 } else { n } {
        let (first, count) = (r.u32()?, r.u32()?);
        // Ascending, apart, non-empty, within the number space.
        if u64::from(first) < next || count == 0 {
            return Err(DecodeError::Malformed);
        }
        next = u64::from(first) + u64::from(count) + 1;
        ranges.push((first, count));
    }
    Ok(Datagram::Serving(Serving {
        from,
        seq,
        applied,
        all,
        ranges,
        bitmap,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> Keys {
        Keys::single(secret)
    }

    pub(crate) fn sample() -> Heartbeat {
        Heartbeat {
            from: Sender {
                segment: 1,
                member: 2,
                incarnation: 17,
                nonce: 0xdead_beef,
                role: Role::Node,
                draining: true,
            },
            seq: 42,
            weight_milli: 1500,
            connections: 77,
            held: 21845,
            applied: 9,
            log_last: 11,
            agreed: Agreed {
                lease_ms: 400,
                timeout_ms: 400,
                interval_ms: 100,
                drain_ms: 60_000,
                buckets: 65_536,
                layout: 1,
                rules: 0x5eed_0001,
            },
            serving: 3,
            heard: vec![
                Heard {
                    member: 1,
                    incarnation: 5,
                    seq: 40,
                    lease: true,
                },
                Heard {
                    member: 3,
                    incarnation: 1_765_000_000_000,
                    seq: 7,
                    lease: false,
                },
            ],
        }
    }

    #[test]
    fn rules_must_agree_between_nodes_and_a_coordinator_agrees_with_any() {
        let node = Agreed {
            rules: rules_digest(b"vip 192.0.2.100 tcp 80-80 client"),
            ..sample().agreed
        };
        let other = Agreed {
            rules: rules_digest(b"vip 192.0.2.100 tcp 80-80 network"),
            ..node
        };
        assert_ne!(node.rules, other.rules);
        assert_eq!(node.differs(&other), Some(("rules", node.rules, other.rules)));
        assert_eq!(node.differs(&node), None);
        let coordinator = Agreed {
            drain_ms: 0,
            rules: 0,
            ..node
        };
        assert_eq!(node.differs(&coordinator), None);
        assert_eq!(coordinator.differs(&other), None);
        // The digest is 0 for nothing: an empty description is a node's
        // too (no port with another value than the 4-tuple).
        assert_ne!(rules_digest(b""), 0);
        // The bucket count travels as its log2: a count that is no power
        // of two is refused, not rounded.
        let mut hb = sample();
        hb.agreed.buckets = 3 << 10;
        assert_eq!(encode_heartbeat(&hb, &keys(b"k")), Err(EncodeError::Buckets));
        hb.agreed.buckets = 1 << 31;
        let Ok(Datagram::Heartbeat(back)) = decode(&encode_heartbeat(&hb, &keys(b"k")).unwrap(), &keys(b"k")) else {
            panic!("a heartbeat decodes");
        };
        assert_eq!(back.agreed, hb.agreed);
    }

    #[test]
    fn round_trips() {
        let hb = sample();
        let bytes = encode_heartbeat(&hb, &keys(b"secret")).unwrap();
        assert_eq!(decode(&bytes, &keys(b"secret")), Ok(Datagram::Heartbeat(hb.clone())));
        let c = encode_consensus(&hb.from, b"raft bytes", &keys(b"secret")).unwrap();
        assert_eq!(
            decode(&c, &keys(b"secret")),
            Ok(Datagram::Consensus {
                from: hb.from,
                message: b"raft bytes".to_vec()
            })
        );
    }

    #[test]
    fn serving_lists_round_trip_and_insane_ones_are_malformed() {
        let k = keys(b"k");
        let sv = Serving {
            from: sample().from,
            seq: 42,
            applied: 9,
            all: false,
            ranges: vec![(3, 1), (10, 5), (65_530, 6)],
            bitmap: Vec::new(),
        };
        let bytes = encode_serving(&sv, &k).unwrap();
        assert_eq!(decode(&bytes, &k), Ok(Datagram::Serving(sv.clone())));
        // A busy member's scattered buckets: the bitmap (65,536 buckets).
        let map = Serving {
            ranges: Vec::new(),
            bitmap: (0..1024u64).map(|w| w.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect(),
            ..sv.clone()
        };
        let bytes = encode_serving(&map, &k).unwrap();
        assert!(bytes.len() <= MAX_CONSENSUS);
        assert_eq!(decode(&bytes, &k), Ok(Datagram::Serving(map)));
        for bad in [vec![(10, 5), (3, 1)], vec![(3, 0)], vec![(3, 2), (5, 1)]] {
            let sv = Serving {
                ranges: bad,
                ..sv.clone()
            };
            assert_eq!(
                decode(&encode_serving(&sv, &k).unwrap(), &k),
                Err(DecodeError::Malformed)
            );
        }
        let many = Serving {
            ranges: (0..MAX_SERVING_RANGES as u32 + 1).map(|i| (i * 2, 1)).collect(),
            ..sv
        };
        assert_eq!(encode_serving(&many, &k), Err(EncodeError::TooLarge));
    }

    #[test]
    fn wrong_key_unknown_key_id_and_any_flipped_bit_are_rejected() {
        let bytes = encode_heartbeat(&sample(), &keys(b"secret")).unwrap();
        assert_eq!(decode(&bytes, &keys(b"other")), Err(DecodeError::BadTag));
        let other_id = Keys::new(vec![Key {
            id: 7,
            secret: b"secret".to_vec(),
        }])
        .unwrap();
        assert_eq!(decode(&bytes, &other_id), Err(DecodeError::UnknownKey));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b, &keys(b"secret")).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn a_rolling_rotation_never_splits_senders_from_receivers() {
        let old = Key {
            id: 1,
            secret: b"old secret".to_vec(),
        };
        let new = Key {
            id: 2,
            secret: b"new secret".to_vec(),
        };
        let stages = [
            Keys::new(vec![old.clone()]).unwrap(),
            Keys::new(vec![old.clone(), new.clone()]).unwrap(),
            Keys::new(vec![new.clone(), old.clone()]).unwrap(),
            Keys::new(vec![new.clone()]).unwrap(),
        ];
        // During a rolling rotation, neighbouring stages coexist.
        for w in stages.windows(2) {
            for (a, b) in [(&w[0], &w[1]), (&w[1], &w[0])] {
                let bytes = encode_heartbeat(&sample(), a).unwrap();
                assert!(decode(&bytes, b).is_ok(), "{:?} -> {:?}", a.ids(), b.ids());
            }
        }
        assert!(Keys::new(vec![old.clone(), old]).is_none(), "duplicate key ids");
        assert!(Keys::new(vec![]).is_none());
    }

    #[test]
    fn heartbeats_fit_one_mtu_and_more_members_are_refused_not_truncated() {
        let mut hb = sample();
        hb.heard = (0..MAX_MEMBERS as u32)
            .map(|m| Heard {
                member: m,
                incarnation: u64::MAX,
                seq: u64::MAX,
                lease: true,
            })
            .collect();
        let bytes = encode_heartbeat(&hb, &keys(b"k")).unwrap();
        assert!(bytes.len() <= MAX_HEARTBEAT, "{} bytes", bytes.len());
        assert!(decode(&bytes, &keys(b"k")).is_ok());
        hb.heard.push(Heard {
            member: 1000,
            incarnation: 1,
            seq: 1,
            lease: true,
        });
        assert_eq!(encode_heartbeat(&hb, &keys(b"k")), Err(EncodeError::TooManyMembers));
    }

    #[test]
    fn truncation_and_garbage_never_panic() {
        let bytes = encode_heartbeat(&sample(), &keys(b"k")).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &keys(b"k")).is_err());
        }
        let mut seed = 99u64;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            assert!(decode(&junk, &keys(b"k")).is_err());
        }
    }

    #[test]
    fn authentic_but_inconsistent_is_malformed() {
        let mut hb = sample();
        hb.heard.reverse();
        let k = keys(b"k");
        assert_eq!(
            decode(&encode_heartbeat(&hb, &k).unwrap(), &k),
            Err(DecodeError::Malformed)
        );
        let mut hb = sample();
        hb.applied = hb.log_last + 1;
        assert_eq!(
            decode(&encode_heartbeat(&hb, &k).unwrap(), &k),
            Err(DecodeError::Malformed)
        );
    }
}

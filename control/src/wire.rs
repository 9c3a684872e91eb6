//! The heartbeat on the wire: a fixed header, the sender's current epoch
//! (the inputs of its bucket table), and an HMAC-SHA256 tag (truncated to
//! 16 bytes) over everything before it, keyed with the cluster's shared key.
//!
//! Decoding checks the length, magic, version and tag before reading any
//! field, and every count against the bytes present: garbage, truncation
//! and forgery are errors, never panics. Replay and staleness are the
//! protocol's to judge (sequence numbers per incarnation).

use crate::layout::{Layout, MemberId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// "SSHB"
const MAGIC: [u8; 4] = *b"SSHB";
const VERSION: u8 = 1;
/// Bytes of the truncated HMAC-SHA256 tag.
pub const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 4 + 4 + 4 + 8 + 4 + 1 + 4 + 2;
/// The most members an epoch may list.
pub const MAX_MEMBERS: usize = 4096;

/// What a sender is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A node: holds buckets, serves connections.
    Node,
    /// A coordinator: computes tables, holds nothing.
    Coordinator,
}

/// The inputs of a bucket table, identified by (number, creator).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Epoch {
    /// Increases with every new table.
    pub number: u64,
    /// The member that created it (the leader at the time).
    pub creator: MemberId,
    /// Layout of the table.
    pub layout: Layout,
    /// Buckets of the table.
    pub buckets: u32,
    /// Members and weights (thousandths), sorted by id.
    pub members: Vec<(MemberId, u32)>,
}

impl Epoch {
    /// The identity epochs are ordered by.
    pub fn id(&self) -> (u64, u32) {
        (self.number, self.creator.0)
    }
}

/// One heartbeat.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Heartbeat {
    /// The segment it belongs to.
    pub segment: u16,
    /// The sender.
    pub member: MemberId,
    /// The sender's incarnation: grows with every restart.
    pub incarnation: u64,
    /// Grows with every heartbeat of one incarnation.
    pub seq: u64,
    /// Node or coordinator.
    pub role: Role,
    /// The sender is draining (takes no new connections).
    pub draining: bool,
    /// The sender's availability times its configured weight, thousandths.
    pub weight_milli: u32,
    /// Connections the sender holds.
    pub connections: u32,
    /// Buckets the sender holds now.
    pub held: u32,
    /// The epoch the sender is at.
    pub epoch: Epoch,
}

/// Why a datagram was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Too short or too long for a heartbeat.
    BadLength,
    /// Not a heartbeat (magic) or another version.
    NotHeartbeat,
    /// The tag does not verify: wrong key, or tampered with.
    BadTag,
    /// Authentic but inconsistent (counts, enums).
    Malformed,
}

impl DecodeError {
    /// A snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::BadLength => "bad_length",
            DecodeError::NotHeartbeat => "not_heartbeat",
            DecodeError::BadTag => "bad_tag",
            DecodeError::Malformed => "malformed",
        }
    }
}

fn tag(key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Encodes and authenticates `hb`.
pub fn encode(hb: &Heartbeat, key: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + hb.epoch.members.len() * 8 + TAG_LEN);
    b.extend_from_slice(&MAGIC);
    b.push(VERSION);
    let flags = u8::from(hb.role == Role::Coordinator) | (u8::from(hb.draining) << 1);
    b.push(flags);
    b.extend_from_slice(&hb.segment.to_be_bytes());
    b.extend_from_slice(&hb.member.0.to_be_bytes());
    b.extend_from_slice(&hb.incarnation.to_be_bytes());
    b.extend_from_slice(&hb.seq.to_be_bytes());
    b.extend_from_slice(&hb.weight_milli.to_be_bytes());
    b.extend_from_slice(&hb.connections.to_be_bytes());
    b.extend_from_slice(&hb.held.to_be_bytes());
    b.extend_from_slice(&hb.epoch.number.to_be_bytes());
    b.extend_from_slice(&hb.epoch.creator.0.to_be_bytes());
    b.push(match hb.epoch.layout {
        Layout::Ranges => 0,
        Layout::Rendezvous => 1,
    });
    b.extend_from_slice(&hb.epoch.buckets.to_be_bytes());
    b.extend_from_slice(&(hb.epoch.members.len().min(MAX_MEMBERS) as u16).to_be_bytes());
    for (id, w) in hb.epoch.members.iter().take(MAX_MEMBERS) {
        b.extend_from_slice(&id.0.to_be_bytes());
        b.extend_from_slice(&w.to_be_bytes());
    }
    let t = tag(key, &b);
    b.extend_from_slice(&t);
    b
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
pub fn decode(datagram: &[u8], key: &[u8]) -> Result<Heartbeat, DecodeError> {
    if datagram.len() < HEADER_LEN + TAG_LEN || datagram.len() > HEADER_LEN + MAX_MEMBERS * 8 + TAG_LEN {
        return Err(DecodeError::BadLength);
    }
    if datagram[..4] != MAGIC || datagram[4] != VERSION {
        return Err(DecodeError::NotHeartbeat);
    }
    let (body, t) = datagram.split_at(datagram.len() - TAG_LEN);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    // Constant-time comparison of the truncated tag.
    mac.verify_truncated_left(t).map_err(|_| DecodeError::BadTag)?;

    let mut r = Reader { b: body, at: 5 };
    let flags = r.u8()?;
    if flags & !0b11 != 0 {
        return Err(DecodeError::Malformed);
    }
    let segment = r.u16()?;
    let member = MemberId(r.u32()?);
    let incarnation = r.u64()?;
    let seq = r.u64()?;
    let weight_milli = r.u32()?;
    let connections = r.u32()?;
    let held = r.u32()?;
    let number = r.u64()?;
    let creator = MemberId(r.u32()?);
    let layout = match r.u8()? {
        0 => Layout::Ranges,
        1 => Layout::Rendezvous,
        _ => return Err(DecodeError::Malformed),
    };
    let buckets = r.u32()?;
    let n = usize::from(r.u16()?);
    if body.len() != HEADER_LEN + n * 8 {
        return Err(DecodeError::Malformed);
    }
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push((MemberId(r.u32()?), r.u32()?));
    }
    if !members.windows(2).all(|w| w[0].0 < w[1].0) || !buckets.is_power_of_two() || held > buckets {
        return Err(DecodeError::Malformed);
    }
    Ok(Heartbeat {
        segment,
        member,
        incarnation,
        seq,
        role: if flags & 1 == 1 { Role::Coordinator } else { Role::Node },
        draining: flags & 2 != 0,
        weight_milli,
        connections,
        held,
        epoch: Epoch {
            number,
            creator,
            layout,
            buckets,
            members,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Heartbeat {
        Heartbeat {
            segment: 1,
            member: MemberId(2),
            incarnation: 1_700_000_000_000,
            seq: 42,
            role: Role::Node,
            draining: true,
            weight_milli: 1500,
            connections: 77,
            held: 21845,
            epoch: Epoch {
                number: 9,
                creator: MemberId(1),
                layout: Layout::Rendezvous,
                buckets: 65536,
                members: vec![(MemberId(1), 1000), (MemberId(2), 1500), (MemberId(3), 0)],
            },
        }
    }

    #[test]
    fn round_trips() {
        let hb = sample();
        let bytes = encode(&hb, b"secret");
        assert_eq!(decode(&bytes, b"secret"), Ok(hb));
    }

    #[test]
    fn wrong_key_and_any_flipped_bit_are_rejected() {
        let bytes = encode(&sample(), b"secret");
        assert_eq!(decode(&bytes, b"other"), Err(DecodeError::BadTag));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b, b"secret").is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncation_and_garbage_never_panic() {
        let bytes = encode(&sample(), b"k");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], b"k").is_err());
        }
        let mut seed = 99u64;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            assert!(decode(&junk, b"k").is_err());
        }
    }

    #[test]
    fn authentic_but_inconsistent_is_malformed() {
        let mut hb = sample();
        hb.epoch.members = vec![(MemberId(3), 1), (MemberId(1), 1)];
        assert_eq!(decode(&encode(&hb, b"k"), b"k"), Err(DecodeError::Malformed));
        let mut hb = sample();
        hb.epoch.buckets = 1000;
        assert_eq!(decode(&encode(&hb, b"k"), b"k"), Err(DecodeError::Malformed));
    }

    #[test]
    fn an_authentic_epoch_number_at_u64_max_does_not_wrap_the_leaders_epoch() {
        // Found by the heartbeat fuzz target (fuzz/): a peer's authentic
        // heartbeat at epoch u64::MAX made the leader create epoch
        // u64::MAX + 1: an overflow panic with overflow checks, epoch 0 (and
        // no more claims, ever) without them. New epochs now saturate.
        use crate::protocol::{Agent, Settings};
        let settings = Settings {
            segment: 0,
            buckets: 64,
            ..Settings::default()
        };
        let mut leader = Agent::new(MemberId(1), 1, settings, 1000, 0);
        let mut hb = sample();
        hb.segment = 0;
        hb.held = 0;
        hb.epoch.buckets = 64;
        hb.epoch.number = u64::MAX;
        hb.epoch.members = vec![(MemberId(2), 1000)];
        let _ = leader.receive(&encode(&hb, b"k"), b"k", 450);
        let _ = leader.tick(500);
        assert_ne!(leader.epoch().number, 0, "the epoch number wrapped");
    }

    #[test]
    fn an_epoch_number_at_u64_max_does_not_fork_the_table() {
        // Found reviewing the fix of the heartbeat fuzz finding above: with
        // new epoch numbers saturating, a peer's authentic heartbeat at epoch
        // (u64::MAX, creator 1) makes leader 1 create its own table under
        // that same identity. Every peer already holds the forged table as
        // epoch (u64::MAX, 1) and never adopts the leader's (it is not
        // higher): peers claim by one table, the leader by another, and a
        // bucket can be held twice. Not creating an epoch when the number
        // would overflow (`checked_add`) keeps one table per identity.
        use crate::protocol::{Agent, Settings};
        let settings = Settings {
            segment: 0,
            buckets: 64,
            ..Settings::default()
        };
        let mut leader = Agent::new(MemberId(1), 1, settings, 1000, 0);
        let mut hb = sample();
        hb.segment = 0;
        hb.held = 0;
        hb.epoch.buckets = 64;
        hb.epoch.number = u64::MAX;
        hb.epoch.creator = MemberId(1);
        hb.epoch.members = vec![(MemberId(2), 1000)];
        let forged = hb.epoch.clone();
        let _ = leader.receive(&encode(&hb, b"k"), b"k", 450);
        let _ = leader.tick(500);
        let epoch = leader.epoch();
        if epoch.id() == forged.id() {
            assert_eq!(epoch, &forged, "two tables under one epoch identity");
        }
    }
}

//! The heartbeat codec and the exchange on arbitrary datagrams.
//!
//! The input is a sequence of records (see `synshare_fuzz::records`); a
//! record's bytes are a datagram, or a body that gets a valid tag, so the
//! fuzzer reaches the fields behind the authentication too. Two agents
//! (members 1 and 3) receive the datagrams and each other's heartbeats.
//! Checked: decoding never panics; an accepted datagram is exactly what
//! encoding its heartbeat gives (encode ∘ decode is the identity) and the
//! other key rejects it; decode ∘ encode is the identity on every heartbeat
//! an agent sends; an agent's rights agree with what it says it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synshare_control::protocol::{Agent, Right};
use synshare_control::wire::{self, DecodeError};
use synshare_fuzz::{agents, records, sign, BUCKETS, KEY};

fn check_agent(a: &Agent, now: u64) {
    let rights = a.rights(now);
    assert_eq!(rights.len(), BUCKETS as usize);
    let held = rights.iter().filter(|r| **r != Right::None).count();
    assert_eq!(held, a.held_count() as usize);
    for (b, r) in rights.iter().enumerate() {
        assert_eq!(a.holds(b as u32), *r != Right::None);
    }
    let _ = a.next_deadline();
}

fn round_trip(hb: &wire::Heartbeat) -> Vec<u8> {
    let bytes = wire::encode(hb, KEY);
    assert_eq!(wire::decode(&bytes, KEY).as_ref(), Ok(hb), "decode(encode(hb)) == hb");
    bytes
}

fuzz_target!(|data: &[u8]| {
    let (mut a, mut b) = agents();
    let mut now = 0u64;
    for r in records(data) {
        now += r.advance_ms;
        let datagram = if r.sign { sign(r.bytes, KEY) } else { r.bytes.to_vec() };
        if let Ok(hb) = wire::decode(&datagram, KEY) {
            assert_eq!(wire::encode(&hb, KEY), datagram, "encode(decode(d)) == d");
            round_trip(&hb);
            assert_eq!(wire::decode(&datagram, b"another key"), Err(DecodeError::BadTag));
        }
        let to = if r.to_second { &mut b } else { &mut a };
        let _ = to.receive(&datagram, KEY, now);
        // Each agent's heartbeat goes to the other.
        if let Some(hb) = a.tick(now) {
            let _ = b.receive(&round_trip(&hb), KEY, now);
        }
        if let Some(hb) = b.tick(now) {
            let _ = a.receive(&round_trip(&hb), KEY, now);
        }
        check_agent(&a, now);
        check_agent(&b, now);
    }
});

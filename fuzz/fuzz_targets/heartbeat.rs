//! The exchange's codec and state machine on arbitrary datagrams.
//!
//! The input is a sequence of records (see `synshare_fuzz::records`); a
//! record's bytes are a datagram, or a body that gets a valid tag, so the
//! fuzzer reaches the fields behind the authentication too (heartbeats and
//! consensus messages alike). Two agents (members 1 and 3) receive the
//! datagrams and everything each other sends. Checked: decoding never
//! panics, nor does the agent (the consensus library's own assertions
//! included); an accepted datagram is exactly what encoding it gives, and
//! another key rejects it; an agent's rights agree with what it says it
//! holds; the two agents never both hold a bucket while both hold a lease.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synshare_control::protocol::{Agent, BucketState};
use synshare_control::wire::{self, Datagram, DecodeError, Keys};
use synshare_fuzz::{agents, records, sign, BUCKETS, KEY};

fn check_agent(a: &Agent, now: u64) {
    let rights = a.rights(now);
    assert_eq!(rights.len(), BUCKETS as usize);
    let held = rights.iter().filter(|r| **r != BucketState::Foreign).count();
    assert_eq!(held, a.held_count() as usize);
    for (b, r) in rights.iter().enumerate() {
        assert_eq!(a.holds(b as u32), *r != BucketState::Foreign);
    }
    let _ = a.next_deadline();
}

fn reencode(d: &Datagram, keys: &Keys) -> Vec<u8> {
    match d {
        Datagram::Heartbeat(hb) => wire::encode_heartbeat(hb, keys).expect("a decoded heartbeat encodes"),
        Datagram::Consensus { from, message } => {
            wire::encode_consensus(from, message, keys).expect("a decoded message encodes")
        }
        Datagram::Serving(sv) => wire::encode_serving(sv, keys).expect("a decoded serving list encodes"),
    }
}

fn deliver(from: &mut Agent, to: &mut Agent, now: u64) {
    let out = from.tick(now);
    let _ = from.take_persist();
    from.confirm_view(from.view_version());
    for o in out {
        let _ = to.receive(&o.bytes, now);
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = Keys::single(KEY);
    let (mut a, mut b) = agents();
    let mut now = 0u64;
    for r in records(data) {
        now += r.advance_ms;
        let datagram = if r.sign { sign(r.bytes, KEY) } else { r.bytes.to_vec() };
        if let Ok(d) = wire::decode(&datagram, &keys) {
            assert_eq!(reencode(&d, &keys), datagram, "encode(decode(d)) == d");
            assert_eq!(
                wire::decode(&datagram, &Keys::single(b"another key")),
                Err(DecodeError::BadTag)
            );
        }
        let to = if r.to_second { &mut b } else { &mut a };
        let _ = to.receive(&datagram, now);
        deliver(&mut a, &mut b, now);
        deliver(&mut b, &mut a, now);
        check_agent(&a, now);
        check_agent(&b, now);
        if a.lease_until(now).is_some() && b.lease_until(now).is_some() {
            assert!(
                (0..BUCKETS).all(|k| !(a.holds(k) && b.holds(k))),
                "a bucket open on both"
            );
        }
    }
});

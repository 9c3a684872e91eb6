//! A node's packet decisions on arbitrary frames: `Classifier::look` then
//! `Classifier::decide`, as a worker runs them (twice, so a first packet's
//! flow-table change meets the second), against
//! `Classifier::from_wire_full` (the full parser only) on a second table,
//! and `Classifier::from_kernel`, with a view holding buckets in every state
//! and a flow table under pressure. Each decision is checked, not only
//! survived (see `check_from_wire`, `check_from_kernel`), and the fast path
//! must agree with the full one in outcome, bytes and table (a frame the
//! look drops as a closed bucket's before validating it: a drop on both,
//! the same counter when the full parser finds it well-formed).
//!
//! Input: one control byte, then the frame. Control bits 0-1: the NIC's RSS
//! hash (none, or a value derived from the byte); bit 2: the clock just
//! before it wraps; bits 3-7: milliseconds between the two wire passes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use synshare_dataplane::classify::{Action, Classifier, Context, PacketBuf};
use synshare_dataplane::counters::Counter;
use synshare_dataplane::ownership::OwnershipView;
use synshare_dataplane::synth::TestBuf;
use synshare_fuzz::{check_from_kernel, check_from_wire, classifier, flows, view};

fn node() -> &'static (Classifier, OwnershipView) {
    static NODE: OnceLock<(Classifier, OwnershipView)> = OnceLock::new();
    NODE.get_or_init(|| (classifier(), view()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctrl, frame)) = data.split_first() else {
        return;
    };
    let (c, view) = node();
    let rss = match ctrl & 3 {
        0 | 1 => None,
        _ => Some(u32::from(ctrl).wrapping_mul(0x0101_0101)),
    };
    let start = if ctrl & 4 != 0 { u32::MAX - 20 } else { 1000 };
    let mut table = flows(start);
    let mut reference = flows(start);
    for pass in 0..2u32 {
        let now = start.wrapping_add(pass * u32::from(ctrl >> 3) * 7);
        let mut buf = TestBuf::new(frame);
        let before = buf.bytes().to_vec();
        table.follow(view);
        let look = c.look(&before, rss, &table);
        let mut cx = Context {
            view,
            flows: &mut table,
            now_ms: now,
            rss,
        };
        let outcome = c.decide(&mut buf, look, &mut cx);
        check_from_wire(&before, buf.bytes(), outcome, look.is_closed_unvalidated());
        let mut full = TestBuf::new(frame);
        let mut cx = Context {
            view,
            flows: &mut reference,
            now_ms: now,
            rss,
        };
        let reference_outcome = c.from_wire_full(&mut full, &mut cx);
        if look.is_closed_unvalidated() {
            // Dropped as a closed bucket's before validation: the full
            // parser may name what is wrong with the frame, but drops it
            // too, and a well-formed one it counts the same.
            assert!(
                matches!(
                    outcome,
                    Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
                ),
                "closed bucket counted as {outcome:?}"
            );
            assert_eq!(reference_outcome.action(), Action::Drop, "the full path passes a closed bucket's frame");
            if matches!(
                reference_outcome,
                Counter::DropNotOwner | Counter::DropSynNotOwner | Counter::DropTcpBadFlags
            ) {
                assert_eq!(reference_outcome, outcome, "fast and full paths differ");
            }
        } else {
            assert_eq!(reference_outcome, outcome, "fast and full paths differ");
        }
        assert_eq!(full.bytes(), buf.bytes(), "fast and full paths rewrite differently");
        assert_eq!(reference.len(), table.len());
        assert_eq!(reference.stats(), table.stats());
    }
    let live = table.len();
    let census: usize = table.census(start).iter().sum();
    assert!(census <= live, "census {census} > live {live}");
    table.sweep(start.wrapping_add(400_000), 64);
    assert_eq!(table.len(), 0, "every entry expires");

    let mut buf = TestBuf::new(frame);
    let before = buf.bytes().to_vec();
    let mut table = flows(start);
    let outcome = c.from_kernel(&mut buf, &mut table, start);
    check_from_kernel(&before, buf.bytes(), outcome);
});

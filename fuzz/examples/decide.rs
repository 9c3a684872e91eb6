//! Prints what the fuzzed node decides for frames in files: one line per
//! file, `NAME from_wire-outcome from_kernel-outcome`, each counter's name.
//! For triaging fuzz findings and checking crafted frames offline:
//! `cargo run --example decide -- FILE...` (no control byte: the frame only).

use synshare_dataplane::classify::{Context, PacketBuf};
use synshare_dataplane::synth::TestBuf;
use synshare_fuzz::{check_from_kernel, check_from_wire, classifier, flows, view};

fn main() -> std::io::Result<()> {
    let c = classifier();
    let view = view();
    for path in std::env::args().skip(1) {
        let frame = std::fs::read(&path)?;
        let mut table = flows(1000);
        let mut buf = TestBuf::new(&frame);
        let before = buf.bytes().to_vec();
        let mut cx = Context {
            view: &view,
            flows: &mut table,
            now_ms: 1000,
            rss: None,
        };
        cx.flows.follow(cx.view);
        let look = c.look(&before, None, cx.flows);
        let wire = c.decide(&mut buf, look, &mut cx);
        check_from_wire(&before, buf.bytes(), wire, look.is_closed_unvalidated());
        let mut buf = TestBuf::new(&frame);
        let mut table = flows(1000);
        let kernel = c.from_kernel(&mut buf, &mut table, 1000);
        check_from_kernel(&before, buf.bytes(), kernel);
        let name = std::path::Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        println!("{:36} {:28} {}", name.unwrap_or_default(), wire.name(), kernel.name());
    }
    Ok(())
}

//! `packet::parse` on arbitrary bytes: never panics, and what it returns
//! keeps its promise that every offset it hands out lies inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synshare_dataplane::packet::{self, Payload, L4};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = packet::parse(data) else {
        return;
    };
    let l3 = usize::from(f.l3_offset);
    assert_eq!(l3, 14 + 4 * usize::from(f.vlans));
    assert!(l3 <= data.len());
    match f.payload {
        Payload::Arp(_) => assert!(l3 + packet::arp::LEN <= data.len()),
        Payload::Ipv4(ip) | Payload::Ipv6(ip) => {
            let (l4, end) = (usize::from(ip.l4_offset), usize::from(ip.end));
            assert!(
                l3 + 20 <= l4 && l4 <= end && end <= data.len(),
                "{l3} {l4} {end} {}",
                data.len()
            );
            if matches!(f.payload, Payload::Ipv4(_)) {
                assert_eq!(packet::checksum(&data[l3..l4]), 0, "the IPv4 header checksum verified");
            } else {
                assert!(l3 + 40 <= l4);
            }
            let need = match ip.l4 {
                L4::Tcp { .. } => usize::from(data[l4 + 12] >> 4) * 4,
                L4::Udp { .. } => 8,
                L4::Icmp { .. } => 4,
                L4::Fragment => {
                    assert!(ip.fragment);
                    0
                }
                L4::Other(_) => 0,
            };
            assert!(l4 + need <= end);
        }
        Payload::Other(_) => {}
    }
    // Ethernet padding after the packet does not change what it is.
    let mut padded = data.to_vec();
    padded.extend_from_slice(&[0u8; 8]);
    assert_eq!(packet::parse(&padded), Ok(f));
});

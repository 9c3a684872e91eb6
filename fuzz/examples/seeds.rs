//! Writes the fuzz targets' seed corpora from synthetic frames and encoded
//! heartbeats: `cargo run --example seeds -- DIR` fills DIR/classify,
//! DIR/packet_parse and DIR/heartbeat.

use std::path::Path;
use synshare_control::wire::{self, Heard, Heartbeat, Keys, Role, Sender, TAG_LEN};
use synshare_dataplane::packet::tcp_flags::{ACK, FIN, RST, SYN};
use synshare_dataplane::synth::*;
use synshare_fuzz::{record, KEY};

fn frames() -> Vec<Vec<u8>> {
    let mut f = vec![
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, 80, SYN),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, 80, ACK),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40001, V4_VIP, 80, ACK | FIN),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40002, V4_VIP, 80, RST),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 41234, V4_VIP, 80, SYN | FIN),
        tcp4_payload_to(
            CLUSTER_MAC,
            CLIENT_V4,
            40000,
            V4_VIP,
            80,
            ACK,
            b"GET / HTTP/1.1\r\n\r\n",
        ),
        tcp4_to(NODE_MAC, CLIENT_V4, 40000, [192, 0, 2, 21], 22, SYN),
        tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, SYN),
        tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, 80, ACK),
        tcp6_payload_to(CLUSTER_MAC, V6_CLIENT, 40001, V6_VIP, 80, ACK, b"data"),
        udp4_to(CLUSTER_MAC, CLIENT_V4, 5353, V4_VIP, 53),
        udp4(CLIENT_V4, 5353, V4_VIP, 53, b"query"),
        // The example node's port rules: client and network affinity, a
        // single host, a disabled port (TCP and UDP).
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, PORT_CLIENT, SYN),
        tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, PORT_CLIENT, ACK),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, PORT_NETWORK, ACK),
        tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, PORT_SINGLE, SYN),
        tcp6_to(CLUSTER_MAC, V6_CLIENT, 40000, V6_VIP, PORT_DISABLED, SYN),
        udp4_to(CLUSTER_MAC, CLIENT_V4, 5353, V4_VIP, UDP_PORT_CLIENT),
        udp4_to(CLUSTER_MAC, CLIENT_V4, 5353, V4_VIP, PORT_DISABLED),
        icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, PORT_CLIENT, CLIENT_V4, 40000),
        icmp4_echo_to(CLUSTER_MAC, CLIENT_V4, V4_VIP),
        icmp4_frag_needed_to(CLUSTER_MAC, [192, 0, 2, 1], V4_VIP, 80, CLIENT_V4, 40000),
        arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP),
        arp_request(CLIENT_MAC, V4_VIP, [192, 0, 2, 1]),
        arp_request(CLIENT_MAC, CLIENT_V4, [192, 0, 2, 21]),
        arp_request(KERNEL_MAC, [192, 0, 2, 21], CLIENT_V4),
        neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, true),
        neighbour_solicit(CLIENT_MAC, V6_CLIENT, V6_VIP, false),
        neighbour_solicit(CLIENT_MAC, [0; 16], V6_VIP, false),
        neighbour_solicit(KERNEL_MAC, V6_VIP, V6_CLIENT, true),
        tcp6_with_ext(&[(0, 8)], SYN),
        tcp6_with_ext(&[(0, 8), (60, 16), (43, 8)], SYN),
        tcp6_with_ext(&[(60, 8); 9], SYN),
        ipv6_fragment(0),
        ipv6_fragment(1),
        add_vlan(&tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, 80, SYN), 7),
        add_vlan(&add_vlan(&arp_request(CLIENT_MAC, CLIENT_V4, V4_VIP), 7), 8),
    ];
    let mut frag = tcp4_to(CLUSTER_MAC, CLIENT_V4, 40000, V4_VIP, 80, SYN);
    set_ipv4_more_fragments(&mut frag);
    f.push(frag);
    // The kernel's SYN-ACKs from a VIP (sent only under the lease; else
    // rewritten into the client's RST to the kernel).
    for mut syn_ack in [
        tcp4_to(CLIENT_MAC, V4_VIP, 80, CLIENT_V4, 40000, SYN | ACK),
        tcp6_to(CLIENT_MAC, V6_VIP, 80, V6_CLIENT, 40000, SYN | ACK),
    ] {
        syn_ack[6..12].copy_from_slice(&KERNEL_MAC.0);
        f.push(syn_ack);
    }
    // A neighbour advertisement from the kernel (never sent for a VIP).
    let mut na = neighbour_solicit(
        KERNEL_MAC,
        [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21],
        V6_CLIENT,
        true,
    );
    na[14 + 40] = 136;
    f.push(na);
    f
}

fn heartbeat(member: u32, seq: u64, applied: u64, heard: &[(u32, u64)]) -> Heartbeat {
    Heartbeat {
        from: Sender {
            segment: 0,
            member,
            incarnation: 1,
            nonce: 0,
            role: if member == 0 { Role::Coordinator } else { Role::Node },
            draining: false,
        },
        seq,
        weight_milli: 1000,
        connections: 3,
        held: 0,
        applied,
        log_last: applied,
        agreed: synshare_fuzz::settings(Role::Node).agreed(),
        serving: 0,
        heard: heard
            .iter()
            .map(|&(m, s)| Heard {
                member: m,
                incarnation: 1,
                seq: s,
                lease: true,
            })
            .collect(),
    }
}

fn heartbeat_seeds() -> Vec<Vec<u8>> {
    let keys = Keys::single(KEY);
    let encode = |hb: &Heartbeat| wire::encode_heartbeat(hb, &keys).expect("fits");
    let body = |hb: &Heartbeat| {
        let d = encode(hb);
        d[..d.len() - TAG_LEN].to_vec()
    };
    let mut seeds = Vec::new();
    // A second member hears both agents, sends again, is replayed.
    let mut s = Vec::new();
    let hb1 = heartbeat(2, 1, 0, &[(1, 1), (3, 1)]);
    record(&mut s, true, false, 100, &body(&hb1));
    record(&mut s, true, true, 0, &body(&hb1));
    record(&mut s, true, false, 500, &body(&heartbeat(2, 2, 3, &[(1, 4), (3, 4)])));
    record(&mut s, false, false, 100, &encode(&heartbeat(2, 2, 3, &[(1, 4)])));
    record(
        &mut s,
        false,
        true,
        1500,
        &wire::encode_heartbeat(&hb1, &Keys::single(b"wrong key")).expect("fits"),
    );
    seeds.push(s);
    // A coordinator; then silence.
    let mut s = Vec::new();
    let hb = heartbeat(0, 1, 0, &[(1, 1), (3, 1)]);
    record(&mut s, true, false, 450, &body(&hb));
    record(&mut s, true, true, 0, &body(&hb));
    record(&mut s, false, false, 1575, b"");
    seeds.push(s);
    // Garbage, and a consensus message body of garbage.
    let mut s = Vec::new();
    record(&mut s, false, false, 25, b"SSX2\x02 not really");
    let from = Sender {
        segment: 0,
        member: 2,
        incarnation: 1,
        nonce: 0,
        role: Role::Node,
        draining: false,
    };
    let c = wire::encode_consensus(&from, b"\x08\x03\x10\x02\x18\x03", &keys).expect("fits");
    record(&mut s, true, true, 25, &c[..c.len() - TAG_LEN]);
    seeds.push(s);
    seeds
}

fn write(dir: &Path, name: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), s)?;
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
    Ok(())
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let dir = Path::new(&dir);
    let frames = frames();
    write(dir, "packet_parse", &frames)?;
    // The classifier's control byte: no RSS, normal clock, 7 ms apart; and
    // a few with RSS values and the clock about to wrap.
    let mut classify: Vec<Vec<u8>> = frames.iter().map(|f| [&[0x08u8][..], f].concat()).collect();
    classify.extend(frames.iter().take(8).map(|f| [&[0x0eu8][..], f].concat()));
    write(dir, "classify", &classify)?;
    write(dir, "heartbeat", &heartbeat_seeds())
}

//! The connections the host kernel holds for the VIPs, read with sock_diag
//! netlink: a restarted node seeds its flow tables from them, so the
//! connections it served before the restart go on instead of being dropped
//! as unknown for `drain_ms` (the kernel kept them all along).

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use std::net::IpAddr;

/// One connection to a VIP, from the client's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFlow {
    /// The client.
    pub client: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The VIP.
    pub vip: IpAddr,
    /// The VIP's port.
    pub vip_port: u16,
}

/// Every TCP connection of this network namespace whose local end (address,
/// port) is `served` and that has a peer (established or closing).
pub fn connections_to(served: impl Fn(IpAddr, u16) -> bool) -> Result<Vec<KernelFlow>, String> {
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for (local, remote) in dump(family)? {
            // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
            let (local, remote) = ((local.0.to_canonical(), local.1), (remote.0.to_canonical(), remote.1));
            if served(local.0, local.1) {
                out.push(KernelFlow {
                    client: remote.0,
                    client_port: remote.1,
                    vip: local.0,
                    vip_port: local.1,
                });
            }
        }
    }
    Ok(out)
}

type End = (IpAddr, u16);

fn dump(family: u8) -> Result<Vec<(End, End)>, String> {
    let err = |e: std::io::Error| format!("sock_diag: {e}");
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(err)?;
    socket.bind_auto().map_err(err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let states = StateFlags::ESTABLISHED
        | StateFlags::SYN_RECV
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf, 0).map_err(err)?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let size = socket.recv(&mut &mut rx[..], 0).map_err(err)?;
        let mut offset = 0;
        while offset < size {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..size])
                .map_err(|e| format!("sock_diag: {e}"))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    out.push((
                        (id.source_address, id.source_port),
                        (id.destination_address, id.destination_port),
                    ));
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => return Err(format!("sock_diag: {e:?}")),
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn finds_the_connections_to_a_listening_address_and_only_those() {
        // Loopback in the test's own namespace: a listener, one connection.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut s, peer) = l.accept().expect("accept");
        c.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("read");
        let local: IpAddr = "127.0.0.1".parse().expect("ip");
        let found = connections_to(|a, p| a == local && p == port).expect("sock_diag works here");
        assert!(
            found.contains(&KernelFlow {
                client: peer.ip(),
                client_port: peer.port(),
                vip: local,
                vip_port: port
            }),
            "{found:?}"
        );
        // The client's end (local port = the ephemeral one) is not served.
        assert!(found.iter().all(|f| f.vip_port == port));
        let none = connections_to(|a, p| a == local && p == port.wrapping_add(1)).expect("sock_diag");
        assert!(none.iter().all(|f| f.vip_port != port));
    }
}

//! The switch side in multicast mode: the cluster MAC is the MAC of a
//! multicast group, and the node tells the switch it belongs to that group,
//! so a snooping switch sends the VIP's traffic to member ports only (the
//! patent's choice; Windows NLB's "IGMP multicast" mode).
//!
//! The group is derived from the first IPv4 VIP as NLB does: 239.255.c.d
//! for a VIP a.b.c.d (its MAC 01:00:5e:7f:c:d is the cluster MAC), and
//! ff05::efff:cd for IPv6. The node joins it on its TAP: the host kernel
//! then sends the IGMP and MLD reports (IGMPv3 and MLDv2, or v2 and v1 when
//! the querier speaks those), answers general and group queries with the
//! random delays RFC 3376 and RFC 3810 ask, and sends the leave (IGMPv2
//! leave, IGMPv3/MLDv2 state change) when the node leaves; all of it goes out
//! through the dataplane, from the node's own MAC. The node stays joined
//! only while it holds buckets or serves flows of the segment.

use crate::config::VipConfig;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use synshare_dataplane::packet::Mac;

/// The cluster groups of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Groups {
    /// The IPv4 group; its MAC is the cluster MAC.
    pub v4: Ipv4Addr,
    /// The IPv6 counterpart.
    pub v6: Ipv6Addr,
}

/// The MAC of an IPv4 multicast group (RFC 1112: 01:00:5e and the group's
/// low 23 bits).
pub fn mac_of(group: Ipv4Addr) -> Mac {
    let o = group.octets();
    Mac([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
}

/// The segment's groups when its cluster MAC is an IPv4 multicast MAC
/// (multicast mode); `None` for a unicast cluster MAC (unicast flooding).
pub fn groups(cluster_mac: Mac, vips: &[VipConfig]) -> Result<Option<Groups>, String> {
    if cluster_mac.0[..3] != [0x01, 0x00, 0x5e] {
        return Ok(None);
    }
    let Some(v4) = vips.iter().find_map(|v| match v.addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }) else {
        return Err("a multicast cluster MAC needs an IPv4 VIP to derive the cluster group from".into());
    };
    let [_, _, c, d] = v4.octets();
    let group = Ipv4Addr::new(239, 255, c, d);
    let want = mac_of(group);
    if cluster_mac != want {
        return Err(format!(
            "{cluster_mac}: in multicast mode the cluster MAC is {want}, the MAC of the cluster group {group} (from VIP {v4})"
        ));
    }
    Ok(Some(Groups {
        v4: group,
        v6: Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0xefff, u16::from_be_bytes([c, d])),
    }))
}

/// The index of interface `name` in this process's network namespace, from
/// /proc/net/if_inet6 (sysfs may be another namespace's when the process
/// entered only the network namespace), for an interface with IPv6.
fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string("/proc/net/if_inet6")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[5] == name).then(|| u32::from_str_radix(f[1], 16).ok())?
        })
}

/// The node's membership of its segment's groups on its TAP.
pub struct Membership {
    groups: Groups,
    iface: String,
    address: Option<Ipv4Addr>,
    joined: Option<(UdpSocket, Option<UdpSocket>)>,
}

impl Membership {
    /// Membership on `iface`, whose IPv4 address (for the IPv4 join) is
    /// the first IPv4 one of `addresses` ("a.b.c.d/len").
    pub fn new(groups: Groups, iface: &str, addresses: &[String]) -> Membership {
        let address = addresses
            .iter()
            .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
            .next();
        Membership {
            groups,
            iface: iface.to_owned(),
            address,
            joined: None,
        }
    }

    /// Whether the node is in the groups now.
    pub fn joined(&self) -> bool {
        self.joined.is_some()
    }

    /// Joins (the kernel reports at once) or leaves (the kernel sends the
    /// leave when the sockets close).
    pub fn set(&mut self, member: bool) -> Result<(), String> {
        match (member, self.joined.is_some()) {
            (true, false) => {
                let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
                v4.join_multicast_v4(&self.groups.v4, &self.address.unwrap_or(Ipv4Addr::UNSPECIFIED))
                    .map_err(|e| format!("joining {} on {}: {e}", self.groups.v4, self.iface))?;
                // IPv6 may be off on the host: the IPv4 membership stands alone.
                let v6 = ifindex(&self.iface).and_then(|index| {
                    let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok()?;
                    s.join_multicast_v6(&self.groups.v6, index).ok()?;
                    Some(s)
                });
                self.joined = Some((v4, v6));
            }
            (false, true) => self.joined = None,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(a: &str) -> VipConfig {
        VipConfig {
            addr: a.parse().unwrap(),
            tcp_ports: vec![80],
            udp_ports: vec![],
            rules: vec![],
        }
    }

    #[test]
    fn the_group_and_its_mac_come_from_the_vip_as_nlb_derives_them() {
        let vips = [vip("2001:db8::100"), vip("192.0.2.100")];
        let mac = Mac([0x01, 0x00, 0x5e, 0x7f, 0x02, 0x64]);
        let g = groups(mac, &vips).unwrap().unwrap();
        assert_eq!(g.v4, Ipv4Addr::new(239, 255, 2, 100));
        assert_eq!(g.v6, "ff05::efff:264".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac_of(g.v4), mac);
        // A unicast cluster MAC: unicast flooding, no groups.
        assert_eq!(groups(Mac([0x02, 0x5e, 0, 0, 1, 0]), &vips), Ok(None));
        // A multicast MAC that is not the group's, or no IPv4 VIP: refused.
        assert!(groups(Mac([0x01, 0x00, 0x5e, 0x7f, 0x02, 0x65]), &vips).is_err());
        assert!(groups(mac, &[vip("2001:db8::100")]).is_err());
    }
}

//! `synshare nodes`: the cluster's members as one node (or the
//! coordinator) sees them, one line each.

use super::watch::Reply;
use crate::exchange::ExchangeStatus;
use crate::status::NodeStatus;
use serde::Serialize;
use std::collections::BTreeSet;

/// One member on one segment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Member {
    /// The segment.
    pub segment: u32,
    /// Member id.
    pub id: u32,
    /// `node` or `coordinator`.
    pub role: &'static str,
    /// The process asked.
    pub this: bool,
    /// `live`, `not-live`, `draining`, `static` (no exchange).
    pub state: &'static str,
    /// Weight in the table in force (or advertised, when not in it).
    pub weight: f64,
    /// Buckets the table in force gives it.
    pub buckets: u32,
    /// Its share of the buckets, percent.
    pub share_pct: f64,
    /// Milliseconds since it was last heard (none: this process, never
    /// heard, or static shares).
    pub heard_ms_ago: Option<u64>,
}

/// The members in a status reply.
pub fn members(reply: &Reply) -> Vec<Member> {
    match reply {
        Reply::Node(s) => std::iter::once(s.as_ref())
            .chain(s.segments.iter())
            .flat_map(node_segment)
            .collect(),
        Reply::Coordinator(x) => exchange_members(x, 0, None),
    }
}

fn node_segment(s: &NodeStatus) -> Vec<Member> {
    match &s.exchange {
        Some(x) => exchange_members(x, s.segment, Some(s.id)),
        None => s
            .members
            .iter()
            .map(|m| Member {
                segment: s.segment,
                id: m.id,
                role: "node",
                this: m.id == s.id,
                state: "static",
                weight: m.weight,
                buckets: m.buckets,
                share_pct: m.share_pct,
                heard_ms_ago: None,
            })
            .collect(),
    }
}

/// `me`: the node asked (None: the coordinator, member 0).
fn exchange_members(x: &ExchangeStatus, segment: u32, me: Option<u32>) -> Vec<Member> {
    let me_id = me.unwrap_or(0);
    let ids: BTreeSet<u32> = x
        .members
        .iter()
        .map(|m| m.id)
        .chain(x.peers.iter().map(|p| p.id))
        .chain(std::iter::once(me_id))
        .collect();
    ids.into_iter()
        .map(|id| {
            let in_table = x.members.iter().find(|m| m.id == id);
            let peer = x.peers.iter().find(|p| p.id == id);
            let this = id == me_id;
            let state = match (this, peer) {
                (true, _) if x.draining => "draining",
                (true, _) => "live",
                (false, Some(p)) if p.live && p.draining => "draining",
                (false, Some(p)) if p.live => "live",
                _ => "not-live",
            };
            Member {
                segment,
                id,
                role: if id == 0 || peer.is_some_and(|p| p.coordinator) {
                    "coordinator"
                } else {
                    "node"
                },
                this,
                state,
                weight: in_table
                    .map(|m| m.weight)
                    .or_else(|| peer.map(|p| p.weight))
                    .unwrap_or(if this { x.weight } else { 0.0 }),
                buckets: in_table.map_or(0, |m| m.buckets),
                share_pct: in_table.map_or(0.0, |m| m.share_pct),
                heard_ms_ago: if this { None } else { peer.and_then(|p| p.heard_ms_ago) },
            }
        })
        .collect()
}

/// The members as a table with a header line.
pub fn table(members: &[Member]) -> String {
    let mut out = format!(
        "{:<8} {:>4}  {:<19} {:<9} {:>9} {:>8} {:>7} {:>9}\n",
        "SEGMENT", "ID", "ROLE", "STATE", "WEIGHT", "BUCKETS", "SHARE", "HEARD"
    );
    for m in members {
        let role = if m.this {
            format!("{} (this)", m.role)
        } else {
            m.role.to_owned()
        };
        out += &format!(
            "{:<8} {:>4}  {:<19} {:<9} {:>9.3} {:>8} {:>6.1}% {:>9}\n",
            m.segment,
            m.id,
            role,
            m.state,
            m.weight,
            m.buckets,
            m.share_pct,
            m.heard_ms_ago.map_or("-".to_owned(), |ms| format!("{ms} ms"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{EpochMember, PeerStatus};
    use crate::status::MemberStatus;

    #[test]
    fn a_peer_node_lists_itself_its_peers_and_the_coordinator() {
        let x = ExchangeStatus {
            weight: 2.0,
            members: vec![
                EpochMember {
                    id: 1,
                    weight: 1.0,
                    buckets: 100,
                    share_pct: 25.0,
                    held: None,
                },
                EpochMember {
                    id: 2,
                    weight: 3.0,
                    buckets: 300,
                    share_pct: 75.0,
                    held: None,
                },
            ],
            peers: vec![
                PeerStatus {
                    id: 0,
                    coordinator: true,
                    live: true,
                    heard_ms_ago: Some(40),
                    ..PeerStatus::default()
                },
                PeerStatus {
                    id: 1,
                    live: true,
                    draining: true,
                    heard_ms_ago: Some(12),
                    ..PeerStatus::default()
                },
                PeerStatus {
                    id: 3,
                    weight: 1.5,
                    ..PeerStatus::default()
                },
            ],
            ..ExchangeStatus::default()
        };
        let s = NodeStatus {
            id: 2,
            exchange: Some(x),
            ..NodeStatus::default()
        };
        let rows = members(&Reply::Node(Box::new(s)));
        type Seen<'a> = (u32, &'a str, bool, &'a str, u32, Option<u64>);
        let summary: Vec<Seen<'_>> = rows
            .iter()
            .map(|m| (m.id, m.role, m.this, m.state, m.buckets, m.heard_ms_ago))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, "coordinator", false, "live", 0, Some(40)),
                (1, "node", false, "draining", 100, Some(12)),
                (2, "node", true, "live", 300, None),
                (3, "node", false, "not-live", 0, None),
            ]
        );
        assert_eq!(rows[3].weight, 1.5);
        let text = table(&rows);
        assert_eq!(text.lines().count(), 5);
        assert!(text.lines().nth(3).unwrap().contains("node (this)"), "{text}");
    }

    #[test]
    fn static_shares_list_the_configured_members() {
        let s = NodeStatus {
            id: 1,
            members: vec![
                MemberStatus {
                    id: 1,
                    weight: 1.0,
                    buckets: 10,
                    share_pct: 50.0,
                },
                MemberStatus {
                    id: 2,
                    weight: 1.0,
                    buckets: 10,
                    share_pct: 50.0,
                },
            ],
            ..NodeStatus::default()
        };
        let rows = members(&Reply::Node(Box::new(s)));
        assert_eq!(rows.len(), 2);
        assert!(rows[0].this && rows.iter().all(|m| m.state == "static"));
    }
}

//! The node's status: what the status socket, the metrics, the status page
//! and the summary at the end show.

use super::segment::Segment;
use super::{Node, Sharing};
use crate::exchange::ExchangeStatus;
use crate::status::{self, AvailabilityStatus, MemberStatus, NodeStatus};
use synshare_dataplane::ownership::BucketState;
use synshare_dpdk as dpdk;

/// A segment's shares, as its status shows them.
struct SharesStatus {
    epoch: u64,
    layout: String,
    buckets: u32,
    members: Vec<MemberStatus>,
    exchange: Option<ExchangeStatus>,
    availability: Option<AvailabilityStatus>,
    held: u32,
}

impl Node {
    /// The node's status: its first segment, with the others in `segments`.
    pub(super) fn snapshot(&self) -> NodeStatus {
        let mut first = self.segment_status(&self.segments[0]);
        first.segments = self.segments[1..].iter().map(|s| self.segment_status(s)).collect();
        first
    }

    /// The status of one segment (the first carries the others in `segments`).
    fn segment_status(&self, seg: &Segment) -> NodeStatus {
        let c = &self.config;
        let cluster_mac = c.all_segments()[seg.index].cluster_mac;
        let shares = self.shares_status(seg);
        NodeStatus {
            name: c.name.clone(),
            cluster: c.cluster.clone(),
            id: c.id,
            segment: seg.index as u32,
            dpdk: dpdk::version(),
            hugepages: self.huge,
            uptime_s: self.started.elapsed().as_secs_f64(),
            epoch: shares.epoch,
            layout: shares.layout,
            buckets: shares.buckets,
            members: shares.members,
            node_mac: seg.node_mac.to_string(),
            cluster_mac: cluster_mac.to_string(),
            wire: status::port(&seg.wire),
            exception: status::port(&seg.tap),
            workers: seg
                .stats
                .iter()
                .enumerate()
                .map(|(i, s)| status::worker(i, s))
                .collect(),
            held: shares.held,
            exchange: shares.exchange,
            availability: shares.availability,
            segments: Vec::new(),
        }
    }

    /// The shares of `seg`: the configuration's, or its exchange's.
    fn shares_status(&self, seg: &Segment) -> SharesStatus {
        let sharing_cfg = self.config.all_segments()[seg.index].sharing;
        let layout = format!("{:?}", sharing_cfg.layout).to_lowercase();
        match &seg.sharing {
            Sharing::Static { table, view } => SharesStatus {
                epoch: 1,
                layout,
                buckets: table.len() as u32,
                members: status::members(&sharing_cfg.members, table),
                exchange: None,
                availability: None,
                held: (view.count(BucketState::Claimed) + view.count(BucketState::Settled)) as u32,
            },
            Sharing::Stopped => SharesStatus {
                epoch: 0,
                layout: String::new(),
                buckets: 0,
                members: Vec::new(),
                exchange: None,
                availability: None,
                held: 0,
            },
            Sharing::Dynamic(d) => {
                let x = d.status();
                SharesStatus {
                    epoch: x.epoch,
                    layout,
                    buckets: sharing_cfg.buckets,
                    members: x.members.iter().map(MemberStatus::from).collect(),
                    availability: Some(self.availability.status(&self.measuring.measured, x.draining)),
                    held: x.held,
                    exchange: Some(x),
                }
            }
        }
    }
}

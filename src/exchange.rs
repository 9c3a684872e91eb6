//! The thin driver between the exchange's state machine and a real UDP
//! socket: receive, tick, send, with a monotonic clock in milliseconds.

use crate::config::ExchangeConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use synshare_control::layout::{Layout, MemberId};
use synshare_control::protocol::{Agent, Settings};
use synshare_control::wire::{encode, Role};
use tracing::{debug, info, warn};

/// A member's agent on a socket.
pub struct Exchange {
    socket: UdpSocket,
    key: Vec<u8>,
    dests: Vec<SocketAddr>,
    /// The state machine.
    pub agent: Agent,
    started: Instant,
    send_errors: u64,
    buf: Vec<u8>,
    logged: (u64, u32, Vec<(u32, u64)>, u32, u64),
}

/// Settings the caller adds to the exchange configuration.
pub struct AgentParams {
    /// Node or coordinator.
    pub role: Role,
    /// Buckets.
    pub buckets: u32,
    /// Layout.
    pub layout: Layout,
    /// Drain period, ms.
    pub drain_ms: u64,
}

impl Exchange {
    /// Binds the socket and starts an agent for member `me`.
    pub fn new(c: &ExchangeConfig, me: MemberId, r: AgentParams, weight_milli: u32) -> Result<Exchange, String> {
        let socket = UdpSocket::bind(c.bind).map_err(|e| format!("exchange: cannot bind {}: {e}", c.bind))?;
        let started = Instant::now();
        // A restart has a larger incarnation: wall-clock milliseconds.
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let settings = Settings {
            segment: c.segment,
            interval_ms: c.interval_ms,
            timeout_ms: c.timeout_ms,
            drain_ms: r.drain_ms,
            buckets: r.buckets,
            layout: r.layout,
            min_epoch_ms: c.min_epoch_ms,
            hysteresis_milli: (c.hysteresis * 1000.0).round() as u32,
            role: r.role,
        };
        let mut dests = c.peers.clone();
        if let Some(coord) = c.coordinator {
            dests.push(coord);
        }
        Ok(Exchange {
            socket,
            key: c.key.as_bytes().to_vec(),
            dests,
            agent: Agent::new(me, incarnation, settings, weight_milli, 0),
            started,
            send_errors: 0,
            buf: vec![0u8; 65_536],
            logged: (0, 0, Vec::new(), 0, 0),
        })
    }

    /// Milliseconds since start: the agent's clock.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Waits at most `wait` for one datagram and hands it to the agent.
    pub fn poll(&mut self, wait: Duration) {
        let _ = self.socket.set_read_timeout(Some(wait.max(Duration::from_micros(200))));
        if let Ok((n, _from)) = self.socket.recv_from(&mut self.buf) {
            let now = self.now_ms();
            // Rejections are counted by the agent.
            if let Err(e) = self.agent.receive(&self.buf[..n], &self.key, now) {
                debug!(from = %_from, reason = ?e, "heartbeat rejected");
            }
        }
        self.log_changes();
    }

    /// Logs membership changes, new tables, hand-offs and failovers (not
    /// per heartbeat).
    fn log_changes(&mut self) {
        let a = &self.agent;
        let peers: Vec<(u32, u64)> = a.peers().iter().map(|(id, p)| (id.0, p.incarnation)).collect();
        let (epoch, creator, ref old_peers, old_held, old_failovers) = self.logged;
        for (id, inc) in &peers {
            match old_peers.iter().find(|(o, _)| o == id) {
                None => info!(member = id, incarnation = inc, "member joined"),
                Some((_, old)) if old != inc => info!(member = id, incarnation = inc, "member restarted"),
                _ => {}
            }
        }
        for (id, _) in old_peers {
            if !peers.iter().any(|(p, _)| p == id) {
                warn!(
                    member = id,
                    timeout_ms = a.settings().timeout_ms,
                    "member silent: declared dead, its buckets move"
                );
            }
        }
        let e = a.epoch();
        if (e.number, e.creator.0) != (epoch, creator) {
            info!(
                epoch = e.number,
                creator = e.creator.0,
                leader = a.leader().0,
                members = ?e.members.iter().map(|(m, w)| (m.0, f64::from(*w) / 1000.0)).collect::<Vec<_>>(),
                "new table"
            );
        }
        if a.held_count() != old_held {
            info!(
                held = a.held_count(),
                was = old_held,
                claimed_total = a.stats().buckets_claimed,
                released_total = a.stats().buckets_released,
                "hand-off: buckets held"
            );
        }
        if a.stats().fenced > 0 && a.stats().failovers != old_failovers && a.held_count() == 0 && old_held > 0 {
            warn!("no peer heard: let every bucket go (fencing)");
        }
        self.logged = (e.number, e.creator.0, peers, a.held_count(), a.stats().failovers);
    }

    /// Lets the agent act; sends its heartbeat to every peer if one is due.
    pub fn tick(&mut self) {
        let now = self.now_ms();
        if let Some(hb) = self.agent.tick(now) {
            let bytes = encode(&hb, &self.key);
            for d in &self.dests {
                if self.socket.send_to(&bytes, d).is_err() {
                    self.send_errors += 1;
                }
            }
        }
        self.log_changes();
    }

    /// How long the caller may wait before the next tick.
    pub fn wait_hint(&self) -> Duration {
        let now = self.now_ms();
        let next = self.agent.next_deadline();
        Duration::from_millis(next.saturating_sub(now).clamp(1, 20))
    }

    /// The exchange's state for status output.
    pub fn status(&self) -> ExchangeStatus {
        let now = self.now_ms();
        let a = &self.agent;
        let table = a.table();
        let buckets = table.len().max(1) as f64;
        let members = a
            .epoch()
            .members
            .iter()
            .map(|&(id, w)| {
                let n = table.count(id);
                let held = if id == a.me() {
                    Some(a.held_count())
                } else {
                    a.peers().get(&id).map(|p| p.held)
                };
                EpochMember {
                    id: id.0,
                    weight: f64::from(w) / 1000.0,
                    buckets: n as u32,
                    share_pct: 100.0 * n as f64 / buckets,
                    held,
                }
            })
            .collect();
        let peers = a
            .peers()
            .iter()
            .map(|(id, p)| PeerStatus {
                id: id.0,
                coordinator: p.role == Role::Coordinator,
                incarnation: p.incarnation,
                heard_ms_ago: now.saturating_sub(p.last_heard),
                epoch: p.epoch_id.0,
                epoch_creator: p.epoch_id.1,
                held: p.held,
                weight: f64::from(p.weight_milli) / 1000.0,
                draining: p.draining,
                connections: p.connections,
            })
            .collect();
        let s = a.stats();
        let stats: BTreeMap<String, u64> = [
            ("sent", s.sent),
            ("received", s.received),
            ("accepted", s.accepted),
            ("rejected_bad_length", s.rejected_bad_length),
            ("rejected_not_heartbeat", s.rejected_not_heartbeat),
            ("rejected_bad_tag", s.rejected_bad_tag),
            ("rejected_malformed", s.rejected_malformed),
            ("rejected_replayed", s.rejected_replayed),
            ("rejected_stale", s.rejected_stale),
            ("rejected_foreign", s.rejected_foreign),
            ("rejected_own_id", s.rejected_own_id),
            ("epochs_adopted", s.epochs_adopted),
            ("epochs_created", s.epochs_created),
            ("buckets_released", s.buckets_released),
            ("buckets_claimed", s.buckets_claimed),
            ("failovers", s.failovers),
            ("fenced", s.fenced),
            ("joins", s.joins),
            ("send_errors", self.send_errors),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        ExchangeStatus {
            segment: a.settings().segment,
            epoch: a.epoch().number,
            epoch_creator: a.epoch().creator.0,
            leader: a.leader().0,
            held: a.held_count(),
            weight: f64::from(a.weight_milli()) / 1000.0,
            draining: a.draining(),
            members,
            peers,
            stats,
        }
    }
}

/// A member of the epoch in force.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochMember {
    /// Member id.
    pub id: u32,
    /// Weight in the epoch.
    pub weight: f64,
    /// Buckets the table gives it.
    pub buckets: u32,
    /// Its share, percent.
    pub share_pct: f64,
    /// Buckets it holds (as last heard).
    pub held: Option<u32>,
}

/// A peer as last heard.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Member id.
    pub id: u32,
    /// A coordinator.
    pub coordinator: bool,
    /// Its incarnation.
    pub incarnation: u64,
    /// Milliseconds since its last heartbeat.
    pub heard_ms_ago: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Its epoch's creator.
    pub epoch_creator: u32,
    /// Buckets it holds.
    pub held: u32,
    /// Its advertised weight.
    pub weight: f64,
    /// Draining.
    pub draining: bool,
    /// Its connections.
    pub connections: u32,
}

/// The exchange in status output.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ExchangeStatus {
    /// Segment.
    pub segment: u16,
    /// Epoch number in force.
    pub epoch: u64,
    /// Its creator.
    pub epoch_creator: u32,
    /// The leader as seen here.
    pub leader: u32,
    /// Buckets held here.
    pub held: u32,
    /// Weight advertised.
    pub weight: f64,
    /// Draining.
    pub draining: bool,
    /// The epoch's members.
    pub members: Vec<EpochMember>,
    /// Live peers.
    pub peers: Vec<PeerStatus>,
    /// Counters.
    pub stats: BTreeMap<String, u64>,
}

//! The control loop: every 20 ms, one named step after another, until a
//! signal stops the node.

use super::segment::Segment;
use super::Node;
use crate::exchange::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{info, warn};

impl Node {
    /// Runs the control loop until SIGINT, SIGTERM (after its drain) or a
    /// second SIGTERM.
    pub fn run_loop(&mut self) {
        loop {
            let flows = self.count_flows();
            if self.signals.interrupt.load(Ordering::Relaxed) {
                info!("SIGINT: stopping now");
                break;
            }
            self.poll_membership();
            if self.poll_stop(flows) {
                break;
            }
            self.poll_reload();
            self.feed_exchanges(flows);
            self.handle_requests();
            self.publish_status();
            self.watchdog.feed(&self.segments);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The flows every worker holds, told to the measuring thread too.
    fn count_flows(&self) -> u64 {
        let flows: u64 = self.segments.iter().map(Segment::flows).sum();
        self.measuring.connections.store(flows, Ordering::Relaxed);
        flows
    }

    /// Multicast mode: each segment in its cluster group while it holds
    /// buckets or serves flows.
    fn poll_membership(&mut self) {
        for seg in self.segments.iter_mut() {
            seg.follow_membership();
        }
    }

    /// SIGTERM: drains first when the shares are the exchange's and
    /// `stop_drain_s` allows; a second SIGTERM stops at once. True when
    /// the node is to stop now.
    fn poll_stop(&mut self, flows: u64) -> bool {
        if self.signals.stop.swap(false, Ordering::Relaxed) {
            if self.stopping.is_some() || !self.dynamic() || self.config.stop_drain_s == 0 {
                return true;
            }
            self.start_drain(flows);
        }
        self.stopping.is_some_and(|since| self.drained(since, flows))
    }

    /// SIGTERM's drain: every exchange told to hand its buckets over.
    fn start_drain(&mut self, flows: u64) {
        info!(
            flows,
            timeout_s = self.config.stop_drain_s,
            "SIGTERM: draining: the others take new connections; stopping when known flows end (a second SIGTERM stops now)"
        );
        for h in self.segments.iter().filter_map(|s| s.sharing.exchange()) {
            h.send(Command::Draining(true));
        }
        self.stopping = Some(Instant::now());
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("draining before stopping")]);
    }

    /// Whether the drain begun at `since` is over: no buckets and no flows
    /// left, or `stop_drain_s` reached.
    fn drained(&self, since: Instant, flows: u64) -> bool {
        let held: u32 = self
            .segments
            .iter()
            .filter_map(|s| s.sharing.exchange())
            .map(|h| h.status().held)
            .sum();
        if held == 0 && flows == 0 {
            info!(
                after_ms = since.elapsed().as_millis() as u64,
                "drained: no buckets, no flows"
            );
            return true;
        }
        if since.elapsed() >= Duration::from_secs(u64::from(self.config.stop_drain_s)) {
            warn!(
                held,
                flows,
                "stop_drain_s reached: stopping with flows left (the kernel keeps them; a restart picks them up)"
            );
            return true;
        }
        false
    }

    /// SIGHUP: the configuration applied again.
    fn poll_reload(&mut self) {
        if self.signals.reload.swap(false, Ordering::Relaxed) {
            self.reload();
        }
    }

    /// The measuring thread's samples smoothed into the weight, and the
    /// weight and the flows given to every exchange.
    fn feed_exchanges(&mut self, flows: u64) {
        let mut weight = None;
        while let Ok(inputs) = self.measuring.inputs.try_recv() {
            weight = Some(self.availability.update(inputs));
        }
        for h in self.segments.iter().filter_map(|s| s.sharing.exchange()) {
            if let Some(w) = weight {
                h.send(Command::Weight(w));
            }
            h.send(Command::Connections(flows.min(u64::from(u32::MAX)) as u32));
        }
    }

    /// A fresh snapshot for the status socket, the metrics and the status
    /// page, every 50 ms.
    fn publish_status(&mut self) {
        if self.publishing.snapshot_due() {
            let snap = self.snapshot();
            let first = self.segments.first().map(|s| &s.sharing);
            self.publishing.publish(&snap, first);
        }
    }
}

/// systemd's watchdog, fed while every exchange thread is alive.
pub(super) struct Watchdog {
    period: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog {
            period: sd_notify::watchdog_enabled(),
            last: Instant::now(),
        }
    }

    /// Feeds the watchdog every quarter period while every exchange of
    /// `segments` has been alive within half a period.
    fn feed(&mut self, segments: &[Segment]) {
        let Some(period) = self.period else { return };
        let exchanges_alive = segments
            .iter()
            .filter_map(|s| s.sharing.exchange())
            .all(|h| h.alive(period / 2));
        if exchanges_alive && self.last.elapsed() >= period / 4 {
            self.last = Instant::now();
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

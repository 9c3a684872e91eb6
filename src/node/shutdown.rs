//! Stopping: the cluster groups left while the workers still run, the
//! status socket and the metrics closed, the workers stopped, a last
//! summary printed, then the exchanges, the ports, the pool and EAL.

use super::{Node, Sharing};
use crate::status;
use std::sync::atomic::Ordering;
use std::time::Duration;
use synshare_dpdk as dpdk;
use tracing::{info, warn};

impl Node {
    /// Stops the node.
    pub fn shutdown(mut self) -> Result<(), String> {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.leave_groups();
        self.publishing.stop();
        info!("stopping");
        self.worker_stop.store(true, Ordering::Relaxed);
        self.measuring.stop.store(true, Ordering::Relaxed);
        dpdk::wait_all();
        let last = self.snapshot();
        println!("{}", status::text::summary(&last));
        let _ = std::fs::remove_file(&self.socket);
        if let Some(t) = self.measuring.thread.take() {
            let _ = t.join();
        }
        for seg in self.segments.iter_mut() {
            if let Sharing::Dynamic(h) = std::mem::replace(&mut seg.sharing, Sharing::Stopped) {
                h.stop();
            }
        }
        // The ports before the pool, the pool before EAL.
        drop(self.segments);
        drop(self.pool);
        drop(self.eal);
        if last.wire.stats.rx_nombuf > 0 {
            warn!(rx_nombuf = last.wire.stats.rx_nombuf, "the mbuf pool ran dry at times");
        }
        Ok(())
    }

    /// Leaves the cluster groups while the workers still carry the
    /// kernel's leave messages to the wire.
    fn leave_groups(&mut self) {
        let mut left = false;
        for seg in self.segments.iter_mut() {
            if let Some(m) = seg.membership.as_mut() {
                left |= m.joined();
                let _ = m.set(false);
            }
        }
        if left {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

//! SIGHUP: every field that can change safely is applied (`crate::reload`
//! lists them); each other edited field is named in a warning.

use super::Node;
use crate::config::NodeConfig;
use crate::exchange::Command;
use crate::reload::Edits;
use tracing::{info, warn};

impl Node {
    /// Reads the configuration file again and applies what it can.
    pub(super) fn reload(&mut self) {
        let edits = std::fs::read_to_string(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|now| crate::reload::edits(&self.started_text, &now));
        match (NodeConfig::load(&self.config_path), edits) {
            (Ok(new), Ok(edits)) => self.apply(&new, &edits),
            (Err(e), _) => warn!(error = %e, "reload refused: the running configuration stays"),
            (_, Err(e)) => warn!(error = %e, "reload refused: the running configuration stays"),
        }
    }

    /// Applies `new`: availability, health check, metrics, log level and
    /// exchange keys.
    fn apply(&mut self, new: &NodeConfig, edits: &Edits) {
        self.availability.reload(new, &self.config);
        if let Ok(mut h) = self.measuring.health_check.write() {
            *h = new.availability.health();
        }
        set_log_level(new);
        self.publishing.move_metrics(new.metrics);
        for (seg, nv) in self.segments.iter().zip(new.all_segments()) {
            if let (Some(h), Some(x)) = (seg.sharing.exchange(), nv.exchange) {
                match x.keys() {
                    Ok(k) => h.send(Command::Keys(k)),
                    Err(e) => warn!(segment = seg.index, error = %e, "keys not reloaded"),
                }
            }
        }
        info!(
            capacity = self.availability.capacity,
            edited = ?edits.applied,
            "configuration reloaded (availability, health check, metrics, log level, exchange keys)"
        );
        if !edits.need_restart.is_empty() {
            warn!(
                "edited fields that need a restart, not applied: {} (systemctl restart synshare@{})",
                edits.need_restart.join(", "),
                self.config.name
            );
        }
    }
}

/// The log level of `new` (or `SYNSHARE_LOG`, or info).
fn set_log_level(new: &NodeConfig) {
    let level = new.log_level.clone().or_else(|| std::env::var("SYNSHARE_LOG").ok());
    match crate::logging::set_level(level.as_deref().unwrap_or("info")) {
        Ok(()) => tracing::debug!(level = level.as_deref().unwrap_or("info"), "log level"),
        Err(e) => warn!(error = %e, "log_level not reloaded"),
    }
}

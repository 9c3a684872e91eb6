//! The control socket's requests other than [`Request::Status`] (which
//! the status thread answers from the snapshot): drain, undrain, capacity,
//! members.

use super::segment::Segment;
use super::{Node, Sharing};
use crate::exchange::Command;
use crate::status::request::{Answer, MembersAction, Request};
use tracing::info;

impl Node {
    /// Answers the requests the status thread forwarded.
    pub(super) fn handle_requests(&mut self) {
        while let Ok((request, answer)) = self.publishing.requests.try_recv() {
            let _ = answer.send(self.answer(request));
        }
    }

    /// Answers one request of the status socket.
    fn answer(&mut self, request: Request) -> String {
        let dynamic = self.dynamic();
        let answer = match request {
            Request::Status => {
                return serde_json::to_string(&self.snapshot())
                    .unwrap_or_else(|e| Answer::refused(e.to_string()).to_json())
            }
            Request::Drain | Request::Undrain | Request::Capacity(_) if !dynamic => {
                Answer::refused("static shares: configure an exchange to drain or change capacity at run time")
            }
            Request::Drain => self.drain(true),
            Request::Undrain => self.drain(false),
            Request::Members { .. } if !dynamic => Answer::refused(
                "static shares: the members are the configuration's (sharing.members); configure an exchange",
            ),
            Request::Members { segment, action } => return members_request(segment, action, &self.segments),
            Request::Capacity(v) => self.capacity(v),
        };
        answer.to_json()
    }

    /// `drain` and `undrain`: every exchange told.
    fn drain(&mut self, draining: bool) -> Answer {
        for s in &self.segments {
            if let Some(h) = s.sharing.exchange() {
                h.send(Command::Draining(draining));
            }
        }
        info!(draining, "drain set by the control socket");
        Answer::done(format!(
            "{} {}",
            self.config.name,
            if draining { "draining" } else { "taking new connections" }
        ))
    }

    /// `capacity V`: the availability's capacity from now.
    fn capacity(&mut self, v: f64) -> Answer {
        if !(v.is_finite() && (0.0..=1_000_000.0).contains(&v)) {
            return Answer::refused("capacity takes a number from 0 to 1000000");
        }
        self.availability.capacity = v;
        info!(capacity = v, "capacity set by the control socket");
        Answer::done(format!("{} capacity {v}", self.config.name))
    }
}

/// A `members` request of the status socket (list, add or remove, on a
/// segment), asked of that segment's exchange.
fn members_request(segment: usize, action: MembersAction, segments: &[Segment]) -> String {
    let Some(Sharing::Dynamic(h)) = segments.get(segment).map(|s| &s.sharing) else {
        return Answer::refused(format!("segment {segment}: no such segment with an exchange")).to_json();
    };
    match action.to_exchange() {
        Ok(request) => h.members(request),
        Err(e) => Answer::refused(e).to_json(),
    }
}

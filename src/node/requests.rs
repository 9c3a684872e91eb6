//! The control socket's requests other than [`Request::Status`] (which
//! the status thread answers from the snapshot): drain, undrain, capacity,
//! members.

use super::segment::Segment;
use super::{Node, Sharing};
use crate::exchange::{self, Command};
use crate::status::request::{Answer, MembersAction, Request};
use std::sync::mpsc;
use std::time::Duration;
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
    let refuse = |message: String| Answer::refused(message).to_json();
    let request = match action {
        MembersAction::List => exchange::MembersRequest::List,
        MembersAction::Add { id, address, weight } => {
            if !(weight.is_finite() && (0.0..=1000.0).contains(&weight)) {
                return refuse("weight: from 0 to 1000".into());
            }
            exchange::MembersRequest::Add {
                id,
                address,
                weight_milli: (weight * 1000.0).round() as u32,
            }
        }
        MembersAction::Remove { id } => exchange::MembersRequest::Remove { id },
    };
    let Some(Sharing::Dynamic(h)) = segments.get(segment).map(|s| &s.sharing) else {
        return refuse(format!("segment {segment}: no such segment with an exchange"));
    };
    let (tx, rx) = mpsc::channel();
    h.send(Command::Members(request, tx));
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(reply) => serde_json::to_string(&reply).unwrap_or_else(|e| refuse(e.to_string())),
        Err(_) => refuse("the exchange did not answer within 2 s".into()),
    }
}

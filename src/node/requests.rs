//! The control socket's requests other than `status` (which the status
//! thread answers from the snapshot): drain, undrain, capacity, members.

use super::segment::Segment;
use super::{Node, Sharing};
use crate::exchange::{self, Command};
use std::sync::mpsc;
use std::time::Duration;
use tracing::info;

/// An answer: whether the request was done, and what to tell.
fn reply(ok: bool, message: String) -> String {
    serde_json::json!({ "ok": ok, "message": message }).to_string()
}

impl Node {
    /// Answers the requests the status thread forwarded.
    pub(super) fn handle_requests(&mut self) {
        while let Ok((request, answer)) = self.publishing.requests.try_recv() {
            let _ = answer.send(self.answer(&request));
        }
    }

    /// Answers one request of the status socket.
    fn answer(&mut self, request: &str) -> String {
        let mut words = request.split_whitespace();
        let verb = words.next().unwrap_or("status");
        let dynamic = self.dynamic();
        match verb {
            "status" => serde_json::to_string(&self.snapshot()).unwrap_or_else(|e| reply(false, e.to_string())),
            "drain" | "undrain" | "capacity" if !dynamic => reply(
                false,
                "static shares: configure an exchange to drain or change capacity at run time".into(),
            ),
            "drain" | "undrain" => self.drain(verb == "drain"),
            "members" if !dynamic => reply(
                false,
                "static shares: the members are the configuration's (sharing.members); configure an exchange".into(),
            ),
            "members" => members_request(words, &self.segments),
            "capacity" => self.capacity(words.next()),
            other => reply(
                false,
                format!("unknown request {:?}", other.chars().take(32).collect::<String>()),
            ),
        }
    }

    /// `drain` and `undrain`: every exchange told.
    fn drain(&mut self, draining: bool) -> String {
        for s in &self.segments {
            if let Some(h) = s.sharing.exchange() {
                h.send(Command::Draining(draining));
            }
        }
        info!(draining, "drain set by the control socket");
        reply(
            true,
            format!(
                "{} {}",
                self.config.name,
                if draining { "draining" } else { "taking new connections" }
            ),
        )
    }

    /// `capacity V`: the availability's capacity from now.
    fn capacity(&mut self, value: Option<&str>) -> String {
        match value.and_then(|w| w.parse::<f64>().ok()) {
            Some(v) if v.is_finite() && (0.0..=1_000_000.0).contains(&v) => {
                self.availability.capacity = v;
                info!(capacity = v, "capacity set by the control socket");
                reply(true, format!("{} capacity {v}", self.config.name))
            }
            _ => reply(false, "capacity takes a number from 0 to 1000000".into()),
        }
    }
}

/// A `members` request of the status socket (`members`, `members add ID
/// ADDR [weight W]`, `members remove ID`, each with `segment N` at the end
/// for a segment other than the first), asked of that segment's exchange.
fn members_request<'a>(mut words: impl Iterator<Item = &'a str>, segments: &[Segment]) -> String {
    let refuse = |message: String| serde_json::json!({ "ok": false, "message": message }).to_string();
    let words: Vec<&str> = words.by_ref().collect();
    let (words, segment) = match words.as_slice() {
        [rest @ .., "segment", n] => match n.parse::<usize>() {
            Ok(n) => (rest.to_vec(), n),
            Err(_) => return refuse(format!("segment {n:?}: not a number")),
        },
        all => (all.to_vec(), 0),
    };
    let request = match words.as_slice() {
        [] | ["list"] => exchange::MembersRequest::List,
        ["add", id, address, rest @ ..] => {
            let weight = match rest {
                [] => Ok(1.0),
                ["weight", w] => w
                    .parse::<f64>()
                    .map_err(|_| format!("weight {w:?}: not a number"))
                    .and_then(|w| {
                        (w.is_finite() && (0.0..=1000.0).contains(&w))
                            .then_some(w)
                            .ok_or_else(|| "weight: from 0 to 1000".to_owned())
                    }),
                _ => Err(format!("members add: unexpected {:?}", rest.join(" "))),
            };
            match (id.parse::<u32>(), address.parse::<std::net::SocketAddr>(), weight) {
                (Ok(id), Ok(address), Ok(w)) => exchange::MembersRequest::Add {
                    id,
                    address,
                    weight_milli: (w * 1000.0).round() as u32,
                },
                (Err(_), _, _) => return refuse(format!("member id {id:?}: not a number")),
                (_, Err(_), _) => return refuse(format!("{address:?}: not an address:port")),
                (_, _, Err(e)) => return refuse(e),
            }
        }
        ["remove", id] => match id.parse::<u32>() {
            Ok(id) => exchange::MembersRequest::Remove { id },
            Err(_) => return refuse(format!("member id {id:?}: not a number")),
        },
        _ => return refuse("members [add ID ADDRESS [weight W] | remove ID] [segment N]".into()),
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

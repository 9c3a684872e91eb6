//! What the status socket of a node or a coordinator is asked, and its
//! plain answer. A request travels as one line of JSON (`"status"`,
//! `"drain"`, `{"capacity":2.5}`, `{"members":{"segment":0,"action":"list"}}`):
//! [`super::client`] writes it, [`super::server`] parses it, once.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A request to the status socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The status (a node's, or a coordinator's exchange); read-only.
    Status,
    /// Stop taking new connections; keep serving the ones held.
    Drain,
    /// Take new connections again.
    Undrain,
    /// The configured capacity weight from now.
    Capacity(f64),
    /// The member directory of a segment: list it, or ask for a change.
    Members {
        /// The segment (index on the node).
        segment: usize,
        /// What to do.
        action: MembersAction,
    },
}

/// What a [`Request::Members`] asks of the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembersAction {
    /// The directory as this member knows it.
    List,
    /// Add a member (it starts with `join`).
    Add {
        /// Its id.
        id: u32,
        /// Its exchange address.
        address: SocketAddr,
        /// A factor on the weight it advertises, 0 to 1000.
        weight: f64,
    },
    /// Remove a member.
    Remove {
        /// Its id.
        id: u32,
    },
}

impl Request {
    /// Whether the request changes anything, so that only root, the
    /// socket's owner and its group may send it. Listing the members is
    /// asked of the exchange's thread: it counts as a change, as it always
    /// did.
    pub fn changes_anything(&self) -> bool {
        !matches!(self, Request::Status)
    }

    /// The request in `text`, as the server reads it: JSON, or nothing at
    /// all for the status.
    pub fn parse(text: &str) -> Result<Request, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Request::Status);
        }
        serde_json::from_str(text).map_err(|e| {
            format!(
                "not a request ({e}): the status socket takes one line of JSON, as `synshare` of the same \
                 version sends (e.g. \"status\", \"drain\", {{\"capacity\":2}}); got {:?}",
                text.chars().take(64).collect::<String>()
            )
        })
    }
}

/// The answer to a request that changes something (or to a refused one):
/// whether it was done, and what to tell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Done.
    pub ok: bool,
    /// What happened, for the operator.
    pub message: String,
}

impl Answer {
    /// A done request.
    pub fn done(message: impl Into<String>) -> Answer {
        Answer {
            ok: true,
            message: message.into(),
        }
    }

    /// A refused request.
    pub fn refused(message: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            message: message.into(),
        }
    }

    /// The answer as the socket's reply.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_reads_back_as_written() {
        for r in [
            Request::Status,
            Request::Drain,
            Request::Undrain,
            Request::Capacity(2.5),
            Request::Members {
                segment: 1,
                action: MembersAction::List,
            },
            Request::Members {
                segment: 0,
                action: MembersAction::Add {
                    id: 4,
                    address: "[2001:db8::1]:7946".parse().unwrap(),
                    weight: 0.5,
                },
            },
            Request::Members {
                segment: 0,
                action: MembersAction::Remove { id: 4 },
            },
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(line.len() < 256, "{line}");
            assert_eq!(Request::parse(&line), Ok(r));
        }
        assert_eq!(serde_json::to_string(&Request::Drain).unwrap(), "\"drain\"");
        assert_eq!(
            serde_json::to_string(&Request::Capacity(2.0)).unwrap(),
            "{\"capacity\":2.0}"
        );
    }

    #[test]
    fn nothing_is_the_status_and_old_text_requests_get_a_clear_error() {
        assert_eq!(Request::parse(" \n"), Ok(Request::Status));
        for old in ["status", "drain", "capacity 2", "members add 4 10.0.0.4:7946 weight 1"] {
            let e = Request::parse(old).unwrap_err();
            assert!(
                e.contains("takes one line of JSON") && e.contains(old.split(' ').next().unwrap()),
                "{e}"
            );
        }
        assert!(Request::parse("{\"capacity\":null}").is_err());
        assert!(!Request::Status.changes_anything());
        assert!(Request::Capacity(1.0).changes_anything());
    }
}

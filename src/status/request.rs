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

impl MembersAction {
    /// The exchange's request, or why this one cannot be asked.
    pub fn to_exchange(&self) -> Result<crate::exchange::MembersRequest, String> {
        use crate::exchange::MembersRequest;
        Ok(match *self {
            MembersAction::List => MembersRequest::List,
            MembersAction::Add { id, address, weight } => {
                if !(weight.is_finite() && (0.0..=1000.0).contains(&weight)) {
                    return Err("weight: from 0 to 1000".into());
                }
                MembersRequest::Add {
                    id,
                    address,
                    weight_milli: (weight * 1000.0).round() as u32,
                }
            }
            MembersAction::Remove { id } => MembersRequest::Remove { id },
        })
    }
}

impl Request {
    /// Whether the request changes anything, so that only root, the
    /// socket's owner and its group may send it. Listing the members is
    /// asked of the exchange's thread: it counts as a change, as it always
    /// did.
    pub fn changes_anything(&self) -> bool {
        !matches!(self, Request::Status)
    }

    /// The request in `text`, as the server reads it: JSON, nothing at
    /// all for the status, or the words an older `synshare` sent (its
    /// status socket took `status`, `drain`, `capacity 2`, `members add 4
    /// 192.0.2.24:7946 weight 1 segment 0`, ...), so that a command of
    /// either version reaches a node of either during an upgrade.
    pub fn parse(text: &str) -> Result<Request, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Request::Status);
        }
        if !text.starts_with(['{', '"']) {
            return Request::from_words(text);
        }
        serde_json::from_str(text).map_err(|e| {
            format!(
                "not a request ({e}): the status socket takes one line of JSON, as `synshare` of the same \
                 version sends (e.g. \"status\", \"drain\", {{\"capacity\":2}}); got {:?}",
                text.chars().take(64).collect::<String>()
            )
        })
    }

    /// The request in words, as an older `synshare` sent it.
    fn from_words(text: &str) -> Result<Request, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let number = |w: &str| w.parse::<f64>().map_err(|_| format!("{w:?}: not a number"));
        let id = |w: &str| w.parse::<u32>().map_err(|_| format!("member id {w:?}: not a number"));
        match words.as_slice() {
            ["status"] => Ok(Request::Status),
            ["drain"] => Ok(Request::Drain),
            ["undrain"] => Ok(Request::Undrain),
            ["capacity", c] => number(c).map(Request::Capacity),
            ["members", rest @ ..] => {
                let (rest, segment) = match rest {
                    [rest @ .., "segment", n] => (
                        rest,
                        n.parse::<usize>().map_err(|_| format!("segment {n:?}: not a number"))?,
                    ),
                    all => (all, 0),
                };
                let action = match rest {
                    [] | ["list"] => MembersAction::List,
                    ["add", i, address] | ["add", i, address, "weight", _] => MembersAction::Add {
                        id: id(i)?,
                        address: address
                            .parse()
                            .map_err(|_| format!("{address:?}: not an address:port"))?,
                        weight: match rest {
                            [.., "weight", w] => number(w)?,
                            _ => 1.0,
                        },
                    },
                    ["remove", i] => MembersAction::Remove { id: id(i)? },
                    _ => return Err("members [add ID ADDRESS [weight W] | remove ID] [segment N]".into()),
                };
                Ok(Request::Members { segment, action })
            }
            _ => Err(format!(
                "unknown request {:?}: the status socket takes one line of JSON (or an older synshare's words: \
                 status, drain, undrain, capacity W, members ...)",
                text.chars().take(64).collect::<String>()
            )),
        }
    }

    /// The words an older `synshare`'s node takes for this request.
    pub fn to_words(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Drain => "drain".into(),
            Request::Undrain => "undrain".into(),
            Request::Capacity(c) => format!("capacity {c}"),
            Request::Members { segment, action } => {
                let action = match action {
                    MembersAction::List => "list".to_owned(),
                    MembersAction::Add { id, address, weight } => format!("add {id} {address} weight {weight}"),
                    MembersAction::Remove { id } => format!("remove {id}"),
                };
                format!("members {action} segment {segment}")
            }
        }
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
    fn nothing_is_the_status_and_an_older_synshares_words_are_still_taken() {
        assert_eq!(Request::parse(" \n"), Ok(Request::Status));
        let requests = [
            Request::Status,
            Request::Drain,
            Request::Undrain,
            Request::Capacity(2.5),
            Request::Members {
                segment: 1,
                action: MembersAction::Add {
                    id: 4,
                    address: "192.0.2.24:7946".parse().unwrap(),
                    weight: 0.5,
                },
            },
            Request::Members {
                segment: 0,
                action: MembersAction::Remove { id: 4 },
            },
            Request::Members {
                segment: 0,
                action: MembersAction::List,
            },
        ];
        for r in requests {
            assert_eq!(Request::parse(&r.to_words()), Ok(r.clone()), "{}", r.to_words());
        }
        // As the older command wrote them.
        assert_eq!(Request::parse("capacity 2"), Ok(Request::Capacity(2.0)));
        assert_eq!(
            Request::parse("members add 4 10.0.0.4:7946"),
            Ok(Request::Members {
                segment: 0,
                action: MembersAction::Add {
                    id: 4,
                    address: "10.0.0.4:7946".parse().unwrap(),
                    weight: 1.0
                }
            })
        );
        for bad in [
            "capacity lots",
            "reboot",
            "members add x 1.2.3.4:1",
            "members remove",
            "drain now",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
        assert!(Request::parse("{\"capacity\":null}")
            .unwrap_err()
            .contains("takes one line of JSON"));
        assert!(!Request::Status.changes_anything());
        assert!(Request::Capacity(1.0).changes_anything());
    }
}

//! What `synshare` sends to the status socket of a node or a coordinator.

use super::request::{Answer, Request};
use super::NodeStatus;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `request` to the node (or coordinator) at `path`; returns its
/// reply. A process of an older synshare refuses the JSON: the request is
/// sent again in the words it takes (between a package upgrade and the
/// restart, `synshare drain` still drains).
pub fn request(path: &Path, request: &Request) -> Result<String, String> {
    let line = serde_json::to_string(request).map_err(|e| format!("request {request:?}: {e}"))?;
    let text = exchange(path, &line)?;
    match older_node(&text) {
        Some(why) => exchange(path, &request.to_words())
            .ok()
            .filter(|again| older_node(again).is_none())
            .ok_or_else(|| format!("{}: {why}", path.display())),
        None => Ok(text),
    }
}

/// One request line to `path` and its whole reply.
fn exchange(path: &Path, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot reach node at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Why `reply` cannot be understood, when it comes from a process of an
/// older synshare: those took text requests, and refuse a JSON one (say,
/// between a package upgrade and the restart).
fn older_node(reply: &str) -> Option<String> {
    let answer: Answer = serde_json::from_str(reply).ok()?;
    let refused = answer.message.strip_prefix("unknown request ")?;
    (!answer.ok && (refused.starts_with("\"\\\"") || refused.starts_with("\"{"))).then(|| {
        "it runs an older synshare, which takes text requests, not this version's JSON: restart it \
         (SIGTERM drains it first), or ask with the synshare it runs"
            .to_owned()
    })
}

/// Asks the node at `path` for its status.
pub fn query(path: &Path) -> Result<NodeStatus, String> {
    let text = request(path, &Request::Status)?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "bad reply from {}: {e}: {}",
            path.display(),
            text.chars().take(200).collect::<String>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_nodes_refusal_of_json_is_told_as_such() {
        // What an older node answered to `"drain"` and `{"capacity":2.0}`.
        for reply in [
            r#"{"message":"unknown request \"\\\"drain\\\"\"","ok":false}"#,
            r#"{"message":"unknown request \"{\\\"capacity\\\":2.0}\"","ok":false}"#,
        ] {
            assert!(older_node(reply).unwrap().contains("older synshare"), "{reply}");
        }
        assert_eq!(
            older_node(r#"{"ok":false,"message":"static shares: configure an exchange"}"#),
            None
        );
        assert_eq!(older_node(r#"{"ok":true,"message":"n draining"}"#), None);
        assert_eq!(older_node("{}"), None);
    }
}

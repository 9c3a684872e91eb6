//! What `synshare` sends to the status socket of a node or a coordinator.

use super::request::Request;
use super::NodeStatus;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `request` to the node (or coordinator) at `path`; returns its
/// reply.
pub fn request(path: &Path, request: &Request) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("cannot reach node at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(request.to_line().as_bytes()).map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
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

//! The local status socket of a node or a coordinator: one request, one
//! JSON reply per connection; anyone who reaches the socket may read the
//! status, only root, its owner and its group may change anything.

use super::request::{Answer, Request};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The status socket, and who may change anything through it.
pub struct StatusListener {
    listener: UnixListener,
    /// The socket's group, whose members may change things (with root and
    /// the socket's owner).
    group: Option<u32>,
    /// The socket's owner: this process's user.
    owner: u32,
}

/// Binds the status socket (replacing a stale one), non-blocking, mode
/// 0660 and of `group` when one is given: only root, this process's user
/// and the group reach it, whatever the umask. It is bound under a
/// temporary name and renamed into place once its mode and group are set,
/// so nobody connects to it in between.
pub fn listen(path: &Path, group: Option<u32>) -> std::io::Result<StatusListener> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another node answers on this socket",
        ));
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)?;
    let placed = (|| {
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give it group {gid} ({e}); the process must be a member \
                         (under systemd: SupplementaryGroups= in a drop-in)"
                    ),
                )
            })?;
        }
        let owner = std::fs::metadata(&staging)?.uid();
        std::fs::rename(&staging, path)?;
        Ok(owner)
    })();
    let owner = match placed {
        Ok(owner) => owner,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    listener.set_nonblocking(true)?;
    Ok(StatusListener { listener, group, owner })
}

/// Whether the peer of `stream` may change anything: root, the socket's
/// owner, or a member of its group (primary, or supplementary as
/// `/proc/PID/status` lists them). The socket's mode already keeps others
/// out; this holds even if its mode or directory is changed by hand.
fn may_change(stream: &UnixStream, group: Option<u32>, owner: u32) -> Result<(), String> {
    let peer = rustix::net::sockopt::socket_peercred(stream).map_err(|e| format!("no peer credentials: {e}"))?;
    let (uid, gid) = (peer.uid.as_raw(), peer.gid.as_raw());
    if uid == 0 || uid == owner {
        return Ok(());
    }
    if let Some(g) = group {
        if gid == g || supplementary_groups(peer.pid.as_raw_pid()).contains(&g) {
            return Ok(());
        }
    }
    Err(match group {
        Some(g) => format!("not permitted: uid {uid} is neither root nor in group {g}"),
        None => format!("not permitted: uid {uid} is not root (set status_group to let a group in)"),
    })
}

/// The supplementary groups of process `pid`, empty when they cannot be read.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Groups:").map(str::to_owned)))
        .map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// Answers every waiting client: one request (JSON, [`Request::parse`]),
/// one JSON reply. A request that does not parse is answered with why; one
/// that changes anything is refused unless the peer may change things
/// ([`may_change`]).
pub fn serve(status: &StatusListener, mut handle: impl FnMut(Request) -> String) {
    while let Ok((mut stream, _)) = status.listener.accept() {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        // The longest request, a member added with an IPv6 address, is
        // about 130 bytes.
        let mut line = [0u8; 512];
        let n = stream.read(&mut line).unwrap_or(0);
        let reply = match Request::parse(&String::from_utf8_lossy(&line[..n])) {
            Err(why) => {
                tracing::warn!(%why, "status socket: request not understood");
                Answer::refused(why).to_json()
            }
            Ok(request) => match may_change(&stream, status.group, status.owner) {
                Err(why) if request.changes_anything() => {
                    tracing::warn!(?request, %why, "status socket: request refused");
                    Answer::refused(why).to_json()
                }
                _ => handle(request),
            },
        };
        let _ = stream.write_all(reply.as_bytes());
    }
}

/// The group id `group` names: a number, or a name from /etc/group.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    group_id_in(&groups, group).ok_or_else(|| format!("group {group:?} is not in /etc/group (a gid also works)"))
}

fn group_id_in(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|g| g.parse().ok()))
            .flatten()
    })
}

/// Serves the status socket on a thread of its own until `stop`: status
/// from `snapshot` (JSON), and anything else forwarded to the control loop
/// through `requests` (answered within a second or refused). Each
/// connection has short read and write deadlines, so a slow client delays
/// only this thread; the metrics port has a thread of its own
/// ([`super::http::MetricsServer`]), so nothing there delays `drain`.
pub fn spawn_service(
    status: StatusListener,
    snapshot: Arc<Mutex<String>>,
    requests: Sender<(Request, Sender<String>)>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("status".into()).spawn(move || {
        let read = |cell: &Mutex<String>| cell.lock().map(|s| s.clone()).unwrap_or_default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            serve(&status, |request| {
                if request == Request::Status {
                    return read(&snapshot);
                }
                let (tx, rx) = std::sync::mpsc::channel();
                if requests.send((request, tx)).is_err() {
                    return Answer::refused("stopping").to_json();
                }
                rx.recv_timeout(Duration::from_secs(1))
                    .unwrap_or_else(|_| Answer::refused("the control loop did not answer").to_json())
            });
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::client::request;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_socket_is_0660_whatever_the_umask_and_status_is_answered() {
        let dir = std::env::temp_dir().join(format!("synshare-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("n.sock");
        let l = listen(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{mode:o}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no staging name left behind"
        );
        let client = std::thread::spawn({
            let path = path.clone();
            move || request(&path, &Request::Drain).unwrap()
        });
        let mut answered = Vec::new();
        while !client.is_finished() {
            serve(&l, |r| {
                answered.push(r);
                "{\"ok\": true}".into()
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        // The test runs as root or as the socket's owner: both may drain.
        assert_eq!(client.join().unwrap(), "{\"ok\": true}");
        assert_eq!(answered, [Request::Drain]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_peer_that_is_neither_root_nor_owner_nor_in_the_group_may_only_read() {
        let (a, _b) = UnixStream::pair().unwrap();
        let me = rustix::net::sockopt::socket_peercred(&a).unwrap();
        let (uid, gid) = (me.uid.as_raw(), me.gid.as_raw());
        if uid == 0 {
            assert!(may_change(&a, None, 4242).is_ok(), "root may");
        } else {
            assert!(may_change(&a, None, uid).is_ok(), "the owner may");
            let refused = may_change(&a, Some(gid.wrapping_add(1)), uid.wrapping_add(1)).unwrap_err();
            assert!(refused.contains("not permitted"), "{refused}");
            assert!(may_change(&a, Some(gid), uid.wrapping_add(1)).is_ok(), "the group may");
        }
    }

    #[test]
    fn groups_resolve_by_number_or_by_name() {
        let etc = "root:x:0:\nsynshare-ops:x:997:alice,bob\nx:x:notanumber:\n";
        assert_eq!(group_id_in(etc, "synshare-ops"), Some(997));
        assert_eq!(group_id_in(etc, "root"), Some(0));
        assert_eq!(group_id_in(etc, "nobody-here"), None);
        assert_eq!(group_id_in(etc, "x"), None);
        assert_eq!(group_id("1234"), Ok(1234));
        assert!(group_id("no-such-group-here").unwrap_err().contains("/etc/group"));
    }
}

//! The health check of the local service: a TCP connect or an HTTP GET
//! with an expected status, and the rise and fall counts that turn checks
//! into up or down.

use crate::config::{HealthCheck, Probe};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Up or down from the checks so far: up after `rise` successes in a row,
/// down after `fall` failures in a row. Starts down, so a node takes no
/// connections before its service has answered `rise` times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    up: bool,
    /// Checks in a row that disagree with `up`.
    streak: u32,
}

impl Health {
    /// Whether the service counts as up.
    pub fn up(&self) -> bool {
        self.up
    }

    /// Takes one check's result; returns whether the service is up now.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.streak = 0;
        } else {
            self.streak += 1;
            if self.streak >= if ok { rise } else { fall } {
                self.up = ok;
                self.streak = 0;
            }
        }
        self.up
    }
}

/// One check of `check`: `Ok` if it passed, else why not.
pub fn check(check: &HealthCheck) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(check.timeout_ms);
    match &check.probe {
        Probe::Tcp(addr) => TcpStream::connect_timeout(addr, Duration::from_millis(check.timeout_ms))
            .map(drop)
            .map_err(|e| format!("connect {addr}: {e}")),
        Probe::Http {
            addr,
            path,
            status,
            host,
        } => {
            let left = || {
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            let mut s = TcpStream::connect_timeout(addr, left()).map_err(|e| format!("connect {addr}: {e}"))?;
            s.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
            let host = host.clone().unwrap_or_else(|| addr.to_string());
            // One write: `write!` on a bare stream sends each piece of the
            // format as its own segment, which some servers read as a
            // truncated request.
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: synshare-health-check\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .map_err(|e| format!("GET {path} at {addr}: {e}"))?;
            // The status line is all that is read.
            let mut head = Vec::with_capacity(64);
            let mut buf = [0u8; 256];
            while !head.contains(&b'\n') && head.len() < 1024 {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "GET {path} at {addr}: no answer within {} ms",
                        check.timeout_ms
                    ));
                }
                s.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(format!("GET {path} at {addr}: {e}")),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or("");
            let got = line
                .strip_prefix("HTTP/1.")
                .and_then(|r| r.get(2..5))
                .and_then(|c| c.parse::<u16>().ok());
            match got {
                Some(code) if code == *status => Ok(()),
                Some(code) => Err(format!("GET {path} at {addr}: status {code}, expected {status}")),
                None => Err(format!("GET {path} at {addr}: not an HTTP answer: {line:?}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};

    #[test]
    fn up_after_rise_successes_down_after_fall_failures() {
        let mut h = Health::default();
        let seq = |h: &mut Health, checks: &[bool]| checks.iter().map(|ok| h.observe(*ok, 3, 2)).collect::<Vec<_>>();
        assert!(!h.up(), "starts down");
        assert_eq!(
            seq(&mut h, &[true, true, false, true, true]),
            [false; 5],
            "a failure resets the rise"
        );
        assert_eq!(seq(&mut h, &[true]), [true], "three in a row");
        assert_eq!(
            seq(&mut h, &[false, true, false]),
            [true; 3],
            "a success resets the fall"
        );
        assert_eq!(seq(&mut h, &[false]), [false], "two in a row");
        let mut h = Health::default();
        assert!(
            h.observe(true, 1, 1) && !h.observe(false, 1, 1),
            "1 and 1: every check decides"
        );
    }

    /// A one-shot HTTP server on loopback answering `status_line` (none:
    /// accepts and says nothing).
    fn server(status_line: Option<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // The whole head, however it arrives.
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                assert!(String::from_utf8_lossy(&req).starts_with("GET /healthz HTTP/1.1\r\n"));
                match status_line {
                    Some(line) => {
                        let _ = write!(s, "{line}\r\nContent-Length: 0\r\n\r\n");
                    }
                    None => std::thread::sleep(Duration::from_secs(2)),
                }
            }
        });
        addr
    }

    fn http(addr: SocketAddr, status: u16) -> HealthCheck {
        HealthCheck {
            probe: Probe::Http {
                addr,
                path: "/healthz".into(),
                status,
                host: None,
            },
            timeout_ms: 300,
            rise: 1,
            fall: 1,
        }
    }

    #[test]
    fn an_http_check_passes_on_the_expected_status_only() {
        assert_eq!(check(&http(server(Some("HTTP/1.1 200 OK")), 200)), Ok(()));
        let e = check(&http(server(Some("HTTP/1.1 503 Service Unavailable")), 200)).unwrap_err();
        assert!(e.contains("status 503, expected 200"), "{e}");
        assert_eq!(check(&http(server(Some("HTTP/1.0 204 No Content")), 204)), Ok(()));
        let e = check(&http(server(Some("SSH-2.0-OpenSSH")), 200)).unwrap_err();
        assert!(e.contains("not an HTTP answer"), "{e}");
    }

    #[test]
    fn a_silent_service_fails_within_the_timeout() {
        let started = Instant::now();
        let e = check(&http(server(None), 200)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert!(e.contains("GET /healthz"), "{e}");
    }

    #[test]
    fn a_tcp_check_needs_a_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let tcp = |addr| HealthCheck {
            probe: Probe::Tcp(addr),
            timeout_ms: 200,
            rise: 1,
            fall: 1,
        };
        assert_eq!(check(&tcp(addr)), Ok(()));
        drop(l);
        assert!(check(&tcp(addr)).unwrap_err().starts_with("connect"));
    }
}

//! The member directory: who the members of a segment are and where their
//! exchange listens. It is state, not configuration: it changes only by
//! entries of the consensus log (configuration changes carrying a
//! [`Change`]), so every member applies the same changes in the same order;
//! a configuration file only bootstraps it.
//!
//! A change goes through raft's own configuration changes: a member joins
//! as a learner ([`Change::Add`]), is promoted to voter by the leader once it
//! has caught up, leaves by becoming a learner again with no share
//! ([`Change::Leave`]: its buckets move by the normal hand-off), and is
//! dropped from the directory once it holds nothing and serves nothing
//! ([`Change::Remove`]).

use crate::layout::MemberId;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A member's weight factor when none was given (thousandths: 1.0).
pub const DEFAULT_WEIGHT_MILLI: u32 = 1000;

/// The largest weight factor a change may carry (thousandths: 1000.0).
pub const MAX_WEIGHT_MILLI: u32 = 1_000_000;

/// The address simulated and test members get from their id (in the
/// documentation range `2001:db8::/32`, port 7946).
pub fn placeholder_address(id: MemberId) -> SocketAddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (id.0 >> 16) as u16, id.0 as u16);
    SocketAddr::new(IpAddr::V6(ip), 7946)
}

/// One member as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Where its exchange listens.
    pub address: SocketAddr,
    /// A factor on its advertised weight (thousandths; 1000: as measured),
    /// so an operator can give a member a smaller or larger share.
    pub weight_milli: u32,
    /// Leaving: it gets no share, and leaves the directory once it holds
    /// and serves nothing.
    pub leaving: bool,
}

/// The members of a segment, by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    members: BTreeMap<MemberId, Member>,
    /// The log index of the last change applied (0: as bootstrapped).
    version: u64,
}

/// A change of the directory, as a configuration change's context carries
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new member (as a learner).
    Add {
        /// Its id.
        id: MemberId,
        /// Its exchange address.
        address: SocketAddr,
        /// Its weight factor (thousandths).
        weight_milli: u32,
    },
    /// A member starts leaving: a learner with no share.
    Leave {
        /// Its id.
        id: MemberId,
    },
    /// A member that left is dropped.
    Remove {
        /// Its id.
        id: MemberId,
    },
}

const CHANGE_MAGIC: u8 = 0xD7;
const DIRECTORY_MAGIC: u8 = 0xD1;

fn put_addr(b: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            b.push(4);
            b.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            b.push(6);
            b.extend_from_slice(&ip.octets());
        }
    }
    b.extend_from_slice(&a.port().to_be_bytes());
}

/// A reader over bytes that never panics.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|s| u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn addr(&mut self) -> Option<SocketAddr> {
        let ip = match self.u8()? {
            4 => {
                let o: [u8; 4] = self.take(4)?.try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = self.take(16)?.try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.u16()?))
    }

    fn done(&self) -> bool {
        self.at == self.b.len()
    }
}

impl Change {
    /// The member it is about.
    pub fn id(&self) -> MemberId {
        match self {
            Change::Add { id, .. } | Change::Leave { id } | Change::Remove { id } => *id,
        }
    }

    /// Serialises (a configuration change's context), with the version of
    /// the directory it was asked against: it applies only to that one, so
    /// a request replayed from a capture, or two racing, change nothing
    /// once another change came first.
    pub fn encode(&self, version: u64) -> Vec<u8> {
        let mut b = vec![CHANGE_MAGIC];
        b.extend_from_slice(&version.to_be_bytes());
        match self {
            Change::Add {
                id,
                address,
                weight_milli,
            } => {
                b.push(1);
                b.extend_from_slice(&id.0.to_be_bytes());
                put_addr(&mut b, address);
                b.extend_from_slice(&weight_milli.to_be_bytes());
            }
            Change::Leave { id } => {
                b.push(2);
                b.extend_from_slice(&id.0.to_be_bytes());
            }
            Change::Remove { id } => {
                b.push(3);
                b.extend_from_slice(&id.0.to_be_bytes());
            }
        }
        b
    }

    /// What [`Change::encode`] wrote (the change and the version); `None`
    /// when malformed.
    pub fn decode(b: &[u8]) -> Option<(Change, u64)> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != CHANGE_MAGIC {
            return None;
        }
        let version = r.u64()?;
        let kind = r.u8()?;
        let id = MemberId(r.u32()?);
        let c = match kind {
            1 => {
                let address = r.addr()?;
                let weight_milli = r.u32()?;
                Change::Add {
                    id,
                    address,
                    weight_milli,
                }
            }
            2 => Change::Leave { id },
            3 => Change::Remove { id },
            _ => return None,
        };
        r.done().then_some((c, version))
    }
}

impl Directory {
    /// A directory of these members, each with the default weight factor.
    pub fn of(members: impl IntoIterator<Item = (MemberId, SocketAddr)>) -> Directory {
        Directory {
            members: members
                .into_iter()
                .map(|(id, address)| {
                    (
                        id,
                        Member {
                            address,
                            weight_milli: DEFAULT_WEIGHT_MILLI,
                            leaving: false,
                        },
                    )
                })
                .collect(),
            version: 0,
        }
    }

    /// The log index of the last change applied (0: none since the
    /// bootstrap).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members, by id.
    pub fn members(&self) -> &BTreeMap<MemberId, Member> {
        &self.members
    }

    /// One member.
    pub fn get(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `change` may be applied to this directory (checked at apply
    /// time by every member alike, so all accept or all refuse it).
    pub fn check(&self, change: &Change) -> Result<(), String> {
        match change {
            Change::Add {
                id,
                address,
                weight_milli,
            } => self.check_add(*id, *address, *weight_milli),
            Change::Leave { id } => match self.get(*id) {
                None => Err(format!("member {} is not in the directory", id.0)),
                Some(m) if m.leaving => Err(format!("member {} is already leaving", id.0)),
                Some(_) => {
                    let staying = self.members.iter().filter(|(i, m)| *i != id && !m.leaving).count();
                    if staying == 0 {
                        Err(format!("member {} is the last one", id.0))
                    } else {
                        Ok(())
                    }
                }
            },
            Change::Remove { id } => match self.get(*id) {
                Some(m) if m.leaving => Ok(()),
                Some(_) => Err(format!("member {} is not leaving", id.0)),
                None => Err(format!("member {} is not in the directory", id.0)),
            },
        }
    }

    /// [`Directory::check`] of an [`Change::Add`].
    fn check_add(&self, id: MemberId, address: SocketAddr, weight_milli: u32) -> Result<(), String> {
        if id.0 == u32::MAX {
            return Err(format!("member id {} is reserved", id.0));
        }
        if self.contains(id) {
            return Err(format!("member {} is already in the directory", id.0));
        }
        if let Some((other, _)) = self.members.iter().find(|(_, m)| m.address == address) {
            return Err(format!("address {address} is member {}'s", other.0));
        }
        if address.port() == 0 || address.ip().is_unspecified() || address.ip().is_multicast() {
            return Err(format!("address {address} is no unicast address and port"));
        }
        if weight_milli > MAX_WEIGHT_MILLI {
            return Err(format!("weight {} is above {}", weight_milli, MAX_WEIGHT_MILLI / 1000));
        }
        Ok(())
    }

    /// Applies a change that [`Directory::check`] accepted, made by the
    /// log entry at `index`.
    pub fn apply(&mut self, change: &Change, index: u64) {
        self.version = index;
        match change {
            Change::Add {
                id,
                address,
                weight_milli,
            } => {
                self.members.insert(
                    *id,
                    Member {
                        address: *address,
                        weight_milli: *weight_milli,
                        leaving: false,
                    },
                );
            }
            Change::Leave { id } => {
                if let Some(m) = self.members.get_mut(id) {
                    m.leaving = true;
                }
            }
            Change::Remove { id } => {
                self.members.remove(id);
            }
        }
    }

    /// Where this directory has an unspecified address for a member (a
    /// coordinator bound to every address bootstraps itself so) and `known`
    /// a specified one, takes that one.
    pub fn fill_unspecified_from(&mut self, known: &Directory) {
        for (id, m) in self.members.iter_mut() {
            if let Some(k) = known.members.get(id) {
                if m.address.ip().is_unspecified() && !k.address.ip().is_unspecified() {
                    m.address = k.address;
                }
            }
        }
    }

    /// Serialises (for the state file and snapshots).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![DIRECTORY_MAGIC];
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&(self.members.len() as u32).to_be_bytes());
        for (id, m) in &self.members {
            b.extend_from_slice(&id.0.to_be_bytes());
            put_addr(&mut b, &m.address);
            b.extend_from_slice(&m.weight_milli.to_be_bytes());
            b.push(u8::from(m.leaving));
        }
        b
    }

    /// What [`Directory::encode`] wrote; `None` when malformed.
    pub fn decode(b: &[u8]) -> Option<Directory> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != DIRECTORY_MAGIC {
            return None;
        }
        let version = r.u64()?;
        let n = r.u32()?;
        let mut members = BTreeMap::new();
        for _ in 0..n {
            let id = MemberId(r.u32()?);
            let address = r.addr()?;
            let weight_milli = r.u32()?;
            let leaving = match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let m = Member {
                address,
                weight_milli,
                leaving,
            };
            if members.insert(id, m).is_some() {
                return None;
            }
        }
        r.done().then_some(Directory { members, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_directories_read_back_and_junk_is_refused() {
        let a: SocketAddr = "192.0.2.24:7946".parse().unwrap();
        for c in [
            Change::Add {
                id: MemberId(4),
                address: a,
                weight_milli: 500,
            },
            Change::Add {
                id: MemberId(5),
                address: placeholder_address(MemberId(5)),
                weight_milli: 1000,
            },
            Change::Leave { id: MemberId(1) },
            Change::Remove { id: MemberId(1) },
        ] {
            let b = c.encode(17);
            assert_eq!(Change::decode(&b), Some((c, 17)));
            for cut in 0..b.len() {
                assert_eq!(Change::decode(&b[..cut]), None);
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(Change::decode(&long), None);
        }
        let mut d = Directory::of([(MemberId(1), a), (MemberId(2), placeholder_address(MemberId(2)))]);
        d.apply(&Change::Leave { id: MemberId(2) }, 9);
        assert_eq!(d.version(), 9);
        let b = d.encode();
        assert_eq!(Directory::decode(&b), Some(d));
        for cut in 0..b.len() {
            assert_eq!(Directory::decode(&b[..cut]), None);
        }
        assert_eq!(
            Directory::decode(&[DIRECTORY_MAGIC, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn only_sensible_changes_are_accepted() {
        let a = |k: u32| placeholder_address(MemberId(k));
        let mut d = Directory::of([(MemberId(1), a(1)), (MemberId(2), a(2))]);
        let add = |id: u32, address: SocketAddr| Change::Add {
            id: MemberId(id),
            address,
            weight_milli: 1000,
        };
        assert!(d.check(&add(1, a(9))).unwrap_err().contains("already"));
        assert!(d.check(&add(3, a(2))).unwrap_err().contains("member 2's"));
        assert!(d.check(&add(3, "0.0.0.0:7946".parse().unwrap())).is_err());
        assert!(d.check(&add(3, "192.0.2.3:0".parse().unwrap())).is_err());
        assert!(d.check(&add(u32::MAX, a(3))).is_err());
        assert!(d.check(&add(3, a(3))).is_ok());
        assert!(d.check(&Change::Remove { id: MemberId(1) }).is_err(), "not leaving yet");
        assert!(d.check(&Change::Leave { id: MemberId(1) }).is_ok());
        d.apply(&Change::Leave { id: MemberId(1) }, 5);
        assert!(d.check(&Change::Leave { id: MemberId(1) }).is_err());
        assert!(d
            .check(&Change::Leave { id: MemberId(2) })
            .unwrap_err()
            .contains("last"));
        assert!(d.check(&Change::Remove { id: MemberId(1) }).is_ok());
        d.apply(&Change::Remove { id: MemberId(1) }, 6);
        assert!(!d.contains(MemberId(1)));
        assert!(d.check(&Change::Remove { id: MemberId(1) }).is_err());
    }
}

//! A table as agreed, and its encoding as a log entry.

use super::settings::Settings;
use crate::layout::{Layout, MemberId};

/// A table as agreed: one entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Its log index (0: none yet).
    pub index: u64,
    /// Who proposed it.
    pub creator: MemberId,
    /// Layout.
    pub layout: Layout,
    /// Buckets.
    pub buckets: u32,
    /// Members and weights (thousandths), sorted by id.
    pub members: Vec<(MemberId, u32)>,
}

const EPOCH_MAGIC: u8 = 0xE1;

impl Epoch {
    /// No table yet (index 0): nothing is claimed under it.
    pub(super) fn none(creator: MemberId, settings: &Settings) -> Epoch {
        Epoch {
            index: 0,
            creator,
            layout: settings.layout,
            buckets: settings.buckets,
            members: Vec::new(),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut b = vec![EPOCH_MAGIC];
        b.extend_from_slice(&self.creator.0.to_be_bytes());
        b.push(match self.layout {
            Layout::Ranges => 0,
            Layout::Rendezvous => 1,
        });
        b.extend_from_slice(&self.buckets.to_be_bytes());
        b.extend_from_slice(&(self.members.len() as u16).to_be_bytes());
        for (m, w) in &self.members {
            b.extend_from_slice(&m.0.to_be_bytes());
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    pub(super) fn decode(index: u64, b: &[u8]) -> Option<Epoch> {
        let u32_at = |at: usize| b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
        if b.first() != Some(&EPOCH_MAGIC) {
            return None;
        }
        let creator = MemberId(u32_at(1)?);
        let layout = match *b.get(5)? {
            0 => Layout::Ranges,
            1 => Layout::Rendezvous,
            _ => return None,
        };
        let buckets = u32_at(6)?;
        let n = usize::from(u16::from_be_bytes([*b.get(10)?, *b.get(11)?]));
        if b.len() != 12 + n * 8 || !buckets.is_power_of_two() {
            return None;
        }
        let members: Vec<(MemberId, u32)> = (0..n)
            .map(|i| Some((MemberId(u32_at(12 + i * 8)?), u32_at(16 + i * 8)?)))
            .collect::<Option<_>>()?;
        members.windows(2).all(|w| w[0].0 < w[1].0).then_some(Epoch {
            index,
            creator,
            layout,
            buckets,
            members,
        })
    }
}

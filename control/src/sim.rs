//! A simulated cluster for the exchange protocol: agents, simulated time in
//! milliseconds, and a simulated network with loss, duplication, delay
//! (hence reordering) and partitions. Used by the protocol's tests and by
//! the cluster-scale benchmark (`cargo run --release -p synshare-control
//! --example scale`).

use crate::layout::MemberId;
use crate::protocol::{Agent, Settings};
use crate::wire::encode;

/// The key every simulated member shares.
pub const KEY: &[u8] = b"test key";

struct InFlight {
    at: u64,
    to: usize,
    bytes: Vec<u8>,
}

/// A simulated cluster. Member `i` (index) has id `i + 1`.
pub struct Sim {
    /// Simulated time, ms.
    pub now: u64,
    /// The agents; `None` while killed.
    pub agents: Vec<Option<Agent>>,
    /// Each agent's configured weight.
    pub weights: Vec<u32>,
    /// The settings every agent starts with.
    pub settings: Settings,
    rng: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Delivery delay range, ms (inclusive).
    pub delay: (u64, u64),
    in_flight: Vec<InFlight>,
    /// Side of each agent while partitioned.
    pub partition: Option<Vec<u8>>,
    restarts: u64,
    /// Heartbeat bytes sent (UDP payload), per agent.
    pub bytes_sent: Vec<u64>,
}

impl Sim {
    /// Agents with these weights (thousandths), all started at 0.
    pub fn new(weights: &[u32], settings: Settings, seed: u64) -> Sim {
        let agents = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Some(Agent::new(MemberId(i as u32 + 1), 1, settings.clone(), w, 0)))
            .collect();
        Sim {
            now: 0,
            agents,
            weights: weights.to_vec(),
            settings,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            loss: 0.0,
            dup: 0.0,
            delay: (1, 1),
            in_flight: Vec::new(),
            partition: None,
            restarts: 0,
            bytes_sent: vec![0; weights.len()],
        }
    }

    /// A pseudo-random number.
    pub fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rand() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = self.delay;
        lo + self.rand() % (hi - lo + 1)
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.partition.as_ref().is_none_or(|side| side[a] == side[b])
    }

    /// Advances one millisecond: delivers what is due, lets every agent tick
    /// and sends what it says.
    pub fn step(&mut self) {
        self.now += 1;
        // Agents may have been added by hand.
        self.bytes_sent.resize(self.agents.len(), 0);
        let now = self.now;
        let mut due = Vec::new();
        self.in_flight.retain_mut(|m| {
            if m.at <= now {
                due.push(InFlight {
                    at: m.at,
                    to: m.to,
                    bytes: std::mem::take(&mut m.bytes),
                });
                false
            } else {
                true
            }
        });
        for m in due {
            if let Some(a) = self.agents[m.to].as_mut() {
                let _ = a.receive(&m.bytes, KEY, now);
            }
        }
        for i in 0..self.agents.len() {
            let Some(hb) = self.agents[i].as_mut().and_then(|a| a.tick(now)) else {
                continue;
            };
            let bytes = encode(&hb, KEY);
            for j in 0..self.agents.len() {
                if j == i {
                    continue;
                }
                self.bytes_sent[i] += bytes.len() as u64;
                if !self.connected(i, j) || self.chance(self.loss) {
                    continue;
                }
                let at = now + self.delay();
                self.in_flight.push(InFlight {
                    at,
                    to: j,
                    bytes: bytes.clone(),
                });
                if self.chance(self.dup) {
                    let at = now + self.delay();
                    self.in_flight.push(InFlight {
                        at,
                        to: j,
                        bytes: bytes.clone(),
                    });
                }
            }
        }
    }

    /// Runs `ms` milliseconds.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// How many live agents hold bucket `b`.
    pub fn holders(&self, b: u32) -> usize {
        self.agents.iter().flatten().filter(|a| a.holds(b)).count()
    }

    /// No bucket held by two agents.
    pub fn exclusive(&self) -> bool {
        (0..self.settings.buckets).all(|b| self.holders(b) <= 1)
    }

    /// Every bucket held by exactly one live agent.
    pub fn all_held_once(&self) -> bool {
        (0..self.settings.buckets).all(|b| self.holders(b) == 1)
    }

    /// Every bucket held by exactly one live agent (by counts only: cheap,
    /// for large clusters where the agents are known to be exclusive).
    pub fn all_held_count(&self) -> bool {
        self.agents
            .iter()
            .flatten()
            .map(|a| u64::from(a.held_count()))
            .sum::<u64>()
            == u64::from(self.settings.buckets)
    }

    /// Kills agent `i` (it sends and receives nothing more).
    pub fn kill(&mut self, i: usize) {
        self.agents[i] = None;
    }

    /// Restarts agent `i` with a new incarnation.
    pub fn restart(&mut self, i: usize) {
        self.restarts += 1;
        let agent = Agent::new(
            MemberId(i as u32 + 1),
            1 + self.restarts,
            self.settings.clone(),
            self.weights[i],
            self.now,
        );
        self.agents[i] = Some(agent);
    }

    /// Agent `i`'s share of the buckets.
    pub fn share(&self, i: usize) -> f64 {
        self.agents[i]
            .as_ref()
            .map_or(0.0, |a| f64::from(a.held_count()) / f64::from(self.settings.buckets))
    }
}

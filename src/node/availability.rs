//! The node's availability: measured on a thread of its own, smoothed
//! here, and given to every segment's exchange as its weight.

use crate::config::{CpuSource, HealthCheck, NodeConfig};
use crate::measure::{self, Measured};
use crate::status;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use synshare_control::availability::{Formula, Inputs, Smoother};

/// Node-wide availability state, shared by every segment's exchange.
pub(super) struct Availability {
    pub formula: Formula,
    pub smoother: Smoother,
    pub last_inputs: Option<Inputs>,
    pub raw: f64,
    pub capacity: f64,
}

impl Availability {
    pub fn new(c: &NodeConfig) -> Availability {
        Availability {
            formula: formula(c, c.availability.capacity),
            smoother: Smoother::new(c.availability.alpha, c.availability.max_step),
            last_inputs: None,
            raw: 0.0,
            capacity: c.availability.capacity,
        }
    }

    /// The weight the exchange starts with: the formula's with the service
    /// up and nothing else measured yet.
    pub fn initial_weight(&self) -> u32 {
        (self.formula.availability(&Inputs {
            service_up: true,
            ..Inputs::default()
        }) * 1000.0) as u32
    }

    /// Takes the reloaded configuration `new`'s settings; `started` is the
    /// configuration the node started with (what it measures).
    pub fn reload(&mut self, new: &NodeConfig, started: &NodeConfig) {
        self.capacity = new.availability.capacity;
        self.formula = formula(new, new.availability.capacity);
        if started.availability.cpu == CpuSource::None {
            // No CPU measured until a restart.
            self.formula.cpu_exponent = 0.0;
        }
        self.smoother.alpha = new.availability.alpha;
        self.smoother.max_step = new.availability.max_step;
    }

    /// Takes one sample; returns the smoothed weight (in thousandths).
    pub fn update(&mut self, inputs: Inputs) -> u32 {
        self.formula.capacity = self.capacity;
        self.raw = self.formula.availability(&inputs);
        let smoothed = self.smoother.update(self.raw, self.capacity);
        self.last_inputs = Some(inputs);
        (smoothed * 1000.0).round() as u32
    }

    /// Its status, for a segment with an exchange.
    pub fn status(&self, measured: &Measured, draining: bool) -> status::AvailabilityStatus {
        let inputs = self.last_inputs.unwrap_or_default();
        status::AvailabilityStatus {
            capacity: self.capacity,
            cpu_busy: inputs.cpu_busy,
            connections: inputs.connections,
            temperature_c: inputs.temperature_c,
            power_w: inputs.power_w,
            service_up: measured.service_up.load(Ordering::Relaxed) || self.last_inputs.is_none(),
            raw: self.raw,
            smoothed: self.smoother.value().unwrap_or(0.0),
            draining,
        }
    }
}

/// The availability formula of `c` with `capacity`.
fn formula(c: &NodeConfig, capacity: f64) -> Formula {
    let a = &c.availability;
    Formula {
        capacity,
        cpu_exponent: if a.cpu == CpuSource::None { 0.0 } else { a.cpu_exponent },
        max_connections: a.max_connections,
        temperature_c: a.temperature.as_ref().map(|(_, lo, hi)| (*lo, *hi)),
        power_budget_w: a.power.as_ref().map(|(_, w)| *w),
        floor: a.floor,
    }
}

/// Measuring runs on its own thread (a probe may block); its samples come
/// to the control loop through `inputs`.
pub(super) struct Measuring {
    /// The flows the workers hold, for the formula.
    pub connections: Arc<AtomicU64>,
    pub measured: Arc<Measured>,
    pub inputs: mpsc::Receiver<Inputs>,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<std::thread::JoinHandle<()>>,
    /// The health check in force (a reload replaces it).
    pub health_check: Arc<RwLock<Option<HealthCheck>>>,
}

impl Measuring {
    /// Starts the measuring thread if `dynamic` (only an exchange uses it).
    pub fn start(c: &NodeConfig, dynamic: bool) -> Result<Measuring, String> {
        let connections = Arc::new(AtomicU64::new(0));
        let measured = Arc::new(Measured::default());
        let (inputs_tx, inputs) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let health_check = Arc::new(RwLock::new(c.availability.health()));
        let thread = if dynamic {
            Some(measure::start(
                &c.availability,
                Arc::clone(&connections),
                inputs_tx,
                Arc::clone(&stop),
                Arc::clone(&measured),
                &health_check,
            )?)
        } else {
            None
        };
        Ok(Measuring {
            connections,
            measured,
            inputs,
            stop,
            thread,
            health_check,
        })
    }
}

//! Available capacity: what a node measures, how it is combined, and how it
//! is damped so that a loaded cluster does not oscillate.
//!
//! The measuring itself (cgroup CPU time, a probe of the local service,
//! hwmon, powercap) is the driver's; here the numbers are combined and
//! smoothed, with the samples passed in.

/// One sample of a node's state.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Inputs {
    /// Share of its CPU quota the service used since the last sample (0..1).
    pub cpu_busy: Option<f64>,
    /// Connections the node holds.
    pub connections: u64,
    /// Temperature in °C, where exposed.
    pub temperature_c: Option<f64>,
    /// Power in W, where exposed.
    pub power_w: Option<f64>,
    /// The local service answered its health probe.
    pub service_up: bool,
}

/// How the inputs combine. Each term multiplies the configured capacity by
/// a factor in 0..1; a term without input or limit is 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Formula {
    /// Configured capacity weight (relative to the other members).
    pub capacity: f64,
    /// (1 - cpu_busy) ^ cpu_exponent; 0 ignores the CPU.
    pub cpu_exponent: f64,
    /// 1 - connections / max_connections.
    pub max_connections: Option<u64>,
    /// Linear from 1 at the first temperature to 0 at the second (°C).
    pub temperature_c: Option<(f64, f64)>,
    /// 1 - power / budget (W).
    pub power_budget_w: Option<f64>,
    /// A healthy node keeps at least this fraction of its capacity, so a
    /// busy cluster still spreads new connections.
    pub floor: f64,
}

impl Default for Formula {
    fn default() -> Self {
        Formula {
            capacity: 1.0,
            cpu_exponent: 1.0,
            max_connections: None,
            temperature_c: None,
            power_budget_w: None,
            floor: 0.05,
        }
    }
}

fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

impl Formula {
    /// The availability of one sample, in capacity units (0 ..= capacity).
    /// A dead service is 0.
    pub fn availability(&self, i: &Inputs) -> f64 {
        if !i.service_up || !self.capacity.is_finite() || self.capacity <= 0.0 {
            return 0.0;
        }
        let mut a = 1.0;
        if let Some(busy) = i.cpu_busy {
            if self.cpu_exponent > 0.0 {
                a *= (1.0 - unit(busy)).powf(self.cpu_exponent);
            }
        }
        if let Some(max) = self.max_connections.filter(|m| *m > 0) {
            a *= unit(1.0 - i.connections as f64 / max as f64);
        }
        if let (Some((start, end)), Some(t)) = (self.temperature_c, i.temperature_c) {
            if end > start {
                a *= unit((end - t) / (end - start));
            }
        }
        if let (Some(budget), Some(p)) = (self.power_budget_w, i.power_w) {
            if budget > 0.0 {
                a *= unit(1.0 - p / budget);
            }
        }
        self.capacity * a.max(unit(self.floor))
    }
}

/// EWMA smoothing with bounded steps. A drop to zero (dead service) passes
/// at once: sending connections to a dead service is worse than moving.
#[derive(Clone, Debug, PartialEq)]
pub struct Smoother {
    /// EWMA weight of a new sample (0..1].
    pub alpha: f64,
    /// Largest change per sample, as a fraction of `scale`.
    pub max_step: f64,
    value: Option<f64>,
}

impl Smoother {
    /// A smoother with weight `alpha` and bounded step `max_step`.
    pub fn new(alpha: f64, max_step: f64) -> Self {
        Smoother {
            alpha: unit(alpha).max(0.01),
            max_step: max_step.max(0.0),
            value: None,
        }
    }

    /// The smoothed value after `sample`; `scale` is the configured
    /// capacity the step bound is relative to.
    pub fn update(&mut self, sample: f64, scale: f64) -> f64 {
        let sample = if sample.is_finite() { sample.max(0.0) } else { 0.0 };
        let next = match self.value {
            None => sample,
            Some(_) if sample == 0.0 => 0.0,
            Some(v) => {
                let ewma = v + self.alpha * (sample - v);
                let bound = self.max_step * scale.max(0.0);
                v + (ewma - v).clamp(-bound, bound)
            }
        };
        self.value = Some(next);
        next
    }

    /// The current value.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Inputs {
        Inputs {
            service_up: true,
            ..Inputs::default()
        }
    }

    #[test]
    fn terms_multiply_and_a_dead_service_is_zero() {
        let f = Formula {
            capacity: 2.0,
            max_connections: Some(100),
            temperature_c: Some((70.0, 90.0)),
            power_budget_w: Some(200.0),
            ..Formula::default()
        };
        assert_eq!(f.availability(&up()), 2.0);
        let i = Inputs {
            cpu_busy: Some(0.5),
            connections: 50,
            temperature_c: Some(80.0),
            power_w: Some(100.0),
            service_up: true,
        };
        assert!((f.availability(&i) - 2.0 * 0.5 * 0.5 * 0.5 * 0.5).abs() < 1e-9);
        assert_eq!(f.availability(&Inputs { service_up: false, ..i }), 0.0);
        // Saturated but healthy: the floor.
        let busy = Inputs {
            cpu_busy: Some(1.5),
            ..up()
        };
        assert!((f.availability(&busy) - 2.0 * 0.05).abs() < 1e-9);
        let nan = Inputs {
            cpu_busy: Some(f64::NAN),
            ..up()
        };
        assert!(f.availability(&nan).is_finite());
    }

    #[test]
    fn smoothing_moves_in_bounded_steps_and_converges() {
        let mut s = Smoother::new(0.5, 0.2);
        assert_eq!(s.update(1.0, 1.0), 1.0);
        // A drop to 0.1: EWMA would halve the gap (0.55); the step bound
        // allows 0.2 per sample.
        assert!((s.update(0.1, 1.0) - 0.8).abs() < 1e-9);
        assert!((s.update(0.1, 1.0) - 0.6).abs() < 1e-9);
        for _ in 0..20 {
            s.update(0.1, 1.0);
        }
        assert!((s.value().unwrap() - 0.1).abs() < 1e-6);
        // A dead service passes at once.
        assert_eq!(s.update(0.0, 1.0), 0.0);
        assert!((s.update(1.0, 1.0) - 0.2).abs() < 1e-9, "recovery is bounded");
    }

    #[test]
    fn an_oscillating_load_gives_a_damped_availability() {
        let mut s = Smoother::new(0.3, 0.1);
        s.update(0.5, 1.0);
        let mut lo = f64::MAX;
        let mut hi = f64::MIN;
        for k in 0..200 {
            let v = s.update(if k % 2 == 0 { 1.0 } else { 0.05 }, 1.0);
            if k > 50 {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        assert!(hi - lo < 0.35, "swing {lo}..{hi}");
    }
}

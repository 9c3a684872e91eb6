//! Measuring a node's state for its availability: CPU time of its service's
//! cgroup (v2, or v1 cpu+cpuacct) against its quota, or the host's CPU from
//! /proc/stat; the health check of the local service (TCP or HTTP, with
//! rise and fall counts); hwmon temperature and
//! powercap energy where configured. Runs on its own thread so that a slow
//! probe never delays a heartbeat.

use crate::config::{AvailabilityConfig, CpuSource, HealthCheck};
use crate::health::Health;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use synshare_control::availability::Inputs;

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Cumulative CPU time used (µs) and the CPUs available (cores), for one
/// source.
enum Cpu {
    None,
    Host,
    CgroupV2(PathBuf),
    CgroupV1 {
        usage: PathBuf,
        quota: PathBuf,
        period: PathBuf,
    },
}

fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

impl Cpu {
    fn open(source: &CpuSource) -> Result<Cpu, String> {
        match source {
            CpuSource::None => Ok(Cpu::None),
            CpuSource::Host => Ok(Cpu::Host),
            CpuSource::Cgroup(name) => {
                let v2 = PathBuf::from(format!("/sys/fs/cgroup/{name}"));
                if v2.join("cpu.stat").exists() && v2.join("cpu.max").exists() {
                    return Ok(Cpu::CgroupV2(v2));
                }
                let usage = PathBuf::from(format!("/sys/fs/cgroup/cpuacct/{name}/cpuacct.usage"));
                let cpu = PathBuf::from(format!("/sys/fs/cgroup/cpu/{name}"));
                if usage.exists() && cpu.join("cpu.cfs_quota_us").exists() {
                    return Ok(Cpu::CgroupV1 {
                        usage,
                        quota: cpu.join("cpu.cfs_quota_us"),
                        period: cpu.join("cpu.cfs_period_us"),
                    });
                }
                Err(format!(
                    "cgroup {name:?} not found (v2 /sys/fs/cgroup/{name}, or v1 cpu and cpuacct)"
                ))
            }
        }
    }

    /// (CPU time used in µs so far, cores the source may use); None when not
    /// measured.
    fn sample(&self) -> Option<(f64, f64)> {
        match self {
            Cpu::None => None,
            Cpu::Host => {
                let stat = std::fs::read_to_string("/proc/stat").ok()?;
                let line = stat.lines().next()?;
                let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                let total: f64 = v.iter().sum();
                let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
                // Jiffies: only ratios matter; report busy jiffies against the
                // total as if one "core" of the total's unit.
                Some(((total - idle) * 1e6, total * 1e6))
            }
            Cpu::CgroupV2(dir) => {
                let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usage: f64 = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse().ok()))?;
                let max = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
                let mut it = max.split_whitespace();
                let quota = it.next()?;
                let period: f64 = it.next().and_then(|p| p.parse().ok()).unwrap_or(100_000.0);
                let cores = if quota == "max" {
                    cpus()
                } else {
                    quota.parse::<f64>().ok()? / period
                };
                Some((usage, cores))
            }
            Cpu::CgroupV1 { usage, quota, period } => {
                let used = read_u64(usage)? as f64 / 1000.0;
                let q = std::fs::read_to_string(quota).ok()?.trim().parse::<i64>().ok()?;
                let p = read_u64(period).unwrap_or(100_000) as f64;
                let cores = if q <= 0 { cpus() } else { q as f64 / p };
                Some((used, cores))
            }
        }
    }
}

/// The last inputs measured, shared with the status command.
#[derive(Default)]
pub struct Measured {
    /// cpu busy × 1e6
    pub cpu_busy_ppm: AtomicU64,
    /// The service answered.
    pub service_up: AtomicBool,
    /// Temperature in m°C.
    pub temperature_mc: AtomicU64,
    /// Power in mW.
    pub power_mw: AtomicU64,
}

impl Measured {
    /// Publishes `inputs` for the status command.
    fn store(&self, inputs: &Inputs) {
        let milli = |v: Option<f64>| (v.unwrap_or(0.0) * 1000.0) as u64;
        self.cpu_busy_ppm
            .store((inputs.cpu_busy.unwrap_or(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.service_up.store(inputs.service_up, Ordering::Relaxed);
        self.temperature_mc
            .store(milli(inputs.temperature_c), Ordering::Relaxed);
        self.power_mw.store(milli(inputs.power_w), Ordering::Relaxed);
    }
}

/// The measuring thread's sources and what it remembers between samples.
struct Sampler {
    cpu: Cpu,
    period: Duration,
    last_cpu: Option<(f64, f64)>,
    /// Read each time: a reload may change it.
    health_check: Arc<RwLock<Option<HealthCheck>>>,
    health: Health,
    last_failure: Option<String>,
    temperature: Option<(PathBuf, f64, f64)>,
    power: Option<(PathBuf, f64)>,
    last_energy: Option<(u64, Instant)>,
}

impl Sampler {
    /// CPU busy since the last sample (cores busy over cores, host or
    /// cgroup).
    fn cpu_busy(&mut self) -> Option<f64> {
        let now_cpu = self.cpu.sample();
        let busy = match (self.last_cpu, now_cpu) {
            (Some((u0, t0)), Some((u1, t1))) if matches!(self.cpu, Cpu::Host) => {
                // Host: busy jiffies over total jiffies.
                (t1 > t0).then(|| (u1 - u0) / (t1 - t0))
            }
            (Some((u0, _)), Some((u1, cores))) if cores > 0.0 => {
                Some((u1 - u0) / (self.period.as_micros() as f64 * cores))
            }
            _ => None,
        };
        self.last_cpu = now_cpu;
        busy.map(|b| b.clamp(0.0, 4.0))
    }

    /// Whether the local service is up, by its health check's rise and
    /// fall counts (up when there is none); logs each change.
    fn service_up(&mut self) -> bool {
        let current = self.health_check.read().ok().and_then(|h| h.clone());
        let Some(h) = current else {
            return true;
        };
        let result = crate::health::check(&h);
        let was = self.health.up();
        let up = self.health.observe(result.is_ok(), h.rise, h.fall);
        match (&result, up != was) {
            (Err(why), true) => tracing::warn!(%why, fall = h.fall, "the local service is down: availability 0"),
            (Ok(()), true) => tracing::info!(rise = h.rise, "the local service is up"),
            (Err(why), false) if self.last_failure.as_ref() != Some(why) => {
                tracing::debug!(%why, "health check failed")
            }
            _ => {}
        }
        self.last_failure = result.err();
        up
    }

    /// The power since the last sample, from the energy counter (W).
    fn power_w(&mut self) -> Option<f64> {
        let (path, _) = self.power.as_ref()?;
        let e = read_u64(path)?;
        let now = Instant::now();
        let w = self.last_energy.and_then(|(e0, t0)| {
            let dt = now.duration_since(t0).as_secs_f64();
            (e >= e0 && dt > 0.0).then(|| (e - e0) as f64 / 1e6 / dt)
        });
        self.last_energy = Some((e, now));
        w
    }

    /// One sample of every input.
    fn sample(&mut self, connections: u64) -> Inputs {
        let temperature_c = self
            .temperature
            .as_ref()
            .and_then(|(path, _, _)| read_u64(path))
            .map(|mc| mc as f64 / 1000.0);
        Inputs {
            cpu_busy: self.cpu_busy(),
            connections,
            temperature_c,
            power_w: self.power_w(),
            service_up: self.service_up(),
        }
    }
}

/// Starts the measuring thread: sends one `Inputs` per sample period until
/// `stop` is set. `connections` is read from the workers' flow counts.
pub fn start(
    config: &AvailabilityConfig,
    connections: Arc<AtomicU64>,
    out: Sender<Inputs>,
    stop: Arc<AtomicBool>,
    shared: Arc<Measured>,
    health_check: &Arc<RwLock<Option<HealthCheck>>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let cpu = Cpu::open(&config.cpu)?;
    let last_cpu = cpu.sample();
    let power = config.power.clone();
    let last_energy = power
        .as_ref()
        .and_then(|(p, _)| read_u64(p))
        .map(|e| (e, Instant::now()));
    let mut sampler = Sampler {
        cpu,
        period: Duration::from_millis(config.sample_ms),
        last_cpu,
        health_check: Arc::clone(health_check),
        health: Health::default(),
        last_failure: None,
        temperature: config.temperature.clone(),
        power,
        last_energy,
    };
    std::thread::Builder::new()
        .name("ss-measure".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(sampler.period);
                let inputs = sampler.sample(connections.load(Ordering::Relaxed));
                shared.store(&inputs);
                if out.send(inputs).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the measuring thread: {e}"))
}

//! EAL's arguments, the worker lcores and the mbuf pool.

use crate::config::{Hugepages, NodeConfig};
use synshare_dpdk::{Eal, Mempool};

const HUGEPAGE_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// True when enough free 2 MiB hugepages and a hugetlbfs mount exist.
fn hugepages_available(memory_mb: u32) -> bool {
    let free: u64 = std::fs::read_to_string(format!("{HUGEPAGE_DIR}/free_hugepages"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")))
        .unwrap_or(false);
    mounted && free * 2 >= u64::from(memory_mb)
}

/// Whether `device` names a virtual device (as opposed to a PCI address).
fn is_vdev(device: &str) -> bool {
    device.starts_with("net_")
}

/// The DPDK port name of the wire device.
pub(super) fn wire_port_name(device: &str) -> String {
    let first = device.split(',').next().unwrap_or(device);
    if is_vdev(device) || first.matches(':').count() >= 2 {
        first.to_owned()
    } else {
        format!("0000:{first}")
    }
}

/// EAL's arguments for this node, and whether it runs on hugepages.
pub(super) fn eal_args(c: &NodeConfig) -> (Vec<String>, bool) {
    // "0,1" or "0-3" is EAL's -l; a mapping of lcores to CPUs such as
    // "0@0,1@1,2@1" (more lcores than CPUs) is EAL's --lcores.
    let lcores_flag = if c.eal.lcores.contains('@') { "--lcores" } else { "-l" };
    let mut args: Vec<String> = vec![
        lcores_flag.into(),
        c.eal.lcores.clone(),
        "--file-prefix".into(),
        c.eal.file_prefix.clone(),
    ];
    let huge = match c.eal.hugepages {
        Hugepages::On => true,
        Hugepages::Off => false,
        Hugepages::Auto => hugepages_available(c.eal.memory_mb),
    };
    if let Some(main) = c.eal.main_lcore {
        args.extend(["--main-lcore".into(), main.to_string()]);
    }
    if huge {
        args.extend(["--in-memory".into(), "-m".into(), c.eal.memory_mb.to_string()]);
    } else {
        args.extend(["--no-huge".into(), "-m".into(), c.eal.memory_mb.to_string()]);
    }
    let segments = c.all_segments();
    if segments.iter().all(|s| is_vdev(&s.wire.device)) {
        args.push("--no-pci".into());
    }
    for s in &segments {
        if is_vdev(&s.wire.device) {
            args.extend(["--vdev".into(), s.wire.device.clone()]);
        } else {
            args.extend(["-a".into(), s.wire.device.clone()]);
        }
    }
    args.extend(c.eal.extra_args.iter().cloned());
    (args, huge)
}

/// The worker lcores EAL gives, if enough for every segment's workers.
pub(super) fn worker_lcores(eal: &Eal, c: &NodeConfig) -> Result<Vec<u32>, String> {
    let lcores = eal.worker_lcores();
    let segments = c.all_segments().len();
    let needed = usize::from(c.workers) * segments;
    if lcores.len() < needed {
        return Err(format!(
            "eal.lcores {:?} gives {} worker lcore(s); {} workers x {} segment(s) need {needed}",
            c.eal.lcores,
            lcores.len(),
            c.workers,
            segments
        ));
    }
    Ok(lcores)
}

/// The mbuf pool: for every segment, its queues' descriptors twice over.
pub(super) fn mbuf_pool(c: &NodeConfig) -> Result<Mempool, String> {
    let descs: u32 = c
        .all_segments()
        .iter()
        .map(|v| u32::from(v.wire.rx_desc) + u32::from(v.wire.tx_desc) + 1024)
        .sum();
    let mbufs = (u32::from(c.workers) * descs * 2 + 4096).next_power_of_two() - 1;
    Mempool::new("ss_mbufs", mbufs, 256, 2048 + 128, 0).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_port_names() {
        assert_eq!(wire_port_name("net_af_packet0,iface=x"), "net_af_packet0");
        assert_eq!(wire_port_name("0000:3b:00.0"), "0000:3b:00.0");
        assert_eq!(wire_port_name("3b:00.0"), "0000:3b:00.0");
    }
}

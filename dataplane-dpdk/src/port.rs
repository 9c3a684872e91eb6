//! Ethernet ports and their queues.

use crate::mbuf::{Burst, Mempool, TxBatch, BURST};
use crate::DpdkError;
use std::ffi::{CStr, CString};
use std::sync::Arc;
use synshare_dataplane::hash::nic::RssTypes;
use synshare_dataplane::hash::{KEY_LEN, SYMMETRIC_KEY};
use synshare_dataplane::packet::Mac;

/// A DPDK port number.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(transparent)]
pub struct PortId(pub u16);

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// RX queues (one per worker).
    pub rx_queues: u16,
    /// TX queues (one per worker).
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Program RSS with this key over IPv4/IPv6 TCP and UDP, when the
    /// port supports it, with one RX queue as with several: the hash in
    /// each mbuf is then the connection value, and the worker skips
    /// computing it. (A driver that refuses RSS with this many queues is
    /// configured without.)
    pub rss_key: Option<[u8; 40]>,
    /// Receive frames for any destination MAC.
    pub promiscuous: bool,
}

// RTE_ETH_RSS_* are function-like macros bindgen cannot evaluate.
const RSS_IPV4: u64 = 1 << 2;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;
const RSS_IPV6: u64 = 1 << 8;
const RSS_NONFRAG_IPV6_TCP: u64 = 1 << 10;
const RSS_NONFRAG_IPV6_UDP: u64 = 1 << 11;
const RX_OFFLOAD_RSS_HASH: u64 = 1 << 19;
const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;

/// Port statistics, as the driver counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the hardware dropped (RX queue full).
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A started port. Stopped and closed on drop.
pub struct Port {
    id: PortId,
    name: String,
    rss_hash: bool,
    _pool: Arc<Mempool>,
}

impl Port {
    /// The port of a probed device by name (e.g. `net_tap0`, a PCI address).
    pub fn find(name: &str) -> Result<PortId, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::new("port name contains NUL", 22))?;
        let mut id = 0u16;
        // SAFETY: c and id are valid for the call.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::new(format!("no DPDK port named {name:?}"), rc));
        }
        Ok(PortId(id))
    }

    /// Configures and starts port `id` with its RX queues fed from `pool`.
    pub fn start(id: PortId, name: &str, config: &PortConfig, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
        let p = id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_info_get({name})"), rc));
        }
        if config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!(
                    "port {name} has at most {} RX / {} TX queues, {} / {} wanted",
                    info.max_rx_queues, info.max_tx_queues, config.rx_queues, config.tx_queues
                ),
                22,
            ));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let mut key = config.rss_key.unwrap_or([0; 40]);
        let wanted = RSS_IPV4
            | RSS_NONFRAG_IPV4_TCP
            | RSS_NONFRAG_IPV4_UDP
            | RSS_IPV6
            | RSS_NONFRAG_IPV6_TCP
            | RSS_NONFRAG_IPV6_UDP;
        let supported = info.flow_type_rss_offloads & wanted;
        let mut rss_hash = config.rss_key.is_some()
            && supported & (RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV6_TCP) != 0
            && usize::from(info.hash_key_size) == key.len();
        if rss_hash {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = supported;
            if info.rx_offload_capa & RX_OFFLOAD_RSS_HASH != 0 {
                conf.rxmode.offloads |= RX_OFFLOAD_RSS_HASH;
            }
        }
        // The NIC verifies IPv4 header checksums where it can, and says so
        // in each mbuf (the fast path then trusts it).
        if info.rx_offload_capa & RX_OFFLOAD_IPV4_CKSUM != 0 {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_CKSUM;
        }
        // SAFETY: conf (and the key it points to) live across the call,
        // which copies them.
        let mut rc = unsafe { dpdk_sys::rte_eth_dev_configure(p, config.rx_queues, config.tx_queues, &conf) };
        if rc != 0 && rss_hash {
            // Some drivers take RSS only with several queues: without it,
            // the value is computed.
            rss_hash = false;
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_NONE;
            conf.rx_adv_conf.rss_conf = Default::default();
            conf.rxmode.offloads &= !RX_OFFLOAD_RSS_HASH;
            // SAFETY: as above.
            rc = unsafe { dpdk_sys::rte_eth_dev_configure(p, config.rx_queues, config.tx_queues, &conf) };
        }
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_configure({name})"), rc));
        }
        // SAFETY: a configured port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(p) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..config.rx_queues {
            // SAFETY: the pool outlives the port (we hold an Arc); a null
            // rx_conf means the driver's defaults.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(p, q, config.rx_desc, socket, std::ptr::null(), pool.as_ptr())
            };
            if rc != 0 {
                return Err(DpdkError::new(format!("rte_eth_rx_queue_setup({name}, {q})"), rc));
            }
        }
        for q in 0..config.tx_queues {
            // SAFETY: a null tx_conf means the driver's defaults.
            let rc = unsafe { dpdk_sys::rte_eth_tx_queue_setup(p, q, config.tx_desc, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(DpdkError::new(format!("rte_eth_tx_queue_setup({name}, {q})"), rc));
            }
        }
        // SAFETY: configured port with its queues set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(p) };
        if rc != 0 {
            return Err(DpdkError::new(format!("rte_eth_dev_start({name})"), rc));
        }
        if config.promiscuous {
            // SAFETY: a started port.
            let rc = unsafe { dpdk_sys::rte_eth_promiscuous_enable(p) };
            // Some virtual devices do not implement it (-ENOTSUP) and
            // receive everything anyway.
            if rc != 0 && rc != -95 {
                return Err(DpdkError::new(format!("rte_eth_promiscuous_enable({name})"), rc));
            }
        }
        Ok(Port {
            id,
            name: name.to_owned(),
            rss_hash,
            _pool: pool,
        })
    }

    /// The port number.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The name the port was opened by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the port delivers the cluster's RSS hash in each mbuf.
    pub fn rss_hash(&self) -> bool {
        self.rss_hash
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<Mac, DpdkError> {
        mac_of(self.id)
    }

    /// The driver's name.
    pub fn driver(&self) -> String {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter; driver_name points to a
        // static string of the driver.
        unsafe {
            if dpdk_sys::rte_eth_dev_info_get(self.id.0, &mut info) != 0 || info.driver_name.is_null() {
                return String::from("?");
            }
            CStr::from_ptr(info.driver_name).to_string_lossy().into_owned()
        }
    }

    /// The driver's counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        stats_of(self.id)
    }

    /// The RX queue `q`, for one worker.
    pub fn rx_queue(&self, q: u16) -> RxQueue {
        RxQueue {
            port: self.id,
            queue: q,
        }
    }

    /// The TX queue `q`, for one worker.
    pub fn tx_queue(&self, q: u16) -> TxQueue {
        TxQueue {
            port: self.id,
            queue: q,
        }
    }
}

/// The MAC address of port `id`.
pub fn mac_of(id: PortId) -> Result<Mac, DpdkError> {
    let mut addr = dpdk_sys::rte_ether_addr::default();
    // SAFETY: addr is a valid out-parameter.
    let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(id.0, &mut addr) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_macaddr_get", rc));
    }
    Ok(Mac(addr.addr_bytes))
}

/// The counters of port `id`.
pub fn stats_of(id: PortId) -> Result<PortStats, DpdkError> {
    let mut s = dpdk_sys::rte_eth_stats::default();
    // SAFETY: s is a valid out-parameter.
    let rc = unsafe { dpdk_sys::rte_eth_stats_get(id.0, &mut s) };
    if rc != 0 {
        return Err(DpdkError::new("rte_eth_stats_get", rc));
    }
    Ok(PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port was started by us; workers using its queues have
        // stopped before the node drops it.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id.0);
            dpdk_sys::rte_eth_dev_close(self.id.0);
        }
    }
}

/// One RX queue of a port, used by exactly one worker (not Clone, not Sync).
pub struct RxQueue {
    port: PortId,
    queue: u16,
}

impl RxQueue {
    /// The port and queue numbers.
    pub(crate) fn ids(&self) -> (u16, u16) {
        (self.port.0, self.queue)
    }

    /// The packet types whose RSS hash the port computes as the
    /// connection value: the Toeplitz function of the 4-tuple with the
    /// cluster's key. Asks the port what it applied (its hash types and
    /// key), so a driver that took less than was asked, or another key,
    /// never has its hash taken for the value. Empty when the port does
    /// not hash, or cannot say. Off the packet path (a worker asks once).
    pub fn rss_types(&self) -> RssTypes {
        let mut key = [0u8; KEY_LEN];
        let mut conf = dpdk_sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: KEY_LEN as u8,
            ..Default::default()
        };
        // SAFETY: `conf` and the key buffer it points to (KEY_LEN bytes, as
        // rss_key_len says) live across the call, which fills them.
        let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(self.port.0, &mut conf) };
        if rc != 0 || key != SYMMETRIC_KEY {
            return RssTypes::NONE;
        }
        [
            (RSS_NONFRAG_IPV4_TCP, RssTypes::IPV4_TCP),
            (RSS_NONFRAG_IPV4_UDP, RssTypes::IPV4_UDP),
            (RSS_NONFRAG_IPV6_TCP, RssTypes::IPV6_TCP),
            (RSS_NONFRAG_IPV6_UDP, RssTypes::IPV6_UDP),
        ]
        .iter()
        .filter(|(bit, _)| conf.rss_hf & bit != 0)
        .fold(RssTypes::NONE, |set, (_, t)| set.with(*t))
    }

    /// True when the port verifies IPv4 header checksums and says so in
    /// each mbuf (`RTE_ETH_RX_OFFLOAD_IPV4_CKSUM` configured): the worker
    /// then trusts [`crate::Received::ip_checksum`]. Off the packet path.
    pub fn ip_checksum_offload(&self) -> bool {
        let mut conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: conf is a valid out-parameter the call fills.
        let rc = unsafe { dpdk_sys::rte_eth_dev_conf_get(self.port.0, &mut conf) };
        rc == 0 && conf.rxmode.offloads & RX_OFFLOAD_IPV4_CKSUM != 0
    }

    /// Receives up to [`BURST`] packets into `burst` (freeing whatever it
    /// still held). Returns how many arrived.
    #[inline]
    pub fn receive(&mut self, burst: &mut Burst) -> usize {
        let pkts = burst.refill();
        // SAFETY: `pkts` has room for BURST pointers; the driver fills the
        // first n with mbufs whose ownership passes to `burst`. &mut self
        // makes this the only user of the queue.
        let n = unsafe { dpdk_sys::ss_rx_burst(self.port.0, self.queue, pkts, BURST as u16) };
        burst.set_received(usize::from(n));
        usize::from(n)
    }
}

/// One TX queue of a port, used by exactly one worker.
pub struct TxQueue {
    port: PortId,
    queue: u16,
}

impl TxQueue {
    /// Sends what `batch` holds; frees what the queue could not take and
    /// returns that number.
    #[inline]
    pub fn send(&mut self, batch: &mut TxBatch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let (pkts, n) = batch.raw();
        // SAFETY: the first n slots hold mbufs the batch owns; the driver
        // takes ownership of the first `sent`, and `batch.sent` frees the
        // rest. &mut self makes this the only user of the queue.
        let sent = unsafe { dpdk_sys::ss_tx_burst(self.port.0, self.queue, pkts, n) };
        batch.sent(usize::from(sent))
    }
}

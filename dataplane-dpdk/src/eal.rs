//! EAL initialisation and clean-up.

use crate::DpdkError;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised Environment Abstraction Layer. At most one per process;
/// dropping it runs `rte_eal_cleanup`.
pub struct Eal {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Eal {
    /// Initialises EAL with `args` (without the program name).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new(
                "rte_eal_init (already initialised in this process)",
                libc_ealready(),
            ));
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("synshare").expect("no NUL"));
        for a in args {
            match CString::new(a.as_ref()) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    INITIALISED.store(false, Ordering::SeqCst);
                    return Err(DpdkError::new(
                        format!("EAL argument {:?} contains NUL", a.as_ref()),
                        22,
                    ));
                }
            }
        }
        // EAL may permute argv and keeps pointers into it for the life of
        // the process: leak the strings on purpose.
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(|c| c.into_raw()).collect();
        let argc = argv.len() as i32;
        let argv_ptr = argv.as_mut_ptr();
        std::mem::forget(argv);
        // SAFETY: argv holds argc valid NUL-terminated strings that are never
        // freed; EAL is initialised once per process (guarded above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv_ptr) };
        if rc < 0 {
            return Err(DpdkError::last("rte_eal_init"));
        }
        Ok(Eal {
            _not_send: core::marker::PhantomData,
        })
    }

    /// The lcore ids of the worker lcores (all enabled lcores but the main).
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: rte_get_next_lcore only reads EAL's lcore table; starting
        // from -1 (as u32::MAX) and skipping the main lcore, it returns
        // RTE_MAX_LCORE when done.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// Creates a virtual device after start-up (`rte_dev_probe`), e.g.
    /// `net_tap0,iface=ss-tap,mac=02:00:00:00:00:01`.
    pub fn probe(&self, devargs: &str) -> Result<(), DpdkError> {
        let c = CString::new(devargs).map_err(|_| DpdkError::new("device arguments contain NUL", 22))?;
        // SAFETY: c is a valid NUL-terminated string for the call; EAL is
        // initialised (we hold &Eal).
        let rc = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if rc < 0 {
            return Err(DpdkError::new(format!("rte_dev_probe({devargs})"), rc));
        }
        Ok(())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by this value; the owner drops ports
        // and mempools before it (see Node's field order).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}

fn libc_ealready() -> i32 {
    114
}

//! Running closures on EAL worker lcores.

use crate::DpdkError;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a closure could not be launched.
pub type LaunchError = DpdkError;

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch` for exactly this
    // call; we take it back once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C.
    catch_unwind(AssertUnwindSafe(job)).unwrap_or(-1)
}

/// Runs `job` on worker lcore `lcore`. The lcore must be idle.
pub fn launch(lcore: u32, job: impl FnOnce() -> i32 + Send + 'static) -> Result<(), LaunchError> {
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed).cast::<c_void>();
    // SAFETY: the trampoline takes ownership of `arg`; if the launch fails
    // the job never runs and we take it back below.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc != 0 {
        // SAFETY: the launch failed, so the trampoline will not run; `arg`
        // is still ours.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::new(format!("rte_eal_remote_launch(lcore {lcore})"), rc));
    }
    Ok(())
}

/// Waits for every worker lcore to finish its job.
pub fn wait_all() {
    // SAFETY: blocks until all worker lcores are idle; called from the main
    // lcore after EAL init.
    unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
}

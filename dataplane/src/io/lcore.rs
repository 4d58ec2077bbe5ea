//! Work on the EAL's own lcore threads (`rte_eal_remote_launch` / `rte_eal_wait_lcore`).
//!
//! Workers run there rather than on `std::thread`s given an lcore id with
//! `rte_thread_register`, because DPDK refuses that registration once the process serves
//! secondaries (it calls `rte_mp_disable()`, after which `dpdk-dumpcap` and `dpdk-pdump` are
//! turned away with "Primary process refused secondary attachment"). EAL lcores have an lcore
//! id (so mempools keep a per-lcore cache for them) and the CPU set the EAL arguments gave them
//! (`--lcores 1@3`).

use super::dpdk::{strerror, DpdkError, Eal};
use dpdk_sys as sys;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A job handed to an lcore: boxed twice so one thin pointer crosses the C call.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// A job running on an EAL lcore. [`LcoreJob::wait`] (or drop) waits for it to return, so the
/// job never outlives its handle.
#[derive(Debug)]
pub struct LcoreJob {
    lcore: u32,
    waited: bool,
}

/// Run `job` on EAL lcore `lcore` (not the main one; it must be idle), now.
pub fn launch(_eal: &Eal, lcore: u32, job: Job) -> Result<LcoreJob, DpdkError> {
    let arg = Box::into_raw(Box::new(job));
    // SAFETY: the EAL is initialised (we hold an `Eal`); `run_job` takes ownership of `arg`
    // when the launch succeeds, and only then.
    let ret = unsafe { sys::rte_eal_remote_launch(Some(run_job), arg.cast::<c_void>(), lcore) };
    if ret < 0 {
        // SAFETY: the launch failed, so `run_job` never ran and `arg` is still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(DpdkError::Call {
            call: format!("rte_eal_remote_launch(lcore {lcore})"),
            errno: -ret,
            reason: format!(
                "{}: is it one of the EAL's --lcores, and idle?",
                strerror(-ret)
            ),
        });
    }
    Ok(LcoreJob {
        lcore,
        waited: false,
    })
}

/// The lcore thread's entry point: runs the job once; a panic becomes return code -1 instead
/// of unwinding into C.
extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Box<Job>` leaked by `launch` for this one call.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

impl LcoreJob {
    /// The lcore it runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Wait for the job to return; false if it panicked.
    pub fn wait(mut self) -> bool {
        self.waited = true;
        wait_lcore(self.lcore)
    }
}

fn wait_lcore(lcore: u32) -> bool {
    // SAFETY: called from the main lcore that launched the job; blocks until it returns.
    unsafe { sys::rte_eal_wait_lcore(lcore) == 0 }
}

impl Drop for LcoreJob {
    fn drop(&mut self) {
        if !self.waited {
            wait_lcore(self.lcore);
        }
    }
}

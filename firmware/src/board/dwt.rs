//! 64-bit cycle counter from DWT CYCCNT (Cortex-M3/M4/M7 hardware; QEMU does
//! not emulate it). Extended in software: callers read it far more often than
//! once per 2^32 cycles (9 s at 480 MHz).

use core::cell::Cell;
use cortex_m::peripheral::{DCB, DWT};

/// Handle to the running counter, in core cycles.
#[derive(Clone, Copy)]
pub struct Clock {
    _private: (),
}

struct Ext {
    high: Cell<u32>,
    last: Cell<u32>,
}
// SAFETY: single core, and `now` is only called from thread mode.
unsafe impl Sync for Ext {}
static EXT: Ext = Ext { high: Cell::new(0), last: Cell::new(0) };

impl Clock {
    /// Enables trace and the cycle counter.
    pub fn start(mut dcb: DCB, mut dwt: DWT) -> Self {
        dcb.enable_trace();
        DWT::unlock();
        dwt.set_cycle_count(0);
        dwt.enable_cycle_counter();
        Self { _private: () }
    }

    /// Cycles since `start`.
    #[inline]
    pub fn now(&self) -> u64 {
        let c = DWT::cycle_count();
        if c < EXT.last.get() {
            EXT.high.set(EXT.high.get() + 1);
        }
        EXT.last.set(c);
        (u64::from(EXT.high.get()) << 32) | u64::from(c)
    }
}

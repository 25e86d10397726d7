//! 64-bit counter from the 24-bit SysTick: the exception counts wraps of a
//! full 2^24 reload. Used under QEMU (its SysTick runs on the 25 MHz core
//! clock) and on the RP2040 (no DWT cycle counter on Cortex-M0+).

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
use cortex_m_rt::exception;

const RELOAD: u32 = 0x00FF_FFFF;
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // Only writer; load/store keeps this valid on v6-M (no atomic RMW there).
    WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Handle to the running counter. `now()` = SysTick ticks × `scale`.
#[derive(Clone, Copy)]
pub struct Clock {
    scale: u32,
}

impl Clock {
    /// Starts SysTick on the core clock, free running, wrap interrupt on.
    pub fn start(mut syst: SYST, scale: u32) -> Self {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // `syst` is consumed: nothing else can reconfigure the timer; `now`
        // only reads the current-value register.
        Self { scale }
    }

    /// Elapsed units since `start`. Must not be called with interrupts masked
    /// for longer than one wrap (2^24 ticks).
    #[inline]
    pub fn now(&self) -> u64 {
        loop {
            let w1 = WRAPS.load(Ordering::Relaxed);
            let mut v = SYST::get_current();
            let pending = SCB::is_pendst_pending();
            let w2 = WRAPS.load(Ordering::Relaxed);
            if w1 != w2 {
                continue;
            }
            let mut w = u64::from(w1);
            if pending {
                // Wrapped but the handler has not run yet: count that wrap and
                // re-read so the value is certainly from after it.
                v = SYST::get_current();
                w += 1;
            }
            let ticks = (w << 24) + u64::from(RELOAD - v);
            return ticks * u64::from(self.scale);
        }
    }
}

//! Board layer: everything the sampler loop needs from the hardware, behind
//! embedded-hal traits and one clock.
//!
//! Each profile provides:
//! - `BOARD_TAG`: read by `run-qemu.sh` to pick QEMU machine/CPU or probe-rs chip,
//! - `Board::init`: a step pin (`OutputPin`, high while a denoising step runs),
//!   a `DelayNs` and the [`Clock`],
//! - `UNIT`: what the clock counts (`instr` under QEMU `-icount shift=0`,
//!   `cycles` on hardware).

use embedded_hal::delay::DelayNs;

#[cfg(any(feature = "qemu-m4", feature = "qemu-m7", feature = "qemu-m33"))]
mod qemu;
#[cfg(any(feature = "qemu-m4", feature = "qemu-m7", feature = "qemu-m33"))]
pub use qemu::*;

#[cfg(feature = "pico")]
mod pico;
#[cfg(feature = "pico")]
pub use pico::*;

#[cfg(feature = "stm32h743")]
mod stm32h743;
#[cfg(feature = "stm32h743")]
pub use stm32h743::*;

#[cfg(any(feature = "qemu-m4", feature = "qemu-m7", feature = "qemu-m33", feature = "pico"))]
mod systick;
#[cfg(any(feature = "qemu-m4", feature = "qemu-m7", feature = "qemu-m33", feature = "pico"))]
pub use systick::Clock;

#[cfg(feature = "stm32h743")]
mod dwt;
#[cfg(feature = "stm32h743")]
pub use dwt::Clock;

/// Busy-wait delay on the board clock.
#[derive(Clone, Copy)]
pub struct ClockDelay {
    clock: Clock,
    /// Clock units per microsecond.
    per_us: u32,
}

impl ClockDelay {
    /// A delay counting `per_us` clock units per microsecond.
    pub const fn new(clock: Clock, per_us: u32) -> Self {
        Self { clock, per_us }
    }
}

impl DelayNs for ClockDelay {
    fn delay_ns(&mut self, ns: u32) {
        let units = (u64::from(ns) * u64::from(self.per_us)).div_ceil(1000);
        let end = self.clock.now() + units;
        while self.clock.now() < end {}
    }
}

/// A pin on a memory-mapped set/clear register pair.
pub struct MmioPin {
    set: *mut u32,
    set_mask: u32,
    clear: *mut u32,
    clear_mask: u32,
}

impl MmioPin {
    /// # Safety
    /// `set` and `clear` must be valid, device-owned registers where writing
    /// `set_mask` to `set` drives the pin high and `clear_mask` to `clear`
    /// drives it low, and nothing else may use the pin.
    pub const unsafe fn new(
        set: *mut u32,
        set_mask: u32,
        clear: *mut u32,
        clear_mask: u32,
    ) -> Self {
        Self { set, set_mask, clear, clear_mask }
    }

    /// The set register (for boards whose pin register is read-modify-write).
    #[allow(dead_code)]
    pub(crate) fn set_reg(&self) -> *mut u32 {
        self.set
    }
}

impl embedded_hal::digital::ErrorType for MmioPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for MmioPin {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        // SAFETY: per `new`'s contract.
        unsafe { self.set.write_volatile(self.set_mask) };
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Self::Error> {
        // SAFETY: per `new`'s contract.
        unsafe { self.clear.write_volatile(self.clear_mask) };
        Ok(())
    }
}

/// What a board hands to the application.
pub struct Board {
    /// High while a denoising step runs (scope / logic-analyser marker).
    pub step_pin: StepPin,
    /// Busy-wait delay.
    pub delay: ClockDelay,
    /// Free-running 64-bit counter in [`UNIT`]s.
    pub clock: Clock,
}

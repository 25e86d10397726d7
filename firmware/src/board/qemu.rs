//! QEMU MPS2 boards: `mps2-an386` (Cortex-M4, feature `qemu-m4`),
//! `mps2-an500` (Cortex-M7, feature `qemu-m7`) and `mps2-an505` (Cortex-M33,
//! feature `qemu-m33`, run in the secure state it leaves reset in).
//!
//! With `-icount shift=0` each guest instruction is 1 ns of virtual time and
//! SysTick counts the core clock: 25 MHz on the an386/an500, so one tick is 40
//! instructions; 20 MHz on the an505, so one tick is 50. The clock below counts
//! instructions.

use super::{Board, Clock, ClockDelay, MmioPin};

/// Board tag read by `run-qemu.sh`: `qemu:<machine>:<cpu>`.
#[cfg(feature = "qemu-m4")]
pub static BOARD_TAG: &str = "DDPM_BOARD=qemu:mps2-an386:cortex-m4;";
/// Board tag read by `run-qemu.sh`: `qemu:<machine>:<cpu>`.
#[cfg(feature = "qemu-m7")]
pub static BOARD_TAG: &str = "DDPM_BOARD=qemu:mps2-an500:cortex-m7;";

/// Board tag read by `run-qemu.sh`: `qemu:<machine>:<cpu>`.
#[cfg(feature = "qemu-m33")]
pub static BOARD_TAG: &str = "DDPM_BOARD=qemu:mps2-an505:cortex-m33;";

/// What [`Clock`] counts.
pub const UNIT: &str = "instr";

/// Instructions per SysTick tick under `-icount shift=0`.
#[cfg(not(feature = "qemu-m33"))]
const INSTR_PER_TICK: u32 = 40;
/// Instructions per SysTick tick under `-icount shift=0` (an505 SYSCLK 20 MHz).
#[cfg(feature = "qemu-m33")]
const INSTR_PER_TICK: u32 = 50;

/// MPS2 FPGA I/O block: LED register (bit 0 = LED0).
#[cfg(not(feature = "qemu-m33"))]
const FPGAIO_LED: usize = 0x4002_8000;
/// AN505 FPGA I/O block (secure alias, the PPCs leave it secure-only after
/// reset): LED register (bit 0 = LED0).
#[cfg(feature = "qemu-m33")]
const FPGAIO_LED: usize = 0x5030_2000;

/// LED0 of the MPS2 FPGA I/O block: the board's user LED. The block has one
/// read/write register, so the pin does read-modify-write.
pub struct StepPin(MmioPin);

impl embedded_hal::digital::ErrorType for StepPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for StepPin {
    fn set_high(&mut self) -> Result<(), Self::Error> {
        let r = self.0.set_reg();
        // SAFETY: FPGAIO LED register, owned by this pin.
        unsafe { r.write_volatile(r.read_volatile() | 1) };
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let r = self.0.set_reg();
        // SAFETY: as above.
        unsafe { r.write_volatile(r.read_volatile() & !1) };
        Ok(())
    }
}

impl Board {
    /// Takes the core peripherals and sets up clock, delay and pin.
    pub fn init(cp: cortex_m::Peripherals) -> Self {
        let clock = Clock::start(cp.SYST, INSTR_PER_TICK);
        Self {
            // SAFETY: the LED register exists on every MPS2 FPGA image QEMU models.
            step_pin: StepPin(unsafe {
                MmioPin::new(FPGAIO_LED as *mut u32, 1, FPGAIO_LED as *mut u32, 1)
            }),
            // Virtual time: 1 instruction per ns.
            delay: ClockDelay::new(clock, 1000),
            clock,
        }
    }
}

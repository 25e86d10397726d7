//! STM32H743 (e.g. NUCLEO-H743ZI, Cortex-M7). Build-only here; flash with
//! `probe-rs run --chip STM32H743ZITx` (README.md).
//!
//! No clock setup: the core runs on the 64 MHz HSI it boots from. The step
//! pin is PB0 (LD1 on NUCLEO-H743ZI); cycles come from DWT CYCCNT. Caches are
//! enabled so that flash-resident weights are not read at flash wait-state speed.

use super::{Board, Clock, ClockDelay, MmioPin};

/// Board tag read by `run-qemu.sh`: `probe-rs:<chip>`.
pub static BOARD_TAG: &str = "DDPM_BOARD=probe-rs:STM32H743ZITx;";

/// What [`Clock`] counts.
pub const UNIT: &str = "cycles";

const RCC_AHB4ENR: usize = 0x5802_4400 + 0x0E0;
const GPIOB_EN: u32 = 1 << 1;
const GPIOB_MODER: usize = 0x5802_0400;
const GPIOB_BSRR: usize = 0x5802_0400 + 0x18;

/// PB0 (LD1).
pub type StepPin = MmioPin;

const HSI_MHZ: u32 = 64;

impl Board {
    /// Takes the core peripherals and sets up caches, clock, delay and pin.
    pub fn init(mut cp: cortex_m::Peripherals) -> Self {
        cp.SCB.enable_icache();
        cp.SCB.enable_dcache(&mut cp.CPUID);
        // SAFETY: documented STM32H743 registers; this firmware is their only user.
        unsafe {
            let en = RCC_AHB4ENR as *mut u32;
            en.write_volatile(en.read_volatile() | GPIOB_EN);
            let _ = en.read_volatile(); // let the clock enable settle
            let moder = GPIOB_MODER as *mut u32;
            moder.write_volatile((moder.read_volatile() & !0b11) | 0b01);
        }
        let clock = Clock::start(cp.DCB, cp.DWT);
        Self {
            // SAFETY: BSRR bit 0 sets PB0, bit 16 resets it; PB0 configured above.
            step_pin: unsafe {
                MmioPin::new(GPIOB_BSRR as *mut u32, 1, GPIOB_BSRR as *mut u32, 1 << 16)
            },
            delay: ClockDelay::new(clock, HSI_MHZ),
            clock,
        }
    }
}

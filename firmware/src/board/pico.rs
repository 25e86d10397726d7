//! Raspberry Pi Pico (RP2040, Cortex-M0+, thumbv6m-none-eabi). Build-only
//! here; flash with `probe-rs run --chip RP2040` (README.md).
//!
//! No clock setup: the core runs from the ring oscillator (~6 MHz) that boot
//! leaves it on, which changes wall time but not cycle counts. The step pin is
//! GPIO25 (the on-board LED) driven through SIO. SysTick on the core clock
//! gives cycles (Cortex-M0+ has no DWT cycle counter).

use super::{Board, Clock, ClockDelay, MmioPin};

/// Board tag read by `run-qemu.sh`: `probe-rs:<chip>`.
pub static BOARD_TAG: &str = "DDPM_BOARD=probe-rs:RP2040;";

/// What [`Clock`] counts.
pub const UNIT: &str = "cycles";

/// Second-stage bootloader for the Pico's W25Q080 flash; placed in the
/// first 256 bytes of flash by `memory/pico.x`.
#[link_section = ".boot2"]
#[used]
#[no_mangle]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

const RESETS_CLR: usize = 0x4000_c000 + 0x3000; // atomic-clear alias of RESETS.RESET
const RESETS_DONE: usize = 0x4000_c008;
const RESET_IO_BANK0: u32 = 1 << 5;
const RESET_PADS_BANK0: u32 = 1 << 8;
const GPIO25_CTRL: usize = 0x4001_4000 + 25 * 8 + 4;
const FUNCSEL_SIO: u32 = 5;
const SIO_GPIO_OUT_SET: usize = 0xd000_0014;
const SIO_GPIO_OUT_CLR: usize = 0xd000_0018;
const SIO_GPIO_OE_SET: usize = 0xd000_0024;
const LED: u32 = 1 << 25;

/// GPIO25 (on-board LED).
pub type StepPin = MmioPin;

/// Ring-oscillator frequency assumed for `DelayNs` (nominal, ±50 %).
const ROSC_MHZ: u32 = 6;

impl Board {
    /// Takes the core peripherals and sets up clock, delay and pin.
    pub fn init(cp: cortex_m::Peripherals) -> Self {
        // SAFETY: documented RP2040 registers; this firmware is their only user.
        unsafe {
            let mask = RESET_IO_BANK0 | RESET_PADS_BANK0;
            (RESETS_CLR as *mut u32).write_volatile(mask);
            while (RESETS_DONE as *const u32).read_volatile() & mask != mask {}
            (GPIO25_CTRL as *mut u32).write_volatile(FUNCSEL_SIO);
            (SIO_GPIO_OE_SET as *mut u32).write_volatile(LED);
        }
        let clock = Clock::start(cp.SYST, 1);
        Self {
            // SAFETY: SIO set/clear registers of GPIO25, configured above.
            step_pin: unsafe {
                MmioPin::new(SIO_GPIO_OUT_SET as *mut u32, LED, SIO_GPIO_OUT_CLR as *mut u32, LED)
            },
            delay: ClockDelay::new(clock, ROSC_MHZ),
            clock,
        }
    }
}

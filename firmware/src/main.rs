#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_semihosting as _;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

mod board;
mod stack;

#[allow(dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

#[entry]
fn main() -> ! {
    stack::paint();
    let cp = cortex_m::Peripherals::take().unwrap();
    let mut b = board::Board::init(cp);
    defmt::info!("board {=[u8]:a} artifact {} bytes", &board::BOARD_TAG[..], config::ARTIFACT.len());
    let t0 = b.clock.now();
    let mut x = 0u32;
    for i in 0..1_000_000u32 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    let t1 = b.clock.now();
    b.step_pin.set_high().ok();
    b.delay.delay_us(10);
    b.step_pin.set_low().ok();
    let t2 = b.clock.now();
    defmt::info!("loop {} {=str} (x={}), delay 10us = {}", t1 - t0, board::UNIT, x, t2 - t1);
    defmt::info!("stack {} of {}", stack::high_water(), stack::available());
    semihosting::process::exit(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    semihosting::process::exit(101)
}

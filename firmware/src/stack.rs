//! Stack high-water mark: paint the free RAM between the end of the statics
//! (`__sheap`, cortex-m-rt) and the current stack pointer with a pattern, run,
//! then find the lowest word that was overwritten.

const PAINT: u32 = 0xC0DE_5AFE;

extern "C" {
    static mut __sheap: u32;
    static mut _stack_start: u32;
}

fn sheap() -> usize {
    // Linker symbol: only its address is taken.
    core::ptr::addr_of!(__sheap) as usize
}

fn stack_top() -> usize {
    core::ptr::addr_of!(_stack_start) as usize
}

/// Paints from `__sheap` up to a little below the current stack pointer.
#[inline(never)]
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    // Keep clear of this function's own frame and anything it may spill.
    let end = (sp - 64) & !3;
    let mut p = (sheap() + 3) & !3;
    while p < end {
        // SAFETY: [__sheap, sp - 64) is RAM that no static and no live stack
        // frame uses; the pattern is only ever read back by `high_water`.
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// Bytes of stack used since [`paint`]: from the top of RAM down to the
/// lowest word that no longer holds the pattern.
#[inline(never)]
pub fn high_water() -> usize {
    let mut p = (sheap() + 3) & !3;
    let top = stack_top();
    // SAFETY: reads of the RAM painted by `paint` (or stack above it).
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    top - p
}

/// Bytes between the end of the statics and the top of RAM (stack + free).
pub fn available() -> usize {
    stack_top() - sheap()
}

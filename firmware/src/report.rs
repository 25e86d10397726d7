//! Output formatting: ASCII art, fixed-point ratios, the BENCH line.

use core::fmt::{self, Write as _};

/// Ten-level ramp, dark to bright.
const RAMP: &[u8; 10] = b" .:-=+*#%@";

/// One image row (channel 0) as ASCII art into `out`; returns the text.
pub fn ascii_row<'a>(px: &[u8], w: usize, c: usize, row: usize, out: &'a mut [u8]) -> &'a str {
    let n = w.min(out.len());
    for (x, o) in out[..n].iter_mut().enumerate() {
        let v = px.get((row * w + x) * c).copied().unwrap_or(0);
        *o = RAMP[v as usize * RAMP.len() / 256];
    }
    // Every byte comes from RAMP, which is ASCII.
    core::str::from_utf8(&out[..n]).unwrap_or("")
}

/// `num / den` printed with three decimals (integer math: no float on v6-M).
pub struct Ratio(pub u64, pub u64);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 == 0 {
            return f.write_str("null");
        }
        let milli = (u128::from(self.0) * 1000 + u128::from(self.1) / 2) / u128::from(self.1);
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

/// Fixed-capacity text buffer; overflow truncates (the capacities below are
/// chosen with room to spare) instead of failing.
pub type Line = heapless::String<640>;

/// Appends formatted text to `line`, ignoring overflow (see [`Line`]).
pub fn push(line: &mut Line, args: fmt::Arguments<'_>) {
    let _ = line.write_fmt(args);
}

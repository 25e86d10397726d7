//! [`OutRq`]: the per-output-channel requantization of the convolution and
//! matmul kernels as one 64-bit multiply-add and shift, bit-identical to
//! [`mbqm`]. Portable; every target.

use crate::format::multiply_by_quantized_multiplier as mbqm;

/// The requantization of one output channel, `mbqm(acc, mult, shift)`, as one
/// 64-bit multiply-add and shift for the usual parameters (`mult ≥ 0`,
/// `shift ≤ 0`).
///
/// With `P = acc·mult` and `e = −shift`, MBQM is `v = ⌊(P + 2^30)/2^31⌋` then
/// `⌊(v + 2^(e−1))/2^e⌋` for `v ≥ 0` and `⌊(v + 2^(e−1) − 1)/2^e⌋` for `v < 0`
/// (gemmlowp's rounding divide; `v` itself for `e = 0`). Nested floor divisions
/// by positive integers merge, `⌊(⌊a/b⌋ + c)/d⌋ = ⌊(a + c·b)/(b·d)⌋`, so the result
/// is `⌊(P + K)/2^(31+e)⌋` with `K = 2^30 + 2^(30+e)`, less `2^31` when `v < 0`.
/// For `mult ≥ 0`, `v < 0` implies `acc < 0`, and when `acc < 0` but `v ≥ 0`
/// (`−2^30 ≤ P < 0`) both constants give 0 for `e ≥ 1`, so the sign of `acc` picks
/// the constant. `|P + K| < 2^63`, and `⌊(P + K)/2^(31+e)⌋` is the high word of
/// `P + K` shifted right by `e − 1`. Other parameters (`e = 0`, a left shift, a
/// negative multiplier) go through [`mbqm`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OutRq {
    pub(crate) kpos: i64,
    pub(crate) m: i32,
    pub(crate) e1: u32,
    mult: i32,
    shift: i32,
    pub(crate) fast: bool,
}

impl OutRq {
    /// Prepares `(mult, shift)`.
    #[inline(always)]
    pub fn new(mult: i32, shift: i32) -> Self {
        let e = (-shift.clamp(-31, 30)).clamp(1, 31) as u32;
        let kpos = (1i64 << 30) + (1i64 << (30 + e));
        OutRq { kpos, m: mult, e1: e - 1, mult, shift, fast: mult >= 0 && shift < 0 }
    }

    /// `(kpos, m, e1)` of the 64-bit form when it applies: then [`OutRq::apply`] is
    /// `(((acc·m + kpos + (acc & i32::MIN)) >> 32) as i32) >> e1`.
    #[inline(always)]
    pub fn fast_parts(&self) -> Option<(i64, i32, u32)> {
        self.fast.then_some((self.kpos, self.m, self.e1))
    }

    /// `mbqm(acc, mult, shift)`.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i32 {
        if self.fast {
            // kneg = kpos − 2^31: add the sign bit of acc as a (negative) i32.
            let k = self.kpos + (acc & i32::MIN) as i64;
            (((acc as i64 * self.m as i64 + k) >> 32) as i32) >> self.e1
        } else {
            mbqm(acc, self.mult, self.shift)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;

    #[test]
    fn out_rq_matches_mbqm() {
        let mut r = Rng(23);
        let edge = [0, 1, -1, 2, -2, 3, -3, i32::MAX, i32::MIN, 1 << 30, -(1 << 30), 12345];
        for i in 0..400_000u32 {
            let x = if i % 5 == 0 {
                edge[(r.next() % 12) as usize]
            } else {
                (r.next() as i32) >> (i % 32)
            };
            let m = match i % 7 {
                0 => edge[(r.next() % 12) as usize],
                1 => -((r.next() as i32) | 1 << 30),
                2 => 1 << 30,
                _ => (r.next() as i32 & i32::MAX) | 1 << 30,
            };
            let sh = (r.next() % 70) as i32 - 40;
            assert_eq!(OutRq::new(m, sh).apply(x), mbqm(x, m, sh), "x={x} m={m} sh={sh}");
        }
    }
}

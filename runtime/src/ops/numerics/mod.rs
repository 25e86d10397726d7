//! Integer arithmetic shared by the kernels of every op, on every target:
//! requantization ([`Rq`], [`mbqm`], [`OutRq`]), the activation element types
//! ([`Elem`], [`E8`], [`E16`]), saturation, byte reinterpretation and
//! little-endian reads. Imported by the ops; imports no op.
//!
//! Submodules: [`elem`] (element types), [`out_rq`] (the conv kernels'
//! one-multiply requantization), [`stage`] (the staged requantization of ADD,
//! CONCAT and GROUP_NORM, scalar and AVX2), [`dot`] (int8 dot products, `SMLAD`
//! on Armv7E-M), [`columns`] (the im2col column layout and its `SMLAD` kernels,
//! shared by CONV2D and MATMUL).

pub mod columns;
pub mod dot;
pub mod elem;
pub mod out_rq;
pub mod stage;

pub use elem::{Elem, E16, E8};
pub use out_rq::OutRq;

pub use crate::format::multiply_by_quantized_multiplier as mbqm;

/// A requantizing multiplier prepared for many [`mbqm`] calls with the same
/// `(mult, shift)`: bit-identical to `mbqm(x, mult, shift)` for every `x`.
///
/// For the usual right shift (`shift ≤ 0`, `mult ≠ i32::MIN`) SRDHM is
/// `⌊(x·m + 2^30)/2^31⌋` (see
/// [`crate::format::saturating_rounding_doubling_high_mul`]) and the rounding
/// divide by `2^e` is gemmlowp's, with its mask and threshold precomputed: a
/// multiply-accumulate and a few 32-bit operations, no branches. Other
/// parameters go through [`mbqm`] itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rq {
    mult: i32,
    shift: i32,
    e: u32,
    mask: i32,
    general: bool,
}

impl Rq {
    /// Prepares `(mult, shift)`.
    #[inline]
    pub fn new(mult: i32, shift: i32) -> Self {
        let s = shift.clamp(-31, 30);
        let e = (-s).max(0) as u32;
        let mask = ((1i64 << e) - 1) as i32;
        Rq { mult, shift, e, mask, general: s > 0 || mult == i32::MIN }
    }

    /// Whether these parameters need [`mbqm`] itself (a left shift or
    /// `mult = i32::MIN`).
    #[inline(always)]
    pub fn is_general(self) -> bool {
        self.general
    }

    /// `(mult, e, mask)` of [`Rq::apply_shift_right`]: `v = SRDHM(x, mult)`, then
    /// `(v >> e) + ((v & mask) > (mask >> 1) + (v < 0))`.
    #[inline(always)]
    pub fn parts(self) -> (i32, u32, i32) {
        (self.mult, self.e, self.mask)
    }

    /// [`Rq::apply`] for parameters that are not [general](Rq::is_general): no
    /// branch.
    #[inline(always)]
    pub fn apply_shift_right(self, x: i32) -> i32 {
        let v = ((x as i64 * self.mult as i64 + (1i64 << 30)) >> 31) as i32;
        let threshold = (self.mask >> 1) + (v < 0) as i32;
        (v >> self.e) + ((v & self.mask) > threshold) as i32
    }

    /// `mbqm(x, mult, shift)`.
    #[inline(always)]
    pub fn apply(self, x: i32) -> i32 {
        if self.general {
            return mbqm(x, self.mult, self.shift);
        }
        self.apply_shift_right(x)
    }
}

/// Reinterprets bytes as int8.
#[inline]
pub fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size, alignment and validity; the lifetime
    // and length are carried over unchanged.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
}

/// Reinterprets int8 as bytes.
#[inline]
pub fn as_u8(b: &[i8]) -> &[u8] {
    // SAFETY: as `as_i8`, the other way.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len()) }
}

/// Reinterprets mutable int8 as bytes.
#[inline]
pub fn as_u8_mut(b: &mut [i8]) -> &mut [u8] {
    // SAFETY: as `as_i8_mut`, the other way.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len()) }
}

/// Reinterprets mutable bytes as int8.
#[inline]
pub fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as `as_i8`; the exclusive borrow is carried over.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<i8>(), b.len()) }
}

/// Element `i` of a little-endian i32 array stored as bytes (0 if out of bounds).
#[inline]
pub fn le_i32(b: &[u8], i: usize) -> i32 {
    crate::format::read_i32(b, i.wrapping_mul(4)).unwrap_or(0)
}

/// Element `i` of a little-endian u32 array stored as bytes (0 if out of bounds).
#[inline]
pub fn le_u32(b: &[u8], i: usize) -> u32 {
    crate::format::read_u32(b, i.wrapping_mul(4)).unwrap_or(0)
}

/// Clamps to `[lo, hi]` and narrows to int8 (`lo`, `hi` within int8).
#[inline]
pub fn sat8(v: i32, lo: i32, hi: i32) -> i8 {
    v.max(lo).min(hi).clamp(-128, 127) as i8
}

/// Writes `f(a[i], b[i])` into `y`; with `broadcast`, `b` holds `c` values repeated
/// for every pixel (the `1×1×c` operand of ADD and MUL).
#[inline]
pub(crate) fn zip_broadcast(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    c: usize,
    broadcast: bool,
    f: impl Fn(i8, i8) -> i8,
) {
    if broadcast {
        for (ap, yp) in a.chunks_exact(c.max(1)).zip(y.chunks_exact_mut(c.max(1))) {
            for ((yv, &av), &bv) in yp.iter_mut().zip(ap).zip(b) {
                *yv = f(av, bv);
            }
        }
    } else {
        for ((yv, &av), &bv) in y.iter_mut().zip(a).zip(b) {
            *yv = f(av, bv);
        }
    }
}

#[cfg(test)]
mod rq_tests {
    use super::*;

    #[test]
    fn rq_matches_mbqm() {
        let mut r = testutil::Rng(5);
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
                _ => (r.next() as i32 & i32::MAX) | 1 << 30,
            };
            let sh = (r.next() % 70) as i32 - 40;
            assert_eq!(Rq::new(m, sh).apply(x), mbqm(x, m, sh), "x={x} m={m} sh={sh}");
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Small deterministic PRNG for tests (splitmix64).
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `lo..=hi`.
        pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % ((hi - lo + 1) as u64)) as i64
        }
        pub fn i8(&mut self) -> i8 {
            self.next() as i8
        }
        pub fn vec_i8(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.i8()).collect()
        }
        pub fn f64(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }
    pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    /// f64 model of a requantizing multiply `x · mult · 2^(shift−31)`, rounded.
    pub fn real_of(mult: i32, shift: i32) -> f64 {
        mult as f64 * 2f64.powi(shift - 31)
    }
    /// Little-endian bytes of int16 values.
    pub fn i16_bytes(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    /// int16 values of little-endian bytes, widened.
    pub fn from_i16_bytes(b: &[u8]) -> Vec<i32> {
        b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()
    }
}

//! Reference int8 kernels, one op per file, NHWC, batch 1.
//!
//! Semantics are those of `docs/FORMAT.md` (TFLite / CMSIS-NN requantization via
//! [`multiply_by_quantized_multiplier`](crate::format::multiply_by_quantized_multiplier)).
//! Kernels take slices the loader has already validated; they never index out of
//! bounds (slice access is through `get`, iterators and `chunks`), and a slice of
//! unexpected length only produces fewer outputs, never a panic.

pub mod add;
pub mod concat;
pub mod conv2d;
pub mod dot;
pub mod group_norm;
pub mod im2col;
pub mod lut;
pub mod matmul;
pub mod mul;
pub mod requant;
pub mod softmax;
pub mod timestep_embed;
pub mod upsample;

pub use crate::format::multiply_by_quantized_multiplier as mbqm;

/// Reinterprets bytes as int8.
#[inline]
pub fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: u8 and i8 have the same size, alignment and validity; the lifetime
    // and length are carried over unchanged.
    unsafe { core::slice::from_raw_parts(b.as_ptr().cast::<i8>(), b.len()) }
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
}

//! One requantization step `zp + mbqm(x << ls, mult, shift)` as a 64-bit
//! multiply-add ([`add_stage`], [`add_stage_apply`]), shared by ADD, CONCAT and
//! GROUP_NORM; on x86_64 with AVX2 (the `std` feature) also on eight lanes
//! (`VStage`, with the element loads and stores `load8`, `store8`).

#[cfg(all(feature = "std", target_arch = "x86_64"))]
use super::elem::Elem;
use super::out_rq::OutRq;

/// One requantization step of the ADD loop (the int16 ADD of Armv7E-M): `(m, klo,
/// khi, e1, c, sh)` with `stage(x) = ((x << sh)·m + (khi:klo) − [x < 0]·c) >> 32
/// >> e1` (64-bit, arithmetic shifts), which is `zp + mbqm(x << ls, mult, shift)`:
///
/// - a right shift (`shift < 0`): [`OutRq`]'s 64-bit form,
///   `c = 2^31`, `sh = ls`, and `zp·2^e1` added to the high word (exact while it
///   cannot wrap: the high word lies within `±(2^30 + 2^29 + 1)`);
/// - no shift (`shift = 0`, `input`: `|x| ≤ 2^15` before the shift by
///   `ls ≤ 15`): SRDHM alone is `⌊(P + 2^30)/2^31⌋` for both signs of
///   `P = x·m` (gemmlowp's nudge for negative `P` with truncation is the same
///   floor), i.e. the high word of `(2x)·m + 2^31` (`|2x| ≤ 2^31`): `sh = ls + 1`,
///   `c = 0`, `e1 = 0`, and `zp` added to the high word (`|zp| < 2^29`; the
///   high word is at most `2^30`).
///
/// The pre-shift `ls` (at most 23, the ADD's clamp; at most 15 without a right
/// shift) wraps as the ADD's does. `None` for other parameters (a left shift, a
/// negative multiplier).
pub fn add_stage(mult: i32, shift: i32, zp: i32, ls: i32, input: bool) -> Option<[i32; 6]> {
    if mult < 0 || !(0..=23).contains(&ls) {
        return None;
    }
    if shift == 0 {
        if ls > 15 {
            return None;
        }
        let z_ok = (zp as i64).abs() < (1 << 29) - 2;
        return (input && z_ok).then_some([mult, i32::MIN, zp, 0, 0, ls + 1]);
    }
    let (kpos, m, e1) = OutRq::new(mult, shift).fast_parts()?;
    let z = (zp as i64) << e1;
    let khi = ((kpos >> 32) + z) as i32;
    (z.abs() < (1 << 29) - 2).then_some([m, kpos as u32 as i32, khi, e1 as i32, i32::MIN, ls])
}

/// [`add_stage`]'s arithmetic (what the assembly loop does with the constants).
#[inline]
pub fn add_stage_apply(k: &[i32; 6], x: i32) -> i32 {
    let [m, klo, khi, e1, c, sh] = *k;
    let v = x.wrapping_shl(sh as u32);
    let kk = ((khi as i64) << 32) | klo as u32 as i64;
    let mut p = (v as i64).wrapping_mul(m as i64).wrapping_add(kk);
    if v < 0 {
        p = p.wrapping_sub(c as u32 as i64);
    }
    ((p >> 32) as i32) >> e1
}

/// [`add_stage`] constants as vectors: `(m, K, c, sh, e1)` with `K` the 64-bit
/// `khi:klo` and `c` the sign term (0 or 2^31).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[derive(Clone, Copy)]
pub(crate) struct VStage {
    m: core::arch::x86_64::__m256i,
    k: core::arch::x86_64::__m256i,
    sign: bool,
    sh: core::arch::x86_64::__m128i,
    e1: core::arch::x86_64::__m128i,
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
impl VStage {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn new(k: &[i32; 6]) -> Self {
        use core::arch::x86_64::*;
        let [m, klo, khi, e1, c, sh] = *k;
        VStage {
            m: _mm256_set1_epi32(m),
            k: _mm256_set1_epi64x(((khi as i64) << 32) | klo as u32 as i64),
            sign: c != 0,
            sh: _mm_cvtsi32_si128(sh),
            e1: _mm_cvtsi32_si128(e1),
        }
    }

    /// [`add_stage_apply`] on eight lanes: `((x << sh)·m + K − [x << sh < 0]·c)`,
    /// then the high word shifted right by `e1`; the products exact in 64 bits
    /// (`VPMULDQ` on the even lanes and on the odd lanes shifted down).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn apply(
        &self,
        x: core::arch::x86_64::__m256i,
    ) -> core::arch::x86_64::__m256i {
        use core::arch::x86_64::*;
        let v = _mm256_sll_epi32(x, self.sh);
        let mut pe = _mm256_add_epi64(_mm256_mul_epi32(v, self.m), self.k);
        let mut po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), self.m), self.k);
        if self.sign {
            // −2^31 (as i64) where v < 0: low word 2^31, high word −1.
            let s = _mm256_srai_epi32(v, 31);
            let lohi = _mm256_set_epi32(-1, i32::MIN, -1, i32::MIN, -1, i32::MIN, -1, i32::MIN);
            pe = _mm256_add_epi64(
                pe,
                _mm256_and_si256(_mm256_shuffle_epi32(s, 0b10_10_00_00), lohi),
            );
            po = _mm256_add_epi64(
                po,
                _mm256_and_si256(_mm256_shuffle_epi32(s, 0b11_11_01_01), lohi),
            );
        }
        // High words: the even lanes' shifted down, the odd lanes' in place.
        let hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0b1010_1010);
        _mm256_sra_epi32(hi, self.e1)
    }
}

/// Eight elements of `E` from `b` at element `i` as i32 lanes (`None` past the end).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn load8<E: Elem>(b: &[u8], i: usize) -> Option<core::arch::x86_64::__m256i> {
    use core::arch::x86_64::*;
    let s = b.get(i * E::BYTES..(i + 8) * E::BYTES)?;
    // SAFETY: s holds 8 elements (8 or 16 bytes).
    Some(unsafe {
        if E::BYTES == 2 {
            _mm256_cvtepi16_epi32(_mm_loadu_si128(s.as_ptr().cast()))
        } else {
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(s.as_ptr().cast()))
        }
    })
}

/// Stores eight i32 lanes (already within `Y`'s range) as elements `i ..` of `y`.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn store8<Y: Elem>(y: &mut [u8], i: usize, v: core::arch::x86_64::__m256i) {
    use core::arch::x86_64::*;
    let Some(d) = y.get_mut(i * Y::BYTES..(i + 8) * Y::BYTES) else { return };
    let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    // SAFETY: d holds 8 elements (16 or 8 bytes).
    unsafe {
        if Y::BYTES == 2 {
            _mm_storeu_si128(d.as_mut_ptr().cast(), w);
        } else {
            _mm_storel_epi64(d.as_mut_ptr().cast(), _mm_packs_epi16(w, w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::mbqm;
    use crate::ops::numerics::testutil::*;

    /// The ADD loop's stage constants give `zp + mbqm(x << ls, mult, shift)` for
    /// int16 inputs and for wide sums, shifts 0 (inputs) and right shifts, extreme
    /// values included; other parameters are refused.
    #[test]
    fn add_stage_matches_mbqm() {
        let mut r = Rng(0xadd);
        let mut ran = [0; 2];
        for i in 0..200_000u32 {
            let input = i % 2 == 0;
            let mult = match i % 5 {
                0 => 1 << 30,
                1 => i32::MAX,
                _ => (r.next() as i32 & i32::MAX) | 1 << 30,
            };
            let shift = if input && i % 3 == 0 { 0 } else { -(r.range(1, 31) as i32) };
            let ls = match (input, shift) {
                (false, _) => 0,
                (true, 0) => r.range(0, 15) as i32,
                _ => r.range(0, 23) as i32,
            };
            let zp = if input && i % 4 == 0 { 0 } else { r.range(-128, 127) as i32 };
            let x = if input {
                match i % 7 {
                    0 => [-32768, 32767, 0, -1][(i / 2 % 4) as usize],
                    _ => r.range(-32768, 32767) as i32,
                }
            } else {
                (r.next() as i32) >> (i % 31)
            };
            let Some(k) = add_stage(mult, shift, zp, ls, input) else {
                assert!(shift < 0 && (zp.abs() as i64) << (-shift - 1) >= (1 << 29) - 2, "refused");
                continue;
            };
            let want = zp.wrapping_add(mbqm(x.wrapping_shl(ls as u32), mult, shift));
            assert_eq!(add_stage_apply(&k, x), want, "x={x} m={mult} s={shift} zp={zp} ls={ls}");
            ran[input as usize] += 1;
        }
        assert!(ran[0] > 50_000 && ran[1] > 80_000, "{ran:?}");
        assert_eq!(add_stage(-5, -3, 0, 0, true), None);
        assert_eq!(add_stage(1 << 30, 2, 0, 0, true), None);
        assert_eq!(add_stage(1 << 30, 0, 0, 0, false), None);
        assert_eq!(add_stage(1 << 30, 0, 0, 16, true), None);
        assert_eq!(add_stage(1 << 30, -3, 0, 24, true), None);
    }
}

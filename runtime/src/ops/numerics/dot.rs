//! The int8 dot product under CONV2D's inner loop, with a dual 16-bit MAC path
//! for Armv7E-M (Cortex-M4/M7).
//!
//! The sum is exact in i32 for the lengths the loader allows (`kh·kw·ic ≤ 32768`,
//! `|x·w| ≤ 2^14`), so any summation order gives the same bits: the DSP path is
//! bit-identical to [`dot_i8_reference`].

/// `Σ x[i]·w[i]` over the common length (reference).
#[inline(always)]
pub fn dot_i8_reference(x: &[i8], w: &[i8]) -> i32 {
    x.iter().zip(w).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// Row `r` of a strided window: `b[r·stride .. r·stride + len]` (empty if out of range).
#[inline(always)]
fn row(b: &[i8], r: usize, stride: usize, len: usize) -> &[i8] {
    let s = r * stride;
    b.get(s..s + len).unwrap_or(&[])
}

/// `Σ_r Σ_i x[r·xs + i]·w[r·ws + i]` for `r < rows`, `i < len`: a convolution
/// window against one output channel's weights.
#[inline]
pub fn dot_rows(x: &[i8], xs: usize, w: &[i8], ws: usize, rows: usize, len: usize) -> i32 {
    (0..rows).map(|r| dot_i8(row(x, r, xs, len), row(w, r, ws, len))).sum()
}

/// [`dot_rows`] for two weight sets at once (sharing the loads of `x`).
#[inline]
pub fn dot_rows2(
    x: &[i8],
    xs: usize,
    w0: &[i8],
    w1: &[i8],
    ws: usize,
    rows: usize,
    len: usize,
) -> (i32, i32) {
    let mut acc = (0, 0);
    for r in 0..rows {
        let (a, b) = dot2_i8(row(x, r, xs, len), row(w0, r, ws, len), row(w1, r, ws, len));
        acc = (acc.0 + a, acc.1 + b);
    }
    acc
}

/// `Σ_r Σ_i w[r·ws + i]`.
#[inline]
pub fn sum_rows(w: &[i8], ws: usize, rows: usize, len: usize) -> i32 {
    (0..rows).map(|r| row(w, r, ws, len).iter().map(|&v| v as i32).sum::<i32>()).sum()
}

/// `(Σ x·w0, Σ x·w1)` over the common length.
#[inline]
pub fn dot2_i8(x: &[i8], w0: &[i8], w1: &[i8]) -> (i32, i32) {
    #[cfg(ddpm_dsp)]
    {
        dsp::dot2_i8(x, w0, w1)
    }
    #[cfg(not(ddpm_dsp))]
    {
        (dot_i8_reference(x, w0), dot_i8_reference(x, w1))
    }
}

/// `Σ x[i]·w[i]` over the common length (fastest path for the target).
#[inline]
pub fn dot_i8(x: &[i8], w: &[i8]) -> i32 {
    #[cfg(ddpm_dsp)]
    {
        dsp::dot_i8(x, w)
    }
    #[cfg(not(ddpm_dsp))]
    {
        dot_i8_reference(x, w)
    }
}

#[cfg(ddpm_dsp)]
mod dsp {
    use core::arch::asm;

    /// `SXTB16`: bytes 0 and 2 sign-extended into two halfwords.
    #[inline(always)]
    fn sxtb16(v: u32) -> u32 {
        let r: u32;
        // SAFETY: register-only arithmetic instruction of Armv7E-M; no memory,
        // stack or flags are touched.
        unsafe {
            asm!("sxtb16 {r}, {v}", r = lateout(reg) r, v = in(reg) v, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SXTB16 ROR #8`: bytes 1 and 3 sign-extended into two halfwords.
    #[inline(always)]
    fn sxtb16_ror8(v: u32) -> u32 {
        let r: u32;
        // SAFETY: as `sxtb16`.
        unsafe {
            asm!("sxtb16 {r}, {v}, ror #8", r = lateout(reg) r, v = in(reg) v, options(pure, nomem, nostack, preserves_flags))
        };
        r
    }

    /// `SMLAD`: `acc + a.lo·b.lo + a.hi·b.hi` (signed halfwords).
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: register-only; SMLAD may set the sticky Q flag on overflow, which
        // nothing reads (and the loader's bounds rule overflow out).
        unsafe {
            asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc, options(pure, nomem, nostack))
        };
        r
    }

    #[inline(always)]
    fn word(b: &[i8]) -> u32 {
        let mut a = [0u8; 4];
        for (d, &s) in a.iter_mut().zip(b) {
            *d = s as u8;
        }
        u32::from_le_bytes(a)
    }

    #[inline(always)]
    pub(super) fn dot_i8(x: &[i8], w: &[i8]) -> i32 {
        let n = x.len().min(w.len());
        let (x, w) = (x.get(..n).unwrap_or(&[]), w.get(..n).unwrap_or(&[]));
        let mut xc = x.chunks_exact(4);
        let mut wc = w.chunks_exact(4);
        let mut acc = 0i32;
        for (a, b) in (&mut xc).zip(&mut wc) {
            let (a, b) = (word(a), word(b));
            acc = smlad(sxtb16(a), sxtb16(b), acc);
            acc = smlad(sxtb16_ror8(a), sxtb16_ror8(b), acc);
        }
        acc + super::dot_i8_reference(xc.remainder(), wc.remainder())
    }

    #[inline(always)]
    pub(super) fn dot2_i8(x: &[i8], w0: &[i8], w1: &[i8]) -> (i32, i32) {
        let n = x.len().min(w0.len()).min(w1.len());
        let x = x.get(..n).unwrap_or(&[]);
        let (w0, w1) = (w0.get(..n).unwrap_or(&[]), w1.get(..n).unwrap_or(&[]));
        let mut xc = x.chunks_exact(4);
        let mut c0 = w0.chunks_exact(4);
        let mut c1 = w1.chunks_exact(4);
        let (mut a0, mut a1) = (0i32, 0i32);
        for ((a, b), c) in (&mut xc).zip(&mut c0).zip(&mut c1) {
            let a = word(a);
            let (xl, xh) = (sxtb16(a), sxtb16_ror8(a));
            let (b, c) = (word(b), word(c));
            a0 = smlad(xl, sxtb16(b), a0);
            a0 = smlad(xh, sxtb16_ror8(b), a0);
            a1 = smlad(xl, sxtb16(c), a1);
            a1 = smlad(xh, sxtb16_ror8(c), a1);
        }
        let r = xc.remainder();
        (
            a0 + super::dot_i8_reference(r, c0.remainder()),
            a1 + super::dot_i8_reference(r, c1.remainder()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;

    #[test]
    fn dot_matches_reference() {
        let mut r = Rng(91);
        for n in 0..70 {
            let x = r.vec_i8(n);
            let w = r.vec_i8(n + (n % 3));
            let want: i64 = x.iter().zip(&w).map(|(&a, &b)| a as i64 * b as i64).sum();
            assert_eq!(dot_i8(&x, &w) as i64, want);
            assert_eq!(dot_i8_reference(&x, &w) as i64, want);
        }
        let x = [-128i8; 64];
        assert_eq!(dot_i8(&x, &x), 64 * 16384);
        let (xs, ws, rows, len) = (11, 7, 3, 5);
        let x = r.vec_i8(xs * rows);
        let w0 = r.vec_i8(ws * rows);
        let w1 = r.vec_i8(ws * rows);
        let naive = |w: &[i8]| -> i32 {
            (0..rows)
                .flat_map(|q| (0..len).map(move |i| (q, i)))
                .map(|(q, i)| x[q * xs + i] as i32 * w[q * ws + i] as i32)
                .sum()
        };
        assert_eq!(dot_rows(&x, xs, &w0, ws, rows, len), naive(&w0));
        assert_eq!(dot_rows2(&x, xs, &w0, &w1, ws, rows, len), (naive(&w0), naive(&w1)));
        let sw: i32 = (0..rows * len).map(|k| w0[(k / len) * ws + k % len] as i32).sum();
        assert_eq!(sum_rows(&w0, ws, rows, len), sw);
    }
}

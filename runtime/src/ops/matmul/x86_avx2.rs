//! MATMUL on x86_64 hosts with AVX2 (the `std` feature): the outer-product
//! panel kernel and the row kernel compiled for AVX2, bit-identical to
//! [`super::matmul_reference`].

use super::{matmul_rows_body, MatmulParams, A_BUF};
use crate::ops::numerics::{sat8, Rq};

/// i16 words of packed `b` [`matmul_panels_avx2`] holds (16 KiB).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const PB: usize = 8192;

/// Columns of `b` per panel of [`matmul_panels_avx2`].
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const PANEL: usize = 16;

/// [`matmul`] on AVX2 in outer-product form: per batch, `b − b_zp` packed as
/// i16 into panels of 16 columns (each word the pair of rows `2k, 2k + 1` of one
/// column); per four rows of `a − a_zp` (i16), each row's pair broadcast and
/// `VPMADDWD` against a panel's two vectors adds both products into 16 column
/// lanes. The sums `Σ(a − a_zp)(b − b_zp)` are exact in i32 (|each product| ≤
/// 255², k ≤ [`A_BUF`]), hence the reference's. False (nothing written) when the
/// packed `b` would not fit [`PB`] or `k` exceeds [`A_BUF`].
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn matmul_panels_avx2(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    p: &MatmulParams,
) -> bool {
    use core::arch::x86_64::*;
    let (k, n) = (p.k, p.n);
    let pairs = k.div_ceil(2);
    let npan = n.div_ceil(PANEL);
    let per = pairs * 2 * PANEL;
    if k == 0 || n == 0 || per * npan > PB || 2 * pairs > A_BUF {
        return false;
    }
    let rq = Rq::new(p.mult, p.shift);
    let mut pb = [0i16; PB];
    let mut rows = [[0i16; A_BUF]; 4];
    for bt in 0..p.batch {
        let bb = bt * p.b_s[0];
        // Panel j, pair kk, lane l, half t at j·per + (kk·PANEL + l)·2 + t.
        for (j, pan) in pb.chunks_exact_mut(per).take(npan).enumerate() {
            for (kk, row) in pan.chunks_exact_mut(2 * PANEL).enumerate() {
                for (l, d) in row.chunks_exact_mut(2).enumerate() {
                    let col = j * PANEL + l;
                    for (t, v) in d.iter_mut().enumerate() {
                        let kr = 2 * kk + t;
                        let at = bb + kr * p.b_s[1] + col * p.b_s[2];
                        *v = match b.get(at) {
                            Some(&bv) if col < n && kr < k => (bv as i32 - p.b_zp) as i16,
                            _ => 0,
                        };
                    }
                }
            }
        }
        for i0 in (0..p.m).step_by(4) {
            for (r, row) in rows.iter_mut().enumerate() {
                for (kk, v) in row.iter_mut().enumerate().take(2 * pairs) {
                    let at = bt * p.a_s[0] + (i0 + r) * p.a_s[1] + kk * p.a_s[2];
                    *v = match a.get(at) {
                        Some(&av) if i0 + r < p.m && kk < k => (av as i32 - p.a_zp) as i16,
                        _ => 0,
                    };
                }
            }
            for (j, pan) in pb.chunks_exact(per).take(npan).enumerate() {
                let mut acc = [[_mm256_setzero_si256(); 2]; 4];
                let wp = pan.as_ptr();
                for kk in 0..pairs {
                    // SAFETY: kk < pairs bounds the panel (2·PANEL words per pair)
                    // and each row (2·pairs ≤ A_BUF).
                    unsafe {
                        let w0 = _mm256_loadu_si256(wp.add(2 * PANEL * kk).cast());
                        let w1 = _mm256_loadu_si256(wp.add(2 * PANEL * kk + 16).cast());
                        for ([a0, a1], row) in acc.iter_mut().zip(&rows) {
                            let x = _mm256_set1_epi32(
                                row.as_ptr().add(2 * kk).cast::<i32>().read_unaligned(),
                            );
                            *a0 = _mm256_add_epi32(*a0, _mm256_madd_epi16(x, w0));
                            *a1 = _mm256_add_epi32(*a1, _mm256_madd_epi16(x, w1));
                        }
                    }
                }
                let mut sums = [[0i32; PANEL]; 4];
                for ([a0, a1], s) in acc.iter().zip(sums.iter_mut()) {
                    // SAFETY: each row of sums is PANEL = 16 i32; unaligned stores.
                    unsafe {
                        _mm256_storeu_si256(s.as_mut_ptr().cast(), *a0);
                        _mm256_storeu_si256(s.as_mut_ptr().add(8).cast(), *a1);
                    }
                }
                for (r, s) in sums.iter().enumerate().take(p.m - i0) {
                    for (l, &acc) in s.iter().enumerate().take(n - j * PANEL) {
                        let v = p.out_zp.saturating_add(rq.apply(acc));
                        let at = bt * p.y_s[0] + (i0 + r) * p.y_s[1] + (j * PANEL + l) * p.y_s[2];
                        if let Some(o) = y.get_mut(at) {
                            *o = sat8(v, p.act_min, p.act_max);
                        }
                    }
                }
            }
        }
    }
    true
}

/// [`matmul_rows`] compiled for AVX2 (the dot products vectorize 16 lanes wide).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline(never)]
pub(super) unsafe fn matmul_rows_avx2(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
    matmul_rows_body(a, b, y, p)
}

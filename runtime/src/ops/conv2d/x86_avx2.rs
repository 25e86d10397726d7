//! The column kernels of [`super::host_engine`] on x86_64 with AVX2 (the `std`
//! feature, chosen at run time): the engine compiled for AVX2 (`run_avx2`), the
//! `VPMADDWD` pair kernel (`dot2_avx2`) and the outer-product panel kernel
//! (`panel_avx2`). A child module of `host_engine.rs`; bit-identical to its
//! plain kernels.

use super::{dot_scalar, engine, Cols, Pair, BLOCK, KC, PANEL, WPIX};

/// [`engine`] compiled for AVX2 with the AVX2 column kernel.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_avx2(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    fill: impl FnMut(usize, usize, usize, &mut [i16; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) {
    // SAFETY (of the kernel calls): AVX2 is enabled in this function.
    let panel = |p: &[i8], c: &Cols, n: usize, s: &mut [[i32; BLOCK]; WPIX], at: usize| unsafe {
        panel_avx2(p, c, n, s, at)
    };
    engine(
        npix,
        ksz,
        oc,
        w,
        bias,
        mult,
        shift,
        0,
        fill,
        store,
        |c, w0, w1, a| unsafe { dot2_avx2(c, w0, w1, a) },
        Some(panel),
    )
}

/// AVX2 panel kernel, outer-product form: per pair `k` of the window, each
/// pixel's `col[2k], col[2k+1]` broadcast to every lane and `VPMADDWD` against the
/// panel's 16 channel pairs (sign-extended to i16) adds both products into eight
/// channel lanes; sums come out channel-contiguous, with no horizontal reduction.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn panel_avx2(
    pan: &[i8],
    cols: &Cols,
    pairs: usize,
    sums: &mut [[i32; BLOCK]; WPIX],
    at: usize,
) {
    use core::arch::x86_64::*;
    // Pairs within the panel and every column (2·pairs ≤ KC: KC is even).
    let pairs = pairs.min(pan.len() / (2 * PANEL)).min(KC / 2);
    let mut acc = [[_mm256_setzero_si256(); 2]; WPIX];
    let wp = pan.as_ptr();
    for k in 0..pairs {
        // SAFETY: k < pairs bounds the panel's rows (2·PANEL bytes each) and each
        // column's pairs.
        unsafe {
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(2 * PANEL * k).cast()));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(2 * PANEL * k + 16).cast()));
            for ([a0, a1], c) in acc.iter_mut().zip(cols) {
                let x = _mm256_set1_epi32(c.as_ptr().add(2 * k).cast::<i32>().read_unaligned());
                *a0 = _mm256_add_epi32(*a0, _mm256_madd_epi16(x, w0));
                *a1 = _mm256_add_epi32(*a1, _mm256_madd_epi16(x, w1));
            }
        }
    }
    for ([a0, a1], s) in acc.iter().zip(sums.iter_mut()) {
        if let Some(d) = s.get_mut(at..at + PANEL) {
            // SAFETY: d is PANEL = 16 i32; unaligned stores.
            unsafe {
                _mm256_storeu_si256(d.as_mut_ptr().cast(), *a0);
                _mm256_storeu_si256(d.as_mut_ptr().add(8).cast(), *a1);
            }
        }
    }
}

/// AVX2 pair kernel: per 16 elements one weight load per row sign-extended to
/// i16, then `VPMADDWD` of each pixel's column against both rows (8 accumulators,
/// each column load feeding two products); the eight lane sums are reduced
/// together by a `VPHADDD` tree.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn dot2_avx2(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
    use core::arch::x86_64::*;
    let n = w0.len().min(KC);
    let two = w1.len() == n;
    let n16 = n / 16 * 16;
    let mut va = [_mm256_setzero_si256(); WPIX];
    let mut vb = [_mm256_setzero_si256(); WPIX];
    let mut k = 0;
    if two {
        while k < n16 {
            // SAFETY: k + 16 ≤ n, which bounds both rows and every column (KC).
            unsafe {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w0.as_ptr().add(k).cast()));
                let wb = _mm256_cvtepi8_epi16(_mm_loadu_si128(w1.as_ptr().add(k).cast()));
                for ((a, b), c) in va.iter_mut().zip(vb.iter_mut()).zip(col) {
                    let xv = _mm256_loadu_si256(c.as_ptr().add(k).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wa));
                    *b = _mm256_add_epi32(*b, _mm256_madd_epi16(xv, wb));
                }
            }
            k += 16;
        }
    } else {
        while k < n16 {
            // SAFETY: k + 16 ≤ n, which bounds `w0` and every column.
            unsafe {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w0.as_ptr().add(k).cast()));
                for (a, c) in va.iter_mut().zip(col) {
                    let xv = _mm256_loadu_si256(c.as_ptr().add(k).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wa));
                }
            }
            k += 16;
        }
    }
    // Eight vectors to one vector of their eight totals: [v0 .. v7].
    let [a0, a1, a2, a3] = va;
    let [b0, b1, b2, b3] = vb;
    let t0 = _mm256_hadd_epi32(a0, a1);
    let t1 = _mm256_hadd_epi32(a2, a3);
    let t2 = _mm256_hadd_epi32(b0, b1);
    let t3 = _mm256_hadd_epi32(b2, b3);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    let s = _mm256_add_epi32(
        _mm256_permute2x128_si256(u0, u1, 0x20),
        _mm256_permute2x128_si256(u0, u1, 0x31),
    );
    // acc (8 contiguous i32: row 0's four pixels, then row 1's) += s; row 1 of a
    // single row gets zeros added.
    let s = if two { s } else { _mm256_blend_epi32(s, _mm256_setzero_si256(), 0xf0) };
    // SAFETY: `acc` is 8 contiguous i32 (32 bytes); unaligned load and store.
    unsafe {
        let p = acc.as_mut_ptr().cast::<__m256i>();
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), s));
    }
    if n16 < n {
        let rows: &[&[i8]] = if two { &[w0, w1] } else { &[w0] };
        for (ar, wr) in acc.iter_mut().zip(rows) {
            let tail = wr.get(n16..n).unwrap_or(&[]);
            for (a, c) in ar.iter_mut().zip(col) {
                *a = a.wrapping_add(dot_scalar(c.get(n16..n).unwrap_or(&[]), tail));
            }
        }
    }
}

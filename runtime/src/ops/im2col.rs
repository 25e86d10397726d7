//! CONV2D by im2col columns of four output pixels, for targets with a fast
//! 16-bit multiply-accumulate (Armv7E-M `SMLAD`).
//!
//! For four output pixels at a time the kernel window of each is gathered into
//! `x − in_zp` as 16-bit values (padding taps are 0), in chunks of [`KC`] window
//! elements, and every output channel's weights are run against the four columns
//! at once: each weight word is loaded and sign-extended once for four pixels.
//! Since `|x − in_zp| ≤ 255` and `|w| ≤ 128`, every product and every partial sum
//! is exact in i32 (the loader bounds `kh·kw·ic ≤ 32768`), so the sums equal the
//! reference kernel's `Σx·w − in_zp·Σw` and the outputs are bit-identical.
//!
//! Column layout (one chunk): per group of 4 window elements `k0..k3`, 8 words:
//! for each pixel `p`, the halfword pairs `(x[k0], x[k2])` and `(x[k1], x[k3])` —
//! what `SXTB16` and `SXTB16 ROR #8` make of a weight word. After the last full
//! group of 8 elements comes a group whose first word is [`SENTINEL`], which no
//! in-range pair can equal; the DSP loop stops on it.
//!
//! Stack: 4·[`KC`] bytes of raw window plus 8·[`KC`] + 32 bytes of columns
//! (3.5 KiB), plus the 512-byte accumulator block.

use super::conv2d::Conv2dParams;
use super::{le_i32, sat8, Rq};

/// Output pixels per column group.
pub const PIX: usize = 4;
/// Window elements per chunk (a multiple of 8).
pub const KC: usize = 288;
/// Output channels per block (their accumulators live on the stack).
const BLOCK: usize = 32;
/// Marks the end of the columns: `(−32768, −32768)`.
pub const SENTINEL: u32 = 0x8000_8000;
/// Words of the column buffer: `KC/4` groups of 8 words, plus the sentinel group.
const COL_WORDS: usize = KC / 4 * 8 + 8;

/// Whether [`conv2d_im2col`] handles this convolution: at least 4 output pixels,
/// int8 zero points and a window of at least 8 elements.
pub fn applicable(ic: usize, out_pixels: usize, p: &Conv2dParams) -> bool {
    let ksz = p.kh * p.kw * ic;
    out_pixels >= PIX && ksz >= 8 && (-128..=127).contains(&p.in_zp) && ksz <= 32768
}

/// One pixel's raw window chunk: `[k0, k0 + len)` of its `[kh][kw][ic]` window,
/// padding filled with `in_zp`.
#[allow(clippy::too_many_arguments)]
fn gather(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    raw: &mut [i8],
) {
    let zp = p.in_zp as i8;
    let Some((iy0, ix0)) = pos else {
        raw.iter_mut().take(len).for_each(|v| *v = zp);
        return;
    };
    let row = p.kw * ic;
    let k1 = k0 + len;
    let mut k = k0;
    while k < k1 {
        let (ky, kx, i) = (k / row, (k % row) / ic, k % ic);
        let iy = iy0 + ky as isize;
        let ix = ix0 + kx as isize;
        let row_in = iy >= 0 && (iy as usize) < h;
        // Contiguous source run: the rest of this kernel row if all its taps are
        // inside the input, else the rest of this tap.
        let whole_row = row_in && ix0 >= 0 && ix0 as usize + p.kw <= wd;
        let end = if whole_row { (ky + 1) * row } else { k - i + ic }.min(k1);
        let n = end - k;
        let dst = raw.get_mut(k - k0..k - k0 + n).unwrap_or(&mut []);
        let inside = row_in && ix >= 0 && (ix as usize) < wd;
        let src = if inside {
            let off = (iy as usize * wd + ix as usize) * ic + i;
            x.get(off..off + n)
        } else {
            None
        };
        match src {
            Some(s) => dst.copy_from_slice(s),
            None => dst.iter_mut().for_each(|v| *v = zp),
        }
        k = end;
    }
}

/// [`gather`] and [`columns`] in one pass, for `ic % 4 == 0` and a chunk length
/// that is a multiple of 8: every source run then starts at a 4-element group.
#[allow(clippy::too_many_arguments)]
fn gather_columns(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    px: usize,
    col: &mut [u32],
) {
    let zp = p.in_zp;
    let groups = col.get_mut(..len / 4 * 8).unwrap_or(&mut []);
    let Some((iy0, ix0)) = pos else {
        for d in groups.chunks_exact_mut(8) {
            if let Some([d0, d1]) = d.get_mut(2 * px..2 * px + 2) {
                (*d0, *d1) = (0, 0);
            }
        }
        return;
    };
    let row = p.kw * ic;
    let k1 = k0 + len;
    let mut k = k0;
    while k < k1 {
        let (ky, kx, i) = (k / row, (k % row) / ic, k % ic);
        let iy = iy0 + ky as isize;
        let ix = ix0 + kx as isize;
        let row_in = iy >= 0 && (iy as usize) < h;
        let whole_row = row_in && ix0 >= 0 && ix0 as usize + p.kw <= wd;
        let end = if whole_row { (ky + 1) * row } else { k - i + ic }.min(k1);
        let n = end - k;
        let g0 = (k - k0) / 4;
        let dst = groups.get_mut(g0 * 8..(g0 + n / 4) * 8).unwrap_or(&mut []);
        let inside = row_in && ix >= 0 && (ix as usize) < wd;
        let src = if inside {
            let off = (iy as usize * wd + ix as usize) * ic + i;
            x.get(off..off + n)
        } else {
            None
        };
        match src {
            Some(s) => {
                for (d, q) in dst.chunks_exact_mut(8).zip(s.chunks_exact(4)) {
                    let &[q0, q1, q2, q3] = q else { continue };
                    let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
                    if let Some([d0, d1]) = d.get_mut(2 * px..2 * px + 2) {
                        (*d0, *d1) = kern::split(word, zp);
                    }
                }
            }
            None => {
                for d in dst.chunks_exact_mut(8) {
                    if let Some([d0, d1]) = d.get_mut(2 * px..2 * px + 2) {
                        (*d0, *d1) = (0, 0);
                    }
                }
            }
        }
        k = end;
    }
}

/// Converts pixel `px`'s raw chunk (`n8·8` elements) into its column words.
#[inline]
fn columns(raw: &[i8], px: usize, zp: i32, n8: usize, col: &mut [u32]) {
    for (g, q) in raw.chunks_exact(4).take(2 * n8).enumerate() {
        let &[q0, q1, q2, q3] = q else { continue };
        let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
        let (a, b) = kern::split(word, zp);
        if let Some([d0, d1]) = col.get_mut(g * 8 + 2 * px..g * 8 + 2 * px + 2) {
            (*d0, *d1) = (a, b);
        }
    }
}

/// The convolution (same contract as [`super::conv2d::conv2d`]), for
/// [`applicable`] shapes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    let ic = in_shape[2];
    let ksz = p.kh * p.kw * ic;
    let npix = oh * ow;
    if oc == 0 || ksz == 0 {
        return;
    }
    let zp = p.in_zp;
    let mut raw = [[0i8; KC]; PIX];
    let mut col = [0u32; COL_WORDS];
    let chunks = ksz.div_ceil(KC);
    // Whole 4-element groups from the input, and no tail (the raw chunk is unused).
    let fused = ic % 4 == 0 && ksz % 8 == 0;
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        let mut k = [(0i32, Rq::default()); BLOCK];
        for (j, kj) in k.iter_mut().enumerate().take(cn) {
            let o = c0 + j;
            *kj = (le_i32(bias, o), Rq::new(le_i32(mult, o), le_i32(shift, o)));
        }
        let mut q0 = 0;
        while q0 < npix {
            let mut acc = [[0i32; PIX]; BLOCK];
            let pos: [Option<(isize, isize)>; PIX] = core::array::from_fn(|i| {
                let q = q0 + i;
                (q < npix).then(|| {
                    let (oy, ox) = (q / ow, q % ow);
                    ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
                })
            });
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                let n8 = len / 8;
                for (i, (r, &ps)) in raw.iter_mut().zip(&pos).enumerate() {
                    if fused {
                        gather_columns(x, in_shape, p, ps, k0, len, i, &mut col);
                    } else {
                        gather(x, in_shape, p, ps, k0, len, r);
                        columns(r, i, zp, n8, &mut col);
                    }
                }
                if let Some(s) = col.get_mut(n8 * 16) {
                    *s = SENTINEL;
                }
                for (j, aj) in acc.iter_mut().enumerate().take(cn) {
                    let o = c0 + j;
                    let wc = w.get(o * ksz + k0..o * ksz + k0 + len).unwrap_or(&[]);
                    kern::dot4(&col, wc, n8, aj);
                    // Tail of fewer than 8 elements (never with `fused`).
                    if n8 * 8 < len {
                        let tail = wc.get(n8 * 8..).unwrap_or(&[]);
                        for (a, r) in aj.iter_mut().zip(&raw) {
                            let rt = r.get(n8 * 8..len).unwrap_or(&[]);
                            for (&xv, &wv) in rt.iter().zip(tail) {
                                *a += (xv as i32 - zp) * wv as i32;
                            }
                        }
                    }
                }
            }
            for (i, q) in (q0..npix.min(q0 + PIX)).enumerate() {
                let ypix = y.get_mut(q * oc + c0..q * oc + c0 + cn).unwrap_or(&mut []);
                for ((yv, &(b, rq)), aj) in ypix.iter_mut().zip(&k).zip(&acc) {
                    let s = aj.get(i).copied().unwrap_or(0);
                    *yv = sat8(p.out_zp + rq.apply(b.wrapping_add(s)), p.act_min, p.act_max);
                }
            }
            q0 += PIX;
        }
        c0 += cn;
    }
}

/// [`conv2d_im2col`] for 64-bit hosts (x86_64, aarch64): per-pixel contiguous
/// i16 columns and plain widening dot products, which LLVM vectorizes (SSE2
/// `PMADDWD`, NEON `SMLAL`). Same sums, same bits.
///
/// With the `std` feature on x86_64 the same code is also compiled for AVX2 and
/// chosen at run time when the CPU has it.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_wide(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { wide_avx2(x, in_shape, y, out_shape, p, w, bias, mult, shift) };
    }
    #[cfg(target_arch = "aarch64")]
    return wide(x, in_shape, y, out_shape, p, w, bias, mult, shift, dot4_neon);
    #[cfg(not(target_arch = "aarch64"))]
    wide(x, in_shape, y, out_shape, p, w, bias, mult, shift, dot4_wide)
}

/// [`dot4_wide`] with NEON (baseline on aarch64): per 8 elements one weight load
/// sign-extended to i16 (`SXTL`), then `SMLAL`/`SMLAL2` widening i16 products into
/// i32 lanes for each pixel; exact, as every partial sum.
#[cfg(target_arch = "aarch64")]
fn dot4_neon(col: &Cols, wc: &[i8], acc: &mut [i32; PIX]) {
    use core::arch::aarch64::*;
    let n = wc.len().min(KC);
    let n8 = n / 8 * 8;
    // SAFETY: NEON is part of the aarch64 baseline; every load reads 8 elements at
    // k with k + 8 ≤ n, which bounds `wc` and each column (KC).
    unsafe {
        let mut v = [vdupq_n_s32(0); PIX];
        let mut k = 0;
        while k < n8 {
            let w16 = vmovl_s8(vld1_s8(wc.as_ptr().add(k)));
            let wl = vget_low_s16(w16);
            for (vp, c) in v.iter_mut().zip(col) {
                let xv = vld1q_s16(c.as_ptr().add(k));
                *vp = vmlal_s16(*vp, vget_low_s16(xv), wl);
                *vp = vmlal_high_s16(*vp, xv, w16);
            }
            k += 8;
        }
        let tail = wc.get(n8..n).unwrap_or(&[]);
        for ((a, vp), c) in acc.iter_mut().zip(v).zip(col) {
            let ct = c.get(n8..n).unwrap_or(&[]);
            let t: i32 = ct.iter().zip(tail).map(|(&xv, &wv)| xv as i32 * wv as i32).sum();
            *a += vaddvq_s32(vp) + t;
        }
    }
}

/// [`wide`] compiled with AVX2 enabled, with an AVX2 column kernel.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn wide_avx2(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    // SAFETY (of the kernel calls): AVX2 is enabled in this function.
    wide(x, in_shape, y, out_shape, p, w, bias, mult, shift, |c, wc, a| unsafe {
        dot4_avx2(c, wc, a)
    })
}

/// Columns of the wide kernel: `x − in_zp` per pixel, contiguous in `k`.
type Cols = [[i16; KC]; PIX];

/// `acc[p] += Σ_k col[p][k]·w[k]` over `w.len()` (≤ [`KC`]) elements: weights
/// widened once, then four widening i16 dot products (vectorized by LLVM).
#[inline(always)]
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn dot4_wide(col: &Cols, wc: &[i8], acc: &mut [i32; PIX]) {
    let mut wbuf = [0i16; KC];
    for (d, &v) in wbuf.iter_mut().zip(wc) {
        *d = v as i16;
    }
    let wq = wbuf.get(..wc.len()).unwrap_or(&[]);
    for (a, c) in acc.iter_mut().zip(col) {
        let d: i32 = c.iter().zip(wq).map(|(&xv, &wv)| xv as i32 * wv as i32).sum();
        *a += d;
    }
}

/// [`dot4_wide`] with AVX2: per 16 elements one weight load sign-extended to
/// i16, then `VPMADDWD` against each pixel's column (pairs of exact i16 products
/// summed into i32 lanes; the lane sums are exact, so is their total).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(col: &Cols, wc: &[i8], acc: &mut [i32; PIX]) {
    use core::arch::x86_64::*;
    let n = wc.len().min(KC);
    let n16 = n / 16 * 16;
    let mut v = [_mm256_setzero_si256(); PIX];
    let mut k = 0;
    while k < n16 {
        // SAFETY: k + 16 ≤ n, which bounds both `wc` and every column (KC).
        unsafe {
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(wc.as_ptr().add(k).cast()));
            for (vp, c) in v.iter_mut().zip(col) {
                let xv = _mm256_loadu_si256(c.as_ptr().add(k).cast());
                *vp = _mm256_add_epi32(*vp, _mm256_madd_epi16(xv, wv));
            }
        }
        k += 16;
    }
    let tail = wc.get(n16..n).unwrap_or(&[]);
    for ((a, vp), c) in acc.iter_mut().zip(v).zip(col) {
        let s = _mm_add_epi32(_mm256_castsi256_si128(vp), _mm256_extracti128_si256(vp, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let ct = c.get(n16..n).unwrap_or(&[]);
        let t: i32 = ct.iter().zip(tail).map(|(&xv, &wv)| xv as i32 * wv as i32).sum();
        *a += _mm_cvtsi128_si32(s) + t;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wide(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    dot4: impl Fn(&Cols, &[i8], &mut [i32; PIX]),
) {
    let ksz = p.kh * p.kw * in_shape[2];
    let npix = oh * ow;
    if oc == 0 || ksz == 0 {
        return;
    }
    let zp = p.in_zp as i16;
    let mut raw = [0i8; KC];
    let mut col: Cols = [[0i16; KC]; PIX];
    let chunks = ksz.div_ceil(KC);
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        let mut k = [(0i32, Rq::default()); BLOCK];
        for (j, kj) in k.iter_mut().enumerate().take(cn) {
            let o = c0 + j;
            *kj = (le_i32(bias, o), Rq::new(le_i32(mult, o), le_i32(shift, o)));
        }
        let mut q0 = 0;
        while q0 < npix {
            let mut acc = [[0i32; PIX]; BLOCK];
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                for (i, c) in col.iter_mut().enumerate() {
                    let q = q0 + i;
                    let pos = (q < npix).then(|| {
                        let (oy, ox) = (q / ow, q % ow);
                        ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
                    });
                    gather(x, in_shape, p, pos, k0, len, &mut raw);
                    for (d, &r) in c.iter_mut().zip(&raw).take(len) {
                        *d = r as i16 - zp;
                    }
                }
                for (j, aj) in acc.iter_mut().enumerate().take(cn) {
                    let o = c0 + j;
                    let wc = w.get(o * ksz + k0..o * ksz + k0 + len).unwrap_or(&[]);
                    dot4(&col, wc, aj);
                }
            }
            for (i, q) in (q0..npix.min(q0 + PIX)).enumerate() {
                let ypix = y.get_mut(q * oc + c0..q * oc + c0 + cn).unwrap_or(&mut []);
                for ((yv, &(b, rq)), aj) in ypix.iter_mut().zip(&k).zip(&acc) {
                    let s = aj.get(i).copied().unwrap_or(0);
                    *yv = sat8(p.out_zp + rq.apply(b.wrapping_add(s)), p.act_min, p.act_max);
                }
            }
            q0 += PIX;
        }
        c0 += cn;
    }
}

/// Portable column kernel (hosts, and the reference for the DSP one).
#[allow(dead_code)]
mod generic {
    use super::SENTINEL;

    /// `(x0 − zp, x2 − zp)` and `(x1 − zp, x3 − zp)` as halfword pairs.
    #[inline]
    pub fn split(word: u32, zp: i32) -> (u32, u32) {
        let [b0, b1, b2, b3] = word.to_le_bytes();
        let h = |b: u8| ((b as i8 as i32 - zp) as u16) as u32;
        (h(b0) | h(b2) << 16, h(b1) | h(b3) << 16)
    }

    /// Adds `Σ_k col[p][k]·w[k]` over `n8` groups of 8 elements to `acc[p]`,
    /// stopping early at a sentinel group as the DSP loop does.
    #[inline]
    pub fn dot4(col: &[u32], w: &[i8], n8: usize, acc: &mut [i32; 4]) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (g, (c, wq)) in col.chunks_exact(8).zip(w.chunks_exact(4)).take(2 * n8).enumerate() {
            if g % 2 == 0 && c.first() == Some(&SENTINEL) {
                return;
            }
            let &[w0, w1, w2, w3] = wq else { return };
            let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
            for (a, uv) in acc.iter_mut().zip(c.chunks_exact(2)) {
                let &[u, v] = uv else { return };
                *a += lo(u) * w0 + hi(u) * w2 + lo(v) * w1 + hi(v) * w3;
            }
        }
    }
}

#[cfg(not(ddpm_dsp))]
use generic as kern;

#[cfg(ddpm_dsp)]
use dsp as kern;

#[cfg(ddpm_dsp)]
mod dsp {
    use super::SENTINEL;
    use core::arch::asm;

    /// `(x0 − zp, x2 − zp)` and `(x1 − zp, x3 − zp)` as halfword pairs
    /// (`SXTB16`, `SSUB16`).
    #[inline(always)]
    pub fn split(word: u32, zp: i32) -> (u32, u32) {
        let z = (zp as u16 as u32) * 0x0001_0001;
        let (a, b): (u32, u32);
        // SAFETY: register-only Armv7E-M arithmetic; SSUB16 sets the GE flags,
        // which nothing reads.
        unsafe {
            asm!(
                "sxtb16 {a}, {v}",
                "sxtb16 {b}, {v}, ror #8",
                "ssub16 {a}, {a}, {z}",
                "ssub16 {b}, {b}, {z}",
                v = in(reg) word,
                z = in(reg) z,
                a = out(reg) a,
                b = out(reg) b,
                options(pure, nomem, nostack),
            )
        };
        (a, b)
    }

    /// As `generic::dot4`: 8 elements × 4 pixels per iteration, one weight word
    /// loaded and sign-extended per 4 elements, 4-word `LDM`s of columns,
    /// 16 `SMLAD`s; the loop ends at the sentinel group.
    #[inline(always)]
    pub fn dot4(col: &[u32], w: &[i8], n8: usize, acc: &mut [i32; 4]) {
        // The loop reads n8·16 + 4 column words (through the sentinel group's first
        // LDM) and n8·8 weight bytes; it stops at the first sentinel, which the
        // caller wrote at word n8·16 (and which no earlier group can hold).
        if n8 == 0
            || col.len() < n8 * 16 + 4
            || w.len() < n8 * 8
            || col.get(n8 * 16) != Some(&SENTINEL)
        {
            return super::generic::dot4(col, w, n8, acc);
        }
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: reads stay inside `col` and `w` (checked above: the loop runs at
        // most n8 times because word n8·16 is the sentinel); only the listed
        // registers are written; SMLAD's Q flag and CMP's flags are not relied on
        // outside the block.
        unsafe {
            asm!(
                "ldm {px}!, {{r0, r1, r2, r3}}",
                "2:",
                "ldr r4, [{pw}], #4",
                "sxtb16 r5, r4",
                "sxtb16 r4, r4, ror #8",
                "smlad {a0}, r0, r5, {a0}",
                "smlad {a0}, r1, r4, {a0}",
                "smlad {a1}, r2, r5, {a1}",
                "smlad {a1}, r3, r4, {a1}",
                "ldm {px}!, {{r0, r1, r2, r3}}",
                "smlad {a2}, r0, r5, {a2}",
                "smlad {a2}, r1, r4, {a2}",
                "smlad {a3}, r2, r5, {a3}",
                "smlad {a3}, r3, r4, {a3}",
                "ldm {px}!, {{r0, r1, r2, r3}}",
                "ldr r4, [{pw}], #4",
                "sxtb16 r5, r4",
                "sxtb16 r4, r4, ror #8",
                "smlad {a0}, r0, r5, {a0}",
                "smlad {a0}, r1, r4, {a0}",
                "smlad {a1}, r2, r5, {a1}",
                "smlad {a1}, r3, r4, {a1}",
                "ldm {px}!, {{r0, r1, r2, r3}}",
                "smlad {a2}, r0, r5, {a2}",
                "smlad {a2}, r1, r4, {a2}",
                "smlad {a3}, r2, r5, {a3}",
                "smlad {a3}, r3, r4, {a3}",
                "ldm {px}!, {{r0, r1, r2, r3}}",
                "cmp r0, #0x80008000",
                "bne 2b",
                px = inout(reg) col.as_ptr() => _,
                pw = inout(reg) w.as_ptr() => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                options(nostack, readonly),
            )
        };
        *acc = [a0, a1, a2, a3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_dot4_match_plain_sums() {
        let mut r = crate::ops::testutil::Rng(17);
        for n8 in 1..6 {
            let zp = r.range(-128, 127) as i32;
            let raw: Vec<Vec<i8>> = (0..PIX).map(|_| r.vec_i8(n8 * 8)).collect();
            let w = r.vec_i8(n8 * 8);
            let mut col = vec![0u32; n8 * 16 + 8];
            for (p, rp) in raw.iter().enumerate() {
                columns(rp, p, zp, n8, &mut col);
            }
            col[n8 * 16] = SENTINEL;
            let mut acc = [1, 2, 3, 4];
            kern::dot4(&col, &w, n8, &mut acc);
            for p in 0..PIX {
                let want: i32 =
                    raw[p].iter().zip(&w).map(|(&x, &v)| (x as i32 - zp) * v as i32).sum();
                assert_eq!(acc[p], want + p as i32 + 1);
            }
        }
    }
}

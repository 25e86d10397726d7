//! Direct convolution on x86_64 hosts with AVX2 (the `std` feature) for int8 or
//! int16 inputs, bit-identical to the reference kernel: no columns.
//!
//! The input, less its zero point, is first copied as i16 into a zero-padded
//! image (`(oh−1)·sh + kh` rows of `(ow−1)·sw + kw` pixels, the channels rounded
//! up to an even count with a zero channel), so every window is in bounds and
//! padding is plain zeros. Per panel of 16 output channels the int8 weights are
//! repacked as i16 pairs `[tap][channel pair][16 lanes][2]`; per group of four
//! output pixels along a row, each tap's channel pairs are broadcast (one 32-bit
//! word per pixel) against the panel's two 8-lane vectors with `VPMADDWD`, eight
//! accumulators in registers. Every pair product is below 2^23 and the i32 sums
//! wrap, exact as the loader bounds the window sums, so the sums are the
//! reference's in any order; bias and requantization are
//! [`super::host_engine::BlockRq`]'s fast arm on 8-lane vectors (`VPMULDQ` on even
//! and odd lanes, per-lane shifts), then the output zero point, the activation
//! clamp and saturating packs into the output type, straight into the output.
//!
//! Stack: [`PADW`] i16 words of padded input (64 KiB) and [`WPW`] of repacked
//! weights (36 KiB).

use super::host_engine::{BlockRq, BLOCK};
use super::params::Conv2dParams;
use crate::ops::numerics::Elem;

/// i16 words of the padded input image.
pub(super) const PADW: usize = 32 * 1024;
/// i16 words of one panel's repacked weights: 9 taps × 64 channel pairs × 32.
const WPW: usize = 9 * 64 * 32;
/// Output channels per panel.
const PANEL: usize = 16;
/// Output pixels per group.
const P: usize = 4;
/// Fewest output pixels for which callers take this kernel (it repacks the
/// weights on every call and computes pixels four at a time).
pub const MIN_PIXELS: usize = 16;
/// Most kernel taps (`kh·kw`).
const MAXTAPS: usize = 64;

/// Padded input geometry: `(rows, pixels per row, channels)`.
fn padded(in_shape: [usize; 3], [oh, ow]: [usize; 2], p: &Conv2dParams) -> (usize, usize, usize) {
    let hp = oh.saturating_sub(1) * p.sh + p.kh;
    let wp = ow.saturating_sub(1) * p.sw + p.kw;
    (hp, wp, in_shape[2] + in_shape[2] % 2)
}

/// Whether [`run_avx2`] handles this convolution with input `X` (and the CPU has
/// AVX2): int16 input needs `in_zp = 0` (so `x − in_zp` is an i16), and the padded
/// image and one panel's weights must fit the stack buffers.
pub fn applicable<X: Elem>(
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
) -> bool {
    let (hp, wp, ic2) = padded(in_shape, [oh, ow], p);
    let zp_ok = if X::BYTES == 1 { (-128..=127).contains(&p.in_zp) } else { p.in_zp == 0 };
    zp_ok
        && in_shape[2] > 0
        && oh > 0
        && ow > 0
        && oc > 0
        && (1..=MAXTAPS).contains(&(p.kh * p.kw))
        && p.sh > 0
        && p.sw > 0
        && hp.checked_mul(wp).and_then(|v| v.checked_mul(ic2)).is_some_and(|v| v <= PADW)
        && p.kh * p.kw * (ic2 / 2) * 2 * PANEL <= WPW
        && std::is_x86_feature_detected!("avx2")
}

/// The convolution of `x` (`in_shape`, HWC, elements `X`) into `y` (`out_shape`,
/// HWC, elements `Y`): `y = clamp(out_zp + mbqm(bias[o] + Σ(x − in_zp)·w,
/// mult[o], shift[o]))` to the activation range and `Y`, as the host engine's
/// store. Does nothing unless [`applicable`] and `y` holds the output.
///
/// # Safety
/// The CPU must support AVX2 ([`applicable`] checks).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn run_avx2<X: Elem, Y: Elem>(
    x: &[u8],
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    y: &mut [u8],
) {
    use core::arch::x86_64::*;
    let [h, wd, ic] = in_shape;
    if !applicable::<X>(in_shape, [oh, ow, oc], p) {
        return;
    }
    let taps = p.kh * p.kw;
    let ksz = taps * ic;
    if X::count(x) < h * wd * ic || w.len() < oc * ksz || Y::count(y) < oh * ow * oc {
        return;
    }
    let (hp, wp, ic2) = padded(in_shape, [oh, ow], p);
    let pairs = ic2 / 2;
    // Only the parts used are zeroed (the buffers are large next to the smaller
    // layers' work).
    let mut pad_buf = core::mem::MaybeUninit::<[i16; PADW]>::uninit();
    let pad = zeroed_prefix(&mut pad_buf, hp * wp * ic2);
    fill_padded::<X>(x, in_shape, p, pad, hp, wp, ic2);
    // Word offset of each tap within a window.
    let mut toff = [0usize; MAXTAPS];
    for (t, o) in toff.iter_mut().enumerate().take(taps) {
        *o = ((t / p.kw) * wp + t % p.kw) * ic2;
    }
    let mut wpk_buf = core::mem::MaybeUninit::<[i16; WPW]>::uninit();
    let wpk = zeroed_prefix(&mut wpk_buf, taps * pairs * 2 * PANEL);
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        let brq = BlockRq::new(bias, mult, shift, c0, cn, &[]);
        let mut j0 = 0;
        while j0 < cn {
            let pn = PANEL.min(cn - j0);
            // SAFETY: AVX2 is enabled in this function.
            unsafe { repack(wpk, w, taps, ic, c0 + j0, pn) };
            // The vector epilogue's constants (a whole panel of fast channels).
            let vk = match brq.fast_consts(j0, PANEL) {
                // SAFETY: AVX2 is enabled in this function.
                Some((b, kp, m, e)) if pn == PANEL => Some(unsafe { Epi::new(b, kp, m, e) }),
                _ => None,
            };
            let (wptr, pptr) = (wpk.as_ptr(), pad.as_ptr());
            for oy in 0..oh {
                let rbase = oy * p.sh * wp * ic2;
                let mut ox = 0;
                while ox < ow {
                    let n = P.min(ow - ox);
                    let base = rbase + ox * p.sw * ic2;
                    // Pixels past the row's end repeat pixel 0 (not stored).
                    let off = |i: usize| if i < n { i * p.sw * ic2 } else { 0 };
                    let (o1, o2, o3) = (off(1), off(2), off(3));
                    let z = _mm256_setzero_si256();
                    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
                    let (mut a4, mut a5, mut a6, mut a7) = (z, z, z, z);
                    for (t, &to) in toff.iter().enumerate().take(taps) {
                        // SAFETY: the window of output pixel (oy, ox + i) starts at
                        // base + off(i) and spans rows oy·sh .. oy·sh + kh − 1 < hp,
                        // pixels (ox + i)·sw .. (ox + i)·sw + kw − 1 < wp and
                        // channels < ic2: tap t's pair k at + toff[t] + 2k is inside
                        // the hp·wp·ic2 ≤ PADW padded image; the panel's weights
                        // at (t·pairs + k)·32 + 31 < taps·pairs·32 ≤ WPW.
                        unsafe {
                            let xp = pptr.add(base + to);
                            let wt = wptr.add(t * pairs * 2 * PANEL);
                            for k in 0..pairs {
                                let w0 = _mm256_loadu_si256(wt.add(k * 2 * PANEL).cast());
                                let w1 = _mm256_loadu_si256(wt.add(k * 2 * PANEL + PANEL).cast());
                                let xk = xp.add(2 * k);
                                let b = _mm256_set1_epi32((xk as *const i32).read_unaligned());
                                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(b, w0));
                                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(b, w1));
                                let b =
                                    _mm256_set1_epi32((xk.add(o1) as *const i32).read_unaligned());
                                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(b, w0));
                                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(b, w1));
                                let b =
                                    _mm256_set1_epi32((xk.add(o2) as *const i32).read_unaligned());
                                a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(b, w0));
                                a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(b, w1));
                                let b =
                                    _mm256_set1_epi32((xk.add(o3) as *const i32).read_unaligned());
                                a6 = _mm256_add_epi32(a6, _mm256_madd_epi16(b, w0));
                                a7 = _mm256_add_epi32(a7, _mm256_madd_epi16(b, w1));
                            }
                        }
                    }
                    let accs = [(a0, a1), (a2, a3), (a4, a5), (a6, a7)];
                    for (i, &(lo, hi)) in accs.iter().enumerate().take(n) {
                        let at = (oy * ow + ox + i) * oc + c0 + j0;
                        // SAFETY: AVX2 is enabled in this function.
                        unsafe { put_pixel::<Y>(y, at, lo, hi, vk.as_ref(), &brq, j0, pn, p) };
                    }
                    ox += n;
                }
            }
            j0 += PANEL;
        }
        c0 += cn;
    }
}

/// One output channel (the UNet's output convolution) on AVX2 without columns,
/// for input channels a multiple of 16: the padded image of [`run_avx2`], then
/// per group of eight output pixels and per tap one `VPMADDWD` of each pixel's
/// 16 channels against the tap's weights, the eight accumulators reduced
/// together (`VPHADDD`), and the vector requantization, clamp and pack of
/// [`put_pixel`] on the eight sums, stored as eight contiguous outputs. Same
/// sums, same bits. `false` (nothing written) when not applicable.
///
/// # Safety
/// The CPU must support AVX2 ([`applicable`] checks).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn run_one_avx2<X: Elem, Y: Elem>(
    x: &[u8],
    in_shape: [usize; 3],
    [oh, ow]: [usize; 2],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    y: &mut [u8],
) -> bool {
    use core::arch::x86_64::*;
    let [h, wd, ic] = in_shape;
    let taps = p.kh * p.kw;
    let npix = oh * ow;
    if ic % 16 != 0
        || ic / 16 * taps > ONE_VECS
        || !applicable::<X>(in_shape, [oh, ow, 1], p)
        || X::count(x) < h * wd * ic
        || w.len() < taps * ic
        || Y::count(y) < npix
    {
        return false;
    }
    let brq = BlockRq::new(bias, mult, shift, 0, 1, &[]);
    let Some((b, kp, m, e)) = brq.fast_consts(0, 1) else { return false };
    let (Some(&b), Some(&kp), Some(&m), Some(&e)) = (b.first(), kp.first(), m.first(), e.first())
    else {
        return false;
    };
    // SAFETY: AVX2 is enabled in this function.
    let k = unsafe { Epi::new(&[b; PANEL], &[kp; PANEL], &[m; PANEL], &[e; PANEL]) };
    let (hp, wp, ic2) = padded(in_shape, [oh, ow], p);
    let mut pad_buf = core::mem::MaybeUninit::<[i16; PADW]>::uninit();
    let pad = zeroed_prefix(&mut pad_buf, hp * wp * ic2);
    fill_padded::<X>(x, in_shape, p, pad, hp, wp, ic2);
    let groups = ic / 16;
    let mut wv = [_mm256_setzero_si256(); ONE_VECS];
    for (j, v) in wv.iter_mut().enumerate().take(taps * groups) {
        // SAFETY: AVX2 is enabled here; load16 reads 16 weights in bounds.
        *v = unsafe { load16(w, 16 * j, 16, 0) };
    }
    // Word offset of vector j (tap t = j / groups, group g) within a window.
    let mut voff = [0usize; ONE_VECS];
    for (j, o) in voff.iter_mut().enumerate().take(taps * groups) {
        let (t, g) = (j / groups, j % groups);
        *o = ((t / p.kw) * wp + t % p.kw) * ic2 + 16 * g;
    }
    let (zp_out, act_lo, act_hi) =
        (_mm256_set1_epi32(p.out_zp), _mm256_set1_epi32(p.act_min), _mm256_set1_epi32(p.act_max));
    let pptr = pad.as_ptr();
    let mut q0 = 0;
    while q0 < npix {
        let n = 8.min(npix - q0);
        // Window starts of the eight pixels (past the end: the group's first).
        let mut base = [0usize; 8];
        for (i, bs) in base.iter_mut().enumerate() {
            let q = if i < n { q0 + i } else { q0 };
            let (oy, ox) = (q / ow, q % ow);
            *bs = (oy * p.sh * wp + ox * p.sw) * ic2;
        }
        let mut acc = [_mm256_setzero_si256(); 8];
        for (&wj, &o) in wv.iter().zip(&voff).take(taps * groups) {
            for (a, &bs) in acc.iter_mut().zip(&base) {
                // SAFETY: the window of each pixel lies inside the padded image
                // (see run_avx2) and o + 16 ≤ the window's last pixel's channels.
                let xv = unsafe { _mm256_loadu_si256(pptr.add(bs + o).cast()) };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wj));
            }
        }
        let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
        let h01 = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        let h45 = _mm256_hadd_epi32(_mm256_hadd_epi32(a4, a5), _mm256_hadd_epi32(a6, a7));
        // h01 = [a0 a1 a2 a3 (low halves) | a0 a1 a2 a3 (high halves)].
        let s03 = _mm_add_epi32(_mm256_castsi256_si128(h01), _mm256_extracti128_si256(h01, 1));
        let s47 = _mm_add_epi32(_mm256_castsi256_si128(h45), _mm256_extracti128_si256(h45, 1));
        let sums = _mm256_set_m128i(s47, s03);
        // SAFETY: AVX2 is enabled in this function.
        let r = unsafe { k.apply(sums, 0) };
        let r = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, zp_out), act_lo), act_hi);
        let r16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(r, r), 0b00_00_10_00);
        let mut out = [0u8; 16];
        if Y::BYTES == 2 {
            // SAFETY: out is 16 bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm256_castsi256_si128(r16)) };
        } else {
            let r8 = _mm_packs_epi16(_mm256_castsi256_si128(r16), _mm256_castsi256_si128(r16));
            // SAFETY: out is 16 bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), r8) };
        }
        let nb = n * Y::BYTES;
        if let (Some(d), Some(s)) = (y.get_mut(q0 * Y::BYTES..q0 * Y::BYTES + nb), out.get(..nb)) {
            d.copy_from_slice(s);
        }
        q0 += n;
    }
    true
}

/// Weight vectors (taps × 16-channel groups) [`run_one_avx2`] holds.
const ONE_VECS: usize = 64;

/// A 1×1 convolution of one input pixel (the timestep MLP's linear layers):
/// `x − in_zp` widened once, then per output channel a `VPMADDWD` dot product
/// over 16 input channels at a time and one horizontal sum; per 16 channels
/// the requantization and store of [`put_pixel`]. Same sums, same bits. `false`
/// (nothing written) unless `x` is one pixel of at most [`MV_MAX`] channels
/// (a multiple of 16), the kernel 1×1 and the output one pixel.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn run_matvec_avx2<Y: Elem>(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    y: &mut [u8],
) -> bool {
    use core::arch::x86_64::*;
    if [h, wd, oh, ow, p.kh, p.kw] != [1; 6]
        || p.pt != 0
        || p.pl != 0
        || ic == 0
        || ic % 16 != 0
        || ic > MV_MAX
        || x.len() < ic
        || w.len() < oc * ic
        || Y::count(y) < oc
        || !(-128..=127).contains(&p.in_zp)
    {
        return false;
    }
    let mut xv = [_mm256_setzero_si256(); MV_MAX / 16];
    let zp = _mm256_set1_epi16(p.in_zp as i16);
    for (j, v) in xv.iter_mut().enumerate().take(ic / 16) {
        // SAFETY: AVX2 is enabled here; load16 reads in bounds.
        *v = _mm256_sub_epi16(unsafe { load16(x, 16 * j, 16, 0) }, zp);
    }
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        let brq = BlockRq::new(bias, mult, shift, c0, cn, &[]);
        let mut j0 = 0;
        while j0 < cn {
            let pn = PANEL.min(cn - j0);
            let mut sums = [0i32; PANEL];
            for (l, sl) in sums.iter_mut().enumerate().take(pn) {
                let row = (c0 + j0 + l) * ic;
                let mut acc = _mm256_setzero_si256();
                for (j, &xj) in xv.iter().enumerate().take(ic / 16) {
                    // SAFETY: AVX2 is enabled here; load16 reads in bounds.
                    let wj = unsafe { load16(w, row + 16 * j, 16, 0) };
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xj, wj));
                }
                let s4 =
                    _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
                let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
                let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b10_11_00_01));
                *sl = _mm_cvtsi128_si32(s1);
            }
            let vk = match brq.fast_consts(j0, PANEL) {
                // SAFETY: AVX2 is enabled in this function.
                Some((b, kp, m, e)) if pn == PANEL => Some(unsafe { Epi::new(b, kp, m, e) }),
                _ => None,
            };
            // SAFETY: sums holds 16 i32; AVX2 is enabled in this function.
            unsafe {
                let lo = _mm256_loadu_si256(sums.as_ptr().cast());
                let hi = _mm256_loadu_si256(sums.as_ptr().add(8).cast());
                put_pixel::<Y>(y, c0 + j0, lo, hi, vk.as_ref(), &brq, j0, pn, p);
            }
            j0 += PANEL;
        }
        c0 += cn;
    }
    true
}

/// Most input channels of [`run_matvec_avx2`].
const MV_MAX: usize = 512;

/// Requantizes one output pixel's sums of `pn ≤ 16` channels (`lo`: the block's
/// channels `j0 .. j0 + 8`, `hi`: the next 8) and stores them as elements
/// `at ..` of `y`: `clamp(out_zp + mbqm(bias + Σ))` to the activation range and
/// `Y`, through `vk` (the vector arm) when given, else [`BlockRq::apply`].
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn put_pixel<Y: Elem>(
    y: &mut [u8],
    at: usize,
    lo: core::arch::x86_64::__m256i,
    hi: core::arch::x86_64::__m256i,
    vk: Option<&Epi>,
    brq: &BlockRq,
    j0: usize,
    pn: usize,
    p: &Conv2dParams,
) {
    use core::arch::x86_64::*;
    let dst = y.get_mut(at * Y::BYTES..(at + PANEL) * Y::BYTES);
    if let (Some(k), Some(dst), true) = (vk, dst, pn == PANEL) {
        let (act_lo, act_hi) = (_mm256_set1_epi32(p.act_min), _mm256_set1_epi32(p.act_max));
        let zp_out = _mm256_set1_epi32(p.out_zp);
        // SAFETY: AVX2 is enabled in this function.
        let (r0, r1) = unsafe { (k.apply(lo, 0), k.apply(hi, 1)) };
        let r0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r0, zp_out), act_lo), act_hi);
        let r1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r1, zp_out), act_lo), act_hi);
        // Saturating packs (the type's range), lanes back in order.
        let v16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(r0, r1), 0b11_01_10_00);
        if Y::BYTES == 2 {
            // SAFETY: dst is 32 bytes.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v16) };
        } else {
            let v8 = _mm256_permute4x64_epi64(_mm256_packs_epi16(v16, v16), 0b00_00_10_00);
            // SAFETY: dst is 16 bytes.
            unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), _mm256_castsi256_si128(v8)) };
        }
        return;
    }
    let mut sums = [0i32; PANEL];
    // SAFETY: sums holds 16 i32.
    unsafe {
        _mm256_storeu_si256(sums.as_mut_ptr().cast(), lo);
        _mm256_storeu_si256(sums.as_mut_ptr().add(8).cast(), hi);
    }
    let mut vals = [0i32; PANEL];
    let vs = vals.get_mut(..pn).unwrap_or(&mut []);
    brq.apply(j0, &sums, vs);
    for (j, &r) in vs.iter().enumerate() {
        let o = p.out_zp.wrapping_add(r).max(p.act_min).min(p.act_max);
        Y::put(y, at + j, o.clamp(Y::MIN, Y::MAX));
    }
}

/// One panel's weights into `wpk`: `wpk[((t·pairs + k)·16 + l)·2 + e] =
/// w[c0 + l][t][2k + e]` for the panel's `pn` channels (zero past `ic` and past
/// `pn`), per tap and 16 input channels as an 8×8 transpose of channel pairs.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn repack(wpk: &mut [i16], w: &[i8], taps: usize, ic: usize, c0: usize, pn: usize) {
    use core::arch::x86_64::*;
    let pairs = ic.div_ceil(2);
    let ksz = taps * ic;
    let z = _mm256_setzero_si256();
    for t in 0..taps {
        for l0 in [0, 8] {
            for i0 in (0..ic).step_by(16) {
                let n = 16.min(ic - i0);
                let mut rows = [z; 8];
                for (q, row) in rows.iter_mut().enumerate() {
                    if l0 + q < pn {
                        // SAFETY: AVX2 is enabled here.
                        *row = unsafe { load16(w, (c0 + l0 + q) * ksz + t * ic + i0, n, 0) };
                    }
                }
                // SAFETY: AVX2 is enabled here.
                let tr = unsafe { transpose8(&rows) };
                for (kk, v) in tr.iter().enumerate() {
                    let k = i0 / 2 + kk;
                    if k >= pairs {
                        break;
                    }
                    let at = ((t * pairs + k) * PANEL + l0) * 2;
                    if let Some(d) = wpk.get_mut(at..at + 16) {
                        // SAFETY: d is 16 i16 (32 bytes).
                        unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), *v) };
                    }
                }
            }
        }
    }
}

/// The first `n` (at most `N`) words of `buf`, zeroed.
#[inline(always)]
pub(super) fn zeroed_prefix<const N: usize>(
    buf: &mut core::mem::MaybeUninit<[i16; N]>,
    n: usize,
) -> &mut [i16] {
    let n = n.min(N);
    let p = buf.as_mut_ptr().cast::<i16>();
    // SAFETY: p points to N i16 words; the first n ≤ N are written (zero) before
    // the slice over them is made, and the slice borrows `buf` mutably.
    unsafe {
        core::ptr::write_bytes(p, 0, n);
        core::slice::from_raw_parts_mut(p, n)
    }
}

/// The padded image: row `r`, pixel `c`, channel `k` at `(r·wp + c)·ic2 + k` holds
/// `x[r − pt][c − pl][k] − in_zp`, 0 outside the input and for `k ≥ ic`.
#[inline(always)]
pub(super) fn fill_padded<X: Elem>(
    x: &[u8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pad: &mut [i16],
    hp: usize,
    wp: usize,
    ic2: usize,
) {
    // Input columns that land in the padded row: ix = c − pl for c < wp.
    let ix1 = wd.min(wp.saturating_sub(p.pl));
    let c0 = p.pl; // padded pixel of input column 0
    for (r, prow) in pad.chunks_exact_mut(wp * ic2).take(hp).enumerate() {
        let iy = r as isize - p.pt as isize;
        if iy < 0 || iy as usize >= h {
            continue;
        }
        let src = x.get(iy as usize * wd * ic * X::BYTES..(iy as usize * wd + ix1) * ic * X::BYTES);
        let Some(src) = src else { continue };
        if ic2 == ic {
            // One run: input columns 0 .. ix1 to padded pixels pl .. pl + ix1.
            if let Some(d) = prow.get_mut(c0 * ic..(c0 + ix1) * ic) {
                widen::<X>(d, src, p.in_zp);
            }
        } else {
            for (px, s) in src.chunks_exact(ic * X::BYTES).enumerate() {
                if let Some(d) = prow.get_mut((c0 + px) * ic2..(c0 + px) * ic2 + ic) {
                    widen::<X>(d, s, p.in_zp);
                }
            }
        }
    }
}

/// `d[i] = s[i] − zp` for the elements of `s` (`X` bytes each).
#[inline(always)]
fn widen<X: Elem>(d: &mut [i16], s: &[u8], zp: i32) {
    if X::BYTES == 1 {
        let zp = zp as i16;
        for (d, &v) in d.iter_mut().zip(s) {
            *d = v as i8 as i16 - zp;
        }
    } else {
        // int16 input: zp = 0 (see `applicable`).
        for (d, v) in d.iter_mut().zip(s.chunks_exact(2)) {
            if let &[lo, hi] = v {
                *d = i16::from_le_bytes([lo, hi]);
            }
        }
    }
}

/// The fast requantization arm on 8-lane vectors for one panel (two halves).
pub(super) struct Epi {
    b: [core::arch::x86_64::__m256i; 2],
    m: [core::arch::x86_64::__m256i; 2],
    /// `kpos` of the even lanes `0, 2, 4, 6` and of the odd lanes, per half.
    kev: [core::arch::x86_64::__m256i; 2],
    kod: [core::arch::x86_64::__m256i; 2],
    e: [core::arch::x86_64::__m256i; 2],
}

impl Epi {
    /// From 16 channels' `(bias, kpos, m, e1)`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn new(b: &[i32], kp: &[i64], m: &[i32], e: &[u32]) -> Epi {
        use core::arch::x86_64::*;
        let v32 = |s: &[i32], h: usize| {
            let mut a = [0i32; 8];
            for (d, &v) in a.iter_mut().zip(s.iter().skip(8 * h)) {
                *d = v;
            }
            // SAFETY: a holds 8 i32.
            unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
        };
        let v64 = |h: usize, odd: usize| {
            let mut a = [0i64; 4];
            for (d, &v) in a.iter_mut().zip(kp.iter().skip(8 * h + odd).step_by(2)) {
                *d = v;
            }
            // SAFETY: a holds 4 i64.
            unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
        };
        let mut es = [0i32; 16];
        for (d, &v) in es.iter_mut().zip(e) {
            *d = v as i32;
        }
        Epi {
            b: [v32(b, 0), v32(b, 1)],
            m: [v32(m, 0), v32(m, 1)],
            kev: [v64(0, 0), v64(1, 0)],
            kod: [v64(0, 1), v64(1, 1)],
            e: [v32(&es, 0), v32(&es, 1)],
        }
    }

    /// `((a·m + kpos + (a & i32::MIN)) >> 32) >> e1` for `a = b + s`, lanes of
    /// half `h`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn apply(
        &self,
        s: core::arch::x86_64::__m256i,
        h: usize,
    ) -> core::arch::x86_64::__m256i {
        use core::arch::x86_64::*;
        let (Some(&b), Some(&m), Some(&kev), Some(&kod), Some(&e)) =
            (self.b.get(h), self.m.get(h), self.kev.get(h), self.kod.get(h), self.e.get(h))
        else {
            return s;
        };
        let a = _mm256_add_epi32(s, b);
        // (a & i32::MIN) as i64: −2^31 where a < 0, per 64-bit lane.
        let sign = _mm256_srai_epi32(a, 31);
        let sev = _mm256_shuffle_epi32(sign, 0b10_10_00_00);
        let sod = _mm256_shuffle_epi32(sign, 0b11_11_01_01);
        let sev = _mm256_and_si256(sev, _mm256_set1_epi64x(-(1i64 << 31)));
        let sod = _mm256_and_si256(sod, _mm256_set1_epi64x(-(1i64 << 31)));
        let pe = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, m), kev), sev);
        let po = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(m, 32));
        let po = _mm256_add_epi64(_mm256_add_epi64(po, kod), sod);
        // High words: even lanes shifted down, odd lanes in place.
        let hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0b1010_1010);
        _mm256_srav_epi32(hi, e)
    }
}

/// Sixteen int8 values from `src[at..]` as i16 lanes: the first `n ≤ 16` from
/// `src`, the rest `fill`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn load16(
    src: &[i8],
    at: usize,
    n: usize,
    fill: i8,
) -> core::arch::x86_64::__m256i {
    use core::arch::x86_64::*;
    match src.get(at..at + 16) {
        // SAFETY: 16 bytes in bounds.
        Some(s) if n >= 16 => _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(s.as_ptr().cast()) }),
        _ => {
            let mut b = [fill; 16];
            let part = src.get(at..at + n.min(16)).unwrap_or(&[]);
            for (d, &v) in b.iter_mut().zip(part) {
                *d = v;
            }
            // SAFETY: b is 16 bytes.
            _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
        }
    }
}

/// 8×8 transpose of 32-bit elements.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn transpose8(
    r: &[core::arch::x86_64::__m256i; 8],
) -> [core::arch::x86_64::__m256i; 8] {
    use core::arch::x86_64::*;
    let [r0, r1, r2, r3, r4, r5, r6, r7] = *r;
    let (a0, a1) = (_mm256_unpacklo_epi32(r0, r1), _mm256_unpackhi_epi32(r0, r1));
    let (a2, a3) = (_mm256_unpacklo_epi32(r2, r3), _mm256_unpackhi_epi32(r2, r3));
    let (a4, a5) = (_mm256_unpacklo_epi32(r4, r5), _mm256_unpackhi_epi32(r4, r5));
    let (a6, a7) = (_mm256_unpacklo_epi32(r6, r7), _mm256_unpackhi_epi32(r6, r7));
    let (b0, b1) = (_mm256_unpacklo_epi64(a0, a2), _mm256_unpackhi_epi64(a0, a2));
    let (b2, b3) = (_mm256_unpacklo_epi64(a1, a3), _mm256_unpackhi_epi64(a1, a3));
    let (b4, b5) = (_mm256_unpacklo_epi64(a4, a6), _mm256_unpackhi_epi64(a4, a6));
    let (b6, b7) = (_mm256_unpacklo_epi64(a5, a7), _mm256_unpackhi_epi64(a5, a7));
    [
        _mm256_permute2x128_si256(b0, b4, 0x20),
        _mm256_permute2x128_si256(b1, b5, 0x20),
        _mm256_permute2x128_si256(b2, b6, 0x20),
        _mm256_permute2x128_si256(b3, b7, 0x20),
        _mm256_permute2x128_si256(b0, b4, 0x31),
        _mm256_permute2x128_si256(b1, b5, 0x31),
        _mm256_permute2x128_si256(b2, b6, 0x31),
        _mm256_permute2x128_si256(b3, b7, 0x31),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::conv2d::conv2d_mixed;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::{E16, E8};

    /// One random case of `X` input and `Y` output against `conv2d_mixed`, bit for
    /// bit; returns whether the kernel took it and whether every multiplier was a
    /// fast-arm one (the vector epilogue).
    fn case<X: Elem, Y: Elem>(r: &mut Rng, n: usize) -> (bool, bool) {
        let (kh, kw) = match n % 4 {
            0 => (1, 1),
            1 => (3, 3),
            _ => (r.range(1, 5) as usize, r.range(1, 5) as usize),
        };
        let (sh, sw) =
            if n % 3 == 0 { (2, 2) } else { (r.range(1, 3) as usize, r.range(1, 3) as usize) };
        let ic = match n % 5 {
            0 => 1,
            1 => 16,
            2 => 32,
            _ => r.range(1, 40) as usize,
        };
        let oc = match n % 6 {
            0 => 16,
            1 => 32,
            2 => 64 + 16,
            _ => r.range(1, 70) as usize,
        };
        let (h, wd) = (r.range(1, 14) as usize, r.range(1, 14) as usize);
        let (pt, pb) = (r.range(0, kh as i64 - 1) as usize, r.range(0, kh as i64 - 1) as usize);
        let (pl, pr) = (r.range(0, kw as i64 - 1) as usize, r.range(0, kw as i64 - 1) as usize);
        if h + pt + pb < kh || wd + pl + pr < kw {
            return (false, false);
        }
        let (oh, ow) = ((h + pt + pb - kh) / sh + 1, (wd + pl + pr - kw) / sw + 1);
        let x: Vec<u8> = if X::BYTES == 1 {
            (0..h * wd * ic).map(|_| if n % 7 == 0 { 0x80 } else { r.next() as u8 }).collect()
        } else {
            let ext = [i16::MIN, i16::MAX, -1, 0];
            (0..h * wd * ic)
                .flat_map(|_| {
                    if n % 7 == 0 { ext[(r.next() % 4) as usize] } else { r.next() as i16 }
                        .to_le_bytes()
                })
                .collect()
        };
        let w: Vec<i8> =
            (0..oc * kh * kw * ic).map(|_| if n % 7 == 0 { -128 } else { r.i8() }).collect();
        let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 24, 1 << 24) as i32).collect();
        let general = n % 5 == 4;
        let (mut mult, mut shift) = (vec![], vec![]);
        for j in 0..oc {
            let real = match r.next() % 4 {
                _ if general && j == oc / 2 => 3.0 + r.f64(),
                0 => 1e-7 + r.f64() * 1e-6,
                1 => 0.5 + r.f64() * 0.4,
                _ => 1e-5 + r.f64() * 1e-2,
            };
            let (m, s) = quantize_multiplier(real);
            // Negative multipliers (not made by the converter) take the general arm.
            mult.push(if general && r.next() % 4 == 0 { -m } else { m });
            shift.push(s);
        }
        let in_zp = if X::BYTES == 1 { r.range(-128, 127) as i32 } else { 0 };
        let out_zp = r.range(-20, 20) as i32;
        let (act_min, act_max) = match n % 5 {
            0 => (-50, 60),
            1 => (0, 32767),
            2 => (-5, 7),
            _ => (-32768, 32767),
        };
        let p = Conv2dParams { kh, kw, sh, sw, pt, pl, in_zp, out_zp, act_min, act_max };
        if !applicable::<X>([h, wd, ic], [oh, ow, oc], &p) {
            return (false, false);
        }
        let bias_b = if n % 11 == 0 { vec![] } else { i32_bytes(&bias) };
        let (mb, sb) = (i32_bytes(&mult), i32_bytes(&shift));
        let mut want = vec![0u8; oh * ow * oc * Y::BYTES];
        conv2d_mixed::<X, Y>(&x, [h, wd, ic], &mut want, [oh, ow, oc], &p, &w, &bias_b, &mb, &sb);
        let mut got = vec![0x5au8; want.len()];
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        unsafe {
            run_avx2::<X, Y>(&x, [h, wd, ic], [oh, ow, oc], &p, &w, &bias_b, &mb, &sb, &mut got)
        };
        assert_eq!(
            got, want,
            "case {n}: {h}x{wd}x{ic} -> {oh}x{ow}x{oc} k{kh}x{kw} s{sh}x{sw} p{pt},{pl}"
        );
        (true, !general)
    }

    /// [`run_one_avx2`] (one output channel) against `conv2d_mixed` on random
    /// shapes, strides, paddings, 16–48 input channels, both input and output
    /// types, extreme values and clamps; pixel counts not a multiple of 8.
    #[test]
    fn one_channel_matches_wide_conv2d() {
        if !std::is_x86_feature_detected!("avx2") {
            std::eprintln!("no AVX2 on this CPU: the direct kernel is not used");
            return;
        }
        fn one<X: Elem, Y: Elem>(r: &mut Rng, n: usize) -> bool {
            let (kh, kw) = if n % 3 == 0 { (1, 1) } else { (3, 3) };
            let s = if n % 4 == 0 { 2 } else { 1 };
            let ic = 16 * r.range(1, 3) as usize;
            let (h, wd) = (r.range(1, 13) as usize, r.range(1, 13) as usize);
            let (pt, pl) = (r.range(0, kh as i64 / 2) as usize, r.range(0, kw as i64 / 2) as usize);
            if h + 2 * pt < kh || wd + 2 * pl < kw {
                return false;
            }
            let (oh, ow) = ((h + 2 * pt - kh) / s + 1, (wd + 2 * pl - kw) / s + 1);
            let x: Vec<u8> =
                (0..h * wd * ic * X::BYTES)
                    .map(|i| {
                        if n % 5 == 0 && i % X::BYTES == X::BYTES - 1 {
                            0x80
                        } else {
                            r.next() as u8
                        }
                    })
                    .collect();
            let w: Vec<i8> =
                (0..kh * kw * ic).map(|_| if n % 5 == 0 { -128 } else { r.i8() }).collect();
            // Every sixth a multiplier of the general arm (not taken: `false`).
            let real =
                if n % 6 == 5 { 0.6 + r.f64() } else { 1e-6 + r.f64() * [1e-4, 0.45][n % 2] };
            let (m, sh) = quantize_multiplier(real);
            let in_zp = if X::BYTES == 1 { r.range(-128, 127) as i32 } else { 0 };
            let (act_min, act_max) = if n % 3 == 1 { (-30, 40) } else { (-32768, 32767) };
            let out_zp = r.range(-9, 9) as i32;
            let p = Conv2dParams { kh, kw, sh: s, sw: s, pt, pl, in_zp, out_zp, act_min, act_max };
            let (bb, mb, sb) = (
                i32_bytes(&[r.range(-1 << 20, 1 << 20) as i32]),
                i32_bytes(&[m]),
                i32_bytes(&[sh]),
            );
            let mut want = vec![0u8; oh * ow * Y::BYTES];
            conv2d_mixed::<X, Y>(&x, [h, wd, ic], &mut want, [oh, ow, 1], &p, &w, &bb, &mb, &sb);
            let mut got = vec![0x5au8; want.len()];
            // SAFETY: AVX2 is present (checked by the caller).
            let ran = unsafe {
                run_one_avx2::<X, Y>(&x, [h, wd, ic], [oh, ow], &p, &w, &bb, &mb, &sb, &mut got)
            };
            if n % 6 == 5 {
                assert!(!ran && got.iter().all(|&v| v == 0x5a), "case {n}: general multiplier");
                return false;
            }
            assert!(ran, "case {n}");
            assert_eq!(got, want, "case {n}: {h}x{wd}x{ic} -> {oh}x{ow} k{kh} s{s}");
            true
        }
        let mut r = Rng(0x0e1);
        let mut ran = 0;
        for n in 0..800 {
            ran += match n % 4 {
                0 => one::<E8, E8>(&mut r, n),
                1 => one::<E8, E16>(&mut r, n),
                2 => one::<E16, E8>(&mut r, n),
                _ => one::<E16, E16>(&mut r, n),
            } as usize;
        }
        assert!(ran > 500, "{ran}");
    }

    /// [`run_matvec_avx2`] against `conv2d_mixed` on one-pixel 1×1 convolutions:
    /// 16–512 input and 1–140 output channels, both output types, zero points,
    /// clamps, extreme values and, in a third of the cases, general multipliers.
    #[test]
    fn matvec_matches_wide_conv2d() {
        if !std::is_x86_feature_detected!("avx2") {
            std::eprintln!("no AVX2 on this CPU: the direct kernel is not used");
            return;
        }
        fn one<Y: Elem>(r: &mut Rng, n: usize) {
            let (ic, oc) = (16 * r.range(1, 32) as usize, r.range(1, 140) as usize);
            let extreme = n % 7 == 0;
            let x: Vec<i8> = (0..ic).map(|_| if extreme { -128 } else { r.i8() }).collect();
            let w: Vec<i8> = (0..oc * ic).map(|_| if extreme { -128 } else { r.i8() }).collect();
            let general = n % 3 == 0;
            let (mut mb, mut sb) = (vec![], vec![]);
            for j in 0..oc {
                let real =
                    if general && j % 5 == 0 { 1.5 + r.f64() } else { 1e-6 + r.f64() * 1e-2 };
                let (m, s) = quantize_multiplier(real);
                mb.push(m);
                sb.push(s);
            }
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 20, 1 << 20) as i32).collect();
            let (act_min, act_max) = if n % 4 == 1 { (-20, 25) } else { (-32768, 32767) };
            let in_zp = if extreme { 127 } else { r.range(-128, 127) as i32 };
            let p = Conv2dParams {
                kh: 1,
                kw: 1,
                sh: 1,
                sw: 1,
                pt: 0,
                pl: 0,
                in_zp,
                out_zp: r.range(-9, 9) as i32,
                act_min,
                act_max,
            };
            let (bb, mb, sb) = (i32_bytes(&bias), i32_bytes(&mb), i32_bytes(&sb));
            let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut want = vec![0u8; oc * Y::BYTES];
            conv2d_mixed::<E8, Y>(&xb, [1, 1, ic], &mut want, [1, 1, oc], &p, &w, &bb, &mb, &sb);
            let mut got = vec![0x5au8; want.len()];
            // SAFETY: AVX2 is present (checked by the caller).
            let ran = unsafe {
                run_matvec_avx2::<Y>(&x, [1, 1, ic], [1, 1, oc], &p, &w, &bb, &mb, &sb, &mut got)
            };
            assert!(ran, "case {n}");
            assert_eq!(got, want, "case {n}: {ic} -> {oc}");
        }
        let mut r = Rng(0x3a7);
        for n in 0..300 {
            if n % 2 == 0 {
                one::<E8>(&mut r, n);
            } else {
                one::<E16>(&mut r, n);
            }
        }
    }

    /// Every input and output type, random shapes (kernels 1×1 to 5×5, strides
    /// 1–3, paddings, 1–40 input and 1–80 output channels, partial panels),
    /// extreme values, zero points, activation clamps, a missing bias and
    /// general (left-shift) multipliers, against `conv2d_mixed`.
    #[test]
    fn matches_wide_conv2d() {
        if !std::is_x86_feature_detected!("avx2") {
            std::eprintln!("no AVX2 on this CPU: the direct kernel is not used");
            return;
        }
        let mut r = Rng(0xd1ec7);
        let mut runs = [[0usize; 2]; 4];
        for n in 0..1600 {
            let (ran, fast) = match n % 4 {
                0 => case::<E8, E8>(&mut r, n / 4),
                1 => case::<E8, E16>(&mut r, n / 4),
                2 => case::<E16, E8>(&mut r, n / 4),
                _ => case::<E16, E16>(&mut r, n / 4),
            };
            if ran {
                runs[n % 4][fast as usize] += 1;
            }
        }
        for (t, k) in runs.iter().enumerate() {
            assert!(k[0] >= 20 && k[1] >= 100, "type pair {t}: {k:?}");
        }
    }
}

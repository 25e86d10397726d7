//! Winograd F(2×2, 3×3) for int8-input 3×3 stride-1 convolutions on x86_64 hosts
//! with AVX2 (the `std` feature), bit-identical to the direct convolution.
//!
//! Each 2×2 block of outputs ("tile") comes from a 4×4 input patch `d` (values
//! `x − in_zp`, 0 outside the input) and each channel's 3×3 kernel `g`:
//! `Y = Aᵀ[(G'gG'ᵀ) ⊙ (BᵀdB)]A` with `G' = 2G` so that every factor is an integer:
//!
//! ```text
//! Bᵀ = [1  0 −1  0]    G' = [2  0  0]    Aᵀ = [1  1  1  0]
//!      [0  1  1  0]         [1  1  1]         [0  1 −1 −1]
//!      [0 −1  1  0]         [1 −1  1]
//!      [0  1  0 −1]         [0  0  2]
//! ```
//!
//! so `Y = 4·S` where `S` is the direct sum `Σ(x − in_zp)·w` of each output. The
//! 16 products per tile and input channel replace 36 (2.25× fewer multiplies).
//! Everything is integer: `|BᵀdB| ≤ 4·255 = 1020` and `|G'gG'ᵀ| ≤ 9·128 = 1152`
//! fit i16, so the element-wise products are `VPMADDWD` pairs summed over the
//! input channels, and all additions are i32 and wrapping. Wrapping sums are exact
//! modulo 2³², so `Y ≡ 4S (mod 2³²)`; [`applicable`] requires
//! `|S| ≤ 9·ic·255·128 < 2²⁹`, so `4S` is itself an i32 and `S = Y >> 2` exactly.
//! Bias and requantization are then [`super::host_engine`]'s, so the outputs equal the
//! reference kernel's bit for bit.
//!
//! Loop order: the transformed weights of as many output channels as fit
//! [`UWORDS`] (at least one panel of 16), then per group of [`TG`] tiles the
//! transformed patches once, then per panel of 16 channels and per patch
//! position a `VPMADDWD` outer product (each tile's channel pair broadcast against
//! the panel's 16 channel pairs), the output transform on 16-channel vectors,
//! requantization and the store into the output ([`super::direct_avx2::put_pixel`]).
//!
//! The input less its zero point is first copied as i16 into a zero-padded image
//! (the direct kernel's, [`super::direct_avx2`]), so patches are plain loads.
//!
//! Stack: 64 KiB of transformed weights, 64 KiB of padded input, 16 KiB of
//! transformed patches (input channels up to [`ICMAX`]), 4 KiB of sums.

use super::direct_avx2::{fill_padded, load16, put_pixel, transpose8, zeroed_prefix, Epi, PADW};
use super::host_engine::BlockRq;
use super::params::Conv2dParams;
use crate::ops::numerics::{as_u8, Elem, E8};

/// Largest input channel count handled.
pub const ICMAX: usize = 128;
/// Output channels per panel.
const PANEL: usize = 16;
/// Tiles per group.
const TG: usize = 4;
/// Most output channels per block.
const BLOCK: usize = super::host_engine::BLOCK;
/// i16 words of transformed weights held at once: 16 positions × `ICMAX` ×
/// [`PANEL`] (one panel at `ICMAX` input channels).
const UWORDS: usize = 16 * ICMAX * PANEL;

/// Whether [`run_avx2`] handles this convolution (and the CPU has AVX2): 3×3
/// stride 1, up to [`ICMAX`] input channels, and the padded input image of
/// every tile's patches (`(2·⌈oh/2⌉ + 2) × (2·⌈ow/2⌉ + 2)` pixels of `ic`
/// rounded up to 16 channels) within [`PADW`] words.
pub fn applicable(in_shape: [usize; 3], [oh, ow]: [usize; 2], p: &Conv2dParams) -> bool {
    let ic = in_shape[2];
    let words = (2 * oh.div_ceil(2) + 2) * (2 * ow.div_ceil(2) + 2) * ic.div_ceil(16) * 16;
    // |S| ≤ 9·ic·255·128 < 2^29 holds for every ic ≤ ICMAX.
    p.kh == 3
        && p.kw == 3
        && p.sh == 1
        && p.sw == 1
        && (1..=ICMAX).contains(&ic)
        && (-128..=127).contains(&p.in_zp)
        && words <= PADW
        && std::is_x86_feature_detected!("avx2")
}

/// i16 words of a layer's transformed weights (the cache [`run_avx2`] takes), or
/// `None` when [`run_avx2`] does not handle the layer.
pub fn cache_words(
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
) -> Option<usize> {
    let per_panel = 16 * in_shape[2].div_ceil(2) * PANEL * 2;
    applicable(in_shape, [oh, ow], p).then_some(per_panel * oc.div_ceil(PANEL))
}

/// The convolution of `x` (`in_shape`, HWC int8) to `out_shape` by Winograd
/// F(2×2, 3×3) into `y` (`out_shape`, HWC, elements `Y`): `clamp(out_zp +
/// mbqm(bias[o] + Σ(x − in_zp)·w, mult[o], shift[o]))` to the activation range
/// and `Y`, stored by [`super::direct_avx2::put_pixel`]. Does nothing unless
/// [`applicable`]. `pre`, when given and [`cache_words`] long, holds the layer's
/// transformed weights: written by this call unless the flag says they already
/// are (the same layer's weights, from an earlier call), then read from there.
///
/// # Safety
/// The CPU must support AVX2 ([`applicable`] checks).
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn run_avx2<Y: Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    y: &mut [u8],
    mut pre: Option<(&mut [i16], bool)>,
) {
    use core::arch::x86_64::*;
    let ic = in_shape[2];
    if !applicable(in_shape, [oh, ow], p) || oc == 0 || oh == 0 || ow == 0 {
        return;
    }
    let pairs = ic.div_ceil(2);
    // Words per panel: 16 positions × pairs × PANEL lanes × 2.
    let per_panel = 16 * pairs * PANEL * 2;
    // With a cache (`pre`: the layer's transformed weights, filled unless
    // `primed`) the blocks are BLOCK channels; else as many as fit UWORDS.
    let cached = pre.as_ref().is_some_and(|(b, _)| b.len() >= per_panel * oc.div_ceil(PANEL));
    let primed = cached && pre.as_ref().is_some_and(|&(_, p)| p);
    let block = if cached { BLOCK } else { ((UWORDS / per_panel).max(1) * PANEL).min(BLOCK) };
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    let mut u_buf = core::mem::MaybeUninit::<[i16; UWORDS]>::uninit();
    let u_local = zeroed_prefix(&mut u_buf, if cached { 0 } else { UWORDS });
    let mut v = [[[0i16; ICMAX]; TG]; 16];
    // The input less its zero point as a zero-padded i16 image covering every
    // tile's patch (rows 0 .. 2·th + 2 from input row −pt, channels rounded up
    // to 16; it fits, see `applicable`): patches are plain loads.
    let ic16 = ic.div_ceil(16) * 16;
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let mut pad_buf = core::mem::MaybeUninit::<[i16; PADW]>::uninit();
    let pad = zeroed_prefix(&mut pad_buf, hp * wp * ic16);
    fill_padded::<E8>(as_u8(x), in_shape, p, pad, hp, wp, ic16);
    // Sums of one panel and tile group (each fully overwritten by `outer`).
    let mut m = [[[0i32; PANEL]; TG]; 16];
    let mut c0 = 0;
    while c0 < oc {
        let cn = block.min(oc - c0);
        let npan = cn.div_ceil(PANEL);
        let u: &mut [i16] = match pre.as_mut() {
            Some((b, _)) if cached => {
                let at = c0 / PANEL * per_panel;
                b.get_mut(at..at + npan * per_panel).unwrap_or(&mut [])
            }
            _ => &mut *u_local,
        };
        if !primed {
            // SAFETY: AVX2 is enabled in this function.
            unsafe { transform_weights(u, w, ic, c0, cn, per_panel) };
        }
        let brq = BlockRq::new(bias, mult, shift, c0, cn, &[]);
        // The vector requantization of each full panel of the block, once.
        let mut vks: [Option<Epi>; BLOCK / PANEL] = [None, None, None, None];
        for (j, vk) in vks.iter_mut().enumerate().take(npan) {
            if let (Some((b, kp, m, e)), true) =
                (brq.fast_consts(j * PANEL, PANEL), c0 + (j + 1) * PANEL <= oc)
            {
                // SAFETY: AVX2 is enabled in this function.
                *vk = Some(unsafe { Epi::new(b, kp, m, e) });
            }
        }
        let mut t0 = 0;
        while t0 < tiles {
            for (t, vt) in (t0..t0 + TG).enumerate() {
                // Past the last tile: any tile's patch (its sums are not stored).
                let vt = vt.min(tiles - 1);
                let at = (2 * (vt / tw) * wp + 2 * (vt % tw)) * ic16;
                // SAFETY: AVX2 is enabled in this function.
                unsafe { transform_patch(&mut v, t, pad, at, wp * ic16, ic16) };
            }
            for (j, pan) in u.chunks_exact(per_panel).take(npan).enumerate() {
                let p0 = c0 + j * PANEL;
                let pn = PANEL.min(oc - p0);
                let vk = vks.get(j).and_then(|k| k.as_ref());
                for ((mp, up), vp) in m.iter_mut().zip(pan.chunks_exact(pairs * PANEL * 2)).zip(&v)
                {
                    // SAFETY: AVX2 is enabled in this function.
                    unsafe { outer(mp, up, vp, pairs) };
                }
                for t in 0..TG {
                    let vt = t0 + t;
                    if vt >= tiles {
                        break;
                    }
                    let (ty, tx) = (vt / tw, vt % tw);
                    let mut ys = [[[0i32; PANEL]; 2]; 2];
                    // SAFETY: AVX2 is enabled in this function.
                    unsafe { output_transform(&m, t, &mut ys) };
                    for (dy, row) in ys.iter().enumerate() {
                        for (dx, s4) in row.iter().enumerate() {
                            let (oy, ox) = (2 * ty + dy, 2 * tx + dx);
                            if oy >= oh || ox >= ow {
                                continue;
                            }
                            // s4 = 4·S exactly (see the module notes).
                            // SAFETY: s4 holds 16 i32; AVX2 is enabled here.
                            let (lo, hi) = unsafe {
                                (
                                    _mm256_srai_epi32(_mm256_loadu_si256(s4.as_ptr().cast()), 2),
                                    _mm256_srai_epi32(
                                        _mm256_loadu_si256(s4.as_ptr().add(8).cast()),
                                        2,
                                    ),
                                )
                            };
                            let at = (oy * ow + ox) * oc + p0;
                            // SAFETY: AVX2 is enabled in this function.
                            unsafe { put_pixel::<Y>(y, at, lo, hi, vk, &brq, j * PANEL, pn, p) };
                        }
                    }
                }
            }
            t0 += TG;
        }
        c0 += cn;
    }
}

/// Transformed weights `G'gG'ᵀ` of channels `c0 .. c0 + cn` into `u`: panel `j`
/// (`per_panel` words), position `ξ`, pair `k`, lane `l`, half `t` at
/// `j·per_panel + ((ξ·pairs + k)·PANEL + l)·2 + t`, for input channel `2k + t`
/// (zero past `ic` and past the channels). Per 8 channels and 16 input channels
/// the 16 positions are computed as i16 vectors over the input channels, then
/// each position's 8×8 block of channel pairs is transposed into place.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transform_weights(
    u: &mut [i16],
    w: &[i8],
    ic: usize,
    c0: usize,
    cn: usize,
    per_panel: usize,
) {
    use core::arch::x86_64::*;
    let pairs = ic.div_ceil(2);
    let npan = cn.div_ceil(PANEL);
    let z = _mm256_setzero_si256();
    // tmp[ξ][q]: position ξ of channel q of the 8 at hand, 16 input channels.
    let mut tmp = [[z; 8]; 16];
    for (j, pan) in u.chunks_exact_mut(per_panel).take(npan).enumerate() {
        for l0 in [0, 8] {
            for i0 in (0..ic).step_by(16) {
                let n = 16.min(ic - i0);
                for q in 0..8 {
                    let o = j * PANEL + l0 + q;
                    if o >= cn {
                        // Past the channels: zero weights.
                        for t in tmp.iter_mut() {
                            if let Some(slot) = t.get_mut(q) {
                                *slot = z;
                            }
                        }
                        continue;
                    }
                    let base = (c0 + o) * 9 * ic;
                    let mut g = [z; 9];
                    for (k, gk) in g.iter_mut().enumerate() {
                        // SAFETY: AVX2 is enabled here.
                        *gk = unsafe { load16(w, base + k * ic + i0, n, 0) };
                    }
                    // h = G'g by columns (hc[c][r]), then U = hG'ᵀ by rows.
                    let [g0, g1, g2, g3, g4, g5, g6, g7, g8] = g;
                    // SAFETY (g3x): AVX2 is enabled here.
                    let [hc0, hc1, hc2] =
                        unsafe { [g3x(g0, g3, g6), g3x(g1, g4, g7), g3x(g2, g5, g8)] };
                    for (r, ((&a, &b), &c)) in hc0.iter().zip(&hc1).zip(&hc2).enumerate() {
                        // SAFETY: AVX2 is enabled here.
                        let row = unsafe { g3x(a, b, c) };
                        for (c, &val) in row.iter().enumerate() {
                            // (No closures here: they would not be inlined into
                            // this AVX2 function.)
                            if let Some(tr) = tmp.get_mut(r * 4 + c) {
                                if let Some(slot) = tr.get_mut(q) {
                                    *slot = val;
                                }
                            }
                        }
                    }
                }
                for (xi, rows) in tmp.iter().enumerate() {
                    // rows[q] lane kk (i32) = pair kk of channel q; transpose.
                    let t = transpose8(rows);
                    for (kk, v) in t.iter().enumerate() {
                        let k = i0 / 2 + kk;
                        if k >= pairs {
                            break;
                        }
                        let at = ((xi * pairs + k) * PANEL + l0) * 2;
                        if let Some(d) = pan.get_mut(at..at + 16) {
                            // SAFETY: d is 16 i16 (32 bytes).
                            unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), *v) };
                        }
                    }
                }
            }
        }
    }
}

/// `G'·(a, b, c)ᵀ` on lane vectors: `(2a, a + b + c, a − b + c, 2c)`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn g3x(
    a: core::arch::x86_64::__m256i,
    b: core::arch::x86_64::__m256i,
    c: core::arch::x86_64::__m256i,
) -> [core::arch::x86_64::__m256i; 4] {
    use core::arch::x86_64::*;
    let s = _mm256_add_epi16(a, c);
    [_mm256_add_epi16(a, a), _mm256_add_epi16(s, b), _mm256_sub_epi16(s, b), _mm256_add_epi16(c, c)]
}

/// Transformed patch `BᵀdB` into slot `t` of `v` (every position, as i16
/// vectors of 16 input channels) from the padded image: the patch's pixel
/// `(r, c)` at `pad[at + r·row + c·ic16 ..]`, `ic16` channels (zeros past `ic`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transform_patch(
    v: &mut [[[i16; ICMAX]; TG]; 16],
    t: usize,
    pad: &[i16],
    at: usize,
    row: usize,
    ic16: usize,
) {
    use core::arch::x86_64::*;
    let ic16 = ic16.min(ICMAX);
    // The patch spans at .. at + 3·row + 4·ic16 (its last pixel's channels end).
    if at + 3 * row + 4 * ic16 > pad.len() {
        return;
    }
    let pp = pad.as_ptr();
    for i0 in (0..ic16).step_by(16) {
        // (No closure: it would not be inlined into this AVX2 function.)
        let mut d = [[_mm256_setzero_si256(); 4]; 4];
        for (r, dr) in d.iter_mut().enumerate() {
            for (c, dc) in dr.iter_mut().enumerate() {
                // SAFETY: r, c ≤ 3 and i0 + 16 ≤ ic16: inside the span checked above.
                *dc = unsafe { _mm256_loadu_si256(pp.add(at + r * row + c * ic16 + i0).cast()) };
            }
        }
        // e = Bᵀd (per column), then V = eB (per row).
        let [d0, d1, d2, d3] = d;
        let mut e = [[_mm256_setzero_si256(); 4]; 4];
        for (c, ec) in e.iter_mut().enumerate() {
            let (Some(&a0), Some(&a1), Some(&a2), Some(&a3)) =
                (d0.get(c), d1.get(c), d2.get(c), d3.get(c))
            else {
                continue;
            };
            *ec = [
                _mm256_sub_epi16(a0, a2),
                _mm256_add_epi16(a1, a2),
                _mm256_sub_epi16(a2, a1),
                _mm256_sub_epi16(a1, a3),
            ];
        }
        // e[c][r]: column c, row r of Bᵀd.
        let [c0, c1, c2, c3] = e;
        for (r, ((&e0, &e1), (&e2, &e3))) in c0.iter().zip(&c1).zip(c2.iter().zip(&c3)).enumerate()
        {
            let row = [
                _mm256_sub_epi16(e0, e2),
                _mm256_add_epi16(e1, e2),
                _mm256_sub_epi16(e2, e1),
                _mm256_sub_epi16(e1, e3),
            ];
            for (c, val) in row.iter().enumerate() {
                let Some(vp) = v.get_mut(r * 4 + c) else { continue };
                let Some(slot) = vp.get_mut(t) else { continue };
                if let Some(dst) = slot.get_mut(i0..i0 + 16) {
                    // SAFETY: dst is 16 i16 (32 bytes).
                    unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), *val) };
                }
            }
        }
    }
}

/// `m[t][l] = Σ_k v[t][2k]·u[k][l][0] + v[t][2k+1]·u[k][l][1]`: per pair `k` each
/// tile's pair broadcast and `VPMADDWD` against the panel's 16 channel pairs.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn outer(m: &mut [[i32; PANEL]; TG], u: &[i16], v: &[[i16; ICMAX]; TG], pairs: usize) {
    use core::arch::x86_64::*;
    let pairs = pairs.min(u.len() / (2 * PANEL)).min(ICMAX / 2);
    let mut acc = [[_mm256_setzero_si256(); 2]; TG];
    let up = u.as_ptr();
    for k in 0..pairs {
        // SAFETY: k < pairs bounds u's rows (2·PANEL words each) and each tile's
        // ICMAX channels.
        unsafe {
            let w0 = _mm256_loadu_si256(up.add(k * 2 * PANEL).cast());
            let w1 = _mm256_loadu_si256(up.add(k * 2 * PANEL + 16).cast());
            for ([a0, a1], vt) in acc.iter_mut().zip(v) {
                let b = _mm256_set1_epi32(vt.as_ptr().add(2 * k).cast::<i32>().read_unaligned());
                *a0 = _mm256_add_epi32(*a0, _mm256_madd_epi16(b, w0));
                *a1 = _mm256_add_epi32(*a1, _mm256_madd_epi16(b, w1));
            }
        }
    }
    for ([a0, a1], mt) in acc.iter().zip(m.iter_mut()) {
        // SAFETY: each row is PANEL = 16 i32; unaligned stores.
        unsafe {
            _mm256_storeu_si256(mt.as_mut_ptr().cast(), *a0);
            _mm256_storeu_si256(mt.as_mut_ptr().add(8).cast(), *a1);
        }
    }
}

/// `AᵀMA` of tile `t` (wrapping) into `y`: the 2×2 outputs' `4·S`, per channel
/// lane, eight lanes at a time.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn output_transform(m: &[[[i32; PANEL]; TG]; 16], t: usize, y: &mut [[[i32; PANEL]; 2]; 2]) {
    use core::arch::x86_64::*;
    for h in [0, 8] {
        let mut v = [_mm256_setzero_si256(); 16];
        for (vx, mx) in v.iter_mut().zip(m) {
            let Some(mt) = mx.get(t) else { continue };
            if let Some(r) = mt.get(h..h + 8) {
                // SAFETY: r is 8 i32 (32 bytes).
                *vx = unsafe { _mm256_loadu_si256(r.as_ptr().cast()) };
            }
        }
        let [m00, m01, m02, m03, m10, m11, m12, m13, m20, m21, m22, m23, m30, m31, m32, m33] = v;
        // Aᵀ on columns: r0 = m0 + m1 + m2, r1 = m1 − m2 − m3 (per column c).
        let r0 = [
            _mm256_add_epi32(_mm256_add_epi32(m00, m10), m20),
            _mm256_add_epi32(_mm256_add_epi32(m01, m11), m21),
            _mm256_add_epi32(_mm256_add_epi32(m02, m12), m22),
            _mm256_add_epi32(_mm256_add_epi32(m03, m13), m23),
        ];
        let r1 = [
            _mm256_sub_epi32(_mm256_sub_epi32(m10, m20), m30),
            _mm256_sub_epi32(_mm256_sub_epi32(m11, m21), m31),
            _mm256_sub_epi32(_mm256_sub_epi32(m12, m22), m32),
            _mm256_sub_epi32(_mm256_sub_epi32(m13, m23), m33),
        ];
        for (yr, [c0, c1, c2, c3]) in y.iter_mut().zip([r0, r1]) {
            let [y0, y1] = yr;
            let (a, b) = (
                _mm256_add_epi32(_mm256_add_epi32(c0, c1), c2),
                _mm256_sub_epi32(_mm256_sub_epi32(c1, c2), c3),
            );
            for (dst, val) in [(y0, a), (y1, b)] {
                if let Some(d) = dst.get_mut(h..h + 8) {
                    // SAFETY: d is 8 i32 (32 bytes).
                    unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), val) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::Rng;
    use crate::ops::numerics::E16;

    /// Against the direct sums and MBQM (then the output zero point, activation
    /// clamp and output type, int8 or int16), on random shapes (odd sizes, every
    /// padding up to 2, input channels 1 ..= ICMAX, several channel blocks) and
    /// extreme values (x − zp = ±255, weights −128).
    #[test]
    fn matches_direct_sums() {
        if !std::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: the Winograd path is never taken here");
            return;
        }
        let mut r = Rng(0x3a3);
        for case in 0..500 {
            let ic = match case % 5 {
                0 => ICMAX,
                1 => r.range(100, ICMAX as i64) as usize,
                _ => r.range(1, 40) as usize,
            };
            let oc = match case % 4 {
                0 => r.range(17, 140) as usize,
                _ => r.range(1, 20) as usize,
            };
            let (h, wd) = (r.range(1, 11) as usize, r.range(1, 11) as usize);
            let (pt, pl) = (r.range(0, 2) as usize, r.range(0, 2) as usize);
            let (pb, pr) = (r.range(0, 2) as usize, r.range(0, 2) as usize);
            if h + pt + pb < 3 || wd + pl + pr < 3 {
                continue;
            }
            let (oh, ow) = (h + pt + pb - 2, wd + pl + pr - 2);
            let extreme = case % 6 == 0;
            let in_zp = if extreme { 127 } else { r.range(-128, 127) as i32 };
            let x: Vec<i8> =
                (0..h * wd * ic).map(|_| if extreme { -128 } else { r.i8() }).collect();
            let w: Vec<i8> = (0..oc * 9 * ic)
                .map(|_| if extreme && case % 12 == 0 { -128 } else { r.i8() })
                .collect();
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 20, 1 << 20) as i32).collect();
            let (mut mult, mut shift) = (vec![], vec![]);
            // A third of the cases with general multipliers (negative or above 1:
            // the scalar requantization), the rest the converter's kind (the
            // vector arm).
            let general = case % 3 == 0;
            for _ in 0..oc {
                let real = match r.next() % 6 {
                    0 if general => -(0.0005 + r.f64() * 0.01),
                    1 if general => 1.0 + r.f64(),
                    0 | 1 => 0.2 + r.f64() * 0.7,
                    _ => 1e-6 + r.f64() * 1e-3,
                };
                let (m, s) = quantize_multiplier(real);
                mult.push(m);
                shift.push(s);
            }
            let b = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            let (bb, mb, sb) = (b(&bias), b(&mult), b(&shift));
            let p = Conv2dParams {
                kh: 3,
                kw: 3,
                sh: 1,
                sw: 1,
                pt,
                pl,
                in_zp,
                out_zp: r.range(-30, 30) as i32,
                act_min: if case % 4 == 1 { -40 } else { -32768 },
                act_max: if case % 4 == 1 { 50 } else { 32767 },
            };
            let int16 = case % 2 == 0;
            let (lo, hi) = if int16 { (-32768, 32767) } else { (-128, 127) };
            let mut want = vec![0i32; oh * ow * oc];
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..oc {
                        let mut s = 0i32;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy + ky, ox + kx);
                                if iy < pt || ix < pl || iy - pt >= h || ix - pl >= wd {
                                    continue;
                                }
                                for i in 0..ic {
                                    let xv = x[((iy - pt) * wd + ix - pl) * ic + i] as i32 - in_zp;
                                    s += xv * w[o * 9 * ic + (ky * 3 + kx) * ic + i] as i32;
                                }
                            }
                        }
                        let v =
                            crate::ops::numerics::mbqm(bias[o].wrapping_add(s), mult[o], shift[o]);
                        want[(oy * ow + ox) * oc + o] =
                            p.out_zp.wrapping_add(v).clamp(p.act_min, p.act_max).clamp(lo, hi);
                    }
                }
            }
            // Without a cache, filling a cache, then reading the filled cache.
            let words = cache_words([h, wd, ic], [oh, ow, oc], &p).expect("applicable");
            let mut cache = vec![0i16; words];
            for pass in 0..3 {
                let mut yb = vec![0x5au8; oh * ow * oc * if int16 { 2 } else { 1 }];
                let pre = match pass {
                    0 => None,
                    1 => Some((&mut cache[..], false)),
                    _ => Some((&mut cache[..], true)),
                };
                let sh = ([h, wd, ic], [oh, ow, oc]);
                // SAFETY: AVX2 is present (checked above).
                unsafe {
                    if int16 {
                        run_avx2::<E16>(&x, sh.0, sh.1, &p, &w, &bb, &mb, &sb, &mut yb, pre)
                    } else {
                        run_avx2::<E8>(&x, sh.0, sh.1, &p, &w, &bb, &mb, &sb, &mut yb, pre)
                    }
                };
                let got: Vec<i32> = if int16 {
                    yb.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()
                } else {
                    yb.iter().map(|&v| v as i8 as i32).collect()
                };
                assert_eq!(
                    got, want,
                    "case {case} pass {pass}: {h}x{wd}x{ic} -> {oh}x{ow}x{oc}, pad {pt},{pl}"
                );
            }
        }
    }
}

//! CONV2D: NHWC int8 convolution with per-output-channel requantization.
//!
//! `y[oy][ox][o] = clamp(out_zp + MBQM(bias[o] + Σ (x − in_zp)·w[o][ky][kx][i]), act)`,
//! padding reads `in_zp` (contributes 0). The zero point is hoisted out of the
//! inner loop (`Σ(x − zp)w = Σxw − zp·Σw`, `Σw` per output channel precomputed into
//! the 4·oc-byte scratch), and two output channels share each load of the input
//! window. The i32 accumulator is exact, so results are bit-exact against the
//! plain definition (tested below against an i64 reference).
//!
//! This module holds the parameters, the entry points that pick a kernel for
//! the target ([`conv2d`] for int8 tensors, [`conv2d_i16`] for an int16 input)
//! and the portable kernels: [`conv2d_direct`] (int8) and [`conv2d_mixed`] (every
//! pair of element types, the reference of the mixed-precision kernels). The
//! fast kernels sit beside it, named by where they run:
//!
//! - [`armv7em`]: int8 input by im2col columns and `SMLAD` (Cortex-M4/M7);
//!   [`armv7em_i16`]: int16 input, the same way. Both compile everywhere (their
//!   inner loops in plain Rust off Armv7E-M), so hosts test them.
//! - [`host`]: the 64-bit host entry (x86_64, aarch64: `cfg(ddpm_wide)`),
//!   choosing among `direct_avx2.rs`, `winograd_avx2.rs` (x86_64 with AVX2, the
//!   `std` feature) and [`host_engine`] (the column engine: AVX2, NEON/SDOT, or
//!   what LLVM vectorizes).
//! - [`window`]: the window gathers the M4 and host kernels share.

pub mod armv7em;
pub mod armv7em_i16;
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
pub mod direct_avx2;
pub mod host;
#[cfg(ddpm_wide)]
pub mod host_engine;
pub mod params;
pub mod window;
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
pub mod winograd_avx2;

pub use params::Conv2dParams;

use crate::ops::numerics::columns::sum_weights;
use crate::ops::numerics::dot::{dot_rows, dot_rows2, sum_rows};
use crate::ops::numerics::{le_i32, mbqm, sat8, Elem, OutRq, E16, E8};

/// Largest kernel window (`kh·kw·ic` bytes) gathered into a stack buffer.
const GATHER: usize = 512;

/// Output channels whose per-channel constants are held on the stack at once.
const BLOCK: usize = 32;

/// Runs the convolution. `x` is `[h, w, ic]`, `y` is `[oh, ow, oc]`; `w` is
/// `[oc][kh][kw][ic]`, `bias`/`mult`/`shift` are LE i32 arrays (`bias` may be empty).
/// `scratch` (4·oc bytes in the format) is not needed by this kernel; it stays
/// reserved so target kernels may use it.
///
/// Channels are processed in blocks of 32: a block's bias, Σw, multiplier
/// and shift are loaded once, then every output pixel is computed for that block.
/// Per output pixel the taps that fall inside the input form a rectangle
/// `[ky0, ky1) × [kx0, kx1)`; padding taps contribute 0. Over that rectangle
/// `Σ (x − zp)·w = Σ x·w − zp·Σ w` (Σw of the whole kernel, precomputed, when the
/// rectangle is the whole kernel). All sums are exact in i32, so the result equals
/// the plain definition bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    scratch: &mut [u8],
) {
    #[cfg(ddpm_dsp)]
    if armv7em::applicable(in_shape[2], out_shape[0] * out_shape[1], p) {
        return armv7em::conv2d_im2col(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    }
    #[cfg(ddpm_wide)]
    if host::applicable_wide(in_shape[2], out_shape[0] * out_shape[1], p) {
        return host::conv2d_im2col_wide(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    }
    conv2d_direct(x, in_shape, y, out_shape, p, w, bias, mult, shift, scratch)
}

/// The portable kernel behind [`conv2d`] (the only one with `reference-kernels`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    scratch: &mut [u8],
) {
    let _ = scratch;
    let [h, wd, ic] = in_shape;
    let [oh, ow, oc] = out_shape;
    if oc == 0 {
        return;
    }
    let ksz = p.kh * p.kw * ic;
    let (xs, ws) = (wd * ic, p.kw * ic);
    let wch = |o: usize| w.get(o * ksz..(o + 1) * ksz).unwrap_or(&[]);
    let mut buf = [0i8; GATHER];
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        // [bias, Σw, mult, shift] per channel of the block.
        let mut k = [[0i32; 4]; BLOCK];
        for (j, kj) in k.iter_mut().enumerate().take(cn) {
            let o = c0 + j;
            let sw = sum_weights(wch(o));
            *kj = [le_i32(bias, o), sw, le_i32(mult, o), le_i32(shift, o)];
        }
        let mut out = y.chunks_exact_mut(oc);
        for oy in 0..oh {
            let iy0 = (oy * p.sh) as isize - p.pt as isize;
            let ky0 = (-iy0).max(0).min(p.kh as isize) as usize;
            let ky1 = (h as isize - iy0).min(p.kh as isize).max(ky0 as isize) as usize;
            for ox in 0..ow {
                let ix0 = (ox * p.sw) as isize - p.pl as isize;
                let kx0 = (-ix0).max(0).min(p.kw as isize) as usize;
                let kx1 = (wd as isize - ix0).min(p.kw as isize).max(kx0 as isize) as usize;
                let Some(ypix) = out.next() else { break };
                let yblk = ypix.get_mut(c0..c0 + cn).unwrap_or(&mut []);
                let (mut rows, mut len) = (ky1 - ky0, (kx1 - kx0) * ic);
                let full = rows == p.kh && kx1 - kx0 == p.kw;
                // Top-left valid input element of the window, and its weight offset.
                let xoff = if rows == 0 || len == 0 {
                    usize::MAX
                } else {
                    ((iy0 + ky0 as isize) as usize * wd + (ix0 + kx0 as isize) as usize) * ic
                };
                let mut xw = x.get(xoff..).unwrap_or(&[]);
                let woff = (ky0 * p.kw + kx0) * ic;
                // A full window of at most GATHER bytes is copied into one
                // contiguous run (the weights' [kh][kw][ic] order), so each channel
                // pair needs one dot product instead of one per kernel row.
                let mut xsr = xs;
                if full && rows > 1 && ksz <= GATHER {
                    for (r, dst) in buf.chunks_exact_mut(len).take(rows).enumerate() {
                        if let Some(src) = xw.get(r * xs..r * xs + len) {
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                        }
                    }
                    xw = buf.get(..ksz).unwrap_or(&[]);
                    (xsr, rows, len) = (ksz, 1, ksz);
                }
                let wsr = if rows == 1 { len } else { ws };
                for (pair, (yo, kp)) in yblk.chunks_mut(2).zip(k.chunks_exact(2)).enumerate() {
                    let o = c0 + 2 * pair;
                    let w0 = wch(o).get(woff..).unwrap_or(&[]);
                    let (s0, s1) = if yo.len() == 2 {
                        let w1 = wch(o + 1).get(woff..).unwrap_or(&[]);
                        dot_rows2(xw, xsr, w0, w1, wsr, rows, len)
                    } else {
                        (dot_rows(xw, xsr, w0, wsr, rows, len), 0)
                    };
                    for (j, ((yv, s), kj)) in yo.iter_mut().zip([s0, s1]).zip(kp).enumerate() {
                        let [b, sw_full, m, sh] = *kj;
                        let sw = if full {
                            sw_full
                        } else {
                            sum_rows(wch(o + j).get(woff..).unwrap_or(&[]), ws, rows, len)
                        };
                        let acc = b.wrapping_add(s - p.in_zp * sw);
                        let v = p.out_zp.wrapping_add(OutRq::new(m, sh).apply(acc));
                        *yv = sat8(v, p.act_min, p.act_max);
                    }
                }
            }
        }
        c0 += cn;
    }
}

/// Window length up to which a CONV2D gathers its input window once per pixel.
const GATHER_ELEMS: usize = 512;

/// CONV2D with input `X` and output `Y` (FORMAT.md semantics; the window sum is exact
/// in i32: the loader bounds `kh·kw·ic` by 32768 for int8 and 511 for int16 input).
///
/// Per output pixel the window (padding reads as 0 after the zero point) is
/// gathered once into an i16 buffer in the weights' `[kh][kw][ic]` order, then
/// every output channel is one dot product with its weight row.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_mixed<X: Elem, Y: Elem>(
    x: &[u8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    let [h, wd, ic] = in_shape;
    let [oh, ow, oc] = out_shape;
    let ksz = p.kh * p.kw * ic;
    if oc == 0 || ksz == 0 {
        return;
    }
    let mut buf = [0i16; GATHER_ELEMS];
    let mut pix = 0usize;
    for oy in 0..oh {
        for ox in 0..ow {
            let iy0 = (oy * p.sh) as isize - p.pt as isize;
            let ix0 = (ox * p.sw) as isize - p.pl as isize;
            let at = |ky: usize, kx: usize, i: usize| -> i32 {
                let (iy, ix) = (iy0 + ky as isize, ix0 + kx as isize);
                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                    0
                } else {
                    X::get(x, (iy as usize * wd + ix as usize) * ic + i) - p.in_zp
                }
            };
            let gathered = ksz <= GATHER_ELEMS;
            if gathered {
                let mut j = 0;
                for ky in 0..p.kh {
                    for kx in 0..p.kw {
                        for i in 0..ic {
                            if let Some(b) = buf.get_mut(j) {
                                *b = at(ky, kx, i) as i16;
                            }
                            j += 1;
                        }
                    }
                }
            }
            for o in 0..oc {
                let row = w.get(o * ksz..(o + 1) * ksz).unwrap_or(&[]);
                let s: i32 = if gathered {
                    buf.iter().zip(row).map(|(&a, &b)| a as i32 * b as i32).sum()
                } else {
                    let mut s = 0i32;
                    let mut j = 0;
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            for i in 0..ic {
                                let wv = row.get(j).copied().unwrap_or(0) as i32;
                                s = s.wrapping_add(at(ky, kx, i).wrapping_mul(wv));
                                j += 1;
                            }
                        }
                    }
                    s
                };
                let acc = le_i32(bias, o).wrapping_add(s);
                let v = p.out_zp.wrapping_add(mbqm(acc, le_i32(mult, o), le_i32(shift, o)));
                Y::put_clamped(y, pix * oc + o, v, p.act_min, p.act_max);
            }
            pix += 1;
        }
    }
}

/// Runs the convolution: `x` is `[h, w, ic]` int16 little-endian bytes, `y` is
/// `[oh, ow, oc]` int16 (`y_int16`) or int8 bytes; weights `[oc][kh][kw][ic]` int8;
/// `bias`/`mult`/`shift` LE i32 arrays (`bias` may be empty). `scratch` (4·oc
/// bytes) is free for target kernels.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i16(
    x: &[u8],
    in_shape: [usize; 3],
    y: &mut [u8],
    y_int16: bool,
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    scratch: &mut [u8],
) {
    let _ = scratch;
    let fast = p.in_zp == 0 && p.kh * p.kw * in_shape[2] <= 2 * armv7em_i16::KC;
    #[cfg(ddpm_dsp)]
    if fast && out_shape[2] == 1 {
        let done = if y_int16 {
            armv7em_i16::one::conv::<E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        } else {
            armv7em_i16::one::conv::<E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        };
        if done {
            return;
        }
    }
    #[cfg(ddpm_dsp)]
    if fast && in_shape[2] == 1 {
        let done = if y_int16 {
            armv7em_i16::tap9::conv::<E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        } else {
            armv7em_i16::tap9::conv::<E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        };
        if done {
            return;
        }
    }
    #[cfg(ddpm_dsp)]
    if fast {
        return if y_int16 {
            armv7em_i16::conv_cols::<E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        } else {
            armv7em_i16::conv_cols::<E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        };
    }
    #[cfg(ddpm_wide)]
    if fast {
        return if y_int16 {
            host::conv_i16::<E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        } else {
            host::conv_i16::<E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift)
        };
    }
    let _ = fast;
    if y_int16 {
        conv2d_mixed::<E16, E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    } else {
        conv2d_mixed::<E16, E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::mbqm;
    use crate::ops::numerics::testutil::*;

    /// Straightforward i64 reference (no hoisting, explicit padding).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[i8],
        [h, wd, ic]: [usize; 3],
        [oh, ow, oc]: [usize; 3],
        p: &Conv2dParams,
        w: &[i8],
        bias: &[i32],
        mult: &[i32],
        shift: &[i32],
    ) -> (Vec<i8>, Vec<f64>) {
        let mut y = vec![0i8; oh * ow * oc];
        let mut yf = vec![0f64; oh * ow * oc];
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..oc {
                    let mut acc = bias[o] as i64;
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            let iy = (oy * p.sh + ky) as i64 - p.pt as i64;
                            let ix = (ox * p.sw + kx) as i64 - p.pl as i64;
                            for i in 0..ic {
                                let xv = if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    p.in_zp as i64
                                } else {
                                    x[(iy as usize * wd + ix as usize) * ic + i] as i64
                                };
                                acc += (xv - p.in_zp as i64)
                                    * w[((o * p.kh + ky) * p.kw + kx) * ic + i] as i64;
                            }
                        }
                    }
                    let idx = (oy * ow + ox) * oc + o;
                    let v = p.out_zp + mbqm(acc as i32, mult[o], shift[o]);
                    y[idx] = v.clamp(p.act_min, p.act_max) as i8;
                    let f = p.out_zp as f64 + acc as f64 * real_of(mult[o], shift[o]);
                    yf[idx] = f.round().clamp(p.act_min as f64, p.act_max as f64);
                }
            }
        }
        (y, yf)
    }

    #[test]
    fn conv_matches_reference() {
        let mut r = Rng(7);
        for case in 0..600 {
            let h = r.range(1, 9) as usize;
            let wd = r.range(1, 9) as usize;
            // Some windows span several im2col chunks (kh·kw·ic > KC); some have
            // ic % 4 == 0 (columns gathered straight from the input).
            let ic = match case % 7 {
                3 => r.range(30, 70) as usize,
                1 | 5 => 4 * r.range(1, 24) as usize,
                _ => r.range(1, 6) as usize,
            };
            // Every tenth case spans several channel blocks.
            let oc = if case % 10 == 0 { r.range(33, 140) } else { r.range(1, 6) } as usize;
            let kh = r.range(1, 3.min(h as i64 + 2)) as usize;
            let kw = r.range(1, 3.min(wd as i64 + 2)) as usize;
            let sh = r.range(1, 2) as usize;
            let sw = r.range(1, 2) as usize;
            let pt = r.range(0, (kh - 1) as i64) as usize;
            let pb = r.range(0, (kh - 1) as i64) as usize;
            let pl = r.range(0, (kw - 1) as i64) as usize;
            let pr = r.range(0, (kw - 1) as i64) as usize;
            if h + pt + pb < kh || wd + pl + pr < kw {
                continue;
            }
            let oh = (h + pt + pb - kh) / sh + 1;
            let ow = (wd + pl + pr - kw) / sw + 1;
            let p = Conv2dParams {
                kh,
                kw,
                sh,
                sw,
                pt,
                pl,
                in_zp: r.range(-128, 127) as i32,
                out_zp: r.range(-20, 20) as i32,
                act_min: if case % 3 == 0 { 0 } else { -128 },
                act_max: 127,
            };
            let x = r.vec_i8(h * wd * ic);
            let w = r.vec_i8(oc * kh * kw * ic);
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-5000, 5000) as i32).collect();
            let (mut mult, mut shift) = (vec![], vec![]);
            for _ in 0..oc {
                // Some negative and some > 1 multipliers (a left shift): the
                // kernels' general requantization paths.
                let real = match r.next() % 8 {
                    0 => -(0.0005 + r.f64() * 0.01),
                    1 => 1.0 + r.f64(),
                    _ => 0.0005 + r.f64() * 0.01,
                };
                let (m, s) = quantize_multiplier(real);
                mult.push(m);
                shift.push(s);
            }
            let (want, wantf) =
                reference(&x, [h, wd, ic], [oh, ow, oc], &p, &w, &bias, &mult, &shift);
            for scratch_len in [0, 4 * oc] {
                let mut y = vec![0i8; oh * ow * oc];
                let mut scratch = vec![0u8; scratch_len];
                conv2d(
                    &x,
                    [h, wd, ic],
                    &mut y,
                    [oh, ow, oc],
                    &p,
                    &w,
                    &i32_bytes(&bias),
                    &i32_bytes(&mult),
                    &i32_bytes(&shift),
                    &mut scratch,
                );
                // Bit-exact against the i64 reference.
                assert_eq!(y, want, "case {case}");
                // The portable kernel and the im2col one (on the host with its
                // portable column kernel) as well.
                let mut y2 = vec![0i8; oh * ow * oc];
                let args = (&i32_bytes(&bias), &i32_bytes(&mult), &i32_bytes(&shift));
                conv2d_direct(
                    &x,
                    [h, wd, ic],
                    &mut y2,
                    [oh, ow, oc],
                    &p,
                    &w,
                    args.0,
                    args.1,
                    args.2,
                    &mut scratch,
                );
                assert_eq!(y2, want, "direct, case {case}");
                if armv7em::applicable(ic, oh * ow, &p) {
                    let mut y3 = vec![0i8; oh * ow * oc];
                    armv7em::conv2d_im2col(
                        &x,
                        [h, wd, ic],
                        &mut y3,
                        [oh, ow, oc],
                        &p,
                        &w,
                        args.0,
                        args.1,
                        args.2,
                    );
                    assert_eq!(y3, want, "im2col, case {case}");
                    // The same kernel with an int16 output (some activation ranges
                    // inside int16, some wider), against the portable int8 ->
                    // int16 kernel.
                    let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
                    let mut p16 = p;
                    (p16.act_min, p16.act_max) = match case % 3 {
                        0 => (-32768, 32767),
                        1 => (-700, 900),
                        _ => (i32::MIN, i32::MAX),
                    };
                    let (mut y5, mut y6) =
                        (vec![0u8; 2 * oh * ow * oc], vec![0u8; 2 * oh * ow * oc]);
                    let sh = ([h, wd, ic], [oh, ow, oc]);
                    armv7em::conv2d_im2col_to::<E16>(
                        &x, sh.0, &mut y5, sh.1, &p16, &w, args.0, args.1, args.2,
                    );
                    conv2d_mixed::<E8, E16>(
                        &xb, sh.0, &mut y6, sh.1, &p16, &w, args.0, args.1, args.2,
                    );
                    assert_eq!(y5, y6, "im2col to int16, case {case}");
                }
                // The host engine exists on 64-bit hosts unless `reference-kernels`.
                #[cfg(ddpm_wide)]
                if host::applicable_wide(ic, oh * ow, &p) {
                    let mut y4 = vec![0i8; oh * ow * oc];
                    host::conv2d_im2col_wide(
                        &x,
                        [h, wd, ic],
                        &mut y4,
                        [oh, ow, oc],
                        &p,
                        &w,
                        args.0,
                        args.1,
                        args.2,
                    );
                    assert_eq!(y4, want, "im2col (wide), case {case}");
                    // The same engine with an int16 output, against the portable
                    // int8 -> int16 kernel.
                    let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
                    let mut p16 = p;
                    (p16.act_min, p16.act_max) = (-32768, 32767);
                    let (mut y5, mut y6) =
                        (vec![0u8; 2 * oh * ow * oc], vec![0u8; 2 * oh * ow * oc]);
                    let a = (args.0, args.1, args.2);
                    let sh = ([h, wd, ic], [oh, ow, oc]);
                    host::conv2d_im2col_wide_to::<E16>(
                        &x, sh.0, &mut y5, sh.1, &p16, &w, a.0, a.1, a.2,
                    );
                    conv2d_mixed::<E8, E16>(&xb, sh.0, &mut y6, sh.1, &p16, &w, a.0, a.1, a.2);
                    assert_eq!(y5, y6, "im2col (wide) to int16, case {case}");
                }
                // ±1 LSB against f64: the fixed-point multiplier and the two
                // roundings of MBQM differ from one exact rounding.
                for (a, b) in y.iter().zip(&wantf) {
                    assert!((*a as f64 - b).abs() <= 1.0);
                }
            }
        }
    }

    /// Plain i64 model of CONV2D with i16 input/output (explicit padding).
    #[test]
    fn conv2d_i16_matches_i64_model() {
        let mut r = Rng(0x16);
        for case in 0..300 {
            let (h, wd) = (r.range(3, 7) as usize, r.range(3, 7) as usize);
            let ic = r.range(1, 6) as usize;
            let oc = r.range(1, 5) as usize;
            let (kh, kw) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (sh, sw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
            let (pt, pl) = (r.range(0, kh as i64 - 1) as usize, r.range(0, kw as i64 - 1) as usize);
            let (pb, pr) = (r.range(0, 1) as usize, r.range(0, 1) as usize);
            let oh = (h + pt + pb - kh) / sh + 1;
            let ow = (wd + pl + pr - kw) / sw + 1;
            let x: Vec<i16> = (0..h * wd * ic)
                .map(|i| if case % 4 == 0 && i % 3 == 0 { i16::MIN } else { r.next() as i16 })
                .collect();
            let ksz = kh * kw * ic;
            let w: Vec<i8> = (0..oc * ksz).map(|_| r.range(-127, 127) as i8).collect();
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 20, 1 << 20) as i32).collect();
            let reals: Vec<f64> = (0..oc).map(|_| 1e-5 + r.f64() * 1e-2).collect();
            let (mult, shift): (Vec<i32>, Vec<i32>) =
                reals.iter().map(|&v| quantize_multiplier(v)).unzip();
            let p = Conv2dParams {
                kh,
                kw,
                sh,
                sw,
                pt,
                pl,
                in_zp: 0,
                out_zp: 0,
                act_min: -32768,
                act_max: 32767,
            };
            let xb = i16_bytes(&x);
            let mut yb = vec![0u8; oh * ow * oc * 2];
            conv2d_mixed::<E16, E16>(
                &xb,
                [h, wd, ic],
                &mut yb,
                [oh, ow, oc],
                &p,
                &w,
                &i32_bytes(&bias),
                &i32_bytes(&mult),
                &i32_bytes(&shift),
            );
            let got = from_i16_bytes(&yb);
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..oc {
                        let mut acc = bias[o] as i64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky) as i64 - pt as i64;
                                let ix = (ox * sw + kx) as i64 - pl as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                for i in 0..ic {
                                    let xv = x[(iy as usize * wd + ix as usize) * ic + i] as i64;
                                    acc += xv * w[o * ksz + (ky * kw + kx) * ic + i] as i64;
                                }
                            }
                        }
                        let want = mbqm(acc as i32, mult[o], shift[o]).clamp(-32768, 32767);
                        assert_eq!(got[(oy * ow + ox) * oc + o], want, "case {case}");
                        let real = acc as f64 * real_of(mult[o], shift[o]);
                        assert!((want as f64 - real.clamp(-32768.0, 32767.0)).abs() <= 1.0);
                    }
                }
            }
        }
    }

    #[test]
    fn conv2d_i8_in_i16_out_matches_i8_kernel_scaled() {
        // int8 in, int16 out with the multiplier ×256 equals the int8 kernel's
        // accumulator requantized at 256× finer scale: compare against mbqm directly.
        let mut r = Rng(0x816);
        for _ in 0..100 {
            let (h, wd, ic, oc) = (4, 5, r.range(1, 4) as usize, r.range(1, 4) as usize);
            let x = r.vec_i8(h * wd * ic);
            let w: Vec<i8> = (0..oc * 9 * ic).map(|_| r.range(-127, 127) as i8).collect();
            let in_zp = r.range(-128, 127) as i32;
            let (m, s) = quantize_multiplier(0.37);
            let p = Conv2dParams {
                kh: 3,
                kw: 3,
                sh: 1,
                sw: 1,
                pt: 1,
                pl: 1,
                in_zp,
                out_zp: 0,
                act_min: -32768,
                act_max: 32767,
            };
            let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut yb = vec![0u8; h * wd * oc * 2];
            let mm = i32_bytes(&vec![m; oc]);
            let ss = i32_bytes(&vec![s; oc]);
            conv2d_mixed::<E8, E16>(&xb, [h, wd, ic], &mut yb, [h, wd, oc], &p, &w, &[], &mm, &ss);
            let got = from_i16_bytes(&yb);
            for oy in 0..h {
                for ox in 0..wd {
                    for o in 0..oc {
                        let mut acc = 0i32;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy as i64 + ky - 1, ox as i64 + kx - 1);
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                for i in 0..ic {
                                    let v = x[(iy as usize * wd + ix as usize) * ic + i] as i32;
                                    let wv = w[o * 9 * ic + ((ky * 3 + kx) as usize) * ic + i];
                                    acc += (v - in_zp) * wv as i32;
                                }
                            }
                        }
                        let want = mbqm(acc, m, s).clamp(-32768, 32767);
                        assert_eq!(got[(oy * wd + ox) * oc + o], want);
                    }
                }
            }
        }
    }
}

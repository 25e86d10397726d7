//! CONV2D: NHWC int8 convolution with per-output-channel requantization.
//!
//! `y[oy][ox][o] = clamp(out_zp + MBQM(bias[o] + Σ (x − in_zp)·w[o][ky][kx][i]), act)`,
//! padding reads `in_zp` (contributes 0). The zero point is hoisted out of the
//! inner loop (`Σ(x − zp)w = Σxw − zp·Σw`, `Σw` per output channel precomputed into
//! the 4·oc-byte scratch), and two output channels share each load of the input
//! window. The i32 accumulator is exact, so results are bit-exact against the
//! plain definition (tested below against an i64 reference).

use super::dot::{dot_rows, dot_rows2, sum_rows};
use super::im2col::OutRq;
use super::{le_i32, sat8};

/// Largest kernel window (`kh·kw·ic` bytes) gathered into a stack buffer.
const GATHER: usize = 512;

/// Scalar parameters of a CONV2D.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows).
    pub sh: usize,
    /// Stride (cols).
    pub sw: usize,
    /// Top padding.
    pub pt: usize,
    /// Left padding.
    pub pl: usize,
    /// Input zero point.
    pub in_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Activation min.
    pub act_min: i32,
    /// Activation max.
    pub act_max: i32,
}

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
    if super::im2col::applicable(in_shape[2], out_shape[0] * out_shape[1], p) {
        return super::im2col::conv2d_im2col(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    }
    #[cfg(ddpm_wide)]
    if super::im2col::applicable_wide(in_shape[2], out_shape[0] * out_shape[1], p) {
        return super::im2col::conv2d_im2col_wide(
            x, in_shape, y, out_shape, p, w, bias, mult, shift,
        );
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
            let sw = super::im2col::sum_weights(wch(o));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::mbqm;
    use crate::ops::testutil::*;

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
                if crate::ops::im2col::applicable(ic, oh * ow, &p) {
                    let mut y3 = vec![0i8; oh * ow * oc];
                    crate::ops::im2col::conv2d_im2col(
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
                    use crate::ops::wide::{self, E16, E8};
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
                    crate::ops::im2col::conv2d_im2col_to::<E16>(
                        &x, sh.0, &mut y5, sh.1, &p16, &w, args.0, args.1, args.2,
                    );
                    wide::conv2d::<E8, E16>(
                        &xb, sh.0, &mut y6, sh.1, &p16, &w, args.0, args.1, args.2,
                    );
                    assert_eq!(y5, y6, "im2col to int16, case {case}");
                }
                // The host engine exists on 64-bit hosts unless `reference-kernels`.
                #[cfg(ddpm_wide)]
                if crate::ops::im2col::applicable_wide(ic, oh * ow, &p) {
                    let mut y4 = vec![0i8; oh * ow * oc];
                    crate::ops::im2col::conv2d_im2col_wide(
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
                    use crate::ops::wide::{self, E16, E8};
                    let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
                    let mut p16 = p;
                    (p16.act_min, p16.act_max) = (-32768, 32767);
                    let (mut y5, mut y6) =
                        (vec![0u8; 2 * oh * ow * oc], vec![0u8; 2 * oh * ow * oc]);
                    let a = (args.0, args.1, args.2);
                    let sh = ([h, wd, ic], [oh, ow, oc]);
                    crate::ops::im2col::conv2d_im2col_wide_to::<E16>(
                        &x, sh.0, &mut y5, sh.1, &p16, &w, a.0, a.1, a.2,
                    );
                    wide::conv2d::<E8, E16>(&xb, sh.0, &mut y6, sh.1, &p16, &w, a.0, a.1, a.2);
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
}

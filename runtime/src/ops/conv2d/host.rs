//! CONV2D on 64-bit hosts (x86_64, aarch64; `cfg(ddpm_wide)`): the entry points
//! that pick, per layer, among the AVX2 kernels of x86_64 with the `std` feature
//! (`direct_avx2.rs`, `winograd_avx2.rs`, a one-channel dot-product
//! kernel) and the column engine [`super::host_engine`] (AVX2, NEON/SDOT, or
//! plain widening products). Int8 input: [`conv2d_im2col_wide`],
//! [`conv2d_im2col_wide_to`]; int16 input: [`conv_i16`]. Every kernel gives the
//! reference kernel's bits.

#[cfg(ddpm_wide)]
use super::host_engine;
use super::params::Conv2dParams;
#[cfg(ddpm_wide)]
use super::window::{gather16, gather8, origin};
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
use crate::ops::numerics::{as_u8, le_i32, OutRq, E16};
#[cfg(ddpm_wide)]
use crate::ops::numerics::{as_u8_mut, sat8, Elem, E8};

/// Whether [`conv2d_im2col_wide`] handles this convolution: at least one output
/// pixel, an int8 input zero point and a window of at least 8 elements.
pub fn applicable_wide(ic: usize, out_pixels: usize, p: &Conv2dParams) -> bool {
    let ksz = p.kh * p.kw * ic;
    out_pixels >= 1 && ksz >= 8 && (-128..=127).contains(&p.in_zp) && ksz <= 32768
}

/// [`super::armv7em::conv2d_im2col`] for 64-bit hosts (x86_64, aarch64): the host engine
/// [`super::host_engine`] (contiguous i16 columns `x − in_zp`, widening dot products;
/// AVX2 chosen at run time with the `std` feature on x86_64, NEON on aarch64).
/// Same sums, same bits.
#[cfg(ddpm_wide)]
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
    if direct::<E8>(x, in_shape, as_u8_mut(y), out_shape, p, w, bias, mult, shift) {
        return;
    }
    let oc = out_shape[2];
    wide(x, in_shape, out_shape, p, w, bias, mult, shift, |q, c0, v| {
        let ys = y.get_mut(q * oc + c0..q * oc + c0 + v.len()).unwrap_or(&mut []);
        for (yv, &r) in ys.iter_mut().zip(v) {
            *yv = sat8(p.out_zp.wrapping_add(r), p.act_min, p.act_max);
        }
    });
}

/// [`conv2d_im2col_wide`] with an int8 or int16 output `Y` (little-endian bytes),
/// clamped to the activation range and to `Y`'s range.
#[cfg(ddpm_wide)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_wide_to<Y: Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    if direct::<Y>(x, in_shape, y, out_shape, p, w, bias, mult, shift) {
        return;
    }
    let oc = out_shape[2];
    let mut buf = [0i32; host_engine::BLOCK];
    wide(x, in_shape, out_shape, p, w, bias, mult, shift, |q, c0, v| {
        let ys = y.get_mut((q * oc + c0) * Y::BYTES..(q * oc + c0 + v.len()) * Y::BYTES);
        for (o, &r) in buf.iter_mut().zip(v) {
            *o = p.out_zp.wrapping_add(r).max(p.act_min).min(p.act_max).clamp(Y::MIN, Y::MAX);
        }
        Y::put_all(ys.unwrap_or(&mut []), &buf);
    });
}

/// The AVX2 kernels of int8-input convolutions: dot products for one pixel
/// through a 1×1 kernel, Winograd ([`super::winograd_avx2`]) for 3×3 stride-1
/// windows, else the direct kernel ([`super::direct_avx2`]) for at least 16 output
/// channels and pixels; `false` (nothing written) otherwise.
#[cfg(ddpm_wide)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(clippy::extra_unused_type_parameters)
)]
fn direct<Y: Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) -> bool {
    // One pixel through a 1×1 kernel (the timestep MLP): dot products.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if out_shape[0] * out_shape[1] == 1
        && std::is_x86_feature_detected!("avx2")
        // SAFETY: the CPU supports AVX2 (checked just before).
        && unsafe {
            super::direct_avx2::run_matvec_avx2::<Y>(x, in_shape, out_shape, p, w, bias, mult, shift, y)
        }
    {
        return true;
    }
    // x86_64 with AVX2: 3×3 stride-1 windows by Winograd F(2×2, 3×3).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if super::winograd_avx2::applicable(in_shape, [out_shape[0], out_shape[1]], p) {
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        unsafe {
            super::winograd_avx2::run_avx2::<Y>(
                x, in_shape, out_shape, p, w, bias, mult, shift, y, None,
            )
        };
        return true;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if out_shape[2] >= 16
        && out_shape[0] * out_shape[1] >= super::direct_avx2::MIN_PIXELS
        && super::direct_avx2::applicable::<E8>(in_shape, out_shape, p)
    {
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        unsafe {
            super::direct_avx2::run_avx2::<E8, Y>(
                as_u8(x),
                in_shape,
                out_shape,
                p,
                w,
                bias,
                mult,
                shift,
                y,
            )
        };
        return true;
    }
    let _ = (x, in_shape, y, out_shape, p, w, bias, mult, shift);
    false
}

/// `d[i] = r[i] − zp` (a function of its own: its slices do not alias, so the
/// loop vectorizes).
#[cfg(ddpm_wide)]
#[inline(always)]
fn widen(d: &mut [i16], r: &[i8], zp: i16) {
    for (d, &r) in d.iter_mut().zip(r) {
        *d = r as i16 - zp;
    }
}

/// The int8 gather of the host engine; `store(q, c0, v)` gets the requantized sums
/// of channels `c0 ..` of pixel `q`.
#[cfg(ddpm_wide)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wide(
    x: &[i8],
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    store: impl FnMut(usize, usize, &[i32]),
) {
    let ksz = p.kh * p.kw * in_shape[2];
    let npix = oh * ow;
    let zp = p.in_zp as i16;
    let pos = |q: usize| {
        (q < npix).then(|| {
            let (oy, ox) = (q / ow.max(1), q % ow.max(1));
            ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
        })
    };
    let mut store = store;
    // CPUs with SDOT: raw int8 columns (padding in_zp), in_zp·Σw off the biases.
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    {
        let fill8 = |q: usize, k0: usize, len: usize, col: &mut [i8; host_engine::KC]| {
            gather8(x, in_shape, p, pos(q), k0, len, col);
        };
        if host_engine::run_i8(npix, ksz, oc, w, bias, mult, shift, p.in_zp, fill8, &mut store) {
            return;
        }
    }
    let mut raw = [0i8; host_engine::KC];
    let fill = |q: usize, k0: usize, len: usize, col: &mut [i16; host_engine::KC]| {
        gather8(x, in_shape, p, pos(q), k0, len, &mut raw);
        widen(col.get_mut(..len).unwrap_or(&mut []), raw.get(..len).unwrap_or(&[]), zp);
    };
    host_engine::run(npix, ksz, oc, w, bias, mult, shift, fill, &mut store);
}

/// The host kernel. Needs `in_zp = 0` and `kh·kw·ic ≤ 2·KC`.
#[allow(clippy::too_many_arguments)]
#[cfg(ddpm_wide)]
pub fn conv_i16<Y: Elem>(
    x: &[u8],
    in_shape: [usize; 3],
    y: &mut [u8],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if oc == 1
        && oh * ow >= super::direct_avx2::MIN_PIXELS
        && super::direct_avx2::applicable::<E16>(in_shape, [oh, ow, 1], p)
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        && unsafe {
            super::direct_avx2::run_one_avx2::<E16, Y>(
                x, in_shape, [oh, ow], p, w, bias, mult, shift, y,
            )
        }
    {
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if oc == 1 && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        let done = unsafe {
            one_avx2::<Y>(
                x,
                in_shape,
                y,
                [oh, ow],
                p,
                w,
                le_i32(bias, 0),
                le_i32(mult, 0),
                le_i32(shift, 0),
            )
        };
        if done {
            return;
        }
    }
    // At least 16 output channels on AVX2: direct, without columns.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if oc >= 16
        && oh * ow >= super::direct_avx2::MIN_PIXELS
        && super::direct_avx2::applicable::<E16>(in_shape, [oh, ow, oc], p)
    {
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        return unsafe {
            super::direct_avx2::run_avx2::<E16, Y>(
                x,
                in_shape,
                [oh, ow, oc],
                p,
                w,
                bias,
                mult,
                shift,
                y,
            )
        };
    }
    let ksz = p.kh * p.kw * in_shape[2];
    let npix = oh * ow;
    let fill = |q: usize, k0: usize, len: usize, col: &mut [i16; host_engine::KC]| {
        gather16(x, in_shape, p, origin(q, npix, ow, p), k0, len, col);
    };
    let mut buf = [0i32; host_engine::BLOCK];
    host_engine::run(npix, ksz, oc, w, bias, mult, shift, fill, |q, c0, v| {
        let ys = y.get_mut((q * oc + c0) * Y::BYTES..(q * oc + c0 + v.len()) * Y::BYTES);
        for (o, &r) in buf.iter_mut().zip(v) {
            *o = p.out_zp.wrapping_add(r).max(p.act_min).min(p.act_max).clamp(Y::MIN, Y::MAX);
        }
        Y::put_all(ys.unwrap_or(&mut []), &buf);
    });
}

/// Taps × 16-channel groups of weights [`one_avx2`] holds.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
const ONE_VECS: usize = 64;

/// One output channel on AVX2 without columns (the UNet's output conv): per
/// output pixel and tap, `VPMADDWD` of 16 input channels against the tap's
/// weights (sign-extended once per call), one horizontal sum per pixel, then the
/// engine's requantization and store (`out_zp + mbqm(bias + Σ)`, clamped to the
/// activation range and `Y`). The sums are exact in i32 (the loader's window
/// bound), so the outputs are the reference's. False (nothing written) unless
/// `ic` is a multiple of 16 and the weights fit [`ONE_VECS`] vectors.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn one_avx2<Y: Elem>(
    x: &[u8],
    [h, wd, ic]: [usize; 3],
    y: &mut [u8],
    [oh, ow]: [usize; 2],
    p: &Conv2dParams,
    w: &[i8],
    bias: i32,
    mult: i32,
    shift: i32,
) -> bool {
    use core::arch::x86_64::*;
    let groups = ic / 16;
    let taps = p.kh * p.kw;
    if ic == 0 || ic % 16 != 0 || taps * groups > ONE_VECS || w.len() < taps * ic {
        return false;
    }
    let mut wv = [_mm256_setzero_si256(); ONE_VECS];
    for (k, v) in wv.iter_mut().enumerate().take(taps * groups) {
        if let Some(s) = w.get(16 * k..16 * k + 16) {
            // SAFETY: s is 16 bytes.
            *v = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(s.as_ptr().cast()) });
        }
    }
    let rq = OutRq::new(mult, shift);
    for oy in 0..oh {
        for ox in 0..ow {
            let (iy0, ix0) =
                ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize);
            let mut acc = _mm256_setzero_si256();
            for ky in 0..p.kh {
                let iy = iy0 + ky as isize;
                if iy < 0 || iy as usize >= h {
                    continue;
                }
                for kx in 0..p.kw {
                    let ix = ix0 + kx as isize;
                    if ix < 0 || ix as usize >= wd {
                        continue;
                    }
                    let at = 2 * (iy as usize * wd + ix as usize) * ic;
                    let Some(src) = x.get(at..at + 2 * ic) else { continue };
                    let tap = ky * p.kw + kx;
                    for (g, chunk) in src.chunks_exact(32).enumerate() {
                        if let Some(&wg) = wv.get(tap * groups + g) {
                            // SAFETY: chunk is 32 bytes (16 i16).
                            let xv = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
                            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wg));
                        }
                    }
                }
            }
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
            let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b10_11_00_01));
            let r = rq.apply(bias.wrapping_add(_mm_cvtsi128_si32(s1)));
            let o = p.out_zp.wrapping_add(r).max(p.act_min).min(p.act_max).clamp(Y::MIN, Y::MAX);
            Y::put(y, oy * ow + ox, o);
        }
    }
    true
}

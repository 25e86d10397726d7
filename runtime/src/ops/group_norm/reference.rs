//! The plain definitions of GROUP_NORM, element by element: int8
//! ([`group_norm_reference`], the kernel with `reference-kernels`) and every pair
//! of element types ([`group_norm_mixed_reference`], which the fast kernels are
//! checked against). Portable; every target.

use super::scale::{group_scale, isqrt_u128, round_shift_i128};
use crate::ops::numerics::{le_i32, mbqm, sat8, Elem, Rq};

/// The plain definition, element by element (the kernel with `reference-kernels`).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_reference(
    x: &[i8],
    c: usize,
    y: &mut [i8],
    groups: usize,
    in_zp: i32,
    out_zp: i32,
    eps_q32: u64,
    mult: &[u8],
    shift: &[u8],
    bias: &[u8],
) {
    if c == 0 || groups == 0 {
        return;
    }
    let cg = c / groups;
    let pixels = x.len() / c;
    let n = (pixels * cg) as i64;
    for g in 0..groups {
        let c0 = g * cg;
        let (mut s1, mut s2) = (0i64, 0i64);
        for px in x.chunks_exact(c) {
            for &q in px.get(c0..c0 + cg).unwrap_or(&[]) {
                let v = q as i64 - in_zp as i64;
                s1 += v;
                s2 += v * v;
            }
        }
        let d = (n as i128 * s2 as i128 - s1 as i128 * s1 as i128).max(0) as u128;
        let vv = (d << 32) + eps_q32 as u128 * (n as u128 * n as u128);
        let r = isqrt_u128(vv);
        let big_r = ((1u128 << 78) + r / 2).checked_div(r).unwrap_or(0) as i128;
        for (px, ypx) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let xs = px.get(c0..c0 + cg).unwrap_or(&[]);
            let ys = ypx.get_mut(c0..c0 + cg).unwrap_or(&mut []);
            for (k, (&q, yv)) in (c0..).zip(xs.iter().zip(ys.iter_mut())) {
                let v = q as i64 - in_zp as i64;
                let num = (n * v - s1) as i128;
                let z = round_shift_i128(num * big_r, 46).clamp(i32::MIN as i128, i32::MAX as i128);
                let o = out_zp
                    .saturating_add(mbqm(z as i32, le_i32(mult, k), le_i32(shift, k)))
                    .saturating_add(le_i32(bias, k));
                *yv = sat8(o, -128, 127);
            }
        }
    }
}

/// GROUP_NORM with input `X` and output `Y`: the exact algorithm of FORMAT.md
/// (as [`group_norm_reference`]), the output clamped to `Y`'s range.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_mixed_reference<X: Elem, Y: Elem>(
    x: &[u8],
    c: usize,
    y: &mut [u8],
    groups: usize,
    in_zp: i32,
    out_zp: i32,
    eps_q32: u64,
    mult: &[u8],
    shift: &[u8],
    bias: &[u8],
) {
    if c == 0 || groups == 0 {
        return;
    }
    let cg = c / groups;
    let pixels = X::count(x) / c;
    let n = (pixels * cg) as i64;
    for g in 0..groups {
        let c0 = g * cg;
        let (mut s1, mut s2) = (0i64, 0i64);
        for px in 0..pixels {
            for k in c0..c0 + cg {
                let v = X::get(x, px * c + k) as i64 - in_zp as i64;
                s1 += v;
                s2 += v * v;
            }
        }
        let big_r = group_scale(n, s1, s2, eps_q32);
        for k in c0..c0 + cg {
            let (rq, b) = (Rq::new(le_i32(mult, k), le_i32(shift, k)), le_i32(bias, k));
            for px in 0..pixels {
                let v = X::get(x, px * c + k) as i64 - in_zp as i64;
                let num = (n * v - s1) as i128 * big_r;
                let half = 1i128 << 45;
                let z = if num >= 0 { (num + half) >> 46 } else { -((-num + half) >> 46) };
                let z = z.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                let o = out_zp.saturating_add(rq.apply(z)).saturating_add(b);
                Y::put_clamped(y, px * c + k, o, Y::MIN, Y::MAX);
            }
        }
    }
}

//! REQUANT: `y = clamp(out_zp + MBQM(q − in_zp, mult, shift), −128, 127)`.
//!
//! [`requant`] (int8) and [`requant_mixed`] (any int8/int16 pair, clamped to the
//! output type): portable, every target.

use crate::ops::numerics::{mbqm, sat8, Elem};

/// Requantizes `x` into `y`.
pub fn requant(x: &[i8], y: &mut [i8], in_zp: i32, out_zp: i32, mult: i32, shift: i32) {
    for (yv, &q) in y.iter_mut().zip(x) {
        *yv = sat8(out_zp.saturating_add(mbqm(q as i32 - in_zp, mult, shift)), -128, 127);
    }
}

/// REQUANT from `X` to `Y`.
pub fn requant_mixed<X: Elem, Y: Elem>(
    x: &[u8],
    y: &mut [u8],
    in_zp: i32,
    out_zp: i32,
    mult: i32,
    shift: i32,
) {
    for i in 0..X::count(x).min(Y::count(y)) {
        let o = out_zp.saturating_add(mbqm(X::get(x, i) - in_zp, mult, shift));
        Y::put_clamped(y, i, o, Y::MIN, Y::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::{E16, E8};

    #[test]
    fn requant_matches_f64() {
        let mut r = Rng(81);
        for _ in 0..200 {
            let real = 0.05 + r.f64() * 3.0;
            let (m, s) = quantize_multiplier(real);
            let (in_zp, out_zp) = (r.range(-128, 127) as i32, r.range(-128, 127) as i32);
            let x = r.vec_i8(64);
            let mut y = vec![0i8; 64];
            requant(&x, &mut y, in_zp, out_zp, m, s);
            for (a, &q) in y.iter().zip(&x) {
                let want = (out_zp as f64 + (q as i32 - in_zp) as f64 * real).round();
                // ±1 LSB: Q31 multiplier and MBQM's two roundings.
                assert!((*a as f64 - want.clamp(-128.0, 127.0)).abs() <= 1.0);
            }
        }
    }

    #[test]
    fn requant_mixed_i16_to_i8() {
        let mut r = Rng(0xc0);
        let a: Vec<i16> = (0..12).map(|_| r.next() as i16).collect();
        let (m, s) = quantize_multiplier(1.0 / 256.0);
        let mut y8 = vec![0u8; 12];
        requant_mixed::<E16, E8>(&i16_bytes(&a), &mut y8, 0, -5, m, s);
        for (q, &v) in y8.iter().zip(&a) {
            let want = (-5.0 + v as f64 / 256.0).round().clamp(-128.0, 127.0);
            assert!((*q as i8 as f64 - want).abs() <= 1.0);
        }
    }
}

//! REQUANT: `y = clamp(out_zp + MBQM(q − in_zp, mult, shift), −128, 127)`.

use super::{mbqm, sat8};

/// Requantizes `x` into `y`.
pub fn requant(x: &[i8], y: &mut [i8], in_zp: i32, out_zp: i32, mult: i32, shift: i32) {
    for (yv, &q) in y.iter_mut().zip(x) {
        *yv = sat8(out_zp.saturating_add(mbqm(q as i32 - in_zp, mult, shift)), -128, 127);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;

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
}

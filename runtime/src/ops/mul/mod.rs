//! MUL: `y = clamp(out_zp + MBQM((a − a_zp)(b − b_zp), mult, shift), act)`.
//! Portable, every target.

use crate::ops::numerics::{mbqm, sat8, zip_broadcast};

/// Parameters of MUL (FORMAT.md order, after `broadcast`).
#[derive(Clone, Copy, Debug)]
pub struct MulParams {
    /// `a` zero point.
    pub a_zp: i32,
    /// `b` zero point.
    pub b_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Multiplier for `s_a·s_b/s_out`.
    pub mult: i32,
    /// Shift.
    pub shift: i32,
    /// Activation min.
    pub act_min: i32,
    /// Activation max.
    pub act_max: i32,
}

#[inline]
fn mul1(a: i8, b: i8, p: &MulParams) -> i8 {
    let prod = (a as i32 - p.a_zp) * (b as i32 - p.b_zp);
    sat8(p.out_zp.saturating_add(mbqm(prod, p.mult, p.shift)), p.act_min, p.act_max)
}

/// Multiplies `a` and `b` into `y`; with `broadcast`, `b` has `c` elements.
pub fn mul(a: &[i8], b: &[i8], y: &mut [i8], c: usize, broadcast: bool, p: &MulParams) {
    zip_broadcast(a, b, y, c, broadcast, |av, bv| mul1(av, bv, p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;

    #[test]
    fn mul_matches_f64() {
        let mut r = Rng(31);
        for _ in 0..200 {
            let real = 0.0001 + r.f64() * 0.05;
            let (mult, shift) = quantize_multiplier(real);
            let p = MulParams {
                a_zp: r.range(-128, 127) as i32,
                b_zp: r.range(-128, 127) as i32,
                out_zp: r.range(-128, 127) as i32,
                mult,
                shift,
                act_min: -128,
                act_max: 127,
            };
            let c = r.range(1, 8) as usize;
            let n = c * r.range(1, 8) as usize;
            let a = r.vec_i8(n);
            let broadcast = r.next() % 2 == 0;
            let b = r.vec_i8(if broadcast { c } else { n });
            let mut y = vec![0i8; n];
            mul(&a, &b, &mut y, c, broadcast, &p);
            for i in 0..n {
                let bv = if broadcast { b[i % c] } else { b[i] };
                let prod = (a[i] as i32 - p.a_zp) as f64 * (bv as i32 - p.b_zp) as f64;
                let want = (p.out_zp as f64 + prod * real).round().clamp(-128.0, 127.0);
                // ±1 LSB: the Q31 multiplier approximates `real`, then MBQM rounds twice.
                assert!((y[i] as f64 - want).abs() <= 1.0);
            }
        }
    }
}

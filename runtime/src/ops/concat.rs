//! CONCAT along channels. Each input is requantized into the output:
//! `y = out_zp + MBQM(q − in_zp, mult, shift)`, or copied as `q − in_zp + out_zp`
//! when `mult == 0` (equal scales).

use super::{mbqm, sat8};

/// Writes input `x` (`c_in` channels) into channels `c_off..c_off + c_in` of `y`
/// (`c_out` channels).
#[allow(clippy::too_many_arguments)]
pub fn concat_one(
    x: &[i8],
    c_in: usize,
    y: &mut [i8],
    c_out: usize,
    c_off: usize,
    in_zp: i32,
    out_zp: i32,
    mult: i32,
    shift: i32,
) {
    if c_in == 0 || c_out == 0 {
        return;
    }
    if !cfg!(feature = "reference-kernels") {
        // The same definition with the fast paths of the mixed-precision one.
        use super::wide::{concat_one as wide_concat, E8};
        let (xb, yb) = (super::as_u8(x), super::as_u8_mut(y));
        return wide_concat::<E8, E8>(xb, c_in, yb, c_out, c_off, in_zp, out_zp, mult, shift);
    }
    for (xp, yp) in x.chunks_exact(c_in).zip(y.chunks_exact_mut(c_out)) {
        for (yv, &q) in yp.iter_mut().skip(c_off).zip(xp) {
            let v = q as i32 - in_zp;
            let o =
                if mult == 0 { v + out_zp } else { out_zp.saturating_add(mbqm(v, mult, shift)) };
            *yv = sat8(o, -128, 127);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;

    #[test]
    fn concat_two_inputs() {
        let mut r = Rng(41);
        for _ in 0..50 {
            let hw = r.range(1, 10) as usize;
            let (c1, c2) = (r.range(1, 5) as usize, r.range(1, 5) as usize);
            let a = r.vec_i8(hw * c1);
            let b = r.vec_i8(hw * c2);
            let (m, s) = quantize_multiplier(0.7);
            let mut y = vec![0i8; hw * (c1 + c2)];
            concat_one(&a, c1, &mut y, c1 + c2, 0, 3, -2, 0, 0);
            concat_one(&b, c2, &mut y, c1 + c2, c1, 10, -2, m, s);
            for p in 0..hw {
                for k in 0..c1 {
                    let want = (a[p * c1 + k] as i32 - 3 - 2).clamp(-128, 127);
                    assert_eq!(y[p * (c1 + c2) + k] as i32, want);
                }
                for k in 0..c2 {
                    let v = (b[p * c2 + k] as i32 - 10) as f64 * 0.7;
                    let want = (-2.0 + v).round().clamp(-128.0, 127.0);
                    // ±1 LSB: Q31 multiplier and MBQM rounding vs one f64 rounding.
                    assert!((y[p * (c1 + c2) + c1 + k] as f64 - want).abs() <= 1.0);
                }
            }
        }
    }
}

//! MATMUL: strided batched `y[b][m][n] = out_zp + MBQM(Σ_k v_a[b][m][k]·v_b[b][k][n])`.
//!
//! Element `(b, i, j)` of an operand lives at `b·sb + i·s_first + j·s_second` of its
//! tensor (strides in elements). The loader checked that the largest such address
//! of every operand is in bounds.

use super::{mbqm, sat8};

/// Parameters of MATMUL (FORMAT.md order).
#[derive(Clone, Copy, Debug)]
pub struct MatmulParams {
    /// Batch count.
    pub batch: usize,
    /// Rows of `a` and `y`.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of `b` and `y`.
    pub n: usize,
    /// `a` zero point.
    pub a_zp: i32,
    /// `b` zero point.
    pub b_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Multiplier.
    pub mult: i32,
    /// Shift.
    pub shift: i32,
    /// Activation min.
    pub act_min: i32,
    /// Activation max.
    pub act_max: i32,
    /// `a` strides `[batch, m, k]`.
    pub a_s: [usize; 3],
    /// `b` strides `[batch, k, n]`.
    pub b_s: [usize; 3],
    /// `y` strides `[batch, m, n]`.
    pub y_s: [usize; 3],
}

/// Runs the matmul.
pub fn matmul(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
    for bt in 0..p.batch {
        for i in 0..p.m {
            for j in 0..p.n {
                let mut acc = 0i32;
                for kk in 0..p.k {
                    let av =
                        a.get(bt * p.a_s[0] + i * p.a_s[1] + kk * p.a_s[2]).copied().unwrap_or(0);
                    let bv =
                        b.get(bt * p.b_s[0] + kk * p.b_s[1] + j * p.b_s[2]).copied().unwrap_or(0);
                    acc += (av as i32 - p.a_zp) * (bv as i32 - p.b_zp);
                }
                let v = p.out_zp.saturating_add(mbqm(acc, p.mult, p.shift));
                if let Some(o) = y.get_mut(bt * p.y_s[0] + i * p.y_s[1] + j * p.y_s[2]) {
                    *o = sat8(v, p.act_min, p.act_max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;

    #[test]
    fn matmul_transposed_b_matches_f64() {
        let mut r = Rng(61);
        for _ in 0..60 {
            let (batch, m, k, n) = (
                r.range(1, 3) as usize,
                r.range(1, 6) as usize,
                r.range(1, 9) as usize,
                r.range(1, 6) as usize,
            );
            let real = 0.0005 + r.f64() * 0.01;
            let (mult, shift) = quantize_multiplier(real);
            // a is [batch][m][k] row-major; b is stored transposed ([batch][n][k]),
            // as attention's K is; y is [batch][m][n].
            let p = MatmulParams {
                batch,
                m,
                k,
                n,
                a_zp: r.range(-128, 127) as i32,
                b_zp: r.range(-128, 127) as i32,
                out_zp: r.range(-20, 20) as i32,
                mult,
                shift,
                act_min: -128,
                act_max: 127,
                a_s: [m * k, k, 1],
                b_s: [n * k, 1, k],
                y_s: [m * n, n, 1],
            };
            let a = r.vec_i8(batch * m * k);
            let b = r.vec_i8(batch * n * k);
            let mut y = vec![0i8; batch * m * n];
            matmul(&a, &b, &mut y, &p);
            for bt in 0..batch {
                for i in 0..m {
                    for j in 0..n {
                        let acc: i64 = (0..k)
                            .map(|kk| {
                                (a[bt * m * k + i * k + kk] as i64 - p.a_zp as i64)
                                    * (b[bt * n * k + j * k + kk] as i64 - p.b_zp as i64)
                            })
                            .sum();
                        let exact = p.out_zp + mbqm(acc as i32, mult, shift);
                        let got = y[bt * m * n + i * n + j] as i32;
                        assert_eq!(got, exact.clamp(-128, 127), "bit-exact vs i64 reference");
                        let want = (p.out_zp as f64 + acc as f64 * real_of(mult, shift)).round();
                        // ±1 LSB: MBQM's two roundings vs one f64 rounding.
                        assert!((got as f64 - want.clamp(-128.0, 127.0)).abs() <= 1.0);
                    }
                }
            }
        }
    }
}

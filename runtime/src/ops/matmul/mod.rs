//! MATMUL: strided batched `y[b][m][n] = out_zp + MBQM(Σ_k v_a[b][m][k]·v_b[b][k][n])`.
//!
//! Element `(b, i, j)` of an operand lives at `b·sb + i·s_first + j·s_second` of its
//! tensor (strides in elements). The loader checked that the largest such address
//! of every operand is in bounds.
//!
//! [`matmul`] picks the kernel: [`armv7em::matmul_columns`] (the `SMLAD` column
//! kernel) on Cortex-M4/M7, the AVX2 kernels of `x86_avx2.rs` on x86_64 hosts
//! (`std`), else `dot_i8` rows; [`matmul_reference`] is the plain definition.

use crate::ops::numerics::dot::dot_i8;
use crate::ops::numerics::{mbqm, sat8, Rq};

pub mod armv7em;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86_avx2;

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

/// Bytes of the stack buffer [`matmul`] copies `b` into when it is strided in `k`.
const B_BUF: usize = 4096;
/// Bytes of the stack buffer for a row of `a` strided in `k`.
const A_BUF: usize = 512;
/// Largest `n` of [`matmul`] (per-column sums on the stack).
const N_MAX: usize = 256;

/// Runs the matmul.
///
/// Bit-identical to [`matmul_reference`]: with rows of `a` and columns of `b`
/// contiguous in `k` (copied into stack buffers when they are not),
/// `Σ(a − a_zp)(b − b_zp) = Σab − b_zp·Σa − a_zp·Σb + k·a_zp·b_zp` in wrapping i32
/// arithmetic, equal modulo 2^32 to the reference's sum; `Σab` is the target's
/// int8 dot product (`SMLAD` on Armv7E-M).
pub fn matmul(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
    let (k, n) = (p.k, p.n);
    let fits =
        k > 0 && n <= N_MAX && (p.b_s[1] == 1 || n * k <= B_BUF) && (p.a_s[2] == 1 || k <= A_BUF);
    if cfg!(feature = "reference-kernels") || !fits {
        return matmul_reference(a, b, y, p);
    }
    #[cfg(ddpm_dsp)]
    if armv7em::matmul_columns(a, b, y, p) {
        return;
    }
    matmul_rows(a, b, y, p)
}

/// The body of [`matmul`]: one `dot_i8` per output. Not inlined, so that its
/// stack buffers and [`armv7em::matmul_columns`]' are never live together.
#[inline(never)]
fn matmul_rows(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        if unsafe { x86_avx2::matmul_panels_avx2(a, b, y, p) } {
            return;
        }
        // SAFETY: as above.
        return unsafe { x86_avx2::matmul_rows_avx2(a, b, y, p) };
    }
    matmul_rows_body(a, b, y, p)
}

#[inline(always)]
fn matmul_rows_body(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
    let (k, n) = (p.k, p.n);
    let rq = Rq::new(p.mult, p.shift);
    let mut bt_buf = [0i8; B_BUF];
    let mut a_buf = [0i8; A_BUF];
    let kzz = (k as i32).wrapping_mul(p.a_zp).wrapping_mul(p.b_zp);
    for bt in 0..p.batch {
        // Columns of b, contiguous in k: b itself when its k stride is 1.
        let bb = bt * p.b_s[0];
        let direct = p.b_s[1] == 1;
        if !direct {
            for (j, col) in bt_buf.chunks_exact_mut(k).take(n).enumerate() {
                for (kk, v) in col.iter_mut().enumerate() {
                    *v = b.get(bb + kk * p.b_s[1] + j * p.b_s[2]).copied().unwrap_or(0);
                }
            }
        }
        let bcol = |j: usize| -> &[i8] {
            if direct {
                let s = bb + j * p.b_s[2];
                b.get(s..s + k).unwrap_or(&[])
            } else {
                bt_buf.get(j * k..(j + 1) * k).unwrap_or(&[])
            }
        };
        let mut sb = [0i32; N_MAX];
        for (j, s) in sb.iter_mut().enumerate().take(n) {
            *s = bcol(j).iter().map(|&v| v as i32).sum();
        }
        for i in 0..p.m {
            let ab = bt * p.a_s[0] + i * p.a_s[1];
            let arow: &[i8] = if p.a_s[2] == 1 {
                a.get(ab..ab + k).unwrap_or(&[])
            } else {
                for (kk, v) in a_buf.iter_mut().enumerate().take(k) {
                    *v = a.get(ab + kk * p.a_s[2]).copied().unwrap_or(0);
                }
                a_buf.get(..k).unwrap_or(&[])
            };
            if arow.len() != k {
                continue;
            }
            let sa: i32 = arow.iter().map(|&v| v as i32).sum();
            let row_c = kzz.wrapping_sub(p.b_zp.wrapping_mul(sa));
            for (j, &sbj) in sb.iter().enumerate().take(n) {
                let col = bcol(j);
                if col.len() != k {
                    continue;
                }
                let acc =
                    dot_i8(arow, col).wrapping_add(row_c).wrapping_sub(p.a_zp.wrapping_mul(sbj));
                let v = p.out_zp.saturating_add(rq.apply(acc));
                if let Some(o) = y.get_mut(bt * p.y_s[0] + i * p.y_s[1] + j * p.y_s[2]) {
                    *o = sat8(v, p.act_min, p.act_max);
                }
            }
        }
    }
}

/// The plain definition (the kernel with `reference-kernels`, and for operands
/// too large for the stack buffers of [`matmul`]).
pub fn matmul_reference(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) {
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
    use super::armv7em::matmul_columns;
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;

    #[test]
    fn matmul_transposed_b_matches_f64() {
        let mut r = Rng(61);
        for _ in 0..200 {
            let (batch, m, k, n) = (
                r.range(1, 3) as usize,
                r.range(1, 12) as usize,
                if r.range(0, 3) == 0 { r.range(40, 70) } else { r.range(1, 9) } as usize,
                if r.range(0, 3) == 0 { r.range(14, 70) } else { r.range(1, 6) } as usize,
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
            let mut y_ref = vec![0i8; batch * m * n];
            matmul_reference(&a, &b, &mut y_ref, &p);
            assert_eq!(y, y_ref, "fast vs reference");
            // The same product with b stored [batch][k][n] (strided in k), as
            // attention's V is.
            let bt: Vec<i8> = (0..batch * k * n)
                .map(|idx| {
                    let (bb, kk, j) = (idx / (k * n), (idx / n) % k, idx % n);
                    b[bb * n * k + j * k + kk]
                })
                .collect();
            let p2 = MatmulParams { b_s: [k * n, n, 1], ..p };
            let mut y2 = vec![0i8; batch * m * n];
            matmul(&a, &bt, &mut y2, &p2);
            assert_eq!(y2, y_ref, "fast, b strided in k");
            // The column kernel (on the host with its portable loop).
            // (It declines b's columns beyond its stack buffer.)
            use crate::ops::numerics::columns::{KB, KC};
            let fits = k <= KC && n * k.div_ceil(KB) * KB <= B_BUF;
            for (pp, bv) in [(&p, &b), (&p2, &bt)] {
                let mut y3 = vec![0i8; batch * m * n];
                assert_eq!(matmul_columns(&a, bv, &mut y3, pp), fits);
                if fits {
                    assert_eq!(y3, y_ref, "columns");
                }
            }
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

//! MATMUL through the im2col column kernel of Armv7E-M (`SMLAD`,
//! [`crate::ops::numerics::columns`]): the kernel [`super::matmul`] takes on
//! Cortex-M4/M7. It compiles everywhere (the columns' plain-Rust loops off
//! Armv7E-M), so hosts test it.

use super::{MatmulParams, B_BUF, N_MAX};
use crate::ops::numerics::sat8;

/// [`super::matmul`] through the im2col column kernel (five rows of `a` against each
/// column of `b`, `SMLAD` on Armv7E-M), for `k ≤ KC` and `b`'s columns fitting
/// the stack buffer zero-padded to a multiple of 16; returns false (doing
/// nothing) otherwise. Same zero-point algebra as [`super::matmul`], same bits.
/// Not inlined (see `matmul_rows`).
#[inline(never)]
pub fn matmul_columns(a: &[i8], b: &[i8], y: &mut [i8], p: &MatmulParams) -> bool {
    use crate::ops::numerics::columns::{RowColumns, KB, KC, PIX};
    let (k, n) = (p.k, p.n);
    let kp = k.div_ceil(KB) * KB;
    if k == 0 || k > KC || n > N_MAX || n * kp > B_BUF {
        return false;
    }
    let rq = crate::ops::numerics::OutRq::new(p.mult, p.shift);
    let mut bt_buf = [0i8; B_BUF];
    let mut cols = RowColumns::new();
    let kzz = (k as i32).wrapping_mul(p.a_zp).wrapping_mul(p.b_zp);
    for bt in 0..p.batch {
        // Columns of b, contiguous in k and zero-padded to kp.
        let bb = bt * p.b_s[0];
        let mut sb = [0i32; N_MAX];
        for ((j, col), s) in bt_buf.chunks_exact_mut(kp).take(n).enumerate().zip(sb.iter_mut()) {
            let (head, pad) = col.split_at_mut(k);
            for (kk, v) in head.iter_mut().enumerate() {
                *v = b.get(bb + kk * p.b_s[1] + j * p.b_s[2]).copied().unwrap_or(0);
            }
            pad.iter_mut().for_each(|v| *v = 0);
            *s = head.iter().map(|&v| v as i32).sum();
        }
        let mut i0 = 0;
        while i0 < p.m {
            let rows = PIX.min(p.m - i0);
            let mut row_c = [0i32; PIX];
            let aof = |r: usize, kk: usize| -> i8 {
                let at = bt * p.a_s[0] + (i0 + r) * p.a_s[1] + kk * p.a_s[2];
                if r < rows {
                    a.get(at).copied().unwrap_or(0)
                } else {
                    0
                }
            };
            for (r, rc) in row_c.iter_mut().enumerate().take(rows) {
                let sa: i32 = (0..k).map(|kk| aof(r, kk) as i32).sum();
                *rc = kzz.wrapping_sub(p.b_zp.wrapping_mul(sa));
            }
            cols.set(k, aof);
            let mut acc = [0i32; PIX];
            for (j, &sbj) in sb.iter().enumerate().take(n) {
                cols.dot(bt_buf.get(j * kp..(j + 1) * kp).unwrap_or(&[]), &mut acc);
                let cz = p.a_zp.wrapping_mul(sbj);
                for (r, (&s, &rc)) in acc.iter().zip(&row_c).enumerate().take(rows) {
                    let acc = s.wrapping_add(rc).wrapping_sub(cz);
                    let v = p.out_zp.saturating_add(rq.apply(acc));
                    if let Some(o) = y.get_mut(bt * p.y_s[0] + (i0 + r) * p.y_s[1] + j * p.y_s[2]) {
                        *o = sat8(v, p.act_min, p.act_max);
                    }
                }
            }
            i0 += PIX;
        }
    }
    true
}

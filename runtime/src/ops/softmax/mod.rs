//! SOFTMAX over the last axis of `rows × len` values.
//!
//! `d = max − q` (0..=255), `e = exp_table[d]` (u32, `round(exp(−s_in·d)·2^16)`),
//! `S = Σe` (u64), `y = clamp(⌊(e·256 + S/2) / S⌋ − 128, −128, 127)`:
//! output scale 1/256, zero point −128. A row with `S = 0` gives −128.
//!
//! Portable, every target.

use crate::ops::numerics::le_u32;

/// Runs softmax; `exp` is the 256-entry LE u32 table.
pub fn softmax(x: &[i8], y: &mut [i8], len: usize, exp: &[u8]) {
    if len == 0 {
        return;
    }
    for (xr, yr) in x.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
        let max = xr.iter().copied().max().unwrap_or(0) as i32;
        let sum: u64 = xr.iter().map(|&q| le_u32(exp, (max - q as i32) as usize) as u64).sum();
        // 64-bit hosts: f64 division (32-bit targets keep the integer one, their
        // f64 is software).
        if !cfg!(ddpm_wide) || sum == 0 || sum >= 1 << 40 {
            for (yv, &q) in yr.iter_mut().zip(xr) {
                let e = le_u32(exp, (max - q as i32) as usize) as u64;
                let v = ((e << 8) + sum / 2).checked_div(sum).unwrap_or(0);
                *yv = (v as i64 - 128).clamp(-128, 127) as i8;
            }
            continue;
        }
        // The quotient through one f64 division, exact: N = e·256 + S/2 < 2^49
        // and S < 2^40 are exact in f64, N/S < 258 (e ≤ S); a non-integer N/S
        // lies at least 1/S > 2^−40 below the next integer, more than the
        // division's rounding error (≤ 2^−45 there), so the truncation of the
        // rounded quotient is ⌊N/S⌋ (an integer quotient is exact).
        let sf = sum as f64;
        for (yv, &q) in yr.iter_mut().zip(xr) {
            let e = le_u32(exp, (max - q as i32) as usize) as u64;
            let v = (((e << 8) + sum / 2) as f64 / sf) as i64;
            *yv = (v - 128).clamp(-128, 127) as i8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::*;

    /// The f64 quotient against the integer division it replaces, on random
    /// tables (large entries, zeros, the usual exp tables) and row lengths.
    #[test]
    fn quotient_matches_integer_division() {
        let mut r = Rng(0x50f);
        for case in 0..2000 {
            let table: Vec<u32> = (0..256)
                .map(|d| match case % 4 {
                    0 => r.next() as u32,
                    1 => (r.next() % 3) as u32,
                    _ => ((-0.05 * d as f64).exp() * 65536.0).round() as u32,
                })
                .collect();
            let tb: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
            let len = r.range(1, 300) as usize;
            let x = r.vec_i8(len);
            let mut y = vec![0i8; len];
            softmax(&x, &mut y, len, &tb);
            let max = *x.iter().max().unwrap() as i32;
            let sum: u64 = x.iter().map(|&q| table[(max - q as i32) as usize] as u64).sum();
            for (&q, &got) in x.iter().zip(&y) {
                let e = table[(max - q as i32) as usize] as u64;
                let v = ((e << 8) + sum / 2).checked_div(sum).unwrap_or(0);
                assert_eq!(got as i64, (v as i64 - 128).clamp(-128, 127), "case {case}");
            }
        }
    }

    #[test]
    fn softmax_matches_f64() {
        let mut r = Rng(71);
        for _ in 0..100 {
            let s_in = 0.01 + r.f64() * 0.2;
            let table: Vec<u32> =
                (0..256).map(|d| ((-s_in * d as f64).exp() * 65536.0).round() as u32).collect();
            let tb: Vec<u8> = table.iter().flat_map(|v| v.to_le_bytes()).collect();
            let (rows, len) = (r.range(1, 4) as usize, r.range(1, 40) as usize);
            let x = r.vec_i8(rows * len);
            let mut y = vec![0i8; rows * len];
            softmax(&x, &mut y, len, &tb);
            for row in 0..rows {
                let xr = &x[row * len..(row + 1) * len];
                let max = *xr.iter().max().unwrap() as f64;
                let den: f64 = xr.iter().map(|&q| (s_in * (q as f64 - max)).exp()).sum();
                for (i, &q) in xr.iter().enumerate() {
                    let p = (s_in * (q as f64 - max)).exp() / den;
                    let want = (p * 256.0 - 128.0).round().clamp(-128.0, 127.0);
                    // ±1 LSB: the exp table is rounded to Q16 (relative error up to
                    // 2^-17/e for small e), and p·256 may sit near a rounding tie.
                    assert!((y[row * len + i] as f64 - want).abs() <= 1.0);
                }
            }
        }
    }
}

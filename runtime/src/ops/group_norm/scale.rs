//! The integer square root and division of GROUP_NORM's per-group scale
//! `R = round(2^78 / isqrt(V))` ([`group_scale`]), and its rounding shift.
//! Portable; every target.

/// Floor square root of a u128 (bit-by-bit, 64 fixed iterations).
pub fn isqrt_u128(v: u128) -> u128 {
    let mut rem = v;
    let mut root = 0u128;
    let mut bit = 1u128 << 126;
    while bit > rem && bit != 0 {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// Steps 2–4 of the algorithm for a group of `n` values with sums `S1`, `S2`:
/// `R = round(2^78 / isqrt(D·2^32 + eps_q32·n²))`, `D = n·S2 − S1²` (0 when the
/// root is 0).
#[inline]
pub fn group_scale(n: i64, s1: i64, s2: i64, eps_q32: u64) -> i128 {
    let d = (n as i128 * s2 as i128 - s1 as i128 * s1 as i128).max(0) as u128;
    let vv = (d << 32) + eps_q32 as u128 * (n as u128 * n as u128);
    let r = isqrt_fast(vv);
    div_fast((1u128 << 78) + r / 2, r) as i128
}

/// [`isqrt_u128`] from a floating-point estimate made exact: the estimate is
/// corrected by the integer remainder `v − s²` (its floating-point quotient by
/// `2s`, at least one step) until `s² ≤ v < (s + 1)²` holds in integers, else
/// the bit-by-bit root. Exactly `isqrt_u128(v)` for every `v` (the integer
/// check decides); on 32-bit targets a few hundred instructions instead of
/// thousands.
pub fn isqrt_fast(v: u128) -> u128 {
    if v >= 1 << 124 {
        return isqrt_u128(v);
    }
    // s ≤ 2^62 + a few units: s² and 2s + 1 fit.
    let mut s = libm::sqrt(v as f64) as u128;
    for _ in 0..8 {
        let sq = s * s;
        if sq > v {
            let e = sq - v;
            s -= ((e as f64 / (2.0 * s as f64)) as u128).clamp(1, s);
        } else {
            let e = v - sq;
            if e <= 2 * s {
                return s;
            }
            s += ((e as f64 / (2.0 * s as f64 + 1.0)) as u128).max(1);
        }
    }
    isqrt_u128(v)
}

/// `⌊a/b⌋` (0 for `b = 0`) from a floating-point estimate made exact: the
/// integer remainder `a − q·b` corrects the estimate (by its floating-point
/// quotient by `b`, at least one step) until it lies in `[0, b)`; else the
/// plain division. Exactly `a / b` for every input (the integer check
/// decides); the estimate path for `a < 2^120`, `b < 2^64`.
pub fn div_fast(a: u128, b: u128) -> u128 {
    if b == 0 {
        return 0;
    }
    if a >= 1 << 120 || b >= 1 << 64 {
        return a / b;
    }
    let mut q = (a as f64 / b as f64) as u128;
    for _ in 0..8 {
        let Some(p) = q.checked_mul(b) else { break };
        if p > a {
            q -= (((p - a) as f64 / b as f64) as u128).clamp(1, q);
        } else {
            let e = a - p;
            if e < b {
                return q;
            }
            q += ((e as f64 / b as f64) as u128).max(1);
        }
    }
    a / b
}

/// Divides by `2^s` rounding half away from zero.
#[inline]
pub fn round_shift_i128(v: i128, s: u32) -> i128 {
    let half = 1i128 << (s - 1);
    if v >= 0 {
        (v + half) >> s
    } else {
        -((-v + half) >> s)
    }
}

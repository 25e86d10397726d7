//! GROUP_NORM for the mixed-precision path (int8 or int16 input and output),
//! bit-exact with [`super::wide::group_norm`] without its per-element i128
//! multiply.
//!
//! Per group, `P(v) = (n·v − S1)·R = P0 + v·(n·R)` with `P0 = −S1·R` is linear in
//! the element `v`. With `P0 = a0·2^46 + b0` and `n·R = sa·2^46 + sb`
//! (`0 ≤ b0, sb < 2^46`, floor divisions),
//! `P(v) = (a0 + v·sa)·2^46 + (b0 + v·sb)`, so with `t = b0 + v·sb` the floor
//! quotient is `a = a0 + v·sa + ⌊t/2^46⌋` and the remainder `b = t mod 2^46`:
//! every term is exact in i64 when `|v| < 2^16`, `|a0| < 2^60` and `sa < 2^44`
//! (checked per group; other groups take the i128 formula as written). Rounding
//! half away from zero is `a + [b > 2^45 or (b = 2^45 and a ≥ 0)]`, as
//! `group_norm.rs`'s `z_steps`.

use super::group_norm::isqrt_u128;
use super::wide::Elem;
use super::{le_i32, Rq};

/// Exact `round_half_away(P / 2^46)` clamped to i32, for `P = P0 + v·step`.
#[derive(Clone, Copy, Debug)]
struct ZLine {
    a0: i64,
    b0: i64,
    sa: i64,
    sb: i64,
    p0: i128,
    step: i128,
    fast: bool,
}

const MASK: i64 = (1 << 46) - 1;
const HALF: i64 = 1 << 45;

impl ZLine {
    fn new(p0: i128, step: i128) -> Self {
        let (a0, sa) = (p0 >> 46, step >> 46);
        let fast = a0.abs() < 1 << 60 && (0..1 << 44).contains(&sa);
        ZLine {
            a0: a0 as i64,
            b0: (p0 & MASK as i128) as i64,
            sa: sa as i64,
            sb: (step & MASK as i128) as i64,
            p0,
            step,
            fast,
        }
    }

    /// `z` for element value `v` (`|v| < 2^16`).
    #[inline(always)]
    fn z(&self, v: i32) -> i32 {
        if self.fast {
            let t = self.b0 + v as i64 * self.sb;
            let a = self.a0 + v as i64 * self.sa + (t >> 46);
            let b = t & MASK;
            let up = b > HALF || (b == HALF && a >= 0);
            (a + up as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32
        } else {
            let num = self.p0 + v as i128 * self.step;
            let half = 1i128 << 45;
            let z = if num >= 0 { (num + half) >> 46 } else { -((-num + half) >> 46) };
            z.clamp(i32::MIN as i128, i32::MAX as i128) as i32
        }
    }
}

/// GROUP_NORM with input `X` and output `Y` (same contract and results as
/// [`super::wide::group_norm`]).
#[allow(clippy::too_many_arguments)]
pub fn group_norm<X: Elem, Y: Elem>(
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
    if c == 0 || groups == 0 || !(-128..=127).contains(&in_zp) {
        return super::wide::group_norm::<X, Y>(
            x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias,
        );
    }
    if c <= PM_CHANNELS
        && pixel_major::<X, Y>(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias)
    {
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
        let d = (n as i128 * s2 as i128 - s1 as i128 * s1 as i128).max(0) as u128;
        let vv = (d << 32) + eps_q32 as u128 * (n as u128 * n as u128);
        let r = isqrt_u128(vv);
        let big_r = ((1u128 << 78) + r / 2).checked_div(r).unwrap_or(0) as i128;
        // (n·v − S1)·R = −S1·R + v·(n·R).
        let line = ZLine::new(-(s1 as i128) * big_r, n as i128 * big_r);
        for k in c0..c0 + cg {
            let (rq, b) = (Rq::new(le_i32(mult, k), le_i32(shift, k)), le_i32(bias, k));
            for px in 0..pixels {
                let v = X::get(x, px * c + k) - in_zp;
                let o = out_zp.saturating_add(rq.apply(line.z(v))).saturating_add(b);
                Y::put_clamped(y, px * c + k, o, Y::MIN, Y::MAX);
            }
        }
    }
}

/// Channels up to which [`pixel_major`] is used (its per-channel sums and
/// constants live on the stack: 56 bytes per channel).
const PM_CHANNELS: usize = 128;

/// `R = round(2^78 / r)` of a group with sums `S1`, `S2` over `n` values.
#[inline]
fn big_r(n: i64, s1: i64, s2: i64, eps_q32: u64) -> i128 {
    let d = (n as i128 * s2 as i128 - s1 as i128 * s1 as i128).max(0) as u128;
    let vv = (d << 32) + eps_q32 as u128 * (n as u128 * n as u128);
    let r = isqrt_u128(vv);
    ((1u128 << 78) + r / 2).checked_div(r).unwrap_or(0) as i128
}

/// Per-channel constants of the pixel-major pass.
#[derive(Clone, Copy, Default)]
struct Chan {
    a0: i64,
    b0: i64,
    sa: i64,
    sb: i64,
    rq: Rq,
    bias: i32,
}

/// [`group_norm`] in two passes over contiguous pixels (per-channel sums, then
/// every channel of a pixel with its group's line), for `c ≤ PM_CHANNELS` when
/// every group's line takes [`ZLine`]'s 64-bit path. Returns `false`, having
/// written nothing, otherwise. Same sums (added in another order, exactly) and
/// the same per-element formula as the channel-major loop.
#[allow(clippy::too_many_arguments)]
fn pixel_major<X: Elem, Y: Elem>(
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
) -> bool {
    let cg = c / groups;
    if cg == 0 || c > PM_CHANNELS {
        return false;
    }
    let pixels = X::count(x) / c;
    let n = (pixels * cg) as i64;
    let (mut s1c, mut s2c) = ([0i64; PM_CHANNELS], [0i64; PM_CHANNELS]);
    let (s1c, s2c) = (s1c.get_mut(..c).unwrap_or(&mut []), s2c.get_mut(..c).unwrap_or(&mut []));
    for px in x.chunks_exact(c * X::BYTES).take(pixels) {
        for ((a1, a2), v) in s1c.iter_mut().zip(s2c.iter_mut()).zip(X::iter(px)) {
            let v = (v - in_zp) as i64;
            *a1 += v;
            *a2 += v * v;
        }
    }
    let mut ch = [Chan::default(); PM_CHANNELS];
    for (g, ((g1, g2), cs)) in
        s1c.chunks_exact(cg).zip(s2c.chunks_exact(cg)).zip(ch.chunks_exact_mut(cg)).enumerate()
    {
        let (s1, s2) = (g1.iter().sum::<i64>(), g2.iter().sum::<i64>());
        let r = big_r(n, s1, s2, eps_q32);
        let line = ZLine::new(-(s1 as i128) * r, n as i128 * r);
        if !line.fast {
            return false;
        }
        for (j, e) in cs.iter_mut().enumerate() {
            let k = g * cg + j;
            *e = Chan {
                a0: line.a0,
                b0: line.b0,
                sa: line.sa,
                sb: line.sb,
                rq: Rq::new(le_i32(mult, k), le_i32(shift, k)),
                bias: le_i32(bias, k),
            };
        }
    }
    let ch = ch.get(..groups * cg).unwrap_or(&[]);
    let general = ch.iter().any(|e| e.rq.is_general());
    for (px, ypx) in x.chunks_exact(c * X::BYTES).zip(y.chunks_exact_mut(c * Y::BYTES)) {
        for (k, (e, v)) in ch.iter().zip(X::iter(px)).enumerate() {
            let v = (v - in_zp) as i64;
            let t = e.b0 + v * e.sb;
            let a = e.a0 + v * e.sa + (t >> 46);
            let b = t & MASK;
            // Round half away from zero, without branches.
            let up = (b > HALF) as i64 | ((b == HALF) as i64 & (a >= 0) as i64);
            let z = (a + up).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            let r = if general { e.rq.apply(z) } else { e.rq.apply_shift_right(z) };
            let o = out_zp.saturating_add(r).saturating_add(e.bias);
            Y::put_clamped(ypx, k, o, Y::MIN, Y::MAX);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;
    use crate::ops::wide::{self, E16, E8};

    #[test]
    fn zline_matches_i128() {
        let mut r = Rng(0x9a);
        let mut paths = [0; 2];
        for case in 0..4000 {
            let p0 = ((r.next() as i128) << 64 | r.next() as i128) >> (r.next() % 100 + 17);
            let p0 = if case % 3 == 0 { p0 - p0 % (1 << 45) } else { p0 };
            let step =
                (((r.next() as i128) << 64 | r.next() as i128) >> (r.next() % 110 + 17)).abs();
            let step = if case % 5 == 0 { step - step % (1 << 44) } else { step };
            let l = ZLine::new(p0, step);
            paths[l.fast as usize] += 1;
            for i in 0..64 {
                let v = match i {
                    0 => -32768,
                    1 => 32767,
                    2 => 0,
                    3 => -32768 - 128,
                    4 => 32767 + 128,
                    _ => r.range(-32768 - 128, 32767 + 128) as i32,
                };
                let num = p0 + v as i128 * step;
                let half = 1i128 << 45;
                let want = if num >= 0 { (num + half) >> 46 } else { -((-num + half) >> 46) };
                let want = want.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                assert_eq!(l.z(v), want, "case {case} v {v} fast {}", l.fast);
            }
        }
        assert!(paths[0] > 200 && paths[1] > 200, "{paths:?}");
    }

    #[allow(clippy::too_many_arguments)]
    fn run<X: Elem, Y: Elem>(
        x: &[u8],
        c: usize,
        ylen: usize,
        groups: usize,
        zp: (i32, i32),
        eps: u64,
        m: &[u8],
        s: &[u8],
        b: &[u8],
    ) {
        let mut want = vec![0u8; ylen];
        let mut got = vec![0u8; ylen];
        wide::group_norm::<X, Y>(x, c, &mut want, groups, zp.0, zp.1, eps, m, s, b);
        group_norm::<X, Y>(x, c, &mut got, groups, zp.0, zp.1, eps, m, s, b);
        assert_eq!(got, want);
    }

    /// Against `wide::group_norm`, bit for bit: every type combination, random
    /// shapes and group counts, constant groups, extreme values, eps, γ < 0.
    #[test]
    fn matches_wide_group_norm() {
        let mut r = Rng(0x6e6);
        for case in 0..600 {
            let groups = r.range(1, 4) as usize;
            let c = groups * r.range(1, 5) as usize;
            let pixels = r.range(1, 80) as usize;
            let n = pixels * c;
            let spread = [1i64, 3, 300, 32767][case % 4];
            let base = r.range(-32768 + spread, 32767 - spread);
            let x16: Vec<i16> = (0..n)
                .map(|i| match case % 7 {
                    0 => [i16::MIN, i16::MAX][i % 2],
                    1 => base as i16,
                    _ => r.range(base - spread, base + spread) as i16,
                })
                .collect();
            let x16b: Vec<u8> = x16.iter().flat_map(|v| v.to_le_bytes()).collect();
            let x8: Vec<u8> = (0..n).map(|_| r.i8() as u8).collect();
            let eps = [0u64, 1, 1 << 20, 1 << 40, 1 << 56][case % 5];
            let (mut mult, mut shift) = (vec![], vec![]);
            for _ in 0..c {
                let real =
                    [1.0 / 65536.0, 0.01, 3.0, 1e-7][(r.next() % 4) as usize] * (0.5 + r.f64());
                let (m, s) = quantize_multiplier(real);
                let m = if r.next() % 4 == 0 { -m } else { m };
                mult.push(m);
                shift.push(s);
            }
            let bias: Vec<i32> = (0..c).map(|_| r.range(-40000, 40000) as i32).collect();
            let (m, s, b) = (i32_bytes(&mult), i32_bytes(&shift), i32_bytes(&bias));
            let out_zp = if case % 2 == 0 { 0 } else { r.range(-128, 127) as i32 };
            let in_zp = r.range(-128, 127) as i32;
            run::<E16, E16>(&x16b, c, 2 * n, groups, (0, 0), eps, &m, &s, &b);
            run::<E16, E8>(&x16b, c, n, groups, (0, out_zp), eps, &m, &s, &b);
            run::<E8, E16>(&x8, c, 2 * n, groups, (in_zp, 0), eps, &m, &s, &b);
            run::<E8, E8>(&x8, c, n, groups, (in_zp, out_zp), eps, &m, &s, &b);
        }
    }
}

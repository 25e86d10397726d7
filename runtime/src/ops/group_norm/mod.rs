//! GROUP_NORM: integer-only, deterministic group normalization.
//!
//! Exact algorithm (also in `docs/FORMAT.md`), for each group `g` of
//! `n = h·w·c/groups` values `v = q − in_zp` (channels `g·c/groups ..`):
//!
//! 1. `S1 = Σv` (i64), `S2 = Σv²` (i64).
//! 2. `D = n·S2 − S1²` (i128, ≥ 0) is `n²·σ²` in int8 units.
//! 3. `V = D·2^32 + eps_q32·n²` (u128) is `n²·(σ² + ε)·2^32`;
//!    `r = isqrt(V)` (floor) is `n·√(σ² + ε)·2^16`.
//! 4. `R = round(2^78 / r)` (u128; `R = 0` when `r = 0`).
//! 5. Per element: `z_q16 = round_half_away((n·v − S1)·R / 2^46)` clamped to i32;
//!    this is `(v − μ)/√(σ² + ε)` with 16 fractional bits.
//! 6. `y = clamp(out_zp + MBQM(z_q16, mult[ch], shift[ch]) + bias[ch], −128, 127)`.
//!
//! The loader bounds `n ≤ 2^24` and `eps_q32 ≤ 2^56`, so every intermediate fits:
//! `|n·v − S1| < 2^33`, `R ≤ 2^78`, the product `< 2^111`.
//!
//! Kernels: [`group_norm`] (int8; the histogram kernel on 32-bit targets, the
//! pixel-major kernel of [`fast`] on 64-bit hosts), [`group_norm_mixed`] (int8 or
//! int16 input and output, [`fast`]: portable exact fixed point, with the
//! Armv7E-M assembly channel loops in `armv7em.rs` and, on x86_64 with AVX2,
//! vector sums and an f64 output pass), and the plain definitions in [`reference`](mod@reference). [`scale`] holds
//! the per-group scale's integer arithmetic.

pub mod fast;
pub mod reference;
pub mod scale;

pub use fast::group_norm_mixed;
pub use reference::{group_norm_mixed_reference, group_norm_reference};

use crate::ops::numerics::stage::{add_stage, add_stage_apply};
use crate::ops::numerics::{le_i32, sat8, Rq};
use scale::{group_scale, round_shift_i128};

/// `z[i] = clamp(round_shift_i128(p0 + i·step, 46))` to i32, for `step ≥ 0`.
///
/// With `P = a·2^46 + b`, `0 ≤ b < 2^46` (floor division), rounding half away
/// from zero is `a + [b ≥ 2^45]` for `a ≥ 0` and `a + [b > 2^45]` for `a < 0`;
/// `(a, b)` steps by `(step >> 46, step mod 2^46)` with a carry, in 64-bit words
/// whenever `a` cannot leave ±2^61 (else in i128 as written).
fn z_steps(p0: i128, step: i128, z: &mut [i32]) {
    const MASK: i128 = (1 << 46) - 1;
    const HALF: i64 = 1 << 45;
    let (a0, a_s) = (p0 >> 46, step >> 46);
    if a0.abs() < 1 << 60 && (0..1 << 50).contains(&a_s) && z.len() <= 256 {
        let (mut a, mut b) = (a0 as i64, (p0 & MASK) as i64);
        let (a_s, b_s) = (a_s as i64, (step & MASK) as i64);
        for zv in z.iter_mut() {
            let up = b > HALF || (b == HALF && a >= 0);
            *zv = (a + up as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            a += a_s;
            b += b_s;
            if b >= 2 * HALF {
                b -= 2 * HALF;
                a += 1;
            }
        }
    } else {
        let mut prod = p0;
        for zv in z.iter_mut() {
            *zv = round_shift_i128(prod, 46).clamp(i32::MIN as i128, i32::MAX as i128) as i32;
            prod += step;
        }
    }
}

/// Runs group norm on `x` (`[h, w, c]`, flattened `hw × c`) into `y`.
///
/// Bit-identical to [`group_norm_reference`]: the element formula depends on the
/// element only through `q`. Per group, one pass builds a histogram of `q`, from
/// which `S1` and `S2` follow exactly; `z(q)` is tabulated for the `q` range the
/// group holds (the products `(n·v − S1)·R` stepping exactly by `n·R`). Channels
/// are then done [`OT`] at a time in one pass over the pixels, through per-channel
/// output tables when the range is shorter than the pixel count, else through
/// the requantization itself.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[i8],
    c: usize,
    y: &mut [i8],
    groups: usize,
    in_zp: i32,
    out_zp: i32,
    eps_q32: u64,
    mult: &[u8],
    shift: &[u8],
    bias: &[u8],
) {
    if cfg!(feature = "reference-kernels") {
        return group_norm_reference(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias);
    }
    // 64-bit hosts: the pixel-major kernel of the mixed path (the same exact
    // algorithm, vectorized there).
    #[cfg(ddpm_wide)]
    {
        use crate::ops::numerics::{as_u8, as_u8_mut, E8};
        let (xb, yb) = (as_u8(x), as_u8_mut(y));
        return fast::group_norm_mixed::<E8, E8>(
            xb, c, yb, groups, in_zp, out_zp, eps_q32, mult, shift, bias,
        );
    }
    #[cfg_attr(ddpm_wide, allow(unreachable_code))]
    group_norm_hist(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias)
}

/// The histogram kernel of [`group_norm`] (32-bit targets).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(ddpm_wide, allow(dead_code))]
fn group_norm_hist(
    x: &[i8],
    c: usize,
    y: &mut [i8],
    groups: usize,
    in_zp: i32,
    out_zp: i32,
    eps_q32: u64,
    mult: &[u8],
    shift: &[u8],
    bias: &[u8],
) {
    if c == 0 || groups == 0 {
        return;
    }
    let cg = c / groups;
    let pixels = x.len() / c;
    let n = (pixels * cg) as i64;
    let idx = |q: i8| (q as u8 ^ 0x80) as usize;
    let mut ztab = [0i32; 256];
    let mut otab = [[0i8; 256]; OT];
    for g in 0..groups {
        let c0 = g * cg;
        let mut hist = [0u32; 256];
        for px in x.chunks_exact(c) {
            for &q in px.get(c0..c0 + cg).unwrap_or(&[]) {
                if let Some(h) = hist.get_mut(idx(q)) {
                    *h += 1;
                }
            }
        }
        let (mut s1, mut s2) = (0i64, 0i64);
        let (mut lo, mut hi) = (256usize, 0usize);
        for (i, &h) in hist.iter().enumerate() {
            if h != 0 {
                let v = i as i64 - 128 - in_zp as i64;
                s1 += h as i64 * v;
                s2 += h as i64 * v * v;
                lo = lo.min(i);
                hi = i;
            }
        }
        if lo > hi {
            continue;
        }
        let big_r = group_scale(n, s1, s2, eps_q32);
        // num(q)·R for the lowest q present, then + n·R per step.
        let prod = ((n * (lo as i64 - 128 - in_zp as i64) - s1) as i128) * big_r;
        z_steps(prod, n as i128 * big_r, ztab.get_mut(lo..hi + 1).unwrap_or(&mut []));
        let tables = hi + 1 - lo < pixels;
        let mut j0 = 0;
        while j0 < cg {
            let m = OT.min(cg - j0);
            let k0 = c0 + j0;
            let mut rq = [(Rq::default(), 0i32, None); OT];
            for (j, e) in rq.iter_mut().enumerate().take(m) {
                let k = k0 + j;
                let (mk, sk, b) = (le_i32(mult, k), le_i32(shift, k), le_i32(bias, k));
                // The usual parameters: one 64-bit multiply-add with out_zp + b
                // folded in (exact: add_stage bounds |out_zp + b| < 2^29, and
                // |mbqm(z)| ≤ 2^30 for a right shift, so neither saturating add
                // saturates).
                let st = out_zp.checked_add(b).and_then(|zb| add_stage(mk, sk, zb, 0, false));
                *e = (Rq::new(mk, sk), b, st);
            }
            let out = |z: i32, (rq, b, st): (Rq, i32, Option<[i32; 6]>)| match st {
                Some(k) => add_stage_apply(&k, z).clamp(-128, 127) as i8,
                None => sat8(out_zp.saturating_add(rq.apply(z)).saturating_add(b), -128, 127),
            };
            if tables {
                for (t, &e) in otab.iter_mut().zip(&rq).take(m) {
                    for (o, &z) in t.iter_mut().zip(&ztab).take(hi + 1).skip(lo) {
                        *o = out(z, e);
                    }
                }
                for (px, ypx) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                    let xs = px.get(k0..k0 + m).unwrap_or(&[]);
                    let ys = ypx.get_mut(k0..k0 + m).unwrap_or(&mut []);
                    for ((yv, &q), t) in ys.iter_mut().zip(xs).zip(&otab) {
                        *yv = t.get(idx(q)).copied().unwrap_or(0);
                    }
                }
            } else {
                for (px, ypx) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                    let xs = px.get(k0..k0 + m).unwrap_or(&[]);
                    let ys = ypx.get_mut(k0..k0 + m).unwrap_or(&mut []);
                    for ((yv, &q), &e) in ys.iter_mut().zip(xs).zip(&rq) {
                        *yv = out(ztab.get(idx(q)).copied().unwrap_or(0), e);
                    }
                }
            }
            j0 += m;
        }
    }
}

/// Channels whose output tables (256 bytes each) are built at once.
const OT: usize = 8;

#[cfg(test)]
mod tests {
    use super::scale::{div_fast, isqrt_fast, isqrt_u128};
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::E16;

    #[test]
    fn z_steps_match_i128() {
        let mut r = Rng(29);
        for case in 0..3000 {
            let p0 = ((r.next() as i128) << 64 | r.next() as i128) >> (r.next() % 100 + 17);
            let p0 = if case % 3 == 0 { p0 - p0 % (1 << 45) } else { p0 };
            let step =
                (((r.next() as i128) << 64 | r.next() as i128) >> (r.next() % 100 + 17)).abs();
            let step = if case % 5 == 0 { step - step % (1 << 44) } else { step };
            let len = r.range(0, 256) as usize;
            let mut z = vec![0i32; len];
            z_steps(p0, step, &mut z);
            for (i, &zv) in z.iter().enumerate() {
                let want = round_shift_i128(p0 + i as i128 * step, 46)
                    .clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                assert_eq!(zv, want, "case {case} i {i}");
            }
        }
    }

    /// The estimate-and-correct root and quotient equal the exact ones across
    /// every magnitude, squares, their neighbours and the extremes included.
    #[test]
    fn fast_root_and_quotient_are_exact() {
        let mut r = Rng(0x5e);
        let mut vals = vec![0u128, 1, 2, 3, 4, u128::MAX, 1 << 124, (1 << 124) - 1, 1 << 78];
        for bits in 1..128u32 {
            let base =
                (r.next() as u128) << 96 | (r.next() as u128) << 64 | (r.next() as u128) << 32;
            let v = (base | r.next() as u128) >> (128 - bits);
            vals.push(v);
            let sq = (v >> (bits / 2 + 1)) * (v >> (bits / 2 + 1));
            vals.extend([sq, sq.wrapping_sub(1), sq + 1]);
        }
        for &v in &vals {
            assert_eq!(isqrt_fast(v), isqrt_u128(v), "isqrt {v}");
            for &b in vals.iter().step_by(7) {
                let want = v.checked_div(b).unwrap_or(0);
                assert_eq!(div_fast(v, b), want, "{v} / {b}");
            }
        }
        for _ in 0..20_000 {
            let n = r.range(1, 1 << 24);
            let s1 = r.range(-(1 << 30), 1 << 30);
            let s2 = (s1 as i128 * s1 as i128 / n as i128) as i64 + r.range(0, 1 << 30);
            let eps = [0u64, 1, 1 << 20, 1 << 56][(r.next() % 4) as usize];
            let d = (n as i128 * s2 as i128 - s1 as i128 * s1 as i128).max(0) as u128;
            let vv = (d << 32) + eps as u128 * (n as u128 * n as u128);
            let root = isqrt_u128(vv);
            let want = ((1u128 << 78) + root / 2).checked_div(root).unwrap_or(0) as i128;
            assert_eq!(group_scale(n, s1, s2, eps), want, "n {n} s1 {s1} s2 {s2} eps {eps}");
        }
    }

    #[test]
    fn isqrt_exact() {
        let mut r = Rng(3);
        for _ in 0..10000 {
            let v = (r.next() as u128) << (r.next() % 60) | r.next() as u128;
            let s = isqrt_u128(v);
            assert!(s * s <= v && (s + 1) * (s + 1) > v);
        }
        assert_eq!(isqrt_u128(0), 0);
        assert_eq!(isqrt_u128(u128::MAX), u64::MAX as u128);
    }

    #[test]
    fn group_norm_matches_f64() {
        let mut r = Rng(11);
        for case in 0..400 {
            let groups = r.range(1, 4) as usize;
            // Up to 20 channels per group: several passes of OT channels.
            let c = groups * if case % 4 == 1 { r.range(9, 20) } else { r.range(1, 4) } as usize;
            // Some groups have more pixels than distinct values (output tables).
            let hw = if case % 5 == 0 { r.range(250, 400) } else { r.range(1, 40) } as usize;
            let in_zp = r.range(-128, 127) as i32;
            let out_zp = r.range(-10, 10) as i32;
            // Narrow-ish input ranges exercise small variances too.
            let spread = r.range(0, 127);
            let centre = r.range(-100, 100);
            let x: Vec<i8> = (0..hw * c)
                .map(|_| (centre + r.range(-spread, spread)).clamp(-128, 127) as i8)
                .collect();
            let s_in = 0.02;
            let eps = 1e-5;
            let eps_q32 = (eps / (s_in * s_in) * 2f64.powi(32)).round() as u64;
            let s_out = 0.03;
            let gamma: Vec<f64> = (0..c).map(|_| r.f64() * 2.0 - 1.0).collect();
            let beta: Vec<f64> = (0..c).map(|_| r.f64() - 0.5).collect();
            let (mut mult, mut shift, mut bias) = (vec![], vec![], vec![]);
            for k in 0..c {
                let (m, s) = quantize_multiplier(gamma[k] / (s_out * 65536.0));
                mult.push(m);
                shift.push(s);
                // Now and then a bias far outside the usual range (the kernel's
                // folded constant no longer applies: its general path).
                let b = match (case % 7, k % 3) {
                    (3, 0) => i32::MAX - r.range(0, 300) as i32,
                    (3, 1) => -(1 << 29) - r.range(0, 300) as i32,
                    _ => (beta[k] / s_out).round() as i32,
                };
                bias.push(b);
            }
            let mut y = vec![0i8; hw * c];
            let mut y_ref = vec![0i8; hw * c];
            group_norm_reference(
                &x,
                c,
                &mut y_ref,
                groups,
                in_zp,
                out_zp,
                eps_q32,
                &i32_bytes(&mult),
                &i32_bytes(&shift),
                &i32_bytes(&bias),
            );
            group_norm(
                &x,
                c,
                &mut y,
                groups,
                in_zp,
                out_zp,
                eps_q32,
                &i32_bytes(&mult),
                &i32_bytes(&shift),
                &i32_bytes(&bias),
            );
            assert_eq!(y, y_ref, "case {case}: table kernel vs reference");
            // The histogram kernel of 32-bit targets, whatever this host runs.
            let mut y_hist = vec![0i8; hw * c];
            group_norm_hist(
                &x,
                c,
                &mut y_hist,
                groups,
                in_zp,
                out_zp,
                eps_q32,
                &i32_bytes(&mult),
                &i32_bytes(&shift),
                &i32_bytes(&bias),
            );
            assert_eq!(y_hist, y_ref, "case {case}: histogram kernel vs reference");
            if case % 7 == 3 {
                continue;
            }
            let cg = c / groups;
            for g in 0..groups {
                let vals: Vec<f64> = (0..hw)
                    .flat_map(|p| (0..cg).map(move |k| (p, g * cg + k)))
                    .map(|(p, k)| (x[p * c + k] as i32 - in_zp) as f64)
                    .collect();
                let n = vals.len() as f64;
                let mu = vals.iter().sum::<f64>() / n;
                let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n;
                for p in 0..hw {
                    for k in g * cg..(g + 1) * cg {
                        let v = (x[p * c + k] as i32 - in_zp) as f64;
                        let z = (v - mu) / (var + eps_q32 as f64 / 2f64.powi(32)).sqrt();
                        let want = (out_zp as f64
                            + z * real_of(mult[k], shift[k]) * 65536.0
                            + bias[k] as f64)
                            .round()
                            .clamp(-128.0, 127.0);
                        // ±1 LSB: z is Q16 and the multiplier rounding differs from
                        // one exact f64 rounding; the bias is added after rounding.
                        let got = y[p * c + k] as f64;
                        assert!((got - want).abs() <= 1.0, "case {case}: got {got} want {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn group_norm_i16_normalizes() {
        // Output Q: γ = 1, β = 0, output scale 1/4096 → z·4096 ≈ (x − μ)/σ·4096.
        let mut r = Rng(0x6e);
        for _ in 0..20 {
            let (pixels, c, groups) = (r.range(4, 60) as usize, 4usize, 2usize);
            let x: Vec<i16> = (0..pixels * c).map(|_| r.range(-20000, 20000) as i16).collect();
            let (m, s) = quantize_multiplier(4096.0 / 65536.0);
            let mult = i32_bytes(&vec![m; c]);
            let shift = i32_bytes(&vec![s; c]);
            let bias = i32_bytes(&vec![0; c]);
            let mut yb = vec![0u8; pixels * c * 2];
            group_norm_mixed_reference::<E16, E16>(
                &i16_bytes(&x),
                c,
                &mut yb,
                groups,
                0,
                0,
                0,
                &mult,
                &shift,
                &bias,
            );
            let got = from_i16_bytes(&yb);
            let cg = c / groups;
            for g in 0..groups {
                let vals: Vec<f64> = (0..pixels)
                    .flat_map(|p| (0..cg).map(move |k| (p, g * cg + k)))
                    .map(|(p, k)| x[p * c + k] as f64)
                    .collect();
                let n = vals.len() as f64;
                let mu = vals.iter().sum::<f64>() / n;
                let sd = (vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n).sqrt();
                for p in 0..pixels {
                    for k in g * cg..(g + 1) * cg {
                        let want =
                            ((x[p * c + k] as f64 - mu) / sd * 4096.0).clamp(-32768.0, 32767.0);
                        assert!(
                            (got[p * c + k] as f64 - want).abs() <= 1.0,
                            "{} vs {want}",
                            got[p * c + k]
                        );
                    }
                }
            }
        }
    }
}

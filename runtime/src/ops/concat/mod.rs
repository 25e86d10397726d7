//! CONCAT along channels. Each input is requantized into the output:
//! `y = out_zp + MBQM(q − in_zp, mult, shift)`, or copied as `q − in_zp + out_zp`
//! when `mult == 0` (equal scales).
//!
//! [`concat_one`] (int8) and [`concat_one_mixed`] (any int8/int16 pair): portable,
//! every target; the staged loop on eight lanes with AVX2 on x86_64 hosts (`std`).

use crate::ops::numerics::stage::{add_stage, add_stage_apply};
#[cfg(all(feature = "std", target_arch = "x86_64"))]
use crate::ops::numerics::stage::{load8, store8, VStage};
use crate::ops::numerics::{as_u8, as_u8_mut, mbqm, sat8, Elem, Rq, E8};

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
        let (xb, yb) = (as_u8(x), as_u8_mut(y));
        return concat_one_mixed::<E8, E8>(xb, c_in, yb, c_out, c_off, in_zp, out_zp, mult, shift);
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

/// One input of CONCAT (input `X`, output `Y`): channels `c_off..c_off + c_in` of
/// every output pixel; `mult = 0` copies (`q − in_zp + out_zp`).
#[allow(clippy::too_many_arguments)]
pub fn concat_one_mixed<X: Elem, Y: Elem>(
    x: &[u8],
    c_in: usize,
    y: &mut [u8],
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
    let rq = Rq::new(mult, shift);
    let pixels = (X::count(x) / c_in).min(Y::count(y) / c_out);
    let runs = (0..pixels).map(|px| {
        let xr = px * c_in * X::BYTES..(px + 1) * c_in * X::BYTES;
        let yr = (px * c_out + c_off) * Y::BYTES..(px * c_out + c_off + c_in) * Y::BYTES;
        (xr, yr)
    });
    if c_off + c_in <= c_out && X::BYTES == Y::BYTES && mult == 0 && in_zp == out_zp {
        // Equal scales and zero points, same type: each pixel's run is copied.
        for (xr, yr) in runs {
            if let (Some(xs), Some(ys)) = (x.get(xr), y.get_mut(yr)) {
                ys.copy_from_slice(xs);
            }
        }
        return;
    }
    // The usual multipliers: out_zp + mbqm(v) as one 64-bit multiply-add
    // ([`add_stage`]; |mbqm(v)| ≤ |v| here, so the saturating add is exact).
    const RUN: usize = 128;
    let stage = if mult == 0 { None } else { add_stage(mult, shift, out_zp, 0, true) };
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if let Some(k) = stage.filter(|_| c_off + c_in <= c_out && c_in % 8 == 0) {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { concat_stage_avx2::<X, Y>(x, c_in, y, c_out, c_off, in_zp, &k, pixels) };
            return;
        }
    }
    if let Some(k) = stage.filter(|_| c_off + c_in <= c_out && c_in <= RUN) {
        let mut buf = [0i32; RUN];
        for (xr, yr) in runs {
            if let (Some(xs), Some(ys)) = (x.get(xr), y.get_mut(yr)) {
                for (o, v) in buf.iter_mut().zip(X::iter(xs)) {
                    *o = add_stage_apply(&k, v - in_zp).clamp(Y::MIN, Y::MAX);
                }
                Y::put_all(ys, buf.get(..c_in).unwrap_or(&[]));
            }
        }
        return;
    }
    for px in 0..pixels {
        for k in 0..c_in {
            let v = X::get(x, px * c_in + k) - in_zp;
            let o = if mult == 0 { v + out_zp } else { out_zp.saturating_add(rq.apply(v)) };
            Y::put_clamped(y, px * c_out + c_off + k, o, Y::MIN, Y::MAX);
        }
    }
}

/// The staged loop of [`concat_one_mixed`] on AVX2, eight channels per step
/// ([`VStage`]; the packs saturate to `Y`, the scalar loop's clamp), for
/// `c_in` a multiple of 8.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn concat_stage_avx2<X: Elem, Y: Elem>(
    x: &[u8],
    c_in: usize,
    y: &mut [u8],
    c_out: usize,
    c_off: usize,
    in_zp: i32,
    k: &[i32; 6],
    pixels: usize,
) {
    use core::arch::x86_64::*;
    // SAFETY: AVX2 is enabled in this function.
    let st = unsafe { VStage::new(k) };
    let zp = _mm256_set1_epi32(in_zp);
    for px in 0..pixels {
        for j in (0..c_in).step_by(8) {
            // SAFETY: AVX2 is enabled here.
            unsafe {
                let Some(v) = load8::<X>(x, px * c_in + j) else { return };
                store8::<Y>(y, px * c_out + c_off + j, st.apply(_mm256_sub_epi32(v, zp)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::E16;

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

    /// CONCAT's fast paths (run copy, one 64-bit multiply-add) against the
    /// definition, `clamp(out_zp ⊕ mbqm(q − in_zp))`, for every type pair,
    /// zero multipliers, shift 0, right and left shifts and negative multipliers.
    #[test]
    fn concat_one_matches_definition() {
        fn case<X: Elem, Y: Elem>(r: &mut Rng, case: u32) {
            // A third of the cases with 8 or 16 channels (the AVX2 loop's).
            let c_in =
                if case % 3 == 0 { 8 * r.range(1, 2) as usize } else { r.range(1, 20) as usize };
            let hw = r.range(1, 6) as usize;
            let c_off = r.range(0, 5) as usize;
            let c_out = c_off + c_in + r.range(0, 3) as usize;
            let xv: Vec<i32> =
                (0..hw * c_in).map(|_| r.range(X::MIN as i64, X::MAX as i64) as i32).collect();
            let mut x = vec![0u8; hw * c_in * X::BYTES];
            for (i, &v) in xv.iter().enumerate() {
                X::put(&mut x, i, v);
            }
            let zp = |r: &mut Rng, e: usize| if e == 2 { 0 } else { r.range(-128, 127) as i32 };
            let (in_zp, out_zp) = (zp(r, X::BYTES), zp(r, Y::BYTES));
            let (in_zp, out_zp) = if case % 5 == 0 { (in_zp, in_zp) } else { (in_zp, out_zp) };
            let (mult, shift) = match case % 6 {
                0 => (0, 0),
                1 => (1 << 30, 0),
                2 => quantize_multiplier(0.5 + r.f64() * 0.49),
                3 => quantize_multiplier(3.0 + r.f64() * 100.0),
                4 => quantize_multiplier(-0.3),
                _ => quantize_multiplier(r.f64() * 0.01 + 1e-4),
            };
            let fill = r.range(-100, 100) as u8;
            let mut y = vec![fill; hw * c_out * Y::BYTES];
            let mut want = y.clone();
            concat_one_mixed::<X, Y>(&x, c_in, &mut y, c_out, c_off, in_zp, out_zp, mult, shift);
            for p in 0..hw {
                for k in 0..c_in {
                    let v = xv[p * c_in + k] - in_zp;
                    let o = if mult == 0 {
                        v + out_zp
                    } else {
                        out_zp.saturating_add(mbqm(v, mult, shift))
                    };
                    Y::put(&mut want, p * c_out + c_off + k, o.clamp(Y::MIN, Y::MAX));
                }
            }
            assert_eq!(y, want, "case {case}: mult {mult} shift {shift} zp {in_zp} {out_zp}");
        }
        let mut r = Rng(0xc1);
        for i in 0..4000u32 {
            match i % 4 {
                0 => case::<E8, E8>(&mut r, i / 4),
                1 => case::<E8, E16>(&mut r, i / 4),
                2 => case::<E16, E8>(&mut r, i / 4),
                _ => case::<E16, E16>(&mut r, i / 4),
            }
        }
    }

    #[test]
    fn concat_mixed() {
        let mut r = Rng(0xc0);
        let a: Vec<i16> = (0..12).map(|_| r.next() as i16).collect();
        let b = r.vec_i8(6);
        let bb: Vec<u8> = b.iter().map(|&v| v as u8).collect();
        let mut yb = vec![0u8; 18 * 2];
        concat_one_mixed::<E16, E16>(&i16_bytes(&a), 2, &mut yb, 3, 0, 0, 0, 0, 0);
        let (m, s) = quantize_multiplier(256.0);
        concat_one_mixed::<E8, E16>(&bb, 1, &mut yb, 3, 2, 3, 0, m, s);
        let y = from_i16_bytes(&yb);
        for p in 0..6 {
            assert_eq!(y[p * 3], a[p * 2] as i32);
            assert_eq!(y[p * 3 + 1], a[p * 2 + 1] as i32);
            assert_eq!(y[p * 3 + 2], ((b[p] as i32 - 3) * 256).clamp(-32768, 32767));
        }
    }
}

//! ADD: TFLite's quantized add.
//!
//! `a' = MBQM((a − a_zp) << left_shift, a_mult, a_shift)`, same for `b`;
//! `y = clamp(out_zp + MBQM(a' + b', out_mult, out_shift), act)`.
//! `broadcast`: `b` is `1×1×c`, added to every pixel of `a`.

use super::{mbqm, sat8, Rq};

/// Parameters of ADD (FORMAT.md order).
#[derive(Clone, Copy, Debug)]
pub struct AddParams {
    /// `a` zero point.
    pub a_zp: i32,
    /// `b` zero point.
    pub b_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Left shift applied to both inputs (TFLite: 20).
    pub left_shift: i32,
    /// `a` multiplier.
    pub a_mult: i32,
    /// `a` shift.
    pub a_shift: i32,
    /// `b` multiplier.
    pub b_mult: i32,
    /// `b` shift.
    pub b_shift: i32,
    /// Output multiplier.
    pub out_mult: i32,
    /// Output shift.
    pub out_shift: i32,
    /// Activation min.
    pub act_min: i32,
    /// Activation max.
    pub act_max: i32,
}

#[inline]
fn add1(a: i8, b: i8, p: &AddParams) -> i8 {
    let ls = p.left_shift.clamp(0, 23);
    let av = mbqm((a as i32 - p.a_zp) << ls, p.a_mult, p.a_shift);
    let bv = mbqm((b as i32 - p.b_zp) << ls, p.b_mult, p.b_shift);
    let v = p.out_zp.saturating_add(mbqm(av.saturating_add(bv), p.out_mult, p.out_shift));
    sat8(v, p.act_min, p.act_max)
}

/// Adds `a` and `b` into `y`; with `broadcast`, `b` has `c` elements.
///
/// Bit-identical to [`add_reference`]: each input's rescaled value depends on its
/// int8 value only, so it is tabulated (256 entries, or `b`'s `c` values), leaving
/// one MBQM per element; with `broadcast` and more than 256 pixels each channel's
/// output is tabulated too.
pub fn add(a: &[i8], b: &[i8], y: &mut [i8], c: usize, broadcast: bool, p: &AddParams) {
    if cfg!(feature = "reference-kernels") || y.len() < 1024 {
        return add_reference(a, b, y, c, broadcast, p);
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // The staged kernel's sums wrap where this file's saturate; with a
        // pre-shift of at most 22, |a'| + |b'| ≤ 2·(255·2^22 + 1) < 2^31 − 128, so
        // neither ever overflows and the two agree.
        if p.left_shift.clamp(0, 23) <= 22 && super::wide::add_i8_avx2(a, b, y, c, broadcast, p) {
            return;
        }
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { add_avx2(a, b, y, c, broadcast, p) };
    }
    add_tables(a, b, y, c, broadcast, p)
}

/// [`add_tables`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(a: &[i8], b: &[i8], y: &mut [i8], c: usize, broadcast: bool, p: &AddParams) {
    add_tables(a, b, y, c, broadcast, p)
}

/// The tabulated kernel behind [`add`].
#[inline(always)]
fn add_tables(a: &[i8], b: &[i8], y: &mut [i8], c: usize, broadcast: bool, p: &AddParams) {
    let ls = p.left_shift.clamp(0, 23);
    let scaled = |q: i32, zp: i32, m: i32, s: i32| mbqm((q - zp) << ls, m, s);
    let ta: [i32; 256] =
        core::array::from_fn(|i| scaled(i as i32 - 128, p.a_zp, p.a_mult, p.a_shift));
    let ta_of = |q: i8| ta.get((q as i32 + 128) as usize).copied().unwrap_or(0);
    let orq = Rq::new(p.out_mult, p.out_shift);
    let out = |s: i32| sat8(p.out_zp.saturating_add(orq.apply(s)), p.act_min, p.act_max);
    if broadcast {
        let c = c.max(1);
        let pixels = a.len().min(y.len()) / c;
        let mut otab = [0i8; 256];
        for (k, &bq) in b.iter().enumerate().take(c) {
            let bv = scaled(bq as i32, p.b_zp, p.b_mult, p.b_shift);
            let xs = a.get(k..).unwrap_or(&[]).iter().step_by(c).take(pixels);
            let ys = y.get_mut(k..).unwrap_or(&mut []).iter_mut().step_by(c).take(pixels);
            if pixels > 256 {
                for (o, &av) in otab.iter_mut().zip(&ta) {
                    *o = out(av.saturating_add(bv));
                }
                for (yv, &q) in ys.zip(xs) {
                    *yv = otab.get((q as i32 + 128) as usize).copied().unwrap_or(0);
                }
            } else {
                for (yv, &q) in ys.zip(xs) {
                    *yv = out(ta_of(q).saturating_add(bv));
                }
            }
        }
    } else {
        let tb: [i32; 256] =
            core::array::from_fn(|i| scaled(i as i32 - 128, p.b_zp, p.b_mult, p.b_shift));
        for ((yv, &av), &bv) in y.iter_mut().zip(a).zip(b) {
            let sb = tb.get((bv as i32 + 128) as usize).copied().unwrap_or(0);
            *yv = out(ta_of(av).saturating_add(sb));
        }
    }
}

/// The plain definition, three MBQMs per element (the kernel with
/// `reference-kernels`, and for small tensors).
pub fn add_reference(a: &[i8], b: &[i8], y: &mut [i8], c: usize, broadcast: bool, p: &AddParams) {
    super::zip_broadcast(a, b, y, c, broadcast, |av, bv| add1(av, bv, p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;

    #[test]
    fn add_matches_f64() {
        let mut r = Rng(21);
        for case in 0..300 {
            let (sa, sb, so) = (0.01 + r.f64() * 0.1, 0.01 + r.f64() * 0.1, 0.02 + r.f64() * 0.2);
            // TFLite's construction: twice the max input scale as the common scale.
            let two_max = 2.0 * sa.max(sb);
            let (a_mult, a_shift) = quantize_multiplier(sa / two_max);
            let (b_mult, b_shift) = quantize_multiplier(sb / two_max);
            // Every pre-shift the AVX2 kernel takes (≤ 22) and one it leaves.
            let ls = [20, 20, 21, 22, 23][case % 5];
            let (out_mult, out_shift) = quantize_multiplier(two_max / ((1 << ls) as f64 * so));
            let p = AddParams {
                a_zp: r.range(-128, 127) as i32,
                b_zp: r.range(-128, 127) as i32,
                out_zp: r.range(-128, 127) as i32,
                left_shift: ls,
                a_mult,
                a_shift,
                b_mult,
                b_shift,
                out_mult,
                out_shift,
                act_min: if case % 4 == 1 { r.range(-128, 0) as i32 } else { -128 },
                act_max: if case % 4 == 2 { r.range(0, 127) as i32 } else { 127 },
            };
            let c = if case % 3 == 0 { r.range(8, 40) } else { r.range(1, 8) } as usize;
            // Larger tensors take the table path.
            let n = c * if r.next() % 2 == 0 { r.range(1, 8) } else { r.range(150, 400) } as usize;
            let a = r.vec_i8(n);
            let broadcast = r.next() % 2 == 0;
            let b = r.vec_i8(if broadcast { c } else { n });
            let mut y = vec![0i8; n];
            add(&a, &b, &mut y, c, broadcast, &p);
            let mut y_ref = vec![0i8; n];
            add_reference(&a, &b, &mut y_ref, c, broadcast, &p);
            assert_eq!(y, y_ref, "table kernel vs reference");
            // At 23 the shifted inputs' sum can saturate: bit-exactness only.
            for i in (0..n).filter(|_| ls < 23) {
                let bv = if broadcast { b[i % c] } else { b[i] };
                let real = sa * (a[i] as i32 - p.a_zp) as f64 + sb * (bv as i32 - p.b_zp) as f64;
                let want =
                    (p.out_zp as f64 + real / so).round().clamp(p.act_min as f64, p.act_max as f64);
                // ±1 LSB: three MBQM roundings (TFLite's own tolerance for add).
                assert!((y[i] as f64 - want).abs() <= 1.0, "{} vs {want}", y[i]);
            }
        }
    }
}

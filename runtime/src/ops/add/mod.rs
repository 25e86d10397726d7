//! ADD: TFLite's quantized add.
//!
//! `a' = MBQM((a − a_zp) << left_shift, a_mult, a_shift)`, same for `b`;
//! `y = clamp(out_zp + MBQM(a' + b', out_mult, out_shift), act)`.
//! `broadcast`: `b` is `1×1×c`, added to every pixel of `a`.
//!
//! Int8 tensors: [`add`] (tables; AVX2 staged kernel on x86_64 hosts) and
//! [`add_reference`]. Any int8/int16 mix: [`add_mixed`] (an `SMLAL` assembly
//! loop on Armv7E-M for an int16 first input, AVX2 stages on x86_64 hosts) and
//! [`add_mixed_portable`].
//!
//! Fast kernels beside them: `armv7em.rs` (Cortex-M4/M7), `x86_avx2.rs`
//! (x86_64 with AVX2, the `std` feature).

#[cfg(ddpm_dsp)]
use crate::ops::numerics::stage::add_stage;
use crate::ops::numerics::{mbqm, sat8, zip_broadcast, Elem, Rq};

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86_avx2;

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
        if p.left_shift.clamp(0, 23) <= 22 && x86_avx2::add_i8_avx2(a, b, y, c, broadcast, p) {
            return;
        }
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86_avx2::add_avx2(a, b, y, c, broadcast, p) };
    }
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
    zip_broadcast(a, b, y, c, broadcast, |av, bv| add1(av, bv, p));
}

/// ADD with inputs `A`, `B` and output `Y` (`left_shift` ≤ 15 when an input is
/// int16, so `v << left_shift` fits i32); `broadcast`: `b` is `1×1×c`.
pub fn add_mixed<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86_avx2::add_mixed_avx2::<A, B, Y>(a, b, y, c, broadcast, p) };
    }
    #[cfg(ddpm_dsp)]
    if armv7em::add16::<A, B, Y>(a, b, y, c, broadcast, p) {
        return;
    }
    add_body::<A, B, Y>(a, b, y, c, broadcast, p)
}

/// [`add_mixed`] without the Armv7E-M fast path (the reference it is checked against).
pub fn add_mixed_portable<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    add_body::<A, B, Y>(a, b, y, c, broadcast, p)
}

/// The Armv7E-M loops of [`add_mixed`] (int16 first input).
#[cfg(ddpm_dsp)]
mod armv7em;

#[inline(always)]
fn add_body<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    let (ra, rb, ro) = (
        Rq::new(p.a_mult, p.a_shift),
        Rq::new(p.b_mult, p.b_shift),
        Rq::new(p.out_mult, p.out_shift),
    );
    let ls = p.left_shift.clamp(0, 23) as u32;
    let (na, nb, ny) = (A::count(a), B::count(b), Y::count(y));
    let c = c.max(1);
    let shapes_ok = if broadcast { nb == c && na % c == 0 } else { nb == na } && ny == na;
    if shapes_ok && !(ra.is_general() || rb.is_general() || ro.is_general()) {
        // The usual right-shift parameters: the same formula without branches, over
        // contiguous elements.
        let one = |va: i32, vb: i32| {
            let va = (va - p.a_zp).wrapping_shl(ls);
            let vb = (vb - p.b_zp).wrapping_shl(ls);
            let s = ra.apply_shift_right(va).wrapping_add(rb.apply_shift_right(vb));
            p.out_zp.wrapping_add(ro.apply_shift_right(s))
        };
        // Blocks of up to CH results, computed into a buffer, then stored.
        const CH: usize = 64;
        let mut buf = [0i32; CH];
        let out = |v: i32| v.max(p.act_min).min(p.act_max).clamp(Y::MIN, Y::MAX);
        if broadcast && c <= CH {
            for (ypx, apx) in y.chunks_exact_mut(c * Y::BYTES).zip(a.chunks_exact(c * A::BYTES)) {
                for ((o, va), vb) in buf.iter_mut().zip(A::iter(apx)).zip(B::iter(b)) {
                    *o = out(one(va, vb));
                }
                Y::put_all(ypx, &buf);
            }
        } else if broadcast {
            for (ypx, apx) in y.chunks_exact_mut(c * Y::BYTES).zip(a.chunks_exact(c * A::BYTES)) {
                for (k, (va, vb)) in A::iter(apx).zip(B::iter(b)).enumerate() {
                    Y::put_clamped(ypx, k, one(va, vb), p.act_min, p.act_max);
                }
            }
        } else {
            let blocks = y.chunks_mut(CH * Y::BYTES).zip(a.chunks(CH * A::BYTES));
            for ((yb, ab), bb) in blocks.zip(b.chunks(CH * B::BYTES)) {
                for ((o, va), vb) in buf.iter_mut().zip(A::iter(ab)).zip(B::iter(bb)) {
                    *o = out(one(va, vb));
                }
                Y::put_all(yb, &buf);
            }
        }
        return;
    }
    for i in 0..Y::count(y).min(A::count(a)) {
        let bi = if broadcast { i % c } else { i };
        let va = (A::get(a, i) - p.a_zp).wrapping_shl(ls);
        let vb = (B::get(b, bi) - p.b_zp).wrapping_shl(ls);
        let s = ra.apply(va).wrapping_add(rb.apply(vb));
        let o = p.out_zp.wrapping_add(ro.apply(s));
        Y::put_clamped(y, i, o, p.act_min, p.act_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::{E16, E8};

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

    #[test]
    fn add_mixed_matches_f64() {
        let mut r = Rng(0xadd);
        for _ in 0..200 {
            let n = 24;
            let a: Vec<i16> = (0..n).map(|_| r.range(-30000, 30000) as i16).collect();
            let b = r.vec_i8(4);
            let (sa, sb, so) = (1e-4, 0.02, 2e-4 + r.f64() * 1e-4);
            let twice = 2.0 * f64::max(sa, sb);
            let (am, ash) = quantize_multiplier(sa / twice);
            let (bm, bsh) = quantize_multiplier(sb / twice);
            let (om, osh) = quantize_multiplier(twice / ((1 << 15) as f64 * so));
            let b_zp = r.range(-128, 127) as i32;
            let p = AddParams {
                a_zp: 0,
                b_zp,
                out_zp: 0,
                left_shift: 15,
                a_mult: am,
                a_shift: ash,
                b_mult: bm,
                b_shift: bsh,
                out_mult: om,
                out_shift: osh,
                act_min: -32768,
                act_max: 32767,
            };
            let bb: Vec<u8> = b.iter().map(|&v| v as u8).collect();
            let mut yb = vec![0u8; n * 2];
            add_mixed::<E16, E8, E16>(&i16_bytes(&a), &bb, &mut yb, 4, true, &p);
            for (i, y) in from_i16_bytes(&yb).into_iter().enumerate() {
                let real = a[i] as f64 * sa + (b[i % 4] as i32 - b_zp) as f64 * sb;
                let want = (real / so).round().clamp(-32768.0, 32767.0);
                assert!((y as f64 - want).abs() <= 2.0, "{y} vs {want}");
            }
        }
    }

    /// `add` (branch-free contiguous path and general loop) against the definition,
    /// element by element with `mbqm`: every type combination, broadcast or not,
    /// right-shift and general (left-shift) multipliers, odd lengths.
    #[test]
    fn add_matches_definition_bit_for_bit() {
        fn def<A: Elem, B: Elem, Y: Elem>(
            a: &[u8],
            b: &[u8],
            y: &mut [u8],
            c: usize,
            bc: bool,
            p: &AddParams,
        ) {
            let ls = p.left_shift.clamp(0, 23) as u32;
            for i in 0..Y::count(y).min(A::count(a)) {
                let va = (A::get(a, i) - p.a_zp).wrapping_shl(ls);
                let vb = (B::get(b, if bc { i % c } else { i }) - p.b_zp).wrapping_shl(ls);
                let s = mbqm(va, p.a_mult, p.a_shift).wrapping_add(mbqm(vb, p.b_mult, p.b_shift));
                let o = p.out_zp.wrapping_add(mbqm(s, p.out_mult, p.out_shift));
                Y::put_clamped(y, i, o, p.act_min, p.act_max);
            }
        }
        fn bytes<E: Elem>(r: &mut Rng, n: usize) -> Vec<u8> {
            let mut v = vec![0u8; n * E::BYTES];
            for i in 0..n {
                E::put(&mut v, i, r.range(E::MIN as i64, E::MAX as i64) as i32);
            }
            v
        }
        fn case<A: Elem, B: Elem, Y: Elem>(r: &mut Rng, p: &AddParams) {
            let c = r.range(1, 9) as usize;
            let pixels = r.range(1, 40) as usize;
            let bc = r.next() % 2 == 0;
            let a = bytes::<A>(r, pixels * c);
            let b = bytes::<B>(r, if bc { c } else { pixels * c });
            let (mut got, mut want) =
                (vec![0u8; pixels * c * Y::BYTES], vec![0u8; pixels * c * Y::BYTES]);
            add_mixed::<A, B, Y>(&a, &b, &mut got, c, bc, p);
            def::<A, B, Y>(&a, &b, &mut want, c, bc, p);
            assert_eq!(got, want, "{p:?} c {c} broadcast {bc}");
        }
        let mut r = Rng(0xadd5);
        for i in 0..300 {
            let mut q = || {
                let (m, s) =
                    quantize_multiplier(r.f64() * if i % 5 == 0 { 4.0 } else { 0.5 } + 1e-6);
                (if r.next() % 7 == 0 { -m } else { m }, s)
            };
            let ((am, ash), (bm, bsh), (om, osh)) = (q(), q(), q());
            let p = AddParams {
                a_zp: r.range(-128, 127) as i32,
                b_zp: r.range(-128, 127) as i32,
                out_zp: r.range(-128, 127) as i32,
                left_shift: [0, 7, 15][i % 3],
                a_mult: am,
                a_shift: ash,
                b_mult: bm,
                b_shift: bsh,
                out_mult: om,
                out_shift: osh,
                act_min: r.range(-40000, 0) as i32,
                act_max: r.range(0, 40000) as i32,
            };
            case::<E8, E8, E16>(&mut r, &p);
            case::<E8, E16, E8>(&mut r, &p);
            case::<E8, E16, E16>(&mut r, &p);
            case::<E16, E8, E8>(&mut r, &p);
            case::<E16, E8, E16>(&mut r, &p);
            case::<E16, E16, E8>(&mut r, &p);
            case::<E16, E16, E16>(&mut r, &p);
        }
    }
}

//! ADD on x86_64 hosts with AVX2 (the `std` feature): the int8 table kernel
//! compiled for AVX2 and the staged kernel (eight lanes of
//! [`VStage`](crate::ops::numerics::stage) constants) for every int8/int16 mix,
//! bit-identical to [`super::add_reference`] and [`super::add_mixed_portable`].

use super::{add_body, add_tables, AddParams};
use crate::ops::numerics::stage::{add_stage, add_stage_apply, load8, store8, VStage};
use crate::ops::numerics::{as_u8, as_u8_mut, Elem, E8};

/// [`add_tables`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn add_avx2(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    add_tables(a, b, y, c, broadcast, p)
}

/// [`add_mixed`] compiled for AVX2 (signed 32×32→64 products in 8 lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn add_mixed_avx2<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    // SAFETY: AVX2 is enabled in this function.
    if unsafe { add_avx2_stages::<A, B, Y>(a, b, y, c, broadcast, p) } {
        return;
    }
    add_body::<A, B, Y>(a, b, y, c, broadcast, p)
}

/// The all-int8 ADD on AVX2 through [`add_avx2_stages`]; false (nothing written)
/// when the CPU lacks AVX2 or the stages do not cover the parameters.
pub(super) fn add_i8_avx2(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) -> bool {
    if !std::is_x86_feature_detected!("avx2") {
        return false;
    }
    // SAFETY: the CPU supports AVX2 (checked just above).
    unsafe { add_avx2_stages::<E8, E8, E8>(as_u8(a), as_u8(b), as_u8_mut(y), c, broadcast, p) }
}

/// ADD on AVX2 through [`add_stage`]'s constants, eight elements per step:
/// `y = clamp(stage_out(stage_a(a − a_zp) + stage_b(b − b_zp)))`, bit-identical to
/// [`add_body`] (the stages are its MBQMs, tested against them). Broadcast `b`
/// is staged once per channel. Returns false (nothing written) for parameters
/// the stages do not cover (a left shift, a negative multiplier, an int16 input
/// with a zero point and no shift).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn add_avx2_stages<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) -> bool {
    use core::arch::x86_64::*;
    // The elements both `a` and `y` hold (as the reference's zip).
    let n = A::count(a).min(Y::count(y));
    let c = c.max(1);
    if if broadcast { B::count(b) < c || n % c != 0 } else { B::count(b) < n } {
        return false;
    }
    let ls = p.left_shift;
    // An input stage; for int8 inputs (|x − zp| ≤ 255) a pre-shift above 15 is
    // split: the stage is made for 15, which x << (ls − 15) (at most 2^15 while
    // ls ≤ 22) satisfies, and the extra shift joins the stage's own.
    let input = |mult: i32, shift: i32, bytes: usize, zp: i32| match ls {
        16..=22 if bytes == 1 => add_stage(mult, shift, 0, 15, true).map(|mut k| {
            k[5] += ls - 15;
            k
        }),
        _ => add_stage(mult, shift, 0, ls, bytes == 1 || zp == 0),
    };
    let (Some(ka), Some(kb), Some(ko)) = (
        input(p.a_mult, p.a_shift, A::BYTES, p.a_zp),
        input(p.b_mult, p.b_shift, B::BYTES, p.b_zp),
        add_stage(p.out_mult, p.out_shift, p.out_zp, 0, false),
    ) else {
        return false;
    };
    // SAFETY (all below): AVX2 is enabled in this function.
    let (sa, sb, so) = unsafe { (VStage::new(&ka), VStage::new(&kb), VStage::new(&ko)) };
    let (lo, hi) = (p.act_min.max(Y::MIN), p.act_max.min(Y::MAX));
    if lo > hi {
        return false;
    }
    let (vlo, vhi) = (_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
    let (za, zb) = (_mm256_set1_epi32(p.a_zp), _mm256_set1_epi32(p.b_zp));
    let scalar = |va: i32, vb: i32| {
        let s = add_stage_apply(&ka, va - p.a_zp).wrapping_add(add_stage_apply(&kb, vb - p.b_zp));
        add_stage_apply(&ko, s).max(lo).min(hi)
    };
    if !broadcast {
        let n8 = n / 8 * 8;
        for i in (0..n8).step_by(8) {
            // SAFETY: AVX2 is enabled here.
            unsafe {
                let (Some(xa), Some(xb)) = (load8::<A>(a, i), load8::<B>(b, i)) else {
                    return false;
                };
                let s = _mm256_add_epi32(
                    sa.apply(_mm256_sub_epi32(xa, za)),
                    sb.apply(_mm256_sub_epi32(xb, zb)),
                );
                let o = _mm256_min_epi32(_mm256_max_epi32(so.apply(s), vlo), vhi);
                store8::<Y>(y, i, o);
            }
        }
        for i in n8..n {
            Y::put(y, i, scalar(A::get(a, i), B::get(b, i)));
        }
        return true;
    }
    // Broadcast: stage_b(b) per channel once, then per pixel its c channels.
    const CMAX: usize = 256;
    if c > CMAX {
        return false;
    }
    let mut tb = [0i32; CMAX];
    for (t, vb) in tb.iter_mut().zip(B::iter(b)) {
        *t = add_stage_apply(&kb, vb - p.b_zp);
    }
    let c8 = c / 8 * 8;
    for q in 0..n / c {
        let base = q * c;
        for j in (0..c8).step_by(8) {
            // SAFETY: AVX2 is enabled here; tb has c ≥ j + 8 entries (CMAX ≥ c).
            unsafe {
                let Some(xa) = load8::<A>(a, base + j) else { return false };
                let Some(t) = tb.get(j..j + 8) else { return false };
                let s = _mm256_add_epi32(
                    sa.apply(_mm256_sub_epi32(xa, za)),
                    _mm256_loadu_si256(t.as_ptr().cast()),
                );
                let o = _mm256_min_epi32(_mm256_max_epi32(so.apply(s), vlo), vhi);
                store8::<Y>(y, base + j, o);
            }
        }
        for j in c8..c {
            let s = add_stage_apply(&ka, A::get(a, base + j) - p.a_zp)
                .wrapping_add(tb.get(j).copied().unwrap_or(0));
            Y::put(y, base + j, add_stage_apply(&ko, s).max(lo).min(hi));
        }
    }
    true
}

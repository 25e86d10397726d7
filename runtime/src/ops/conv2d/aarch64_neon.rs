//! The column kernels of [`super::host_engine`] on aarch64: the NEON pair kernel
//! (`SMLAL`, baseline) and, with the `std` feature on CPUs with the dot-product
//! extension, the engine on raw int8 columns with the `SDOT` pair kernel
//! ([`run_i8`]). A child module of `host_engine.rs`; bit-identical to its plain
//! kernels.

use super::{dot_scalar, Cols, Pair, KC, WPIX};
#[cfg(feature = "std")]
use super::{dot_scalar8, engine, PanelFn};

/// The engine on raw int8 columns for CPUs with the dot-product extension
/// (aarch64 `SDOT`: Cortex-A76 and later, such as the Raspberry Pi 5's):
/// `fill(q, k0, len, col)` writes pixel `q`'s raw window chunk, padding taps
/// `zp` (the input zero point), and `zp·Σw` is taken off the biases; otherwise
/// as [`run`]. Returns false (nothing run) when the CPU lacks `SDOT`.
#[cfg(all(feature = "std", target_arch = "aarch64"))]
#[allow(clippy::too_many_arguments)]
pub fn run_i8(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    zp: i32,
    fill: impl FnMut(usize, usize, usize, &mut [i8; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) -> bool {
    if !std::arch::is_aarch64_feature_detected!("dotprod") {
        return false;
    }
    // SAFETY: the CPU has the dot-product extension (checked just above).
    unsafe { run_sdot(npix, ksz, oc, w, bias, mult, shift, zp, fill, store) };
    true
}

/// [`engine`] on int8 columns with the `SDOT` kernel, compiled with the
/// dot-product extension.
///
/// # Safety
/// The CPU must have the dot-product extension.
#[cfg(all(feature = "std", target_arch = "aarch64"))]
#[target_feature(enable = "dotprod")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_sdot(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    zp: i32,
    fill: impl FnMut(usize, usize, usize, &mut [i8; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) {
    // SAFETY (of the kernel calls): the dot-product extension is enabled here.
    let no_panel: Option<PanelFn<i8>> = None;
    engine(
        npix,
        ksz,
        oc,
        w,
        bias,
        mult,
        shift,
        zp,
        fill,
        store,
        |c, w0, w1, a| unsafe { dot2_sdot(c, w0, w1, a) },
        no_panel,
    )
}

/// NEON pair kernel (baseline on aarch64): per 8 elements one weight load per row
/// sign-extended to i16 (`SXTL`), then `SMLAL`/`SMLAL2` widening products into i32
/// lanes, each column load feeding both rows.
#[cfg(target_arch = "aarch64")]
pub(super) fn dot2_neon(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
    use core::arch::aarch64::*;
    let n = w0.len().min(KC);
    if w1.len() != n {
        // The odd last channel: one row.
        let n8 = n / 8 * 8;
        // SAFETY: every load reads 8 elements at k with k + 8 ≤ n ≤ KC, which
        // bounds `w0` and each column.
        unsafe {
            let mut v = [vdupq_n_s32(0); WPIX];
            let mut k = 0;
            while k < n8 {
                let wv = vmovl_s8(vld1_s8(w0.as_ptr().add(k)));
                for (vp, c) in v.iter_mut().zip(col) {
                    let xv = vld1q_s16(c.as_ptr().add(k));
                    *vp = vmlal_s16(*vp, vget_low_s16(xv), vget_low_s16(wv));
                    *vp = vmlal_high_s16(*vp, xv, wv);
                }
                k += 8;
            }
            let [a0, _] = acc;
            for ((a, vp), c) in a0.iter_mut().zip(v).zip(col) {
                let t = dot_scalar(c.get(n8..n).unwrap_or(&[]), w0.get(n8..n).unwrap_or(&[]));
                *a = a.wrapping_add(vaddvq_s32(vp).wrapping_add(t));
            }
        }
        return;
    }
    let n8 = n / 8 * 8;
    // SAFETY: as above, for both rows (both have n elements).
    unsafe {
        let mut v = [[vdupq_n_s32(0); WPIX]; 2];
        let mut k = 0;
        while k < n8 {
            let wa = vmovl_s8(vld1_s8(w0.as_ptr().add(k)));
            let wb = vmovl_s8(vld1_s8(w1.as_ptr().add(k)));
            let [va, vb] = &mut v;
            for ((a, b), c) in va.iter_mut().zip(vb.iter_mut()).zip(col) {
                let xv = vld1q_s16(c.as_ptr().add(k));
                let xl = vget_low_s16(xv);
                *a = vmlal_high_s16(vmlal_s16(*a, xl, vget_low_s16(wa)), xv, wa);
                *b = vmlal_high_s16(vmlal_s16(*b, xl, vget_low_s16(wb)), xv, wb);
            }
            k += 8;
        }
        for ((ar, vr), wr) in acc.iter_mut().zip(v).zip([w0, w1]) {
            let tail = wr.get(n8..n).unwrap_or(&[]);
            for ((a, vp), c) in ar.iter_mut().zip(vr).zip(col) {
                let t = dot_scalar(c.get(n8..n).unwrap_or(&[]), tail);
                *a = a.wrapping_add(vaddvq_s32(vp).wrapping_add(t));
            }
        }
    }
}

/// `SDOT` of the 16 int8 lanes of `x` and `w` into the four i32 lanes of `acc`
/// (each lane adds four products).
///
/// # Safety
/// The CPU must have the dot-product extension.
#[cfg(all(feature = "std", target_arch = "aarch64"))]
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot(
    acc: core::arch::aarch64::int32x4_t,
    x: core::arch::aarch64::int8x16_t,
    w: core::arch::aarch64::int8x16_t,
) -> core::arch::aarch64::int32x4_t {
    let mut a = acc;
    // SAFETY: register-only; the extension is enabled in this function.
    unsafe {
        core::arch::asm!(
            "sdot {a:v}.4s, {x:v}.16b, {w:v}.16b",
            a = inout(vreg) a,
            x = in(vreg) x,
            w = in(vreg) w,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    a
}

/// `SDOT` pair kernel on int8 columns: per 16 elements one load per weight row
/// and per column, 8 `SDOT`s (4 pixels × 2 rows, 128 products); an odd last
/// channel (`w1` shorter) runs one row.
///
/// # Safety
/// The CPU must have the dot-product extension.
#[cfg(all(feature = "std", target_arch = "aarch64"))]
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn dot2_sdot(col: &[[i8; KC]; WPIX], w0: &[i8], w1: &[i8], acc: &mut Pair) {
    use core::arch::aarch64::*;
    let n = w0.len().min(KC);
    let two = w1.len() == n;
    let n16 = n / 16 * 16;
    // SAFETY: every load reads 16 elements at k with k + 16 ≤ n ≤ KC, which
    // bounds both rows (w1 only when `two`) and every column; `sdot` needs the
    // extension, enabled here.
    unsafe {
        let mut v = [[vdupq_n_s32(0); WPIX]; 2];
        let mut k = 0;
        while k < n16 {
            let wa = vld1q_s8(w0.as_ptr().add(k));
            let wb = if two { vld1q_s8(w1.as_ptr().add(k)) } else { vdupq_n_s8(0) };
            let [va, vb] = &mut v;
            for ((a, b), c) in va.iter_mut().zip(vb.iter_mut()).zip(col) {
                let xv = vld1q_s8(c.as_ptr().add(k));
                *a = sdot(*a, xv, wa);
                *b = sdot(*b, xv, wb);
            }
            k += 16;
        }
        let rows: &[&[i8]] = if two { &[w0, w1] } else { &[w0] };
        for ((ar, vr), wr) in acc.iter_mut().zip(v).zip(rows) {
            let tail = wr.get(n16..n).unwrap_or(&[]);
            for ((a, vp), c) in ar.iter_mut().zip(vr).zip(col) {
                let t = dot_scalar8(c.get(n16..n).unwrap_or(&[]), tail);
                *a = a.wrapping_add(vaddvq_s32(vp).wrapping_add(t));
            }
        }
    }
}

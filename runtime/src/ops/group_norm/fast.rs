//! GROUP_NORM for the mixed-precision path (int8 or int16 input and output),
//! bit-exact with [`super::group_norm_mixed_reference`] without its per-element i128
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
//! [`super::group_norm`]'s `z_steps`.

use super::reference::group_norm_mixed_reference;
use super::scale::group_scale;
use crate::ops::numerics::{le_i32, Elem, Rq};

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
/// [`super::group_norm_mixed_reference`]).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_mixed<X: Elem, Y: Elem>(
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
        return group_norm_mixed_reference::<X, Y>(
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
        let big_r = group_scale(n, s1, s2, eps_q32);
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
/// constants live on the stack: about 80 bytes per channel, plus the f64 lines
/// on hosts). Cortex-M: 32, which covers the int16 tensors of the shipped model
/// and keeps the stack small.
const PM_CHANNELS: usize = if cfg!(ddpm_wide) { 128 } else { 32 };

/// Per-channel constants of the pixel-major pass.
#[derive(Clone, Copy, Default)]
struct Chan {
    a0: i64,
    b0: i64,
    sa: i64,
    sb: i64,
    rq: Rq,
    bias: i32,
    /// The group's [`FixZ`] (when `fix`).
    fz: FixZ,
    fix: bool,
}

/// The second pass of [`pixel_major`] on 32-bit targets when every group has
/// its [`FixZ`] and every channel's requantization is a right shift: channel by
/// channel (the constants stay in registers), over the pixels with stride `c`,
/// z from the certified line (the exact formula when it is unsure), then the
/// same requantization, bias and saturation as the pixel-major loop. Returns
/// `false`, having written nothing, when the tensors are shorter than
/// `pixels·c` elements.
#[inline(never)]
fn channel_major_fix<X: Elem, Y: Elem>(
    x: &[u8],
    c: usize,
    y: &mut [u8],
    ch: &[Chan],
    in_zp: i32,
    out_zp: i32,
) -> bool {
    let pixels = X::count(x) / c.max(1);
    if c == 0 || ch.len() > c || pixels * c > Y::count(y) {
        return false;
    }
    let (xs, ys) = (c * X::BYTES, c * Y::BYTES);
    for (k, e) in ch.iter().enumerate() {
        #[cfg(ddpm_dsp)]
        if X::BYTES == Y::BYTES && pixels > 0 {
            if let Some(kc) = dsp::consts(e, in_zp, out_zp) {
                // SAFETY: as below: element k of each of the `pixels` pixels, stride
                // xs = ys, in bounds of x and y.
                unsafe {
                    let (xp, yp) = (x.as_ptr().add(k * X::BYTES), y.as_mut_ptr().add(k * Y::BYTES));
                    dsp::channel::<X, Y>(xp, yp, xs, pixels, &kc, e, in_zp, out_zp);
                }
                continue;
            }
        }
        let (f, b, rq) = (e.fz, e.bias, e.rq);
        let (mut xp, mut yp) = (x.as_ptr(), y.as_mut_ptr());
        // SAFETY: element k of pixel px is at byte px·xs + k·X::BYTES of x, below
        // pixels·c·X::BYTES ≤ x.len() (pixels = ⌊x.len() / (c·X::BYTES)⌋, k < c),
        // and likewise in y (pixels·c ≤ Y::count(y), checked above); the
        // pointers stay within or one past the slices; reads and writes are
        // unaligned-safe.
        unsafe {
            xp = xp.add(k * X::BYTES);
            yp = yp.add(k * Y::BYTES);
            for px in 0..pixels {
                let v = if X::BYTES == 2 {
                    i16::from_le(xp.cast::<i16>().read_unaligned()) as i32
                } else {
                    *xp as i8 as i32
                };
                let z = match f.z(v - in_zp) {
                    Some(z) => z,
                    None => exact_z(e, v - in_zp),
                };
                let r = rq.apply_shift_right(z);
                let o = out_zp.saturating_add(r).saturating_add(b).clamp(Y::MIN, Y::MAX);
                if Y::BYTES == 2 {
                    yp.cast::<u16>().write_unaligned((o as u16).to_le());
                } else {
                    *yp = o as u8;
                }
                if px + 1 < pixels {
                    xp = xp.add(xs);
                    yp = yp.add(ys);
                }
            }
        }
    }
    true
}

/// The channel loops of [`channel_major_fix`] on Armv7E-M (`armv7em.rs`).
#[cfg(ddpm_dsp)]
#[path = "armv7em.rs"]
mod dsp;

/// z of one element `v` (already less the zero point), exactly: ZLine's 64-bit
/// form with branch-free rounding, clamped to i32.
#[inline(always)]
fn exact_z(e: &Chan, v: i32) -> i32 {
    let v = v as i64;
    let t = e.b0 + v * e.sb;
    let a = e.a0 + v * e.sa + (t >> 46);
    let b = t & MASK;
    let up = (b > HALF) as i64 | ((b == HALF) as i64 & (a >= 0) as i64);
    (a + up).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Bound, in units of 2^−32, on the error of [`FixZ::z`]'s `Y` (twice the
/// worst case: ½ from rounding `P`, ½·|v| ≤ ½·32,896 from rounding `S`).
const FIX_E: u32 = 32_896;

/// z through one 64-bit multiply-add, certified exact (for 32-bit targets, where
/// [`ZLine::z`]'s 64×64-bit products cost a dozen instructions).
///
/// `Y = P + v·S` with `P = round(P0/2^14) + 2^31` and `S = round(step/2^14)` is
/// `2^32·(y + ½)` for `y = (P0 + v·step)/2^46` up to an error below [`FIX_E`]
/// (`S = S_hi·2^32 + S_lo` with `S_lo` a signed word: `SMLAL` and `MLA` on
/// Armv7-M). When the low word of `Y` lies strictly between `FIX_E` and
/// `2^32 − FIX_E`, `y + ½` lies strictly between the high word `h` and `h + 1`:
/// `y` is no tie and rounds to `h` under round-half-away too. The line is only
/// used when `|P0| + 32,896·step < 2^76` (`|y| < 2^30`: no clamp, no overflow).
#[derive(Clone, Copy, Default)]
struct FixZ {
    p: i64,
    slo: i32,
    shi: i32,
}

impl FixZ {
    fn new(l: &ZLine) -> Option<FixZ> {
        if l.step < 0 || l.p0.unsigned_abs() + (32_896 * l.step) as u128 >= 1u128 << 76 {
            return None;
        }
        let p = (((l.p0 + (1 << 13)) >> 14) + (1 << 31)) as i64;
        let s = ((l.step + (1 << 13)) >> 14) as i64;
        let slo = s as i32;
        Some(FixZ { p, slo, shi: ((s - slo as i64) >> 32) as i32 })
    }

    /// `round_half_away(y)` for `v` (|v| ≤ 32,896), or `None` when `Y` is too
    /// close to a boundary to be sure.
    #[inline(always)]
    fn z(&self, v: i32) -> Option<i32> {
        let y = self
            .p
            .wrapping_add(v as i64 * self.slo as i64)
            .wrapping_add((v.wrapping_mul(self.shi) as i64) << 32);
        let lo = y as u32;
        (lo.wrapping_sub(FIX_E + 1) < u32::MAX - 2 * FIX_E).then_some((y >> 32) as i32)
    }
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
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe {
            pixel_major_avx2::<X, Y>(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias)
        };
    }
    pixel_major_body::<X, Y, false>(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias)
}

/// [`pixel_major`] compiled for AVX2 (per-lane variable shifts, 4 f64 lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn pixel_major_avx2<X: Elem, Y: Elem>(
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
    pixel_major_body::<X, Y, true>(x, c, y, groups, in_zp, out_zp, eps_q32, mult, shift, bias)
}

/// `AVX2`: compiled into [`pixel_major_avx2`] (the CPU has AVX2).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pixel_major_body<X: Elem, Y: Elem, const AVX2: bool>(
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
    // Largest |v| per channel, tracked in the AVX2 instance only (else 0).
    let mut vabs = [0i32; PM_CHANNELS];
    #[cfg(ddpm_dsp)]
    let summed = X::BYTES == 2 && dsp::group_sums(x, c, cg, pixels, in_zp, s1c, s2c);
    #[cfg(not(ddpm_dsp))]
    let summed = false;
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    // SAFETY: AVX2 is only set in the AVX2 instance (the CPU has it).
    let summed =
        summed || (AVX2 && unsafe { sums_avx2::<X>(x, c, cg, pixels, in_zp, s1c, s2c, &mut vabs) });
    if summed {
        // Armv7E-M and AVX2: each group's sums are in its channels' slots in
        // some other split (only the group totals are used).
    } else if c % 8 == 0 {
        // Eight channels at a time over all pixels, the sums in registers (and,
        // for the AVX2 output pass, the largest |v|).
        for (kb, (b1, b2)) in s1c.chunks_exact_mut(8).zip(s2c.chunks_exact_mut(8)).enumerate() {
            let (mut a1, mut a2, mut am) = ([0i64; 8], [0i64; 8], [0i32; 8]);
            let span = kb * 8 * X::BYTES..(kb + 1) * 8 * X::BYTES;
            for px in x.chunks_exact(c * X::BYTES).take(pixels) {
                let mut v8 = [0i32; 8];
                for (d, v) in v8.iter_mut().zip(X::iter(px.get(span.clone()).unwrap_or(&[]))) {
                    *d = v - in_zp;
                }
                for ((a, q), &v) in a1.iter_mut().zip(a2.iter_mut()).zip(&v8) {
                    *a += v as i64;
                    *q += v as i64 * v as i64;
                }
                if AVX2 {
                    for (m, &v) in am.iter_mut().zip(&v8) {
                        *m = (*m).max(v.abs());
                    }
                }
            }
            b1.copy_from_slice(&a1);
            b2.copy_from_slice(&a2);
            if let (true, Some(vm)) = (AVX2, vabs.get_mut(kb * 8..kb * 8 + 8)) {
                vm.copy_from_slice(&am);
            }
        }
    } else {
        for px in x.chunks_exact(c * X::BYTES).take(pixels) {
            for (((a1, a2), m), v) in
                s1c.iter_mut().zip(s2c.iter_mut()).zip(vabs.iter_mut()).zip(X::iter(px))
            {
                let v = v - in_zp;
                *a1 += v as i64;
                *a2 += v as i64 * v as i64;
                if AVX2 {
                    *m = (*m).max(v.abs());
                }
            }
        }
    }
    let mut ch = [Chan::default(); PM_CHANNELS];
    #[cfg(ddpm_wide)]
    let mut lines = [ZLine::new(0, 0); PM_CHANNELS];
    for (g, ((g1, g2), cs)) in
        s1c.chunks_exact(cg).zip(s2c.chunks_exact(cg)).zip(ch.chunks_exact_mut(cg)).enumerate()
    {
        let (s1, s2) = (g1.iter().sum::<i64>(), g2.iter().sum::<i64>());
        let r = group_scale(n, s1, s2, eps_q32);
        let line = ZLine::new(-(s1 as i128) * r, n as i128 * r);
        if !line.fast {
            return false;
        }
        #[cfg(ddpm_wide)]
        if let Some(l) = lines.get_mut(g) {
            *l = line;
        }
        let fz = FixZ::new(&line);
        for (j, e) in cs.iter_mut().enumerate() {
            let k = g * cg + j;
            *e = Chan {
                a0: line.a0,
                b0: line.b0,
                sa: line.sa,
                sb: line.sb,
                rq: Rq::new(le_i32(mult, k), le_i32(shift, k)),
                bias: le_i32(bias, k),
                fz: fz.unwrap_or_default(),
                fix: fz.is_some(),
            };
        }
    }
    let ch = ch.get(..groups * cg).unwrap_or(&[]);
    let general = ch.iter().any(|e| e.rq.is_general());
    if !cfg!(ddpm_wide) && !general && ch.iter().all(|e| e.fix) {
        return channel_major_fix::<X, Y>(x, c, y, ch, in_zp, out_zp);
    }
    #[cfg(ddpm_wide)]
    let fz = FloatZ::new(lines.get(..groups).unwrap_or(&[]), cg);
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    if AVX2 && !general {
        if let Some(f) = fz.as_ref() {
            // SAFETY: AVX2 is only set in the AVX2 instance (the CPU has it).
            if unsafe { f64_out_avx2::<X, Y>(x, c, y, pixels, ch, f, &vabs, in_zp, out_zp) } {
                return true;
            }
        }
    }
    let mut zb = [0i32; PM_CHANNELS];
    let zs = zb.get_mut(..ch.len()).unwrap_or(&mut []);
    let (mut om, mut oe, mut omask, mut ob) =
        ([0i32; PM_CHANNELS], [0u32; PM_CHANNELS], [0i32; PM_CHANNELS], [0i32; PM_CHANNELS]);
    for ((e, (m, sh)), (mk, b)) in
        ch.iter().zip(om.iter_mut().zip(oe.iter_mut())).zip(omask.iter_mut().zip(ob.iter_mut()))
    {
        (*m, *sh, *mk) = e.rq.parts();
        *b = e.bias;
    }
    let n_ch = ch.len();
    let (om, oe) = (om.get(..n_ch).unwrap_or(&[]), oe.get(..n_ch).unwrap_or(&[]));
    let (omask, ob) = (omask.get(..n_ch).unwrap_or(&[]), ob.get(..n_ch).unwrap_or(&[]));
    let mut ob_out = [0i32; PM_CHANNELS];
    let os = ob_out.get_mut(..n_ch).unwrap_or(&mut []);
    for (px, ypx) in x.chunks_exact(c * X::BYTES).zip(y.chunks_exact_mut(c * Y::BYTES)) {
        #[cfg(ddpm_wide)]
        let certain = fz.as_ref().is_some_and(|f| f.z(X::iter(px), in_zp, zs));
        #[cfg(not(ddpm_wide))]
        let certain = false;
        if !certain {
            for ((z, e), v) in zs.iter_mut().zip(ch).zip(X::iter(px)) {
                // 32-bit targets: the certified 64-bit line first.
                let fixed = (!cfg!(ddpm_wide) && e.fix).then(|| e.fz.z(v - in_zp)).flatten();
                *z = fixed.unwrap_or_else(|| exact_z(e, v - in_zp));
            }
        }
        if general {
            for (k, (e, &z)) in ch.iter().zip(zs.iter()).enumerate() {
                let o = out_zp.saturating_add(e.rq.apply(z)).saturating_add(e.bias);
                Y::put_clamped(ypx, k, o, Y::MIN, Y::MAX);
            }
        } else {
            // Channel-wise arrays, no branches: vectorizable.
            for (((o, &z), (&m, &e)), (&mask, &b)) in
                os.iter_mut().zip(zs.iter()).zip(om.iter().zip(oe)).zip(omask.iter().zip(ob))
            {
                let v = ((z as i64 * m as i64 + (1i64 << 30)) >> 31) as i32;
                let r = (v >> e) + ((v & mask) > (mask >> 1) + (v < 0) as i32) as i32;
                *o = out_zp.saturating_add(r).saturating_add(b).clamp(Y::MIN, Y::MAX);
            }
            Y::put_all(ypx, os);
        }
    }
    true
}

/// z of a whole pixel through f64, for 64-bit hosts, certified exact.
///
/// Per group, `p = P0/2^46` and `s = step/2^46` are rounded to f64 (`pf`, `sf`,
/// relative error ≤ u = 2^−53 each; the divisions by 2^46 are exact), and
/// `y = pf + v·sf` costs two more roundings, so
/// `|y − (p + v·s)| ≤ 4u·(|p| + |v|·s) ≤ err = 2^−49·(|pf| + VMAX·sf)` (generous for
/// the roundings of `pf`, `sf` and `err` itself). `y` is clamped to
/// `[−2^31 − 1, 2^31]` (beyond, the exact z clamps to i32 the same way) and rounded
/// to the nearest integer `r` by the 1.5·2^52 trick. When `y` lies more than `err`
/// from every half-integer, the exact value lies in the same interval between two
/// half-integers, so it rounds to `r` under any rule, round-half-away included;
/// otherwise the pixel is recomputed with the integer formula. Groups whose `err`
/// exceeds 2^−10 are not handled here at all.
#[cfg(ddpm_wide)]
struct FloatZ {
    pf: [f64; PM_CHANNELS],
    sf: [f64; PM_CHANNELS],
    n: usize,
    err: f64,
}

/// Largest `|v|`: an int16 element minus an int8 zero point.
#[cfg(ddpm_wide)]
const VMAX: f64 = 32768.0 + 128.0;

#[cfg(ddpm_wide)]
impl FloatZ {
    /// The f64 lines of `lines` (one per group of `cg` channels), or `None` when one
    /// is too large to certify.
    fn new(lines: &[ZLine], cg: usize) -> Option<Self> {
        const TWO_M46: f64 = 1.0 / 70_368_744_177_664.0;
        const TWO_M49: f64 = 1.0 / 562_949_953_421_312.0;
        let mut f = FloatZ { pf: [0.0; PM_CHANNELS], sf: [0.0; PM_CHANNELS], n: 0, err: 0.0 };
        for (l, (pc, sc)) in
            lines.iter().zip(f.pf.chunks_exact_mut(cg).zip(f.sf.chunks_exact_mut(cg)))
        {
            let (p, s) = (l.p0 as f64 * TWO_M46, l.step as f64 * TWO_M46);
            f.err = f.err.max((p.abs() + VMAX * s) * TWO_M49);
            pc.fill(p);
            sc.fill(s);
            f.n += cg;
        }
        (f.err < 1.0 / 1024.0).then_some(f)
    }

    /// Writes z of every channel of one pixel (`vals`) into `z`; `false` when one of
    /// them could not be certified (the caller recomputes the pixel exactly).
    #[inline(always)]
    fn z(&self, vals: impl Iterator<Item = i32>, in_zp: i32, z: &mut [i32]) -> bool {
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5·2^52
        let mut unsure = false;
        let (pf, sf) = (self.pf.get(..self.n).unwrap_or(&[]), self.sf.get(..self.n).unwrap_or(&[]));
        for (((zo, &p), &s), v) in z.iter_mut().zip(pf).zip(sf).zip(vals) {
            let y = p + (v - in_zp) as f64 * s;
            let yc = y.clamp(-2_147_483_649.0, 2_147_483_648.0);
            let r = (yc + MAGIC) - MAGIC;
            unsure |= (0.5 - (yc - r).abs()).abs() <= self.err;
            // y is finite (finite terms), so r is an integer in
            // [−2^31 − 1, 2^31]; clamped to i32's range it converts exactly.
            let rc = r.clamp(-2_147_483_648.0, 2_147_483_647.0);
            // SAFETY: rc is finite, integral and within i32's range.
            *zo = unsafe { rc.to_int_unchecked::<i32>() };
        }
        !unsure
    }
}

/// The first pass of [`pixel_major`] on AVX2 for `c` a multiple of 16 and an
/// even `cg`: per 16 channels of a pixel (`v = q − in_zp` as i16, which needs
/// `in_zp = 0` for int16 input), `VPMADDWD` of `v` with ones and with itself
/// gives the sums of `v` and `v²` over each pair of channels (a pair never
/// straddles two groups); the pair sums of `v` accumulate in i32 (below 2^31
/// for fewer than 32,640 pixels), those of `v²` (below 2^32, unsigned) in u64
/// lanes, and the largest `|v|` per channel in u16 lanes. Writes each pair's
/// sums into its first channel's slots (0 in the second) and `vabs`; `false`,
/// having written nothing, when the conditions do not hold.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn sums_avx2<X: Elem>(
    x: &[u8],
    c: usize,
    cg: usize,
    pixels: usize,
    in_zp: i32,
    s1c: &mut [i64],
    s2c: &mut [i64],
    vabs: &mut [i32],
) -> bool {
    use core::arch::x86_64::*;
    if c % 16 != 0
        || cg % 2 != 0
        || pixels >= 32_640
        || (X::BYTES == 2 && in_zp != 0)
        || X::count(x) < pixels * c
        || s1c.len() < c
        || s2c.len() < c
        || vabs.len() < c
    {
        return false;
    }
    let (ones, zero, zp) =
        (_mm256_set1_epi16(1), _mm256_setzero_si256(), _mm256_set1_epi16(in_zp as i16));
    let stride = c * X::BYTES;
    for kb in 0..c / 16 {
        let (mut a1, mut a2lo, mut a2hi, mut mx) = (zero, zero, zero, zero);
        for px in 0..pixels {
            let at = px * stride + kb * 16 * X::BYTES;
            // SAFETY: at + 16 elements ≤ pixels·c elements (checked above).
            let v = unsafe {
                if X::BYTES == 1 {
                    let q = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.as_ptr().add(at).cast()));
                    _mm256_sub_epi16(q, zp)
                } else {
                    _mm256_loadu_si256(x.as_ptr().add(at).cast())
                }
            };
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(v, ones));
            let sq = _mm256_madd_epi16(v, v);
            a2lo = _mm256_add_epi64(a2lo, _mm256_unpacklo_epi32(sq, zero));
            a2hi = _mm256_add_epi64(a2hi, _mm256_unpackhi_epi32(sq, zero));
            mx = _mm256_max_epu16(mx, _mm256_abs_epi16(v));
        }
        let (mut s1, mut lo, mut hi, mut m) = ([0i32; 8], [0i64; 4], [0i64; 4], [0u16; 16]);
        // SAFETY: each array is 32 bytes.
        unsafe {
            _mm256_storeu_si256(s1.as_mut_ptr().cast(), a1);
            _mm256_storeu_si256(lo.as_mut_ptr().cast(), a2lo);
            _mm256_storeu_si256(hi.as_mut_ptr().cast(), a2hi);
            _mm256_storeu_si256(m.as_mut_ptr().cast(), mx);
        }
        // Pair j (channels 2j, 2j + 1 of the 16): lanes 0–3 from the low 128 bits,
        // 4–7 from the high; the unpacks hold pairs [0, 1, 4, 5] and [2, 3, 6, 7].
        let ([l0, l1, l2, l3], [h0, h1, h2, h3]) = (lo, hi);
        let s2 = [l0, l1, h0, h1, l2, l3, h2, h3];
        for (j, (&p1, &p2)) in s1.iter().zip(&s2).enumerate() {
            let k = kb * 16 + 2 * j;
            if let (Some(d1), Some(d2)) = (s1c.get_mut(k..k + 2), s2c.get_mut(k..k + 2)) {
                d1.copy_from_slice(&[p1 as i64, 0]);
                d2.copy_from_slice(&[p2, 0]);
            }
        }
        for (d, &v) in vabs.iter_mut().skip(kb * 16).zip(&m) {
            *d = v as i32;
        }
    }
    true
}

#[cfg(all(test, ddpm_wide, feature = "std", target_arch = "x86_64"))]
std::thread_local! {
    /// Pixels [`f64_out_avx2`] finished in f64 and pixels it recomputed exactly
    /// on this thread (tests check that both paths run).
    static F64_PIXELS: core::cell::Cell<[usize; 2]> = const { core::cell::Cell::new([0; 2]) };
}

/// This thread's [`F64_PIXELS`].
#[cfg(all(test, ddpm_wide, feature = "std", target_arch = "x86_64"))]
fn f64_pixels() -> [usize; 2] {
    F64_PIXELS.with(|p| p.get())
}

/// `2^k` for `−1022 ≤ k ≤ 1023`, exactly.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// The output pass of [`pixel_major`] in f64 on AVX2, four channels per vector,
/// certified exact; `false`, having written nothing, when a channel is not
/// eligible.
///
/// `z` comes from [`FloatZ`]'s certified line (`y = p + v·s`, rounded; a pixel
/// with an uncertain element is recomputed with the integer formula). The
/// requantization `r = (v₁ >> e) + [(v₁ & mask) > (mask >> 1) + (v₁ < 0)]` of
/// `v₁ = ⌊(z·m + 2^30)/2^31⌋` is one floor:
/// `r = ⌊(z·m + 2^30 + (h − [z·m + 2^30 < 0])·2^31) / 2^(31+e)⌋` with
/// `h = 2^(e−1)` (`h = 0` and no sign term when `e = 0`), since
/// `⌊⌊a⌋/N⌋ = ⌊a/N⌋` for integers `N`. With `|z| < 2^21` (checked per channel
/// from `|p| + max|v|·s`, `vabs` holding each channel's largest `|v|`) and `e ≤ 21` the numerator is an integer below 2^53, so
/// `z·(m·2^−(31+e)) + C·2^−(31+e)` is exact in f64 and so is its floor. The
/// bias and output zero point (`|out_zp| + |bias| < 2^30`, so the saturating
/// adds of the integer path never saturate while `|r| ≤ 2^21 + 1`) are added
/// after the floor; the integer packs saturate the sum to the output type.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn f64_out_avx2<X: Elem, Y: Elem>(
    x: &[u8],
    c: usize,
    y: &mut [u8],
    pixels: usize,
    ch: &[Chan],
    fz: &FloatZ,
    vabs: &[i32],
    in_zp: i32,
    out_zp: i32,
) -> bool {
    use core::arch::x86_64::*;
    const ZMAX: f64 = 2_097_152.0; // 2^21
    if ch.len() != c || fz.n != c || c > PM_CHANNELS {
        return false;
    }
    if X::count(x) < pixels * c || Y::count(y) < pixels * c {
        return false;
    }
    let mut cst = [[0f64; PM_CHANNELS]; 5];
    let [mf, cp, cn, tt, kk] = &mut cst;
    for (k, e) in ch.iter().enumerate() {
        let (m, sh, _) = e.rq.parts();
        let (Some(&p), Some(&s), Some(&vm)) = (fz.pf.get(k), fz.sf.get(k), vabs.get(k)) else {
            return false;
        };
        // |y| ≤ |p| + |v|·s (the f64 terms are within 2^−40 of the exact ones).
        if sh > 21 || p.abs() + vm as f64 * s + 1.0 >= ZMAX {
            return false;
        }
        if (out_zp as i64).abs() + (e.bias as i64).abs() >= 1 << 30 {
            return false;
        }
        let e = sh as i32;
        let scale = pow2(-(31 + e));
        let (h, neg) = if e == 0 { (0i64, 0i64) } else { (1i64 << (e - 1), 1) };
        let (Some(m_), Some(cp_), Some(cn_), Some(t_), Some(k_)) =
            (mf.get_mut(k), cp.get_mut(k), cn.get_mut(k), tt.get_mut(k), kk.get_mut(k))
        else {
            return false;
        };
        *m_ = m as f64 * scale;
        *cp_ = ((1i64 << 30) + (h << 31)) as f64 * scale;
        *cn_ = ((1i64 << 30) + ((h - neg) << 31)) as f64 * scale;
        *t_ = -(1i64 << 30) as f64 * scale;
        *k_ = (out_zp as i64 + ch.get(k).map_or(0, |e| e.bias) as i64) as f64;
    }
    let (xb, yb) = (X::BYTES, Y::BYTES);
    let absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let bound = _mm256_set1_pd(0.5 - fz.err);
    let zp = _mm_set1_epi32(in_zp);
    let c4 = c - c % 4;
    let (pp, sp) = (fz.pf.as_ptr(), fz.sf.as_ptr());
    let (mp, cpp, cnp, tp, kp) = (mf.as_ptr(), cp.as_ptr(), cn.as_ptr(), tt.as_ptr(), kk.as_ptr());
    for px in 0..pixels {
        // SAFETY (every pointer below): x and y hold at least pixels·c elements
        // (checked above), k + 4 ≤ c4 ≤ c ≤ PM_CHANNELS, the lengths of the
        // constant arrays.
        let xp = x.as_ptr().add(px * c * xb);
        let yp = y.as_mut_ptr().add(px * c * yb);
        let mut bad = _mm256_setzero_pd();
        let mut k = 0;
        // Sixteen channels per iteration as four interleaved four-lane chains.
        while k + 16 <= c4 {
            let (v0, v1, v2, v3) = if xb == 1 {
                let q = _mm_loadu_si128(xp.add(k) as *const __m128i);
                (
                    _mm_cvtepi8_epi32(q),
                    _mm_cvtepi8_epi32(_mm_srli_si128::<4>(q)),
                    _mm_cvtepi8_epi32(_mm_srli_si128::<8>(q)),
                    _mm_cvtepi8_epi32(_mm_srli_si128::<12>(q)),
                )
            } else {
                let q = _mm_loadu_si128(xp.add(2 * k) as *const __m128i);
                let r = _mm_loadu_si128(xp.add(2 * k + 16) as *const __m128i);
                (
                    _mm_cvtepi16_epi32(q),
                    _mm_cvtepi16_epi32(_mm_srli_si128::<8>(q)),
                    _mm_cvtepi16_epi32(r),
                    _mm_cvtepi16_epi32(_mm_srli_si128::<8>(r)),
                )
            };
            let fa = _mm256_cvtepi32_pd(_mm_sub_epi32(v0, zp));
            let fb = _mm256_cvtepi32_pd(_mm_sub_epi32(v1, zp));
            let fc = _mm256_cvtepi32_pd(_mm_sub_epi32(v2, zp));
            let fd = _mm256_cvtepi32_pd(_mm_sub_epi32(v3, zp));
            let za = _mm256_add_pd(
                _mm256_loadu_pd(pp.add(k)),
                _mm256_mul_pd(fa, _mm256_loadu_pd(sp.add(k))),
            );
            let zb = _mm256_add_pd(
                _mm256_loadu_pd(pp.add(k + 4)),
                _mm256_mul_pd(fb, _mm256_loadu_pd(sp.add(k + 4))),
            );
            let zc = _mm256_add_pd(
                _mm256_loadu_pd(pp.add(k + 8)),
                _mm256_mul_pd(fc, _mm256_loadu_pd(sp.add(k + 8))),
            );
            let zd = _mm256_add_pd(
                _mm256_loadu_pd(pp.add(k + 12)),
                _mm256_mul_pd(fd, _mm256_loadu_pd(sp.add(k + 12))),
            );
            let ra = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(za);
            let rb = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(zb);
            let rc = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(zc);
            let rd = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(zd);
            let ta = _mm256_and_pd(_mm256_sub_pd(za, ra), absmask);
            let tb = _mm256_and_pd(_mm256_sub_pd(zb, rb), absmask);
            let tc = _mm256_and_pd(_mm256_sub_pd(zc, rc), absmask);
            let td = _mm256_and_pd(_mm256_sub_pd(zd, rd), absmask);
            let pa = _mm256_mul_pd(ra, _mm256_loadu_pd(mp.add(k)));
            let pb = _mm256_mul_pd(rb, _mm256_loadu_pd(mp.add(k + 4)));
            let pc = _mm256_mul_pd(rc, _mm256_loadu_pd(mp.add(k + 8)));
            let pd = _mm256_mul_pd(rd, _mm256_loadu_pd(mp.add(k + 12)));
            bad = _mm256_or_pd(bad, _mm256_cmp_pd::<_CMP_GE_OQ>(ta, bound));
            bad = _mm256_or_pd(bad, _mm256_cmp_pd::<_CMP_GE_OQ>(tb, bound));
            bad = _mm256_or_pd(bad, _mm256_cmp_pd::<_CMP_GE_OQ>(tc, bound));
            bad = _mm256_or_pd(bad, _mm256_cmp_pd::<_CMP_GE_OQ>(td, bound));
            let na = _mm256_cmp_pd::<_CMP_LT_OQ>(pa, _mm256_loadu_pd(tp.add(k)));
            let nb = _mm256_cmp_pd::<_CMP_LT_OQ>(pb, _mm256_loadu_pd(tp.add(k + 4)));
            let nc = _mm256_cmp_pd::<_CMP_LT_OQ>(pc, _mm256_loadu_pd(tp.add(k + 8)));
            let nd = _mm256_cmp_pd::<_CMP_LT_OQ>(pd, _mm256_loadu_pd(tp.add(k + 12)));
            let ca = _mm256_blendv_pd(_mm256_loadu_pd(cpp.add(k)), _mm256_loadu_pd(cnp.add(k)), na);
            let cb = _mm256_blendv_pd(
                _mm256_loadu_pd(cpp.add(k + 4)),
                _mm256_loadu_pd(cnp.add(k + 4)),
                nb,
            );
            let cc = _mm256_blendv_pd(
                _mm256_loadu_pd(cpp.add(k + 8)),
                _mm256_loadu_pd(cnp.add(k + 8)),
                nc,
            );
            let cd = _mm256_blendv_pd(
                _mm256_loadu_pd(cpp.add(k + 12)),
                _mm256_loadu_pd(cnp.add(k + 12)),
                nd,
            );
            let wa = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm256_add_pd(pa, ca),
            );
            let wb = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm256_add_pd(pb, cb),
            );
            let wc = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm256_add_pd(pc, cc),
            );
            let wd = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm256_add_pd(pd, cd),
            );
            let oa = _mm256_cvtpd_epi32(_mm256_add_pd(wa, _mm256_loadu_pd(kp.add(k))));
            let ob = _mm256_cvtpd_epi32(_mm256_add_pd(wb, _mm256_loadu_pd(kp.add(k + 4))));
            let oc = _mm256_cvtpd_epi32(_mm256_add_pd(wc, _mm256_loadu_pd(kp.add(k + 8))));
            let od = _mm256_cvtpd_epi32(_mm256_add_pd(wd, _mm256_loadu_pd(kp.add(k + 12))));
            // |o| < 2^31: converts exactly; the packs saturate to the type.
            let (lo16, hi16) = (_mm_packs_epi32(oa, ob), _mm_packs_epi32(oc, od));
            if yb == 1 {
                _mm_storeu_si128(yp.add(k) as *mut __m128i, _mm_packs_epi16(lo16, hi16));
            } else {
                _mm_storeu_si128(yp.add(2 * k) as *mut __m128i, lo16);
                _mm_storeu_si128(yp.add(2 * k + 16) as *mut __m128i, hi16);
            }
            k += 16;
        }
        // The rest four at a time (the chains are long; Zen-class FP schedulers
        // are small, hence the four interleaved chains above).
        while k < c4 {
            let vi = if xb == 1 {
                _mm_cvtepi8_epi32(_mm_cvtsi32_si128((xp.add(k) as *const i32).read_unaligned()))
            } else {
                _mm_cvtepi16_epi32(_mm_loadl_epi64(xp.add(2 * k) as *const __m128i))
            };
            let vf = _mm256_cvtepi32_pd(_mm_sub_epi32(vi, zp));
            let yv = _mm256_add_pd(
                _mm256_loadu_pd(pp.add(k)),
                _mm256_mul_pd(vf, _mm256_loadu_pd(sp.add(k))),
            );
            let r0 = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(yv);
            let t = _mm256_and_pd(_mm256_sub_pd(yv, r0), absmask);
            bad = _mm256_or_pd(bad, _mm256_cmp_pd::<_CMP_GE_OQ>(t, bound));
            let prod = _mm256_mul_pd(r0, _mm256_loadu_pd(mp.add(k)));
            let neg = _mm256_cmp_pd::<_CMP_LT_OQ>(prod, _mm256_loadu_pd(tp.add(k)));
            let cc =
                _mm256_blendv_pd(_mm256_loadu_pd(cpp.add(k)), _mm256_loadu_pd(cnp.add(k)), neg);
            let w = _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
                _mm256_add_pd(prod, cc),
            );
            let o = _mm256_add_pd(w, _mm256_loadu_pd(kp.add(k)));
            // |o| < 2^31: converts exactly; the packs saturate to the type.
            let o16 = _mm_packs_epi32(_mm256_cvtpd_epi32(o), _mm256_cvtpd_epi32(o));
            if yb == 1 {
                let o8 = _mm_packs_epi16(o16, o16);
                (yp.add(k) as *mut i32).write_unaligned(_mm_cvtsi128_si32(o8));
            } else {
                _mm_storel_epi64(yp.add(2 * k) as *mut __m128i, o16);
            }
            k += 4;
        }
        let unsure = _mm256_movemask_pd(bad) != 0;
        #[cfg(test)]
        F64_PIXELS.with(|p| {
            let mut v = p.get();
            v[unsure as usize] += 1;
            p.set(v)
        });
        let from = if unsure { 0 } else { c4 };
        if from < c {
            let xs = x.get(px * c * xb..(px + 1) * c * xb).unwrap_or(&[]);
            let ys = y.get_mut(px * c * yb..(px + 1) * c * yb).unwrap_or(&mut []);
            for (k, e) in ch.iter().enumerate().skip(from) {
                let z = exact_z(e, X::get(xs, k) - in_zp);
                let o = out_zp.saturating_add(e.rq.apply(z)).saturating_add(e.bias);
                Y::put_clamped(ys, k, o, Y::MIN, Y::MAX);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::{E16, E8};

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

    /// FixZ gives ZLine's exact z whenever it claims certainty (ties included:
    /// it must give up on them), and is certain for nearly every element of lines
    /// like a real group's.
    #[test]
    fn fix_z_is_exact_when_certain() {
        let mut r = Rng(0xf1c5);
        let (mut certain, mut unsure, mut lines) = (0u32, 0u32, 0u32);
        for case in 0..3000 {
            let step = (r.next() as i128 & ((1 << 40) - 1)) << (r.next() % 24);
            let mean = r.range(-40000, 40000) as i128;
            let p0 = match case % 4 {
                // Exact half-integers at some v.
                0 => {
                    let step = step - step % (1 << 46);
                    -mean * step + (1 << 45)
                }
                1 => -mean * step - (r.next() as i128 & ((1 << 46) - 1)),
                _ => -mean * step + (r.next() as i128 & ((1 << 46) - 1)),
            };
            let step = if case % 4 == 0 { step - step % (1 << 46) } else { step };
            let l = ZLine::new(p0, step);
            let Some(f) = FixZ::new(&l) else { continue };
            lines += 1;
            for i in 0..64 {
                let v = match i {
                    0 => -32768 - 128,
                    1 => 32767 + 128,
                    2 => 0,
                    3 => mean.clamp(-32896, 32895) as i32,
                    _ => r.range(-32768 - 128, 32767 + 128) as i32,
                };
                let num = p0 + v as i128 * step;
                let half = 1i128 << 45;
                let want = if num >= 0 { (num + half) >> 46 } else { -((-num + half) >> 46) };
                match f.z(v) {
                    Some(z) => {
                        assert_eq!(z as i128, want, "case {case} v {v}");
                        assert!(case % 4 != 0, "case {case} v {v}: a tie called certain");
                        certain += 1;
                    }
                    None if case % 4 != 0 => unsure += 1,
                    None => {}
                }
            }
        }
        assert!(lines > 1000, "{lines} lines");
        // Off the ties, unsure about one element in 2^32 / (2·FIX_E) ≈ 65,000.
        assert!(unsure * 1000 < certain, "certain {certain}, unsure {unsure}");
    }

    /// The f64 path gives ZLine's exact z whenever it claims certainty, and gives
    /// up on exact ties (which it cannot round away from zero).
    #[cfg(ddpm_wide)]
    #[test]
    fn float_z_is_exact_when_certain() {
        let mut r = Rng(0xf10a7);
        let (mut certain, mut unsure) = (0, 0);
        for case in 0..3000 {
            // Lines like a real group's: step = n·R, P0 = −S1·R, z within a few
            // 2^16 of 0 for in-range v, sometimes far beyond (clamping).
            let step = (r.next() as i128 & ((1 << 40) - 1)) << (r.next() % 20);
            let mean = r.range(-40000, 40000) as i128;
            let p0 = if case % 4 == 0 {
                // Exact half-integers at some v: P0 ≡ 2^45 mod 2^46 with step ≡ 0.
                let step = step - step % (1 << 46);
                (-mean * step) + (1 << 45)
            } else {
                -mean * step + (r.next() as i128 & ((1 << 46) - 1))
            };
            let step = if case % 4 == 0 { step - step % (1 << 46) } else { step };
            let l = ZLine::new(p0, step);
            if !l.fast {
                continue;
            }
            let Some(f) = FloatZ::new(&[l], 8) else { continue };
            let in_zp = r.range(-128, 127) as i32;
            let vals: Vec<i32> = (0..8).map(|_| r.range(-32768, 32767) as i32).collect();
            let mut z = [0i32; 8];
            if f.z(vals.iter().copied(), in_zp, &mut z) {
                certain += 1;
                for (zv, &v) in z.iter().zip(&vals) {
                    assert_eq!(*zv, l.z(v - in_zp), "case {case} v {v}");
                }
            } else {
                unsure += 1;
            }
        }
        assert!(certain > 1000 && unsure > 100, "certain {certain} unsure {unsure}");
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
        group_norm_mixed_reference::<X, Y>(x, c, &mut want, groups, zp.0, zp.1, eps, m, s, b);
        group_norm_mixed::<X, Y>(x, c, &mut got, groups, zp.0, zp.1, eps, m, s, b);
        assert_eq!(got, want);
    }

    /// int8 in and out (what 64-bit hosts run for int8 GROUP_NORM) against the
    /// int8 reference kernel, bit for bit.
    #[test]
    fn int8_matches_group_norm_reference() {
        let mut r = Rng(0x8e8);
        for case in 0..300 {
            let groups = r.range(1, 8) as usize;
            let c = groups * r.range(1, 9) as usize;
            let pixels = r.range(1, 300) as usize;
            let spread = [1i64, 5, 60, 127][case % 4];
            let centre = r.range(-100, 100);
            let x: Vec<i8> = (0..pixels * c)
                .map(|_| (centre + r.range(-spread, spread)).clamp(-128, 127) as i8)
                .collect();
            let (mut mult, mut shift) = (vec![], vec![]);
            for _ in 0..c {
                let real = [1.0 / 65536.0, 3e-4, 2.0][(r.next() % 3) as usize] * (0.5 + r.f64());
                let (m, s) = quantize_multiplier(real);
                mult.push(if r.next() % 5 == 0 { -m } else { m });
                shift.push(s);
            }
            let bias: Vec<i32> = (0..c).map(|_| r.range(-300, 300) as i32).collect();
            let (m, s, b) = (i32_bytes(&mult), i32_bytes(&shift), i32_bytes(&bias));
            let (in_zp, out_zp) = (r.range(-128, 127) as i32, r.range(-128, 127) as i32);
            let eps = [0u64, 1 << 20, 1 << 40][case % 3];
            let mut want = vec![0i8; x.len()];
            crate::ops::group_norm::group_norm_reference(
                &x, c, &mut want, groups, in_zp, out_zp, eps, &m, &s, &b,
            );
            let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut got = vec![0u8; x.len()];
            group_norm_mixed::<E8, E8>(&xb, c, &mut got, groups, in_zp, out_zp, eps, &m, &s, &b);
            let got: Vec<i8> = got.iter().map(|&v| v as i8).collect();
            assert_eq!(got, want, "case {case}");
        }
    }

    /// Against `group_norm_mixed_reference`, bit for bit: every type combination, random
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
        #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
        if std::is_x86_feature_detected!("avx2") {
            // Ties are too rare here to reach the recomputation (the next test
            // builds them).
            let [fast, _] = f64_pixels();
            assert!(fast > 1000, "{fast} pixels in f64");
        }
    }

    /// The f64 output pass against the exact element formula on lines built to
    /// hit exact half-integers of `z` (every element, or every odd `v`) and on
    /// ordinary lines: ties must be recomputed, the rest certified.
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    #[test]
    fn f64_output_pass_is_exact_at_ties() {
        if !std::is_x86_feature_detected!("avx2") {
            // The pass only exists on AVX2 CPUs (the other tests cover the rest).
            std::eprintln!("no AVX2 on this CPU: the f64 output pass is not compiled in");
            return;
        }
        let mut r = Rng(0x71e5);
        let (mut certain, mut unsure) = (0, 0);
        for case in 0..400 {
            let (c, pixels) = ([4usize, 8, 12, 16][case % 4], 1 + (r.next() % 40) as usize);
            let mean = r.range(-3000, 3000) as i128;
            let unit = 1i128 << 46;
            let step = match case % 3 {
                // Every v on a half-integer, or every odd v.
                0 => r.range(1, 40) as i128 * unit,
                1 => r.range(1, 40) as i128 * unit + unit / 2,
                _ => (r.next() as i128 & (unit - 1)) << 4,
            };
            let p0 =
                -mean * step + if case % 3 == 2 { r.next() as i128 & (unit - 1) } else { unit / 2 };
            let line = ZLine::new(p0, step);
            let Some(fz) = FloatZ::new(&[line], c) else { continue };
            let ch: Vec<Chan> = (0..c)
                .map(|_| {
                    let (m, s) =
                        quantize_multiplier(2f64.powi(-(r.range(1, 14) as i32)) * (0.5 + r.f64()));
                    let m = if r.next() % 3 == 0 { -m } else { m };
                    Chan {
                        a0: line.a0,
                        b0: line.b0,
                        sa: line.sa,
                        sb: line.sb,
                        rq: Rq::new(m, s),
                        bias: r.range(-500, 500) as i32,
                        fz: FixZ::default(),
                        fix: false,
                    }
                })
                .collect();
            let spread = (2_000_000 / (step / unit).max(1)).min(32000) as i64;
            let x: Vec<i16> = (0..pixels * c)
                .map(|_| (mean as i64 + r.range(-spread, spread)).clamp(-32768, 32767) as i16)
                .collect();
            let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            let vabs: Vec<i32> =
                (0..c).map(|_| x.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0)).collect();
            let mut y = vec![0u8; 2 * x.len()];
            let out_zp = r.range(-100, 100) as i32;
            let before = f64_pixels();
            // SAFETY: AVX2 is present (checked above).
            if !unsafe {
                f64_out_avx2::<E16, E16>(&xb, c, &mut y, pixels, &ch, &fz, &vabs, 0, out_zp)
            } {
                continue;
            }
            let after = f64_pixels();
            certain += after[0] - before[0];
            unsure += after[1] - before[1];
            for (i, (&v, got)) in x.iter().zip(y.chunks_exact(2)).enumerate() {
                let e = &ch[i % c];
                let z = line.z(v as i32);
                let want = out_zp
                    .saturating_add(e.rq.apply(z))
                    .saturating_add(e.bias)
                    .clamp(-32768, 32767);
                assert_eq!(
                    i16::from_le_bytes([got[0], got[1]]) as i32,
                    want,
                    "case {case} v {v} z {z}"
                );
            }
        }
        assert!(certain > 1000 && unsure > 1000, "certain {certain} unsure {unsure}");
    }

    /// Group norms like a trained model's (the shapes and channel counts of the
    /// shipped UNet, wide activation spreads, ordinary multipliers) against
    /// `group_norm_mixed_reference`, bit for bit; on AVX2 hosts nearly every pixel must
    /// take the f64 output pass.
    #[test]
    fn model_like_group_norms_match() {
        let mut r = Rng(0x9e0f);
        let mut pixels_run = 0;
        #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
        let fast0 = f64_pixels()[0];
        for case in 0..120 {
            let (hw, c) =
                [(784, 16), (784, 32), (196, 64), (49, 128), (49, 64), (100, 20)][case % 6];
            let groups = [8, 4, 16, 2][case % 4].min(c / 4);
            let n = hw * c;
            let spread = [2000i64, 9000, 30000, 60][case % 4];
            let x16: Vec<i16> =
                (0..n).map(|_| r.range(-spread, spread).clamp(-32768, 32767) as i16).collect();
            let x16b: Vec<u8> = x16.iter().flat_map(|v| v.to_le_bytes()).collect();
            let x8: Vec<u8> = (0..n).map(|_| r.range(-100, 120) as i8 as u8).collect();
            let (mut mult, mut shift) = (vec![], vec![]);
            for _ in 0..c {
                let real = (2f64).powi(-(r.range(4, 20) as i32)) * (0.5 + r.f64());
                let (m, s) = quantize_multiplier(real);
                mult.push(if r.next() % 4 == 0 { -m } else { m });
                shift.push(s);
            }
            let bias: Vec<i32> = (0..c).map(|_| r.range(-3000, 3000) as i32).collect();
            let (m, s, b) = (i32_bytes(&mult), i32_bytes(&shift), i32_bytes(&bias));
            let eps = [1u64 << 20, 1 << 8][case % 2];
            let (in_zp, out_zp) = (r.range(-128, 127) as i32, r.range(-128, 127) as i32);
            run::<E16, E16>(&x16b, c, 2 * n, groups, (0, 0), eps, &m, &s, &b);
            run::<E16, E8>(&x16b, c, n, groups, (0, out_zp), eps, &m, &s, &b);
            run::<E8, E16>(&x8, c, 2 * n, groups, (in_zp, 0), eps, &m, &s, &b);
            run::<E8, E8>(&x8, c, n, groups, (in_zp, out_zp), eps, &m, &s, &b);
            pixels_run += 4 * hw;
        }
        #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
        if std::is_x86_feature_detected!("avx2") {
            let fast = f64_pixels()[0] - fast0;
            assert!(fast * 100 >= pixels_run * 95, "{fast} of {pixels_run} pixels in f64");
        }
        assert!(pixels_run > 0);
    }
}

//! Kernels for ops that touch an int16 tensor (the 16×8 mixed-precision path).
//!
//! Activations are int8 or int16 (little-endian, zero point 0 for int16), weights
//! stay int8. Each kernel is generic over the element type of its input(s) and of
//! its output ([`E8`], [`E16`]) and is monomorphized for every combination the
//! loader accepts; semantics are `docs/FORMAT.md`'s, with the output clamped to
//! the output type's range. Tensors are byte slices read element by element, so no
//! alignment is assumed anywhere.

use super::conv2d::Conv2dParams;
use super::group_norm::group_scale;
use super::{le_i32, mbqm, Rq};

/// An activation element type.
pub trait Elem: Copy {
    /// Smallest value.
    const MIN: i32;
    /// Largest value.
    const MAX: i32;
    /// Bytes per element.
    const BYTES: usize;
    /// Element `i` of `b` (0 when out of bounds).
    fn get(b: &[u8], i: usize) -> i32;
    /// Stores `v` (already in range) as element `i` of `b` (ignored when out of bounds).
    fn put(b: &mut [u8], i: usize, v: i32);
    /// Number of elements in `b`.
    #[inline]
    fn count(b: &[u8]) -> usize {
        b.len() / Self::BYTES
    }
    /// The elements of `b`, in order.
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_;
    /// Stores `v` (each already in range) as the first elements of `b`.
    fn put_all(b: &mut [u8], v: &[i32]);
    /// Clamps to `[lo, hi]` and to the type's range, then stores.
    #[inline]
    fn put_clamped(b: &mut [u8], i: usize, v: i32, lo: i32, hi: i32) {
        Self::put(b, i, v.max(lo).min(hi).clamp(Self::MIN, Self::MAX));
    }
}

/// int8 elements.
#[derive(Clone, Copy, Debug)]
pub struct E8;
/// int16 little-endian elements.
#[derive(Clone, Copy, Debug)]
pub struct E16;

impl Elem for E8 {
    const MIN: i32 = -128;
    const MAX: i32 = 127;
    const BYTES: usize = 1;
    #[inline(always)]
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
        b.iter().map(|&v| v as i8 as i32)
    }
    #[inline(always)]
    fn put_all(b: &mut [u8], v: &[i32]) {
        for (d, &x) in b.iter_mut().zip(v) {
            *d = x as i8 as u8;
        }
    }
    #[inline(always)]
    fn get(b: &[u8], i: usize) -> i32 {
        b.get(i).map(|&v| v as i8 as i32).unwrap_or(0)
    }
    #[inline(always)]
    fn put(b: &mut [u8], i: usize, v: i32) {
        if let Some(d) = b.get_mut(i) {
            *d = v as i8 as u8;
        }
    }
}

impl Elem for E16 {
    const MIN: i32 = -32768;
    const MAX: i32 = 32767;
    const BYTES: usize = 2;
    #[inline(always)]
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
        b.chunks_exact(2).map(|p| {
            i16::from_le_bytes([p.first().copied().unwrap_or(0), p.last().copied().unwrap_or(0)])
                as i32
        })
    }
    #[inline(always)]
    fn put_all(b: &mut [u8], v: &[i32]) {
        for (d, &x) in b.chunks_exact_mut(2).zip(v) {
            d.copy_from_slice(&(x as i16).to_le_bytes());
        }
    }
    #[inline(always)]
    fn get(b: &[u8], i: usize) -> i32 {
        match b.get(i.wrapping_mul(2)..i.wrapping_mul(2).wrapping_add(2)) {
            Some(&[lo, hi]) => i16::from_le_bytes([lo, hi]) as i32,
            _ => 0,
        }
    }
    #[inline(always)]
    fn put(b: &mut [u8], i: usize, v: i32) {
        if let Some(d) = b.get_mut(i.wrapping_mul(2)..i.wrapping_mul(2).wrapping_add(2)) {
            d.copy_from_slice(&(v as i16).to_le_bytes());
        }
    }
}

/// Window length up to which a CONV2D gathers its input window once per pixel.
const GATHER: usize = 512;

/// CONV2D with input `X` and output `Y` (FORMAT.md semantics; the window sum is exact
/// in i32: the loader bounds `kh·kw·ic` by 32768 for int8 and 511 for int16 input).
///
/// Per output pixel the window (padding reads as 0 after the zero point) is
/// gathered once into an i16 buffer in the weights' `[kh][kw][ic]` order, then
/// every output channel is one dot product with its weight row.
#[allow(clippy::too_many_arguments)]
pub fn conv2d<X: Elem, Y: Elem>(
    x: &[u8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    let [h, wd, ic] = in_shape;
    let [oh, ow, oc] = out_shape;
    let ksz = p.kh * p.kw * ic;
    if oc == 0 || ksz == 0 {
        return;
    }
    let mut buf = [0i16; GATHER];
    let mut pix = 0usize;
    for oy in 0..oh {
        for ox in 0..ow {
            let iy0 = (oy * p.sh) as isize - p.pt as isize;
            let ix0 = (ox * p.sw) as isize - p.pl as isize;
            let at = |ky: usize, kx: usize, i: usize| -> i32 {
                let (iy, ix) = (iy0 + ky as isize, ix0 + kx as isize);
                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                    0
                } else {
                    X::get(x, (iy as usize * wd + ix as usize) * ic + i) - p.in_zp
                }
            };
            let gathered = ksz <= GATHER;
            if gathered {
                let mut j = 0;
                for ky in 0..p.kh {
                    for kx in 0..p.kw {
                        for i in 0..ic {
                            if let Some(b) = buf.get_mut(j) {
                                *b = at(ky, kx, i) as i16;
                            }
                            j += 1;
                        }
                    }
                }
            }
            for o in 0..oc {
                let row = w.get(o * ksz..(o + 1) * ksz).unwrap_or(&[]);
                let s: i32 = if gathered {
                    buf.iter().zip(row).map(|(&a, &b)| a as i32 * b as i32).sum()
                } else {
                    let mut s = 0i32;
                    let mut j = 0;
                    for ky in 0..p.kh {
                        for kx in 0..p.kw {
                            for i in 0..ic {
                                let wv = row.get(j).copied().unwrap_or(0) as i32;
                                s = s.wrapping_add(at(ky, kx, i).wrapping_mul(wv));
                                j += 1;
                            }
                        }
                    }
                    s
                };
                let acc = le_i32(bias, o).wrapping_add(s);
                let v = p.out_zp.wrapping_add(mbqm(acc, le_i32(mult, o), le_i32(shift, o)));
                Y::put_clamped(y, pix * oc + o, v, p.act_min, p.act_max);
            }
            pix += 1;
        }
    }
}

/// GROUP_NORM with input `X` and output `Y`: the exact algorithm of FORMAT.md
/// (as `group_norm_reference`), the output clamped to `Y`'s range.
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
    if c == 0 || groups == 0 {
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
        for k in c0..c0 + cg {
            let (rq, b) = (Rq::new(le_i32(mult, k), le_i32(shift, k)), le_i32(bias, k));
            for px in 0..pixels {
                let v = X::get(x, px * c + k) as i64 - in_zp as i64;
                let num = (n * v - s1) as i128 * big_r;
                let half = 1i128 << 45;
                let z = if num >= 0 { (num + half) >> 46 } else { -((-num + half) >> 46) };
                let z = z.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                let o = out_zp.saturating_add(rq.apply(z)).saturating_add(b);
                Y::put_clamped(y, px * c + k, o, Y::MIN, Y::MAX);
            }
        }
    }
}

/// LUT16: `u = q + 32768`, `i = u >> 7`, `f = u & 127`,
/// `y = t[i] + (((t[i+1] − t[i])·f + 64) >> 7)` over a 513-entry i16 table.
///
/// The table is decoded once (entries past its end read 0, as
/// [`Elem::get`] does); on x86_64 hosts with AVX2 the loop is compiled for it.
pub fn lut16(x: &[u8], y: &mut [u8], table: &[u8]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { lut16_avx2(x, y, table) };
    }
    lut16_body(x, y, table)
}

/// [`lut16`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn lut16_avx2(x: &[u8], y: &mut [u8], table: &[u8]) {
    lut16_body(x, y, table)
}

#[inline(always)]
fn lut16_body(x: &[u8], y: &mut [u8], table: &[u8]) {
    let mut t = [0i16; 514];
    for (d, v) in t.iter_mut().zip(E16::iter(table)) {
        *d = v as i16;
    }
    for (yv, xv) in y.chunks_exact_mut(2).zip(x.chunks_exact(2)) {
        let q =
            i16::from_le_bytes([xv.first().copied().unwrap_or(0), xv.last().copied().unwrap_or(0)]);
        let u = (q as i32 + 32768) as usize;
        let (j, f) = (u >> 7, (u & 127) as i32);
        let (a, b) = (t.get(j).map_or(0, |&v| v as i32), t.get(j + 1).map_or(0, |&v| v as i32));
        let v = (a + (((b - a) * f + 64) >> 7)).clamp(E16::MIN, E16::MAX);
        yv.copy_from_slice(&(v as i16).to_le_bytes());
    }
}

/// ADD parameters, as in [`super::add::AddParams`].
pub use super::add::AddParams;

/// ADD with inputs `A`, `B` and output `Y` (`left_shift` ≤ 15 when an input is
/// int16, so `v << left_shift` fits i32); `broadcast`: `b` is `1×1×c`.
pub fn add<A: Elem, B: Elem, Y: Elem>(
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
        return unsafe { add_avx2::<A, B, Y>(a, b, y, c, broadcast, p) };
    }
    #[cfg(ddpm_dsp)]
    if add_dsp::add16::<A, B, Y>(a, b, y, c, broadcast, p) {
        return;
    }
    add_body::<A, B, Y>(a, b, y, c, broadcast, p)
}

/// [`add`] without the Armv7E-M fast path (the reference it is checked against).
pub fn add_portable<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) {
    add_body::<A, B, Y>(a, b, y, c, broadcast, p)
}

/// One requantization step of the ADD loop (the int16 ADD of Armv7E-M): `(m, klo,
/// khi, e1, c, sh)` with `stage(x) = ((x << sh)·m + (khi:klo) − [x < 0]·c) >> 32
/// >> e1` (64-bit, arithmetic shifts), which is `zp + mbqm(x << ls, mult, shift)`:
///
/// - a right shift (`shift < 0`): [`OutRq`](super::im2col::OutRq)'s 64-bit form,
///   `c = 2^31`, `sh = ls`, and `zp·2^e1` added to the high word (exact while it
///   cannot wrap: the high word lies within `±(2^30 + 2^29 + 1)`);
/// - no shift (`shift = 0`, `input`: `|x| ≤ 2^15` before the shift by
///   `ls ≤ 15`): SRDHM alone is `⌊(P + 2^30)/2^31⌋` for both signs of
///   `P = x·m` (gemmlowp's nudge for negative `P` with truncation is the same
///   floor), i.e. the high word of `(2x)·m + 2^31` (`|2x| ≤ 2^31`): `sh = ls + 1`,
///   `c = 0`, `e1 = 0`, and `zp` added to the high word (`|zp| < 2^29`; the
///   high word is at most `2^30`).
///
/// The pre-shift `ls` (at most 23, the ADD's clamp; at most 15 without a right
/// shift) wraps as the ADD's does. `None` for other parameters (a left shift, a
/// negative multiplier).
pub fn add_stage(mult: i32, shift: i32, zp: i32, ls: i32, input: bool) -> Option<[i32; 6]> {
    if mult < 0 || !(0..=23).contains(&ls) {
        return None;
    }
    if shift == 0 {
        if ls > 15 {
            return None;
        }
        let z_ok = (zp as i64).abs() < (1 << 29) - 2;
        return (input && z_ok).then_some([mult, i32::MIN, zp, 0, 0, ls + 1]);
    }
    let (kpos, m, e1) = super::im2col::OutRq::new(mult, shift).fast_parts()?;
    let z = (zp as i64) << e1;
    let khi = ((kpos >> 32) + z) as i32;
    (z.abs() < (1 << 29) - 2).then_some([m, kpos as u32 as i32, khi, e1 as i32, i32::MIN, ls])
}

/// [`add_stage`]'s arithmetic (what the assembly loop does with the constants).
#[inline]
pub fn add_stage_apply(k: &[i32; 6], x: i32) -> i32 {
    let [m, klo, khi, e1, c, sh] = *k;
    let v = x.wrapping_shl(sh as u32);
    let kk = ((khi as i64) << 32) | klo as u32 as i64;
    let mut p = (v as i64).wrapping_mul(m as i64).wrapping_add(kk);
    if v < 0 {
        p = p.wrapping_sub(c as u32 as i64);
    }
    ((p >> 32) as i32) >> e1
}

/// Element-wise and broadcast ADD with an int16 first input on Armv7E-M, in
/// assembly loops over [`add_stage`] constants.
#[cfg(ddpm_dsp)]
mod add_dsp {
    use super::{add_stage, AddParams, Elem, Rq};

    /// One stage: `LDM` of its six constants, the pre-shift, `SMLAL`, the sign
    /// term (`AND` with the sign, `SUBS`, `SBC`) and the shift (7 instructions).
    macro_rules! stage {
        ($v:literal) => {
            concat!(
                "ldm r10!, {{r2, r3, r4, r5, r6, r7}}\n",
                "lsl ",
                $v,
                ", ",
                $v,
                ", r7\n",
                "smlal r3, r4, ",
                $v,
                ", r2\n",
                "and r7, r6, ",
                $v,
                ", asr #31\n",
                "subs r3, r3, r7\n",
                "sbc r4, r4, #0\n",
                "asr ",
                $v,
                ", r4, r5\n",
            )
        };
    }

    /// `sat(out_zp + mbqm(mbqm(a << ls, ma, sa) + b', mo, so))` for int16 `a`
    /// (zero point 0), where `b'` is `mbqm(b << ls, mb, sb)` of int16 `b` (zero
    /// point 0) element by element, or, broadcast, a per-channel value computed
    /// once from `b` of any type; the activation range must cover `Y`'s (a
    /// saturation). Per element 29 instructions (22 broadcast). False (nothing
    /// written) for other parameters.
    pub fn add16<A: Elem, B: Elem, Y: Elem>(
        a: &[u8],
        b: &[u8],
        y: &mut [u8],
        c: usize,
        broadcast: bool,
        p: &AddParams,
    ) -> bool {
        if A::BYTES != 2 || p.a_zp != 0 || p.act_min > Y::MIN || p.act_max < Y::MAX {
            return false;
        }
        let n = a.len() / 2;
        if n == 0 || y.len() / Y::BYTES != n {
            return false;
        }
        let ls = p.left_shift;
        let (Some(ka), Some(ko)) = (
            add_stage(p.a_mult, p.a_shift, 0, ls, true),
            add_stage(p.out_mult, p.out_shift, p.out_zp, 0, false),
        ) else {
            return false;
        };
        // One loop over n elements: a from r0, b' from the `bpart` instructions
        // (r1 their pointer, r12 the value), y to r8; k (r10) rewound by
        // `rewind` bytes per element.
        macro_rules! run {
            (@y $sat:literal, $st:literal, $a:expr, $b:expr, $y:expr, $n:expr, $k:expr, $rewind:literal, $($bpart:expr),+) => {
                // SAFETY: n ≥ 1 iterations, each reading one element of `a`, one
                // of b' (int16 `b` or the i32 table, at least n of either) and
                // writing one of `y` (n elements of Y), all checked by the
                // caller; `k` is read `rewind` bytes per iteration and rewound.
                // Every operand is an explicit register, so r6 and r7 hold none;
                // they are saved and restored. r2-r5 are clobbered; the flags are
                // not relied on outside the block.
                unsafe {
                    core::arch::asm!(
                        "push {{r6, r7}}",
                        "2:",
                        "ldrsh r11, [r0], #2",
                        stage!("r11"),
                        $($bpart,)+
                        "add r11, r11, r12",
                        stage!("r11"),
                        concat!("sub r10, r10, #", $rewind),
                        $sat,
                        $st,
                        "subs r9, r9, #1",
                        "bne 2b",
                        "pop {{r6, r7}}",
                        inout("r0") $a => _,
                        inout("r1") $b => _,
                        inout("r8") $y => _,
                        inout("r9") $n => _,
                        inout("r10") $k => _,
                        out("r11") _,
                        out("r12") _,
                        out("r2") _,
                        out("r3") _,
                        out("r4") _,
                        out("r5") _,
                    )
                }
            };
            ($($args:tt)*) => {
                if Y::BYTES == 2 {
                    run!(@y "ssat r11, #16, r11", "strh r11, [r8], #2", $($args)*)
                } else {
                    run!(@y "ssat r11, #8, r11", "strb r11, [r8], #1", $($args)*)
                }
            };
        }
        if !broadcast {
            let kb = add_stage(p.b_mult, p.b_shift, 0, ls, true);
            let Some(kb) = kb.filter(|_| B::BYTES == 2 && p.b_zp == 0 && b.len() / 2 == n) else {
                return false;
            };
            let k: [[i32; 6]; 3] = [ka, kb, ko];
            let (ap, bp, yp, kp) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), k.as_ptr());
            run!(ap, bp, yp, n, kp, "72", "ldrsh r12, [r1], #2", stage!("r12"));
            return true;
        }
        // Broadcast: b' per channel once (the portable formula), then per pixel
        // one loop over its c channels.
        const CMAX: usize = 128;
        if c == 0 || c > CMAX || n % c != 0 || B::count(b) != c {
            return false;
        }
        let rb = Rq::new(p.b_mult, p.b_shift);
        let mut tb = [0i32; CMAX];
        for (t, vb) in tb.iter_mut().zip(B::iter(b)) {
            *t = rb.apply((vb - p.b_zp).wrapping_shl(ls.clamp(0, 23) as u32));
        }
        let k: [[i32; 6]; 2] = [ka, ko];
        for (apx, ypx) in a.chunks_exact(2 * c).zip(y.chunks_exact_mut(c * Y::BYTES)) {
            let (ap, tp, yp, kp) = (apx.as_ptr(), tb.as_ptr(), ypx.as_mut_ptr(), k.as_ptr());
            run!(ap, tp, yp, c, kp, "48", "ldr r12, [r1], #4");
        }
        true
    }
}

/// [`add`] compiled for AVX2 (signed 32×32→64 products in 8 lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2<A: Elem, B: Elem, Y: Elem>(
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
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub fn add_i8_avx2(
    a: &[i8],
    b: &[i8],
    y: &mut [i8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) -> bool {
    use super::{as_u8, as_u8_mut};
    if !std::is_x86_feature_detected!("avx2") {
        return false;
    }
    // SAFETY: the CPU supports AVX2 (checked just above).
    unsafe { add_avx2_stages::<E8, E8, E8>(as_u8(a), as_u8(b), as_u8_mut(y), c, broadcast, p) }
}

/// [`add_stage`] constants as vectors: `(m, K, c, sh, e1)` with `K` the 64-bit
/// `khi:klo` and `c` the sign term (0 or 2^31).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[derive(Clone, Copy)]
struct VStage {
    m: core::arch::x86_64::__m256i,
    k: core::arch::x86_64::__m256i,
    sign: bool,
    sh: core::arch::x86_64::__m128i,
    e1: core::arch::x86_64::__m128i,
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
impl VStage {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn new(k: &[i32; 6]) -> Self {
        use core::arch::x86_64::*;
        let [m, klo, khi, e1, c, sh] = *k;
        VStage {
            m: _mm256_set1_epi32(m),
            k: _mm256_set1_epi64x(((khi as i64) << 32) | klo as u32 as i64),
            sign: c != 0,
            sh: _mm_cvtsi32_si128(sh),
            e1: _mm_cvtsi32_si128(e1),
        }
    }

    /// [`add_stage_apply`] on eight lanes: `((x << sh)·m + K − [x << sh < 0]·c)`,
    /// then the high word shifted right by `e1`; the products exact in 64 bits
    /// (`VPMULDQ` on the even lanes and on the odd lanes shifted down).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn apply(&self, x: core::arch::x86_64::__m256i) -> core::arch::x86_64::__m256i {
        use core::arch::x86_64::*;
        let v = _mm256_sll_epi32(x, self.sh);
        let mut pe = _mm256_add_epi64(_mm256_mul_epi32(v, self.m), self.k);
        let mut po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), self.m), self.k);
        if self.sign {
            // −2^31 (as i64) where v < 0: low word 2^31, high word −1.
            let s = _mm256_srai_epi32(v, 31);
            let lohi = _mm256_set_epi32(-1, i32::MIN, -1, i32::MIN, -1, i32::MIN, -1, i32::MIN);
            pe = _mm256_add_epi64(
                pe,
                _mm256_and_si256(_mm256_shuffle_epi32(s, 0b10_10_00_00), lohi),
            );
            po = _mm256_add_epi64(
                po,
                _mm256_and_si256(_mm256_shuffle_epi32(s, 0b11_11_01_01), lohi),
            );
        }
        // High words: the even lanes' shifted down, the odd lanes' in place.
        let hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0b1010_1010);
        _mm256_sra_epi32(hi, self.e1)
    }
}

/// Eight elements of `E` from `b` at element `i` as i32 lanes (`None` past the end).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load8<E: Elem>(b: &[u8], i: usize) -> Option<core::arch::x86_64::__m256i> {
    use core::arch::x86_64::*;
    let s = b.get(i * E::BYTES..(i + 8) * E::BYTES)?;
    // SAFETY: s holds 8 elements (8 or 16 bytes).
    Some(unsafe {
        if E::BYTES == 2 {
            _mm256_cvtepi16_epi32(_mm_loadu_si128(s.as_ptr().cast()))
        } else {
            _mm256_cvtepi8_epi32(_mm_loadl_epi64(s.as_ptr().cast()))
        }
    })
}

/// Stores eight i32 lanes (already within `Y`'s range) as elements `i ..` of `y`.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store8<Y: Elem>(y: &mut [u8], i: usize, v: core::arch::x86_64::__m256i) {
    use core::arch::x86_64::*;
    let Some(d) = y.get_mut(i * Y::BYTES..(i + 8) * Y::BYTES) else { return };
    let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    // SAFETY: d holds 8 elements (16 or 8 bytes).
    unsafe {
        if Y::BYTES == 2 {
            _mm_storeu_si128(d.as_mut_ptr().cast(), w);
        } else {
            _mm_storel_epi64(d.as_mut_ptr().cast(), _mm_packs_epi16(w, w));
        }
    }
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
#[cfg(all(feature = "std", target_arch = "x86_64"))]
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

/// One input of CONCAT (input `X`, output `Y`): channels `c_off..c_off + c_in` of
/// every output pixel; `mult = 0` copies (`q − in_zp + out_zp`).
#[allow(clippy::too_many_arguments)]
pub fn concat_one<X: Elem, Y: Elem>(
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

/// The staged loop of [`concat_one`] on AVX2, eight channels per step
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

/// REQUANT from `X` to `Y`.
pub fn requant<X: Elem, Y: Elem>(
    x: &[u8],
    y: &mut [u8],
    in_zp: i32,
    out_zp: i32,
    mult: i32,
    shift: i32,
) {
    for i in 0..X::count(x).min(Y::count(y)) {
        let o = out_zp.saturating_add(mbqm(X::get(x, i) - in_zp, mult, shift));
        Y::put_clamped(y, i, o, Y::MIN, Y::MAX);
    }
}

/// UPSAMPLE_NEAREST of `e`-byte elements.
pub fn upsample_bytes(
    x: &[u8],
    [h, w, c]: [usize; 3],
    y: &mut [u8],
    fh: usize,
    fw: usize,
    e: usize,
) {
    let row = c * e;
    let (oh, ow) = (h * fh, w * fw);
    for oy in 0..oh {
        for ox in 0..ow {
            let src = ((oy / fh.max(1)) * w + ox / fw.max(1)) * row;
            let dst = (oy * ow + ox) * row;
            if let (Some(s), Some(d)) = (x.get(src..src + row), y.get_mut(dst..dst + row)) {
                d.copy_from_slice(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::testutil::*;

    fn i16_bytes(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn from_i16_bytes(b: &[u8]) -> Vec<i32> {
        b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()
    }

    /// Plain i64 model of CONV2D with i16 input/output (explicit padding).
    #[test]
    fn conv2d_i16_matches_i64_model() {
        let mut r = Rng(0x16);
        for case in 0..300 {
            let (h, wd) = (r.range(3, 7) as usize, r.range(3, 7) as usize);
            let ic = r.range(1, 6) as usize;
            let oc = r.range(1, 5) as usize;
            let (kh, kw) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let (sh, sw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
            let (pt, pl) = (r.range(0, kh as i64 - 1) as usize, r.range(0, kw as i64 - 1) as usize);
            let (pb, pr) = (r.range(0, 1) as usize, r.range(0, 1) as usize);
            let oh = (h + pt + pb - kh) / sh + 1;
            let ow = (wd + pl + pr - kw) / sw + 1;
            let x: Vec<i16> = (0..h * wd * ic)
                .map(|i| if case % 4 == 0 && i % 3 == 0 { i16::MIN } else { r.next() as i16 })
                .collect();
            let ksz = kh * kw * ic;
            let w: Vec<i8> = (0..oc * ksz).map(|_| r.range(-127, 127) as i8).collect();
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 20, 1 << 20) as i32).collect();
            let reals: Vec<f64> = (0..oc).map(|_| 1e-5 + r.f64() * 1e-2).collect();
            let (mult, shift): (Vec<i32>, Vec<i32>) =
                reals.iter().map(|&v| quantize_multiplier(v)).unzip();
            let p = Conv2dParams {
                kh,
                kw,
                sh,
                sw,
                pt,
                pl,
                in_zp: 0,
                out_zp: 0,
                act_min: -32768,
                act_max: 32767,
            };
            let xb = i16_bytes(&x);
            let mut yb = vec![0u8; oh * ow * oc * 2];
            conv2d::<E16, E16>(
                &xb,
                [h, wd, ic],
                &mut yb,
                [oh, ow, oc],
                &p,
                &w,
                &i32_bytes(&bias),
                &i32_bytes(&mult),
                &i32_bytes(&shift),
            );
            let got = from_i16_bytes(&yb);
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..oc {
                        let mut acc = bias[o] as i64;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * sh + ky) as i64 - pt as i64;
                                let ix = (ox * sw + kx) as i64 - pl as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                for i in 0..ic {
                                    let xv = x[(iy as usize * wd + ix as usize) * ic + i] as i64;
                                    acc += xv * w[o * ksz + (ky * kw + kx) * ic + i] as i64;
                                }
                            }
                        }
                        let want = mbqm(acc as i32, mult[o], shift[o]).clamp(-32768, 32767);
                        assert_eq!(got[(oy * ow + ox) * oc + o], want, "case {case}");
                        let real = acc as f64 * real_of(mult[o], shift[o]);
                        assert!((want as f64 - real.clamp(-32768.0, 32767.0)).abs() <= 1.0);
                    }
                }
            }
        }
    }

    #[test]
    fn conv2d_i8_in_i16_out_matches_i8_kernel_scaled() {
        // int8 in, int16 out with the multiplier ×256 equals the int8 kernel's
        // accumulator requantized at 256× finer scale: compare against mbqm directly.
        let mut r = Rng(0x816);
        for _ in 0..100 {
            let (h, wd, ic, oc) = (4, 5, r.range(1, 4) as usize, r.range(1, 4) as usize);
            let x = r.vec_i8(h * wd * ic);
            let w: Vec<i8> = (0..oc * 9 * ic).map(|_| r.range(-127, 127) as i8).collect();
            let in_zp = r.range(-128, 127) as i32;
            let (m, s) = quantize_multiplier(0.37);
            let p = Conv2dParams {
                kh: 3,
                kw: 3,
                sh: 1,
                sw: 1,
                pt: 1,
                pl: 1,
                in_zp,
                out_zp: 0,
                act_min: -32768,
                act_max: 32767,
            };
            let xb: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            let mut yb = vec![0u8; h * wd * oc * 2];
            let mm = i32_bytes(&vec![m; oc]);
            let ss = i32_bytes(&vec![s; oc]);
            conv2d::<E8, E16>(&xb, [h, wd, ic], &mut yb, [h, wd, oc], &p, &w, &[], &mm, &ss);
            let got = from_i16_bytes(&yb);
            for oy in 0..h {
                for ox in 0..wd {
                    for o in 0..oc {
                        let mut acc = 0i32;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (oy as i64 + ky - 1, ox as i64 + kx - 1);
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                for i in 0..ic {
                                    let v = x[(iy as usize * wd + ix as usize) * ic + i] as i32;
                                    let wv = w[o * 9 * ic + ((ky * 3 + kx) as usize) * ic + i];
                                    acc += (v - in_zp) * wv as i32;
                                }
                            }
                        }
                        let want = mbqm(acc, m, s).clamp(-32768, 32767);
                        assert_eq!(got[(oy * wd + ox) * oc + o], want);
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
            group_norm::<E16, E16>(
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

    #[test]
    fn lut16_interpolates_exactly() {
        let mut r = Rng(0x17);
        let t: Vec<i16> = (0..513).map(|_| r.next() as i16).collect();
        let x: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).chain([i16::MAX]).collect();
        let mut yb = vec![0u8; x.len() * 2];
        lut16(&i16_bytes(&x), &mut yb, &i16_bytes(&t));
        for (&q, y) in x.iter().zip(from_i16_bytes(&yb)) {
            let u = q as i32 + 32768;
            let (j, f) = ((u >> 7) as usize, (u & 127) as i64);
            let (a, b) = (t[j] as i64, t[j + 1] as i64);
            let want = a + ((b - a) * f + 64).div_euclid(128);
            assert_eq!(y as i64, want);
            assert!(y as i64 >= a.min(b) && y as i64 <= a.max(b));
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
            add::<E16, E8, E16>(&i16_bytes(&a), &bb, &mut yb, 4, true, &p);
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
    /// The ADD loop's stage constants give `zp + mbqm(x << ls, mult, shift)` for
    /// int16 inputs and for wide sums, shifts 0 (inputs) and right shifts, extreme
    /// values included; other parameters are refused.
    #[test]
    fn add_stage_matches_mbqm() {
        let mut r = Rng(0xadd);
        let mut ran = [0; 2];
        for i in 0..200_000u32 {
            let input = i % 2 == 0;
            let mult = match i % 5 {
                0 => 1 << 30,
                1 => i32::MAX,
                _ => (r.next() as i32 & i32::MAX) | 1 << 30,
            };
            let shift = if input && i % 3 == 0 { 0 } else { -(r.range(1, 31) as i32) };
            let ls = match (input, shift) {
                (false, _) => 0,
                (true, 0) => r.range(0, 15) as i32,
                _ => r.range(0, 23) as i32,
            };
            let zp = if input && i % 4 == 0 { 0 } else { r.range(-128, 127) as i32 };
            let x = if input {
                match i % 7 {
                    0 => [-32768, 32767, 0, -1][(i / 2 % 4) as usize],
                    _ => r.range(-32768, 32767) as i32,
                }
            } else {
                (r.next() as i32) >> (i % 31)
            };
            let Some(k) = add_stage(mult, shift, zp, ls, input) else {
                assert!(shift < 0 && (zp.abs() as i64) << (-shift - 1) >= (1 << 29) - 2, "refused");
                continue;
            };
            let want = zp.wrapping_add(mbqm(x.wrapping_shl(ls as u32), mult, shift));
            assert_eq!(add_stage_apply(&k, x), want, "x={x} m={mult} s={shift} zp={zp} ls={ls}");
            ran[input as usize] += 1;
        }
        assert!(ran[0] > 50_000 && ran[1] > 80_000, "{ran:?}");
        assert_eq!(add_stage(-5, -3, 0, 0, true), None);
        assert_eq!(add_stage(1 << 30, 2, 0, 0, true), None);
        assert_eq!(add_stage(1 << 30, 0, 0, 0, false), None);
        assert_eq!(add_stage(1 << 30, 0, 0, 16, true), None);
        assert_eq!(add_stage(1 << 30, -3, 0, 24, true), None);
    }

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
            add::<A, B, Y>(&a, &b, &mut got, c, bc, p);
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
            concat_one::<X, Y>(&x, c_in, &mut y, c_out, c_off, in_zp, out_zp, mult, shift);
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
    fn concat_and_requant_mixed() {
        let mut r = Rng(0xc0);
        let a: Vec<i16> = (0..12).map(|_| r.next() as i16).collect();
        let b = r.vec_i8(6);
        let bb: Vec<u8> = b.iter().map(|&v| v as u8).collect();
        let mut yb = vec![0u8; 18 * 2];
        concat_one::<E16, E16>(&i16_bytes(&a), 2, &mut yb, 3, 0, 0, 0, 0, 0);
        let (m, s) = quantize_multiplier(256.0);
        concat_one::<E8, E16>(&bb, 1, &mut yb, 3, 2, 3, 0, m, s);
        let y = from_i16_bytes(&yb);
        for p in 0..6 {
            assert_eq!(y[p * 3], a[p * 2] as i32);
            assert_eq!(y[p * 3 + 1], a[p * 2 + 1] as i32);
            assert_eq!(y[p * 3 + 2], ((b[p] as i32 - 3) * 256).clamp(-32768, 32767));
        }
        let (m, s) = quantize_multiplier(1.0 / 256.0);
        let mut y8 = vec![0u8; 12];
        requant::<E16, E8>(&i16_bytes(&a), &mut y8, 0, -5, m, s);
        for (q, &v) in y8.iter().zip(&a) {
            let want = (-5.0 + v as f64 / 256.0).round().clamp(-128.0, 127.0);
            assert!((*q as i8 as f64 - want).abs() <= 1.0);
        }
    }

    #[test]
    fn upsample_i16_copies_elements() {
        let x: Vec<i16> = (0..2 * 3 * 2).map(|v| v * 1000 - 5000).collect();
        let mut yb = vec![0u8; 4 * 6 * 2 * 2];
        upsample_bytes(&i16_bytes(&x), [2, 3, 2], &mut yb, 2, 2, 2);
        let y = from_i16_bytes(&yb);
        for oy in 0..4 {
            for ox in 0..6 {
                for k in 0..2 {
                    assert_eq!(y[(oy * 6 + ox) * 2 + k], x[((oy / 2) * 3 + ox / 2) * 2 + k] as i32);
                }
            }
        }
    }
}

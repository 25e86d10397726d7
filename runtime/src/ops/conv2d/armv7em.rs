//! CONV2D with an int8 input on Armv7E-M (Cortex-M4/M7): im2col columns of five
//! output pixels run against every output channel's weights with `SMLAD`
//! (`cfg(ddpm_dsp)`). The same kernel compiles everywhere with plain-Rust inner
//! loops ([`crate::ops::numerics::columns`]), so hosts test it; the int16-input
//! kernel of the M4 is [`super::armv7em_i16`].
//!
//! For five output pixels at a time the kernel window of each is gathered as
//! sign-extended 16-bit values (padding taps read `in_zp`), in chunks of [`KC`]
//! window elements, and every output channel's weights are run against the five
//! columns at once: each weight word is loaded and sign-extended once for five
//! pixels. The input zero point is folded into the bias
//! (`Σ(x − zp)·w = Σx·w − zp·Σw`, `Σw` once per output channel and call). Since
//! `|x| ≤ 128` and `|w| ≤ 128`, every product and every partial sum is exact in
//! i32 (the loader bounds `kh·kw·ic ≤ 32768`), so the sums equal the reference
//! kernel's and the outputs are bit-identical.
//!
//!
//! Column layout: [`crate::ops::numerics::columns`].
//!
//! Stack: `4·GW·KC/16 + 4·GW` bytes of columns (2.9 KiB), two [`KC`]-byte buffers
//! (raw window, padded weights) and the constants and partial sums of a block of
//! 64 output channels (5 KiB: a 64-channel layer gathers its windows once).

use super::params::Conv2dParams;
use super::window::gather8;
use crate::ops::numerics::columns::{
    columns, kern, pixel_words, COL_WORDS, GW, KB, KC, PIX, SENTINEL,
};
use crate::ops::numerics::{as_u8_mut, le_i32, Elem, OutRq, E8};

/// Output channels per block (their constants and partial sums live on the stack;
/// the windows are gathered once per block).
const BLOCK: usize = 64;

/// Whether [`conv2d_im2col`] handles this convolution: at least 2 output pixels
/// and an int8 input zero point.
pub fn applicable(ic: usize, out_pixels: usize, p: &Conv2dParams) -> bool {
    let ksz = p.kh * p.kw * ic;
    out_pixels >= 2 && ksz >= 1 && (-128..=127).contains(&p.in_zp) && ksz <= 32768
}

/// One chunk for every channel of a block: channel `j`'s sums are added to
/// `part[j]`, which the first chunk sets to `first[j]` (the channel's bias).
#[inline(never)]
fn channels_part(
    col: &[u32; COL_WORDS],
    nb: usize,
    w: &[i8],
    ws: usize,
    part: &mut [[i32; PIX]],
    first: Option<&[i32]>,
) {
    let rows = part.iter_mut().zip(w.chunks(ws.max(1)));
    match first {
        Some(bias) => {
            for ((pj, wc), &b) in rows.zip(bias) {
                *pj = [b; PIX];
                kern::dot5(col, wc, nb, pj);
            }
        }
        None => rows.for_each(|(pj, wc)| kern::dot5(col, wc, nb, pj)),
    }
}

/// Bytes of the per-block copy of zero-padded weights (single-chunk windows that
/// are not a multiple of [`KB`], such as a 3×3 kernel on one input channel).
const WBLK: usize = 512;

/// Requantizes the sums of one output channel for up to [`PIX`] pixels and
/// stores them as elements `base`, `base + oc`, … of `y` (type `Y`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn store<Y: Elem>(
    y: &mut [u8],
    base: usize,
    oc: usize,
    valid: usize,
    acc: &[i32; PIX],
    b: i32,
    rq: &OutRq,
    p: &Conv2dParams,
) {
    let (zp, lo, hi) = (p.out_zp, p.act_min, p.act_max);
    // With Y::MIN ≤ lo ≤ hi ≤ Y::MAX, the clamp to [lo, hi] implies the clamp to
    // the type's range.
    let end = (base + (PIX - 1) * oc + 1) * Y::BYTES;
    if valid == PIX && end <= y.len() && Y::MIN <= lo && lo <= hi && hi <= Y::MAX {
        let put = |y: &mut [u8], i: usize, v: i32| {
            let e = (base + i * oc) * Y::BYTES;
            // SAFETY: e + Y::BYTES ≤ end ≤ y.len() (checked above); the u16 store
            // is unaligned-safe.
            unsafe {
                if Y::BYTES == 2 {
                    y.as_mut_ptr().add(e).cast::<u16>().write_unaligned((v as u16).to_le());
                } else {
                    *y.get_unchecked_mut(e) = v as u8;
                }
            }
        };
        if rq.fast {
            // OutRq::apply's fast arm with the constants in registers; the clamp
            // is a saturation when the range is the type's.
            let f = FastRq::new(rq);
            if lo == Y::MIN && hi == Y::MAX {
                for (i, &s) in acc.iter().enumerate() {
                    put(y, i, zp.wrapping_add(f.apply(b.wrapping_add(s))).clamp(Y::MIN, Y::MAX));
                }
            } else {
                for (i, &s) in acc.iter().enumerate() {
                    put(y, i, zp.wrapping_add(f.apply(b.wrapping_add(s))).max(lo).min(hi));
                }
            }
            return;
        }
        for (i, &s) in acc.iter().enumerate() {
            put(y, i, zp.wrapping_add(rq.apply(b.wrapping_add(s))).max(lo).min(hi));
        }
    } else {
        for (i, &s) in acc.iter().enumerate().take(valid) {
            let v = zp.wrapping_add(rq.apply(b.wrapping_add(s)));
            Y::put_clamped(y, base + i * oc, v, lo, hi);
        }
    }
}

/// The fast-arm constants of one channel, packed for the block store: `m`, the
/// low word of `kpos`, the high word of `kpos` plus `out_zp·2^e1`, `e1`.
///
/// Adding `zp·2^e1` to the high word before the arithmetic shift by `e1` adds
/// exactly `zp` after it, provided the high word does not wrap: it lies within
/// `±(2^30 + 2^29 + 1)` (`|acc·m| < 2^62`, `kpos ≤ 2^30 + 2^61`, the sign term
/// `2^31`), so `|zp|·2^e1 < 2^29 − 2` keeps it inside i32.
pub(super) type Packed = [i32; 4];

/// Packs `k` with the output zero point `zp` into `out` when every channel is on
/// the fast arm and `zp` folds into its constant; false (and `out` unusable)
/// otherwise.
#[inline]
pub(super) fn pack(k: &[(i32, OutRq)], zp: i32, out: &mut [Packed]) -> bool {
    for (o, (_, rq)) in out.iter_mut().zip(k) {
        let z = (zp as i64) << rq.e1;
        if !rq.fast || z.abs() >= (1 << 29) - 2 {
            return false;
        }
        *o = [rq.m, rq.kpos as u32 as i32, ((rq.kpos >> 32) + z) as i32, rq.e1 as i32];
    }
    out.len() >= k.len()
}

/// [`store`] for a block of channels: `part[j]` are the sums of channel
/// `base + j`, its bias included (constants `k[j]`, whose biases are not added
/// again, and `packed[j]` when [`pack`] succeeded, else `packed` is empty), for up
/// to [`PIX`] pixels `oc` elements apart. A function of its own, so that the
/// constants and sums live in registers.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn store_block<Y: Elem>(
    y: &mut [u8],
    base: usize,
    oc: usize,
    valid: usize,
    part: &[[i32; PIX]],
    k: &[(i32, OutRq)],
    packed: &[Packed],
    p: &Conv2dParams,
) {
    let (lo, hi) = (p.act_min, p.act_max);
    let cn = part.len().min(k.len());
    let end = (base + (PIX - 1) * oc + cn) * Y::BYTES;
    let full = lo == Y::MIN && hi == Y::MAX;
    if cn == 0 || valid != PIX || end > y.len() || !full || packed.len() < cn {
        for (j, (acc, (_, rq))) in part.iter().zip(k).enumerate() {
            store::<Y>(y, base + j, oc, valid, acc, 0, rq, p);
        }
        return;
    }
    // The common case: every channel on the fast arm, the activation range the
    // type's (a saturation), the whole block in bounds; pixel by pixel, the
    // block's channels are contiguous in `y`.
    for i in 0..PIX {
        let (yo, pi) = ((base + i * oc) * Y::BYTES, part.as_ptr().cast::<i32>());
        // SAFETY: the row writes cn elements of Y from byte yo, ending at or
        // before `end` ≤ y.len() (checked above); part has cn ≥ 1 entries of PIX
        // words (entry j, word i read, i < PIX) and packed at least cn entries.
        unsafe { fast_row::<Y>(y.as_mut_ptr().add(yo), pi.add(i), packed.as_ptr(), cn) };
    }
}

/// One pixel's outputs of a block: for `j < n`, element `j` of `y` (type `Y`) is
/// `sat(fast(s[5·j]))` with the zero point folded into `k[j]` ([`pack`]).
///
/// # Safety
/// `y` must be valid for `n` elements of `Y`, `s` for reads of words `5·j`
/// (`j < n`), `k` for `n` entries; `n ≥ 1`.
#[cfg(not(ddpm_dsp))]
#[inline(always)]
unsafe fn fast_row<Y: Elem>(y: *mut u8, s: *const i32, k: *const Packed, n: usize) {
    for j in 0..n {
        // SAFETY: j < n (the caller's contract).
        let ([m, klo, khi, e1], sum) = unsafe { (*k.add(j), *s.add(PIX * j)) };
        let f = FastRq { klo: klo as u32, khi, m, e1: e1 as u32 };
        let v = f.apply(sum).clamp(Y::MIN, Y::MAX);
        // SAFETY: as above; the u16 store is unaligned-safe.
        unsafe {
            if Y::BYTES == 2 {
                y.add(2 * j).cast::<u16>().write_unaligned((v as u16).to_le());
            } else {
                y.add(j).write(v as u8);
            }
        }
    }
}

/// As the portable `fast_row`, on Armv7E-M: per channel one `LDM` of its
/// constants, the two `SMLAL`s of [`FastRq::apply`], the shift, `SSAT` and a
/// post-indexed store; two channels per loop iteration (9.5 instructions per
/// output).
///
/// # Safety
/// As the portable one.
#[cfg(ddpm_dsp)]
#[inline(always)]
unsafe fn fast_row<Y: Elem>(y: *mut u8, s: *const i32, k: *const Packed, n: usize) {
    macro_rules! one {
        ($sat:literal, $st:literal) => {
            concat!(
                "ldm {k}!, {{r9-r12}}\n",
                "ldr {t}, [{s}], #20\n",
                "smlal r10, r11, {t}, r9\n",
                "lsr {t}, {t}, #31\n",
                "smlal r10, r11, {t}, {min}\n",
                "asr r11, r11, r12\n",
                $sat,
                "\n",
                $st,
                "\n",
            )
        };
    }
    macro_rules! row {
        ($sat:literal, $st:literal) => {
            // SAFETY: n ≥ 1 channels, each reading 4 words of k, one word of s
            // (stride 5 words) and writing one element of y (the caller's
            // contract): an odd n runs one channel first, then pairs. r9-r12 are
            // clobbered; flags are not relied on outside the block.
            unsafe {
                core::arch::asm!(
                    "tst {n}, #1",
                    "beq 2f",
                    one!($sat, $st),
                    "subs {n}, {n}, #1",
                    "beq 3f",
                    "2:",
                    one!($sat, $st),
                    one!($sat, $st),
                    "subs {n}, {n}, #2",
                    "bne 2b",
                    "3:",
                    k = inout(reg) k => _,
                    s = inout(reg) s => _,
                    y = inout(reg) y => _,
                    n = inout(reg) n => _,
                    t = out(reg) _,
                    min = in(reg) i32::MIN,
                    out("r9") _,
                    out("r10") _,
                    out("r11") _,
                    out("r12") _,
                    options(nostack),
                )
            }
        };
    }
    if Y::BYTES == 2 {
        row!("ssat r11, #16, r11", "strh r11, [{y}], #2");
    } else {
        row!("ssat r11, #8, r11", "strb r11, [{y}], #1");
    }
}

/// [`OutRq`]'s fast arm with the 64-bit constant split into words (for
/// `OutRq::fast` parameters only).
#[derive(Clone, Copy, Debug)]
struct FastRq {
    klo: u32,
    khi: i32,
    m: i32,
    e1: u32,
}

impl FastRq {
    #[inline(always)]
    fn new(rq: &OutRq) -> Self {
        FastRq { klo: rq.kpos as u32, khi: (rq.kpos >> 32) as i32, m: rq.m, e1: rq.e1 }
    }

    /// `(((a·m + kpos + (a & i32::MIN)) >> 32) as i32) >> e1`.
    #[cfg(not(ddpm_dsp))]
    #[inline(always)]
    fn apply(&self, a: i32) -> i32 {
        let k = (((self.khi as i64) << 32) | self.klo as i64) + (a & i32::MIN) as i64;
        (((a as i64 * self.m as i64 + k) >> 32) as i32) >> self.e1
    }

    /// As the portable one: `SMLAL` of `a·m` into `kpos`, a second `SMLAL` adds
    /// `(a >>> 31)·i32::MIN` (`−2^31` for negative `a`), then the high word
    /// shifted right by `e1`.
    #[cfg(ddpm_dsp)]
    #[inline(always)]
    fn apply(&self, a: i32) -> i32 {
        let (mut lo, mut hi) = (self.klo, self.khi);
        // SAFETY: register-only Armv7E-M arithmetic; no memory, stack or flags.
        unsafe {
            core::arch::asm!(
                "smlal {lo}, {hi}, {a}, {m}",
                "lsr {t}, {a}, #31",
                "smlal {lo}, {hi}, {t}, {min}",
                "asr {hi}, {hi}, {e}",
                lo = inout(reg) lo,
                hi = inout(reg) hi,
                a = in(reg) a,
                m = in(reg) self.m,
                t = out(reg) _,
                min = in(reg) i32::MIN,
                e = in(reg) self.e1,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        let _ = lo;
        hi
    }
}

/// [`gather`] straight into pixel `px`'s column words, for `ic % 4 == 0` (every
/// source run then covers whole groups of 4 elements); the groups from `len` up
/// to `lenp` are zero.
///
/// A window inside the input is one run per kernel row. Otherwise kernel row by
/// kernel row: a row outside the input is all padding (`in_zp`); else its taps
/// `kx_lo..kx_hi` (the same for every row) are one contiguous run of the input
/// between padding on either side, each piece clipped to the chunk.
#[allow(clippy::too_many_arguments)]
fn gather_columns(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    lenp: usize,
    px: usize,
    col: &mut [u32],
) {
    let groups = col.get_mut(..lenp / 4 * GW).unwrap_or(&mut []);
    let zz = (p.in_zp as u16 as u32) * 0x0001_0001;
    // Pixel px's words of groups [a, b) (window elements 4a .. 4b from k0) := v.
    let fill = |dst: &mut [u32], a: usize, b: usize, v: u32| {
        if b > a {
            for d in pixel_words(dst.get_mut(a * GW..b * GW).unwrap_or(&mut []), px) {
                if let [d0, d1, ..] = d {
                    (*d0, *d1) = (v, v);
                }
            }
        }
    };
    let ng = len / 4;
    fill(groups, ng, lenp / 4, 0);
    let row = p.kw * ic;
    let Some((iy0, ix0)) = pos.filter(|_| row > 0) else {
        fill(groups, 0, ng, 0);
        return;
    };
    let k1 = k0 + len;
    if iy0 >= 0 && iy0 as usize + p.kh <= h && ix0 >= 0 && ix0 as usize + p.kw <= wd {
        // The whole window is inside the input: kernel row r is the contiguous run
        // of `row` elements at `base + r·wd·ic`; the chunk's rows follow each
        // other in the columns.
        let base = (iy0 as usize * wd + ix0 as usize) * ic;
        let mut r = k0 / row;
        let (mut k, mut off) = (k0, base + r * wd * ic + (k0 - r * row));
        let mut dst = groups.get_mut(2 * px..).unwrap_or(&mut []);
        while k < k1 {
            let n = ((r + 1) * row).min(k1) - k;
            kern::ext_run(x.get(off..off + n).unwrap_or(&[]), dst, n / 4);
            dst = dst.get_mut(n / 4 * GW..).unwrap_or(&mut []);
            r += 1;
            (k, off) = (k + n, base + r * wd * ic);
        }
        return;
    }
    // Taps kx_lo..kx_hi of a kernel row lie inside the input horizontally.
    let kw = p.kw as isize;
    let kx_lo = (-ix0).clamp(0, kw);
    let kx_hi = (wd as isize - ix0).clamp(kx_lo, kw);
    let (in_lo, in_hi) = (kx_lo as usize * ic, kx_hi as usize * ic);
    let mut r = k0 / row;
    let mut k = k0;
    while k < k1 {
        let rs = r * row;
        let re = (rs + row).min(k1);
        let iy = iy0 + r as isize;
        if iy < 0 || iy as usize >= h {
            fill(groups, (k - k0) / 4, (re - k0) / 4, zz);
        } else {
            let a = (rs + in_lo).clamp(k, re);
            let b = (rs + in_hi).clamp(a, re);
            fill(groups, (k - k0) / 4, (a - k0) / 4, zz);
            if b > a {
                // a − rs ≥ kx_lo·ic ≥ −ix0·ic: the offset is not negative.
                let off = ((iy as usize * wd) as isize + ix0) * ic as isize + (a - rs) as isize;
                let off = off.max(0) as usize;
                let dst = groups.get_mut((a - k0) / 4 * GW + 2 * px..).unwrap_or(&mut []);
                kern::ext_run(x.get(off..off + (b - a)).unwrap_or(&[]), dst, (b - a) / 4);
            }
            fill(groups, (b - k0) / 4, (re - k0) / 4, zz);
        }
        k = re;
        r += 1;
    }
}

/// The convolution (same contract as [`super::conv2d`]), for
/// [`applicable`] shapes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [i8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    let y = as_u8_mut(y);
    conv2d_im2col_to::<E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift);
}

/// [`conv2d_im2col`] with an int8 or int16 output `Y` (little-endian bytes),
/// clamped to the activation range and to `Y`'s range (the int8-input CONV2D of
/// the mixed-precision path).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_to<Y: Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [u8],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    let ic = in_shape[2];
    let ksz = p.kh * p.kw * ic;
    let npix = oh * ow;
    if oc == 0 || ksz == 0 || npix == 0 {
        return;
    }
    let zp = p.in_zp;
    let mut col = [0u32; COL_WORDS];
    let mut raw = [0i8; KC];
    let mut wpad = [0i8; KC];
    let mut wblk = [0i8; WBLK];
    let ksp = ksz.div_ceil(KB) * KB;
    let mut part = [[0i32; PIX]; BLOCK];
    let chunks = ksz.div_ceil(KC);
    let fused = ic % 4 == 0;
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        // Per channel: bias − zp·Σw and the requantization.
        let mut k = [(0i32, OutRq::default()); BLOCK];
        let mut kbias = [0i32; BLOCK];
        for (j, (kj, kb)) in k.iter_mut().zip(kbias.iter_mut()).enumerate().take(cn) {
            let o = c0 + j;
            let sw = kern::sum_i8(w.get(o * ksz..(o + 1) * ksz).unwrap_or(&[]));
            *kb = le_i32(bias, o).wrapping_sub(zp.wrapping_mul(sw));
            *kj = (*kb, OutRq::new(le_i32(mult, o), le_i32(shift, o)));
        }
        let mut kpb = [[0i32; 4]; BLOCK];
        let fast = pack(k.get(..cn).unwrap_or(&[]), p.out_zp, kpb.get_mut(..cn).unwrap_or(&mut []));
        let kp = if fast { kpb.get(..cn).unwrap_or(&[]) } else { &[] };
        // Small windows that are not a multiple of KB: the block's weights padded once.
        let blk = chunks == 1 && ksp != ksz && cn * ksp <= WBLK;
        if blk {
            for (j, d) in wblk.chunks_exact_mut(ksp).take(cn).enumerate() {
                let o = c0 + j;
                let src = w.get(o * ksz..(o + 1) * ksz).unwrap_or(&[]);
                let (head, pad) = d.split_at_mut(ksz);
                head.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
                pad.iter_mut().for_each(|v| *v = 0);
            }
        }
        let mut q0 = 0;
        while q0 < npix {
            let pos: [Option<(isize, isize)>; PIX] = core::array::from_fn(|i| {
                let q = q0 + i;
                (q < npix).then(|| {
                    let (oy, ox) = (q / ow, q % ow);
                    ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
                })
            });
            let valid = (npix - q0).min(PIX);
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                let lenp = len.div_ceil(KB) * KB;
                let nb = lenp / KB;
                for (i, &ps) in pos.iter().enumerate() {
                    if fused {
                        gather_columns(x, in_shape, p, ps, k0, len, lenp, i, &mut col);
                    } else {
                        gather8(x, in_shape, p, ps, k0, len, &mut raw);
                        raw.iter_mut().take(lenp).skip(len).for_each(|v| *v = 0);
                        columns(raw.get(..lenp).unwrap_or(&[]), i, &mut col);
                    }
                }
                if let Some(s) = col.get_mut(nb * KB / 4 * GW) {
                    *s = SENTINEL;
                }
                let last = ch + 1 == chunks;
                if valid == PIX && (blk || len == lenp) {
                    // The common cases, in functions of their own (few live values).
                    let (ws, wall) = if blk {
                        (ksp, wblk.get(..cn * ksp).unwrap_or(&[]))
                    } else {
                        (ksz, w.get(c0 * ksz + k0..(c0 + cn) * ksz).unwrap_or(&[]))
                    };
                    let pb = part.get_mut(..cn).unwrap_or(&mut []);
                    let kb = k.get(..cn).unwrap_or(&[]);
                    let first = (ch == 0).then_some(kbias.get(..cn).unwrap_or(&[]));
                    channels_part(&col, nb, wall, ws, pb, first);
                    if last {
                        store_block::<Y>(y, q0 * oc + c0, oc, PIX, pb, kb, kp, p);
                    }
                    continue;
                }
                for (j, (pj, (b, rq))) in part.iter_mut().zip(&k).enumerate().take(cn) {
                    let o = c0 + j;
                    let mut wc = w.get(o * ksz + k0..o * ksz + k0 + len).unwrap_or(&[]);
                    if blk {
                        wc = wblk.get(j * ksp..(j + 1) * ksp).unwrap_or(&[]);
                    } else if len != lenp {
                        let (head, pad) = wpad.split_at_mut(len.min(KC));
                        head.iter_mut().zip(wc).for_each(|(d, &s)| *d = s);
                        pad.iter_mut().take(lenp - len).for_each(|v| *v = 0);
                        wc = wpad.get(..lenp).unwrap_or(&[]);
                    }
                    // The sums start from the bias (as in `channels_part`).
                    let mut acc = if ch == 0 { [*b; PIX] } else { *pj };
                    match acc.first_mut() {
                        // A last group of one pixel (e.g. 14×14 = 39·5 + 1): its column only.
                        Some(a0) if valid == 1 => kern::dot1(&col, wc, nb, a0),
                        _ => kern::dot5(&col, wc, nb, &mut acc),
                    }
                    if !last {
                        *pj = acc;
                        continue;
                    }
                    store::<Y>(y, q0 * oc + o, oc, valid, &acc, 0, rq, p);
                }
            }
            q0 += PIX;
        }
        c0 += cn;
    }
}

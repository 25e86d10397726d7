//! CONV2D with an int16 input (16×8: int16 activations, int8 weights), output int8
//! or int16. Semantics are `docs/FORMAT.md`'s CONV2D with `in_zp = 0`; the loader
//! bounds `kh·kw·ic` by 511 so the i32 accumulator is exact.
//!
//! [`super::conv2d_i16`] picks the kernel for the target; every kernel is bit-exact with
//! the portable one, [`super::conv2d_mixed`]:
//!
//! - Armv7E-M (`cfg(ddpm_dsp)`): im2col columns of [`PIX`] output pixels in the
//!   int8 kernel's layout (`super::armv7em`): per group of 4 window elements
//!   `k0..k3` and pixel, the halfword pairs `(x[k0], x[k2])` and `(x[k1], x[k3])`,
//!   which is what `SXTB16` and `SXTB16 ROR #8` make of a weight word, so one
//!   weight word feeds 10 `SMLAD`s (20 MACs). The loop is counted (the int8
//!   kernel's sentinel `(−32768, −32768)` is a legal int16 pair).
//! - 64-bit hosts (`cfg(ddpm_wide)`): the host engine [`super::host_engine`]
//!   (contiguous i16 columns, widening dot products: AVX2 `VPMADDWD`, NEON
//!   `SMLAL`, else what LLVM vectorizes).
//! - elsewhere: [`super::conv2d_mixed`].
//!
//! Padding taps read 0 (`in_zp = 0`). `|x| ≤ 32768`, `|w| ≤ 128` and
//! `kh·kw·ic ≤ 511` keep every product and partial sum exact in i32, so the sums,
//! added to the bias with the same wrapping add and requantized by
//! [`OutRq`] (bit-identical to MBQM), give the portable kernel's outputs. Tensors
//! are read as bytes: no alignment is assumed.
//!
//! Stack: columns `4·(KC/4·GW + GW)` bytes (2.9 KiB) plus a `2·KC`-byte raw window
//! and the per-block constants and partial sums (1.4 KiB) on Armv7E-M; on hosts
//! those of [`super::host_engine`].

use super::armv7em::{pack, store, store_block};
use super::params::Conv2dParams;
use super::window::{gather16, inside, origin};
use crate::ops::numerics::{le_i32, Elem, OutRq};

/// Output pixels per column group (Armv7E-M kernel).
pub const PIX: usize = 5;
/// Window elements per chunk (windows up to 511 elements take two chunks).
pub const KC: usize = 288;
/// Column words per group of 4 window elements: two per pixel.
const GW: usize = 2 * PIX;
/// Column words: `KC/4` groups and one group of slack the DSP loop's last
/// (discarded) prefetch may read.
const COL_WORDS: usize = KC / 4 * GW + GW;
/// Output channels whose constants and partial sums are held at once.
const BLOCK: usize = 16;
/// Bytes of the per-block copy of zero-padded weights.
const WBLK: usize = 512;

/// Per-channel constants of channels `c0..c0 + cn`: bias and requantization.
fn consts(c0: usize, cn: usize, bias: &[u8], mult: &[u8], shift: &[u8]) -> [(i32, OutRq); BLOCK] {
    let mut k = [(0i32, OutRq::default()); BLOCK];
    for (j, kj) in k.iter_mut().enumerate().take(cn) {
        let o = c0 + j;
        *kj = (le_i32(bias, o), OutRq::new(le_i32(mult, o), le_i32(shift, o)));
    }
    k
}

// ---------------------------------------------------------------------------
// Armv7E-M: SMLAD columns.

/// Pixel `px`'s two words of each group in `col`.
#[inline(always)]
fn pixel_words(col: &mut [u32], px: usize) -> impl Iterator<Item = &mut [u32]> {
    col.get_mut(2 * px..).unwrap_or(&mut []).chunks_mut(GW)
}

/// `(x0, x2)` and `(x1, x3)` from the words `(x0, x1)`, `(x2, x3)` (`PKHBT`,
/// `PKHTB`).
#[inline(always)]
fn pair(a: u32, b: u32) -> (u32, u32) {
    ((a & 0xffff) | (b << 16), (a >> 16) | (b & 0xffff_0000))
}

/// Pixel `px`'s column words of `raw` (a multiple of 4 elements).
#[inline]
fn columns(raw: &[i16], px: usize, col: &mut [u32]) {
    for (d, q) in pixel_words(col, px).zip(raw.chunks_exact(4)) {
        if let ([d0, d1, ..], &[q0, q1, q2, q3]) = (d, q) {
            let h = |v: i16| v as u16 as u32;
            (*d0, *d1) = pair(h(q0) | h(q1) << 16, h(q2) | h(q3) << 16);
        }
    }
}

/// Pixel `px`'s column words of `groups` groups straight from the input bytes
/// `src` (8 bytes per group) into `col` (from its first group): two unaligned word
/// loads, `PKHBT`, `PKHTB` and two stores per group.
#[inline(always)]
fn columns_from_bytes(src: &[u8], groups: usize, px: usize, col: &mut [u32]) {
    if groups == 0 {
        return;
    }
    if src.len() < 8 * groups || col.len() < 2 * px + (groups - 1) * GW + 2 {
        for (d, q) in pixel_words(col, px).zip(src.chunks_exact(8)).take(groups) {
            if let ([d0, d1, ..], &[b0, b1, b2, b3, b4, b5, b6, b7]) = (d, q) {
                let a = u32::from_le_bytes([b0, b1, b2, b3]);
                let b = u32::from_le_bytes([b4, b5, b6, b7]);
                (*d0, *d1) = pair(a, b);
            }
        }
        return;
    }
    // SAFETY: reads 8·groups bytes of `src` and writes words 2·px + g·GW and
    // 2·px + g·GW + 1 for g < groups of `col`, all in bounds (checked above).
    unsafe { pair_groups(src.as_ptr(), col.as_mut_ptr().add(2 * px), groups) };
}

/// For `g < groups`: words `g·GW` and `g·GW + 1` from `d` are [`pair`] of the two
/// words at byte `8·g` from `s`; returns `d` advanced by `groups·GW` words.
///
/// # Safety
/// `s` must be readable for `8·groups` bytes (any alignment) and `d` writable at
/// those words.
#[inline(always)]
unsafe fn pair_groups(s: *const u8, d: *mut u32, groups: usize) -> *mut u32 {
    #[cfg(ddpm_dsp)]
    if s as usize % 4 == 0 && groups >= 4 {
        // SAFETY: the caller's bounds; `s` is 4-aligned (checked), as LDM needs.
        return unsafe { pair_groups_ldm(s, d, groups) };
    }
    let (mut s, mut d) = (s, d);
    // SAFETY: within the caller's bounds; reads are unaligned-safe, writes are
    // to `u32`s.
    unsafe {
        for _ in 0..groups {
            let a = u32::from_le(s.cast::<u32>().read_unaligned());
            let b = u32::from_le(s.add(4).cast::<u32>().read_unaligned());
            let (u, v) = pair(a, b);
            d.write(u);
            d.add(1).write(v);
            s = s.add(8);
            d = d.add(GW);
        }
    }
    d
}

/// [`pair_groups`] for a 4-aligned `s`, on Armv7E-M: the `groups % 4` single
/// groups first (two loads), then four groups per `LDM` of eight words: per
/// group `PKHBT`, `PKHTB` and one `STRD` (0.94 instructions per element).
///
/// # Safety
/// As [`pair_groups`], and `s` 4-aligned.
#[cfg(ddpm_dsp)]
#[inline(always)]
unsafe fn pair_groups_ldm(s: *const u8, d: *mut u32, groups: usize) -> *mut u32 {
    macro_rules! group {
        ($a:literal, $b:literal) => {
            concat!(
                "pkhbt {u}, ",
                $a,
                ", ",
                $b,
                ", lsl #16\n",
                "pkhtb ",
                $b,
                ", ",
                $b,
                ", ",
                $a,
                ", asr #16\n",
                "strd {u}, ",
                $b,
                ", [{d}], #40\n",
            )
        };
    }
    const _: () = assert!(GW * 4 == 40);
    let mut d = d;
    // SAFETY: reads 8·groups bytes from `s` and writes two words per group at
    // stride GW from `d` (the caller's bounds); LDM reads are 4-aligned. r2-r5
    // and r8-r11 are clobbered; flags are not relied on outside the block.
    unsafe {
        core::arch::asm!(
            "ands {r}, {n}, #3",
            "beq 3f",
            "2:",
            "ldrd r2, r3, [{s}], #8",
            group!("r2", "r3"),
            "subs {r}, {r}, #1",
            "bne 2b",
            "3:",
            "lsr {n}, {n}, #2",
            "4:",
            "ldm {s}!, {{r2, r3, r4, r5, r8, r9, r10, r11}}",
            group!("r2", "r3"),
            group!("r4", "r5"),
            group!("r8", "r9"),
            group!("r10", "r11"),
            "subs {n}, {n}, #1",
            "bne 4b",
            s = inout(reg) s => _,
            d = inout(reg) d,
            n = inout(reg) groups => _,
            r = out(reg) _,
            u = out(reg) _,
            out("r2") _,
            out("r3") _,
            out("r4") _,
            out("r5") _,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            options(nostack),
        )
    };
    d
}

/// Pixel `px`'s columns of a window inside the input: `kh` kernel rows of
/// `groups` groups each, row `r` read from element `base + r·stride` of `x`. One
/// bounds check for the whole window, then per group two unaligned word loads,
/// `PKHBT`, `PKHTB` and two stores. Returns false (nothing written) when the
/// window or its columns would not fit.
#[inline(always)]
fn rows_inside(
    x: &[u8],
    base: usize,
    stride: usize,
    groups: usize,
    kh: usize,
    px: usize,
    col: &mut [u32],
) -> bool {
    if kh == 0 || groups == 0 {
        return true;
    }
    let last_in = 2 * (base + (kh - 1) * stride) + 8 * groups;
    let last_col = 2 * px + (kh * groups - 1) * GW + 2;
    if last_in > x.len() || last_col > col.len() {
        return false;
    }
    // SAFETY: row r reads bytes 2·(base + r·stride) .. + 8·groups of `x`, at most
    // `last_in` ≤ x.len(); the writes are words 2·px + g·GW and 2·px + g·GW + 1 for
    // g < kh·groups of `col`, below `last_col` ≤ col.len() (both checked above).
    // Reads are unaligned-safe; the writes are to `u32`s.
    unsafe {
        let mut d = col.as_mut_ptr().add(2 * px);
        for r in 0..kh {
            d = pair_groups(x.as_ptr().add(2 * (base + r * stride)), d, groups);
        }
    }
    true
}

/// Zeroes pixel `px`'s words of the first `groups` groups of `col`.
#[inline(always)]
fn zero_groups(col: &mut [u32], groups: usize, px: usize) {
    for d in pixel_words(col, px).take(groups) {
        if let [d0, d1, ..] = d {
            (*d0, *d1) = (0, 0);
        }
    }
}

/// Pixel `px`'s columns of a one-chunk window with `ic % 4 == 0`, straight from
/// the input: one run per kernel row when the window is inside the input, else
/// one per tap (padding taps zero).
#[inline(always)]
fn columns_direct(
    x: &[u8],
    in_shape: [usize; 3],
    p: &Conv2dParams,
    o: (isize, isize),
    px: usize,
    col: &mut [u32],
) {
    let [h, wd, ic] = in_shape;
    let (row, g_ic) = (p.kw * ic, ic / 4);
    if inside(o, in_shape, p) {
        let base = (o.0 as usize * wd + o.1 as usize) * ic;
        if rows_inside(x, base, wd * ic, row / 4, p.kh, px, col) {
            return;
        }
        for r in 0..p.kh {
            let off = 2 * (base + r * wd * ic);
            let src = x.get(off..off + 2 * row).unwrap_or(&[]);
            let dst = col.get_mut(r * row / 4 * GW..).unwrap_or(&mut []);
            columns_from_bytes(src, row / 4, px, dst);
        }
        return;
    }
    for ky in 0..p.kh {
        let iy = o.0 + ky as isize;
        for kx in 0..p.kw {
            let ix = o.1 + kx as isize;
            let dst = col.get_mut((ky * p.kw + kx) * g_ic * GW..).unwrap_or(&mut []);
            if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < wd {
                let off = 2 * ((iy as usize * wd + ix as usize) * ic);
                columns_from_bytes(x.get(off..off + 2 * ic).unwrap_or(&[]), g_ic, px, dst);
            } else {
                zero_groups(dst, g_ic, px);
            }
        }
    }
}

/// `acc[p] += Σ_k x_p[k]·w[k]` over `len` elements of the columns: the full blocks
/// of 4 groups through `kern::dot_groups`, the rest here with the weights
/// zero-padded to a whole group.
#[inline(always)]
fn dot(col: &[u32; COL_WORDS], w: &[i8], len: usize, acc: &mut [i32; PIX]) {
    let ng16 = len / 16 * 4;
    if ng16 > 0 {
        kern::dot_groups(col, w, ng16, acc);
    }
    let lo = |v: u32| v as u16 as i16 as i32;
    let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
    for g in ng16..len.div_ceil(4) {
        let mut wq = [0i32; 4];
        for (i, d) in wq.iter_mut().enumerate() {
            if 4 * g + i < len {
                *d = w.get(4 * g + i).copied().unwrap_or(0) as i32;
            }
        }
        let c = col.get(g * GW..(g + 1) * GW).unwrap_or(&[]);
        for (a, uv) in acc.iter_mut().zip(c.chunks_exact(2)) {
            if let &[u, v] = uv {
                *a = a
                    .wrapping_add(lo(u) * wq[0] + hi(u) * wq[2])
                    .wrapping_add(lo(v) * wq[1] + hi(v) * wq[3]);
            }
        }
    }
}

/// The Armv7E-M kernel (also built and tested on hosts with the portable column
/// dot product). Needs `in_zp = 0` and `kh·kw·ic ≤ 2·KC`.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(ddpm_dsp), allow(dead_code))]
pub(super) fn conv_cols<Y: Elem>(
    x: &[u8],
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
    let chunks = ksz.div_ceil(KC);
    // One-chunk windows of whole groups per tap go straight from the input into
    // the columns.
    let direct = chunks == 1 && ic % 4 == 0;
    let mut col = [0u32; COL_WORDS];
    let mut raw = [0i16; KC];
    let mut part = [[0i32; PIX]; BLOCK];
    // One-chunk windows that are not a multiple of 16 elements: the block's
    // weights zero-padded to `ksp` once, so the DSP loop runs the whole window
    // (the columns past the window may hold anything: their weights are 0).
    let ksp = ksz.div_ceil(16) * 16;
    let mut wblk = [0i8; WBLK];
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        let k = consts(c0, cn, bias, mult, shift);
        let mut kpb = [[0i32; 4]; BLOCK];
        let fast = pack(k.get(..cn).unwrap_or(&[]), p.out_zp, kpb.get_mut(..cn).unwrap_or(&mut []));
        let kp = if fast { kpb.get(..cn).unwrap_or(&[]) } else { &[] };
        let padw = chunks == 1 && ksp != ksz && ksp <= KC && cn * ksp <= WBLK;
        if padw {
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
            let valid = (npix - q0).min(PIX);
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                let lenp = len.div_ceil(4) * 4;
                for px in 0..PIX {
                    // A pixel past the end: its sums are not stored.
                    let Some(o) = origin(q0 + px, npix, ow, p) else { break };
                    if direct {
                        columns_direct(x, in_shape, p, o, px, &mut col);
                    } else {
                        gather16(x, in_shape, p, Some(o), k0, len, &mut raw);
                        raw.iter_mut().take(lenp).skip(len).for_each(|v| *v = 0);
                        columns(raw.get(..lenp).unwrap_or(&[]), px, &mut col);
                    }
                }
                // One chunk of whole 16-element blocks: every channel of the block
                // in one call (the weight rows are contiguous).
                let wall = if padw {
                    Some(wblk.get(..cn * ksp).unwrap_or(&[]))
                } else if chunks == 1 && ksz % 16 == 0 {
                    Some(w.get(c0 * ksz..(c0 + cn) * ksz).unwrap_or(&[]))
                } else {
                    None
                };
                if let Some(wall) = wall {
                    let pb = part.get_mut(..cn).unwrap_or(&mut []);
                    let kb = k.get(..cn).unwrap_or(&[]);
                    // The sums start from the bias (store_block does not add it).
                    pb.iter_mut().zip(kb).for_each(|(a, (b, _))| *a = [*b; PIX]);
                    kern::dot_channels(&col, wall, ksp / 4, pb);
                    store_block::<Y>(y, q0 * oc + c0, oc, valid, pb, kb, kp, p);
                    continue;
                }
                let last = ch + 1 == chunks;
                for (j, (pj, (b, rq))) in part.iter_mut().zip(&k).enumerate().take(cn) {
                    let o = c0 + j;
                    let mut acc = if ch == 0 { [0; PIX] } else { *pj };
                    if padw {
                        let wc = wblk.get(j * ksp..(j + 1) * ksp).unwrap_or(&[]);
                        dot(&col, wc, ksp, &mut acc);
                    } else {
                        let wc = w.get(o * ksz + k0..o * ksz + k0 + len).unwrap_or(&[]);
                        dot(&col, wc, len, &mut acc);
                    }
                    if !last {
                        *pj = acc;
                        continue;
                    }
                    store::<Y>(y, q0 * oc + o, oc, valid, &acc, *b, rq, p);
                }
            }
            q0 += PIX;
        }
        c0 += cn;
    }
}

/// Portable column dot product (hosts; the reference for the DSP one).
#[allow(dead_code)]
mod generic {
    use super::{COL_WORDS, GW, PIX};

    /// `part[j][p] += Σ_k x_p[k]·w[j·4·ng + k]` over the first `ng` groups, for
    /// every channel `j` of `part`.
    #[inline]
    pub fn dot_channels(col: &[u32; COL_WORDS], w: &[i8], ng: usize, part: &mut [[i32; PIX]]) {
        for (pj, wc) in part.iter_mut().zip(w.chunks(4 * ng.max(1))) {
            dot_groups(col, wc, ng, pj);
        }
    }

    /// `acc[p] += Σ_k x_p[k]·w[k]` over the first `ng` groups of 4 elements.
    #[inline]
    pub fn dot_groups(col: &[u32; COL_WORDS], w: &[i8], ng: usize, acc: &mut [i32; PIX]) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (c, wq) in col.chunks_exact(GW).zip(w.chunks_exact(4)).take(ng) {
            let &[w0, w1, w2, w3] = wq else { return };
            let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
            for (a, uv) in acc.iter_mut().zip(c.chunks_exact(2)) {
                let &[u, v] = uv else { return };
                *a = a.wrapping_add(lo(u) * w0 + hi(u) * w2).wrapping_add(lo(v) * w1 + hi(v) * w3);
            }
        }
    }
}

#[cfg(not(ddpm_dsp))]
use generic as kern;

#[cfg(ddpm_dsp)]
use dsp as kern;

#[cfg(ddpm_dsp)]
mod dsp {
    use super::{COL_WORDS, GW, PIX};
    use core::arch::asm;

    /// One group of 4 window elements × 5 pixels: a weight word split into its
    /// even and odd bytes, 10 `SMLAD`s; the two `LDM`s load this group's last 5
    /// column words and the next group's first 5.
    macro_rules! group {
        () => {
            concat!(
                "ldr r5, [r7], #4\n",
                "sxtb16 r6, r5\n",
                "sxtb16 r5, r5, ror #8\n",
                "smlad r8, r0, r6, r8\n",
                "smlad r8, r1, r5, r8\n",
                "smlad r9, r2, r6, r9\n",
                "smlad r9, r3, r5, r9\n",
                "smlad r10, r4, r6, r10\n",
                "ldm lr!, {{r0-r4}}\n",
                "smlad r10, r0, r5, r10\n",
                "smlad r11, r1, r6, r11\n",
                "smlad r11, r2, r5, r11\n",
                "smlad r12, r3, r6, r12\n",
                "smlad r12, r4, r5, r12\n",
                "ldm lr!, {{r0-r4}}\n",
            )
        };
    }

    /// As `generic::dot_channels` for `ng` a positive multiple of 4: the loop of
    /// [`dot_groups`] for every channel in one block of assembly, the sums
    /// loaded from and stored back to `part` (`LDM`/`STM`); the weight pointer
    /// runs on from one row into the next.
    #[inline(always)]
    pub fn dot_channels(col: &[u32; COL_WORDS], w: &[i8], ng: usize, part: &mut [[i32; PIX]]) {
        let cn = part.len();
        if cn == 0 || ng == 0 || ng % 4 != 0 || ng * GW + 5 > COL_WORDS || w.len() < 4 * ng * cn {
            return super::generic::dot_channels(col, w, ng, part);
        }
        // SAFETY: as checked above, these are inside or one past `col` / `part`.
        let (end, pend) = unsafe { (col.as_ptr().add(ng * GW + 5), part.as_mut_ptr().add(cn)) };
        // SAFETY: per channel the inner loop is `dot_groups`'s (reads ng·GW + 5
        // column words from `col` and 4·ng weight bytes); over the cn channels the
        // weight pointer reads 4·ng·cn ≤ w.len() bytes; the sums are read and
        // written as 5 words at part[j] for j < cn (the channel loop ends when the
        // pointer reaches `pend`; cn ≥ 1). `part` is 4-aligned (`[i32; 5]`) for
        // LDM/STM. r6 and r7, which cannot be operands, are saved with the
        // constants on the stack and restored; the flags are not relied on
        // outside the block.
        unsafe {
            asm!(
                "push {{r1, r2, r3, r5, r6, r7}}",
                "mov r7, r0",
                "3:",
                "ldr r0, [sp, #4]",
                "ldm r0, {{r8-r12}}",
                "ldr lr, [sp]",
                "ldm lr!, {{r0-r4}}",
                "2:",
                group!(),
                group!(),
                group!(),
                group!(),
                "ldr r6, [sp, #12]",
                "cmp lr, r6",
                "bne 2b",
                "ldr r0, [sp, #4]",
                "stm r0!, {{r8-r12}}",
                "str r0, [sp, #4]",
                "ldr r1, [sp, #8]",
                "cmp r0, r1",
                "bne 3b",
                "pop {{r1, r2, r3, r5, r6, r7}}",
                inout("r0") w.as_ptr() => _,
                inout("r1") col.as_ptr() => _,
                inout("r2") part.as_mut_ptr() => _,
                inout("r3") pend => _,
                inout("r5") end => _,
                out("r4") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                out("r12") _,
                out("lr") _,
            )
        };
    }

    /// As `generic::dot_groups` for `ng` a positive multiple of 4: 4 groups per
    /// iteration, counted by the column pointer against its end (kept on the
    /// stack: every register is in use).
    #[inline(always)]
    pub fn dot_groups(col: &[u32; COL_WORDS], w: &[i8], ng: usize, acc: &mut [i32; PIX]) {
        // The loop reads ng·GW + 5 column words (the last LDM prefetches the
        // first half of the group after the last) and 4·ng weight bytes.
        if ng == 0 || ng % 4 != 0 || ng * GW + 5 > COL_WORDS || w.len() < 4 * ng {
            return super::generic::dot_groups(col, w, ng, acc);
        }
        // SAFETY: as checked above, the pointer one past the last word the loop
        // reads is still inside (or one past) `col`.
        let end = unsafe { col.as_ptr().add(ng * GW + 5) };
        let [mut a0, mut a1, mut a2, mut a3, mut a4] = *acc;
        // SAFETY: reads stay inside `col` and `w` (checked above): the loop runs
        // ng/4 times, advancing the column pointer by 4·GW words per iteration
        // from word 5 to word ng·GW + 5 = `end`, and the weight pointer by 16
        // bytes. LDR may be unaligned on Armv7E-M (the weights' address is
        // arbitrary); LDM reads the 4-aligned `u32` columns. Every operand is an
        // explicit register; r6 and r7 (which cannot be operands) are saved on
        // the stack with `end` (r5) and restored. SMLAD's Q flag and CMP's flags
        // are not relied on outside the block.
        unsafe {
            asm!(
                "push {{r5, r6, r7}}",
                "mov r7, r0",
                "ldm lr!, {{r0-r4}}",
                "2:",
                group!(),
                group!(),
                group!(),
                group!(),
                "ldr r6, [sp]",
                "cmp lr, r6",
                "bne 2b",
                "pop {{r5, r6, r7}}",
                inout("lr") col.as_ptr() => _,
                inout("r0") w.as_ptr() => _,
                inout("r5") end => _,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") a2,
                inout("r11") a3,
                inout("r12") a4,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                options(readonly),
            )
        };
        *acc = [a0, a1, a2, a3, a4];
    }
}

// ---------------------------------------------------------------------------
// Armv7E-M, one output channel (the UNet's last conv, to the image channels):
// no columns, whose gather would serve a single channel.

#[cfg(ddpm_dsp)]
pub(super) mod one {
    use super::{inside, origin, Conv2dParams, Elem, OutRq, KC};
    use crate::ops::numerics::le_i32;
    use core::arch::asm;

    /// The convolution for `oc = 1`, `ic % 8 == 0`, a 4-aligned input and
    /// `kh·kw·ic ≤ 2·KC`: the channel's weights widened once into halfword pairs
    /// in input order, then per output pixel and kernel row one `SMLAD` per pair
    /// of input values (`LDM` of four input and four weight words) over the taps
    /// inside the input. `false` (nothing written) for other shapes.
    #[allow(clippy::too_many_arguments)]
    pub fn conv<Y: Elem>(
        x: &[u8],
        in_shape: [usize; 3],
        y: &mut [u8],
        [oh, ow, oc]: [usize; 3],
        p: &Conv2dParams,
        w: &[i8],
        bias: &[u8],
        mult: &[u8],
        shift: &[u8],
    ) -> bool {
        let [h, wd, ic] = in_shape;
        let ksz = p.kh * p.kw * ic;
        let npix = oh * ow;
        if oc != 1 || ic % 8 != 0 || ksz == 0 || ksz > 2 * KC || x.as_ptr() as usize % 4 != 0 {
            return false;
        }
        if x.len() < 2 * h * wd * ic || y.len() < npix * Y::BYTES || w.len() < ksz {
            return false;
        }
        // Weights as (w[2j], w[2j + 1]) halfword pairs.
        let mut wp = [0u32; KC];
        for (d, pr) in wp.iter_mut().zip(w.chunks_exact(2)) {
            if let &[a, b] = pr {
                *d = (a as i16 as u16 as u32) | ((b as i16 as u16 as u32) << 16);
            }
        }
        let (b, rq) = (le_i32(bias, 0), OutRq::new(le_i32(mult, 0), le_i32(shift, 0)));
        let row_words = p.kw * ic / 2;
        for q in 0..npix {
            let Some((iy0, ix0)) = origin(q, npix, ow, p) else { break };
            let (kx_lo, kx_hi) = if inside((iy0, ix0), in_shape, p) {
                (0, p.kw)
            } else {
                let lo = (-ix0).clamp(0, p.kw as isize) as usize;
                (lo, (wd as isize - ix0).clamp(lo as isize, p.kw as isize) as usize)
            };
            let n = (kx_hi - kx_lo) * ic / 2;
            let mut acc = 0i32;
            for ky in 0..p.kh {
                let iy = iy0 + ky as isize;
                if n == 0 || iy < 0 || iy as usize >= h {
                    continue;
                }
                let xo = 2 * ((iy as usize * wd) as isize + ix0 + kx_lo as isize) as usize * ic;
                let wo = ky * row_words + kx_lo * ic / 2;
                // In bounds: taps kx_lo..kx_hi of row iy are inside the input, and
                // weight words wo..wo + n lie in row ky.
                if let (Some(xs), Some(ws)) = (x.get(xo..xo + 4 * n), wp.get(wo..wo + n)) {
                    acc = dot_pairs(xs, ws, acc);
                }
            }
            let v = p.out_zp.wrapping_add(rq.apply(b.wrapping_add(acc)));
            Y::put_clamped(y, q, v, p.act_min, p.act_max);
        }
        true
    }

    /// `acc + Σ_j x_j·w_j` over the halfword pairs of `x` (`4·n` bytes, 4-aligned)
    /// and `w` (`n` words), `n` a multiple of 4: per four words two `LDM`s and
    /// four `SMLAD`s.
    #[inline(always)]
    fn dot_pairs(x: &[u8], w: &[u32], acc: i32) -> i32 {
        let n = w.len();
        if n == 0 || n % 4 != 0 || x.len() < 4 * n || x.as_ptr() as usize % 4 != 0 {
            let mut a = acc;
            for (xb, &wv) in x.chunks_exact(4).zip(w) {
                if let &[b0, b1, b2, b3] = xb {
                    let (x0, x1) = (i16::from_le_bytes([b0, b1]), i16::from_le_bytes([b2, b3]));
                    a = a
                        .wrapping_add(x0 as i32 * (wv as u16 as i16) as i32)
                        .wrapping_add(x1 as i32 * ((wv >> 16) as u16 as i16) as i32);
                }
            }
            return a;
        }
        let mut a = acc;
        // SAFETY: reads n words of `x` (4-aligned, checked) and of `w`, four per
        // iteration, n/4 ≥ 1 iterations (n a positive multiple of 4). r0-r3 and
        // r8-r11 are clobbered; the flags are not relied on outside the block.
        unsafe {
            asm!(
                "2:",
                "ldm {x}!, {{r8, r9, r10, r11}}",
                "ldm {w}!, {{r0, r1, r2, r3}}",
                "smlad {a}, r8, r0, {a}",
                "smlad {a}, r9, r1, {a}",
                "smlad {a}, r10, r2, {a}",
                "smlad {a}, r11, r3, {a}",
                "subs {n}, {n}, #4",
                "bne 2b",
                x = inout(reg) x.as_ptr() => _,
                w = inout(reg) w.as_ptr() => _,
                n = inout(reg) n => _,
                a = inout(reg) a,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
                options(nostack, readonly),
            )
        };
        a
    }
}

// ---------------------------------------------------------------------------
// One input channel, 3×3 window: the first layer of a one-channel image model.

/// CONV2D of a one-channel int16 input with a 3×3 window (any stride and
/// padding), without columns. The nine taps of a pixel's window are five
/// halfword pairs `(x0, x1) … (x6, x7), (x8, 0)` in window order (for a window
/// inside the input: four unaligned word loads, one halfword load and a
/// `PKHBT`-style merge; on the border tap by tap, padding 0), and each channel's
/// weights are the same five pairs after its bias: per pixel and channel five
/// `SMLAD`s from the bias. The sums of [`PIX`] pixels are requantized by the
/// block store of the column kernels.
#[cfg_attr(not(ddpm_dsp), allow(dead_code))]
pub(super) mod tap9 {
    use super::{consts, inside, origin, pack, store_block, Conv2dParams, Elem, BLOCK, PIX};

    /// Words per channel: the bias and five weight pairs.
    const CW: usize = 6;

    /// The convolution when `ic = 1` and the window is 3×3; `false` (nothing
    /// written) otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn conv<Y: Elem>(
        x: &[u8],
        in_shape: [usize; 3],
        y: &mut [u8],
        [oh, ow, oc]: [usize; 3],
        p: &Conv2dParams,
        w: &[i8],
        bias: &[u8],
        mult: &[u8],
        shift: &[u8],
    ) -> bool {
        let [h, wd, ic] = in_shape;
        let npix = oh * ow;
        if ic != 1 || p.kh != 3 || p.kw != 3 || oc == 0 || npix == 0 {
            return false;
        }
        if x.len() < 2 * h * wd || y.len() < npix * oc * Y::BYTES || w.len() < 9 * oc {
            return false;
        }
        let tap = |iy: isize, ix: isize| -> u32 {
            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                return 0;
            }
            let e = 2 * (iy as usize * wd + ix as usize);
            match x.get(e..e + 2) {
                Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]) as u32,
                _ => 0,
            }
        };
        let mut part = [[0i32; PIX]; BLOCK];
        let mut c0 = 0;
        while c0 < oc {
            let cn = BLOCK.min(oc - c0);
            let k = consts(c0, cn, bias, mult, shift);
            let kb = k.get(..cn).unwrap_or(&[]);
            let mut kpb = [[0i32; 4]; BLOCK];
            let fast = pack(kb, p.out_zp, kpb.get_mut(..cn).unwrap_or(&mut []));
            let kp = if fast { kpb.get(..cn).unwrap_or(&[]) } else { &[] };
            // Per channel: bias, then the weight pairs (w0, w1) … (w8, 0).
            let mut wk = [[0u32; CW]; BLOCK];
            for (j, (d, (b, _))) in wk.iter_mut().zip(kb).enumerate() {
                let o = c0 + j;
                let wv = |i: usize| w.get(9 * o + i).map_or(0, |&v| v as i16 as u16 as u32);
                *d = [*b as u32, 0, 0, 0, 0, 0];
                for (i, dw) in d.iter_mut().skip(1).enumerate() {
                    *dw = wv(2 * i) | if 2 * i + 1 < 9 { wv(2 * i + 1) << 16 } else { 0 };
                }
            }
            let wks = wk.get(..cn).unwrap_or(&[]);
            let mut q0 = 0;
            while q0 < npix {
                let valid = (npix - q0).min(PIX);
                for px in 0..valid {
                    let Some((iy0, ix0)) = origin(q0 + px, npix, ow, p) else { break };
                    let base = 2 * (iy0.max(0) as usize * wd + ix0.max(0) as usize);
                    let xw = match x.get(base..base + 4 * wd + 6) {
                        Some(win) if inside((iy0, ix0), in_shape, p) => inner(win, 2 * wd),
                        _ => {
                            let t = |k: usize| tap(iy0 + (k / 3) as isize, ix0 + (k % 3) as isize);
                            [
                                t(0) | t(1) << 16,
                                t(2) | t(3) << 16,
                                t(4) | t(5) << 16,
                                t(6) | t(7) << 16,
                                t(8),
                            ]
                        }
                    };
                    kern::taps(&xw, wks, &mut part, px);
                }
                let pb = part.get(..cn).unwrap_or(&[]);
                store_block::<Y>(y, q0 * oc + c0, oc, valid, pb, kb, kp, p);
                q0 += PIX;
            }
            c0 += cn;
        }
        true
    }

    /// The five pairs of a window inside the input: `win` starts at its first tap
    /// and holds its three rows, `stride` bytes apart (`win.len() ≥ 2·stride + 6`).
    #[inline(always)]
    fn inner(win: &[u8], stride: usize) -> [u32; 5] {
        let word = |e: usize| match win.get(e..e + 4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        };
        let (r0, r1, r2) = (0, stride, 2 * stride);
        [
            word(r0),
            (word(r0 + 4) & 0xffff) | (word(r1) << 16),
            word(r1 + 2),
            word(r2),
            word(r2 + 2) >> 16,
        ]
    }

    #[cfg(not(ddpm_dsp))]
    mod kern {
        use super::{CW, PIX};

        /// `part[j][px] = wk[j][0] + Σ_i x_i·w_i` over the halfword pairs of `xw`
        /// and `wk[j][1..]`, for every channel `j` of `wk`.
        pub fn taps(xw: &[u32; 5], wk: &[[u32; CW]], part: &mut [[i32; PIX]], px: usize) {
            let lo = |v: u32| v as u16 as i16 as i32;
            let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
            for (d, wj) in part.iter_mut().zip(wk) {
                let [b, ws @ ..] = wj;
                let mut a = *b as i32;
                for (&xv, &wv) in xw.iter().zip(ws) {
                    a = a.wrapping_add(lo(xv) * lo(wv)).wrapping_add(hi(xv) * hi(wv));
                }
                if let Some(v) = d.get_mut(px) {
                    *v = a;
                }
            }
        }
    }

    #[cfg(ddpm_dsp)]
    mod kern {
        use super::{CW, PIX};
        use core::arch::asm;

        /// As the portable `taps`: per channel two `LDM`s of its six words, five
        /// `SMLAD`s from the bias and a post-indexed store (10 instructions).
        pub fn taps(xw: &[u32; 5], wk: &[[u32; CW]], part: &mut [[i32; PIX]], px: usize) {
            let n = wk.len().min(part.len());
            if n == 0 || px >= PIX {
                return;
            }
            let [x0, x1, x2, x3, x4] = *xw;
            // SAFETY: n ≥ 1 iterations, each reading the CW words of channel j of
            // `wk` and writing word px of `part[j]` (stride PIX words), j < n ≤
            // both lengths. r5 and r8-r10 are clobbered; flags are not relied on
            // outside the block.
            unsafe {
                asm!(
                    "2:",
                    "ldm {w}!, {{r5, r8, r9}}",
                    "smlad r5, r0, r8, r5",
                    "smlad r5, r1, r9, r5",
                    "ldm {w}!, {{r8, r9, r10}}",
                    "smlad r5, r2, r8, r5",
                    "smlad r5, r3, r9, r5",
                    "smlad r5, r4, r10, r5",
                    "str r5, [{d}], #20",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    w = inout(reg) wk.as_ptr() => _,
                    d = inout(reg) part.as_mut_ptr().cast::<i32>().add(px) => _,
                    n = inout(reg) n => _,
                    in("r0") x0,
                    in("r1") x1,
                    in("r2") x2,
                    in("r3") x3,
                    in("r4") x4,
                    out("r5") _,
                    out("r8") _,
                    out("r9") _,
                    out("r10") _,
                    options(nostack),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quantize_multiplier;
    use crate::ops::conv2d::{conv2d_i16, conv2d_mixed};
    use crate::ops::numerics::testutil::*;
    use crate::ops::numerics::{E16, E8};

    fn i16_bytes(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Every kernel of this file against `conv2d_mixed`, bit for bit, both output
    /// types, on random shapes, strides, paddings, kernels and extreme values.
    #[test]
    fn kernels_match_wide_conv2d() {
        let mut r = Rng(0x1616);
        let (mut ran, mut ran_tap9) = (0, 0);
        for case in 0..3000 {
            let (kh, kw) = match case % 5 {
                0 => (1, 1),
                1 | 2 => (3, 3),
                _ => (r.range(1, 5) as usize, r.range(1, 5) as usize),
            };
            let ic = match case % 7 {
                0 => 16,
                1 => 32,
                2 => 4 * r.range(1, 12) as usize,
                3 => r.range(1, 511 / (kh * kw) as i64) as usize,
                _ => r.range(1, 9) as usize,
            };
            let ic = ic.min(511 / (kh * kw)).max(1);
            if kh * kw * ic > 511 {
                continue;
            }
            let h = r.range(1, 12) as usize;
            let wd = r.range(1, 12) as usize;
            let oc = match case % 11 {
                0 => r.range(33, 70),
                1 => 1,
                2 => 16,
                _ => r.range(1, 9),
            } as usize;
            let (sh, sw) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let pt = r.range(0, kh as i64) as usize;
            let pb = r.range(0, kh as i64) as usize;
            let pl = r.range(0, kw as i64) as usize;
            let pr = r.range(0, kw as i64) as usize;
            if h + pt + pb < kh || wd + pl + pr < kw {
                continue;
            }
            let oh = (h + pt + pb - kh) / sh + 1;
            let ow = (wd + pl + pr - kw) / sw + 1;
            let extreme = [i16::MIN, i16::MAX, -32767, 0, -1, 1];
            let x: Vec<i16> = (0..h * wd * ic)
                .map(|_| match case % 4 {
                    0 => i16::MIN,
                    1 => extreme[(r.next() % 6) as usize],
                    _ => r.next() as i16,
                })
                .collect();
            let w: Vec<i8> =
                (0..oc * kh * kw * ic).map(|_| if case % 4 == 0 { -128 } else { r.i8() }).collect();
            let bias: Vec<i32> = (0..oc).map(|_| r.range(-1 << 24, 1 << 24) as i32).collect();
            let (mut mult, mut shift) = (vec![], vec![]);
            for _ in 0..oc {
                let real = match r.next() % 5 {
                    0 => 1e-7 + r.f64() * 1e-6,
                    1 => 0.5 + r.f64() * 3.0,
                    _ => 1e-5 + r.f64() * 1e-2,
                };
                let (m, s) = quantize_multiplier(real);
                mult.push(m);
                shift.push(s);
            }
            let out_zp = if case % 3 == 0 { r.range(-20, 20) as i32 } else { 0 };
            let (lo, hi) = match case % 6 {
                0 => (0, 127),
                1 => (-100, 30000),
                _ => (-32768, 32767),
            };
            let p =
                Conv2dParams { kh, kw, sh, sw, pt, pl, in_zp: 0, out_zp, act_min: lo, act_max: hi };
            let xb = i16_bytes(&x);
            // An odd offset in a larger buffer: no alignment may be assumed.
            let mut xbuf = vec![0u8; xb.len() + 3];
            let xoff = 1 + 2 * (case % 2);
            xbuf[xoff..xoff + xb.len()].copy_from_slice(&xb);
            let xs = &xbuf[xoff..xoff + xb.len()];
            let bias_b = if case % 9 == 0 { vec![] } else { i32_bytes(&bias) };
            let (mb, sb) = (i32_bytes(&mult), i32_bytes(&shift));
            let args = ([h, wd, ic], [oh, ow, oc]);
            for y16 in [false, true] {
                let n = oh * ow * oc * if y16 { 2 } else { 1 };
                let mut want = vec![0u8; n];
                if y16 {
                    conv2d_mixed::<E16, E16>(
                        xs, args.0, &mut want, args.1, &p, &w, &bias_b, &mb, &sb,
                    );
                } else {
                    conv2d_mixed::<E16, E8>(
                        xs, args.0, &mut want, args.1, &p, &w, &bias_b, &mb, &sb,
                    );
                }
                let mut got = vec![0u8; n];
                let mut scratch = vec![0u8; 4 * oc];
                conv2d_i16(
                    xs,
                    args.0,
                    &mut got,
                    y16,
                    args.1,
                    &p,
                    &w,
                    &bias_b,
                    &mb,
                    &sb,
                    &mut scratch,
                );
                assert_eq!(got, want, "conv2d_i16, case {case}, y16 {y16}");
                let mut g2 = vec![0u8; n];
                if y16 {
                    conv_cols::<E16>(xs, args.0, &mut g2, args.1, &p, &w, &bias_b, &mb, &sb);
                } else {
                    conv_cols::<E8>(xs, args.0, &mut g2, args.1, &p, &w, &bias_b, &mb, &sb);
                }
                assert_eq!(g2, want, "columns, case {case}, y16 {y16}");
                let mut g4 = vec![0u8; n];
                let done = if y16 {
                    tap9::conv::<E16>(xs, args.0, &mut g4, args.1, &p, &w, &bias_b, &mb, &sb)
                } else {
                    tap9::conv::<E8>(xs, args.0, &mut g4, args.1, &p, &w, &bias_b, &mb, &sb)
                };
                if done {
                    assert_eq!(g4, want, "tap9, case {case}, y16 {y16}");
                    ran_tap9 += 1;
                }
                // The host engine exists on 64-bit hosts unless `reference-kernels`.
                #[cfg(ddpm_wide)]
                {
                    let mut g3 = vec![0u8; n];
                    if y16 {
                        crate::ops::conv2d::host::conv_i16::<E16>(
                            xs, args.0, &mut g3, args.1, &p, &w, &bias_b, &mb, &sb,
                        );
                    } else {
                        crate::ops::conv2d::host::conv_i16::<E8>(
                            xs, args.0, &mut g3, args.1, &p, &w, &bias_b, &mb, &sb,
                        );
                    }
                    assert_eq!(g3, want, "wide, case {case}, y16 {y16}");
                }
            }
            ran += 1;
        }
        assert!(ran > 2000, "{ran}");
        assert!(ran_tap9 > 40, "{ran_tap9}");
    }

    /// The column dot product against plain sums, for every group count up to a
    /// chunk, with extreme values (the DSP loop is counted, not sentinel-ended).
    #[test]
    fn dot_matches_plain_sums() {
        let mut r = Rng(0x5d);
        for len in 1..=KC {
            let raw: Vec<Vec<i16>> = (0..PIX)
                .map(|p| {
                    (0..len.div_ceil(4) * 4)
                        .map(|k| {
                            if k >= len {
                                0
                            } else if p == 0 {
                                i16::MIN
                            } else {
                                r.next() as i16
                            }
                        })
                        .collect()
                })
                .collect();
            let w: Vec<i8> = (0..len).map(|_| if len % 3 == 0 { -128 } else { r.i8() }).collect();
            let mut col = [0u32; COL_WORDS];
            for (p, rp) in raw.iter().enumerate() {
                columns(rp, p, &mut col);
            }
            let mut acc = [1, 2, 3, 4, 5];
            dot(&col, &w, len, &mut acc);
            for p in 0..PIX {
                let want: i64 =
                    raw[p].iter().zip(&w).map(|(&x, &v)| x as i64 * v as i64).sum::<i64>();
                assert_eq!(acc[p] as i64, want + p as i64 + 1, "len {len}");
            }
        }
    }
}

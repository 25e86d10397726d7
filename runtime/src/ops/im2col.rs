//! CONV2D by im2col columns of five output pixels, for targets with a fast
//! 16-bit multiply-accumulate (Armv7E-M `SMLAD`), and a vectorizable variant for
//! 64-bit hosts.
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
//! Column layout (one chunk): per group of 4 window elements `k0..k3`, [`GW`]
//! words: for each pixel `p`, the halfword pairs `(x[k0], x[k2])` and
//! `(x[k1], x[k3])` — what `SXTB16` and `SXTB16 ROR #8` make of a weight word.
//! A chunk is zero-padded to a multiple of [`KB`] elements (zero columns against
//! zero-padded weights add nothing); after its last block of [`KB`] elements comes
//! a group whose first word is [`SENTINEL`], which no in-range pair can equal; the
//! DSP loop stops on it.
//!
//! Stack: `4·GW·KC/16 + 4·GW` bytes of columns (2.9 KiB), two [`KC`]-byte buffers
//! (raw window, padded weights) and the constants and partial sums of a block of
//! 64 output channels (5 KiB: a 64-channel layer gathers its windows once).

use super::conv2d::Conv2dParams;
use super::wide::{Elem, E8};
use super::{le_i32, mbqm};

/// Output pixels per column group (DSP kernel).
pub const PIX: usize = 5;
/// Window elements per chunk (a multiple of [`KB`]).
pub const KC: usize = 288;
/// Window elements per iteration of the DSP loop; chunks are padded to it.
pub const KB: usize = 16;
/// Column words per group of 4 window elements: two per pixel.
pub const GW: usize = 2 * PIX;
/// Marks the end of the columns: `(−32768, −32768)`.
pub const SENTINEL: u32 = 0x8000_8000;
/// Words of the column buffer: `KC/4` groups plus the sentinel group.
const COL_WORDS: usize = KC / 4 * GW + GW;
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

/// Columns of up to [`PIX`] int8 rows of at most [`KC`] elements, for other ops
/// (MATMUL) to run the column kernel: rows of `a`, each against contiguous
/// vectors of `b`.
pub struct RowColumns {
    col: [u32; COL_WORDS],
    nb: usize,
}

impl RowColumns {
    /// Empty columns.
    pub fn new() -> Self {
        RowColumns { col: [0; COL_WORDS], nb: 0 }
    }

    /// Sets the columns to `len ≤ KC` elements per row, zero-padded to
    /// `⌈len/KB⌉·KB`: row `px` (for `px < PIX`) is `row(px, k)` for `k < len`.
    pub fn set(&mut self, len: usize, row: impl Fn(usize, usize) -> i8) {
        let len = len.min(KC);
        let lenp = len.div_ceil(KB) * KB;
        for px in 0..PIX {
            let words = self.col.get_mut(..lenp / 4 * GW).unwrap_or(&mut []);
            for (g, d) in pixel_words(words, px).enumerate() {
                let mut b = [0u8; 4];
                for (i, v) in b.iter_mut().enumerate() {
                    let k = 4 * g + i;
                    if k < len {
                        *v = row(px, k) as u8;
                    }
                }
                if let [d0, d1, ..] = d {
                    (*d0, *d1) = kern::ext(u32::from_le_bytes(b));
                }
            }
        }
        self.nb = lenp / KB;
        if let Some(s) = self.col.get_mut(self.nb * KB / 4 * GW) {
            *s = SENTINEL;
        }
    }

    /// Elements per row after padding; vectors given to [`dot`](Self::dot) must
    /// have at least this many (zero beyond the rows' length).
    pub fn padded_len(&self) -> usize {
        self.nb * KB
    }

    /// `acc[p] = Σ_k row_p[k]·w[k]`.
    #[inline(always)]
    pub fn dot(&self, w: &[i8], acc: &mut [i32; PIX]) {
        *acc = [0; PIX];
        kern::dot5(&self.col, w, self.nb, acc);
    }
}

impl Default for RowColumns {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether [`conv2d_im2col_wide`] handles this convolution: at least one output
/// pixel, an int8 input zero point and a window of at least 8 elements.
pub fn applicable_wide(ic: usize, out_pixels: usize, p: &Conv2dParams) -> bool {
    let ksz = p.kh * p.kw * ic;
    out_pixels >= 1 && ksz >= 8 && (-128..=127).contains(&p.in_zp) && ksz <= 32768
}

/// The requantization of one output channel, `mbqm(acc, mult, shift)`, as one
/// 64-bit multiply-add and shift for the usual parameters (`mult ≥ 0`,
/// `shift ≤ 0`).
///
/// With `P = acc·mult` and `e = −shift`, MBQM is `v = ⌊(P + 2^30)/2^31⌋` then
/// `⌊(v + 2^(e−1))/2^e⌋` for `v ≥ 0` and `⌊(v + 2^(e−1) − 1)/2^e⌋` for `v < 0`
/// (gemmlowp's rounding divide; `v` itself for `e = 0`). Nested floor divisions
/// by positive integers merge, `⌊(⌊a/b⌋ + c)/d⌋ = ⌊(a + c·b)/(b·d)⌋`, so the result
/// is `⌊(P + K)/2^(31+e)⌋` with `K = 2^30 + 2^(30+e)`, less `2^31` when `v < 0`.
/// For `mult ≥ 0`, `v < 0` implies `acc < 0`, and when `acc < 0` but `v ≥ 0`
/// (`−2^30 ≤ P < 0`) both constants give 0 for `e ≥ 1`, so the sign of `acc` picks
/// the constant. `|P + K| < 2^63`, and `⌊(P + K)/2^(31+e)⌋` is the high word of
/// `P + K` shifted right by `e − 1`. Other parameters (`e = 0`, a left shift, a
/// negative multiplier) go through [`mbqm`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OutRq {
    kpos: i64,
    m: i32,
    e1: u32,
    mult: i32,
    shift: i32,
    fast: bool,
}

impl OutRq {
    /// Prepares `(mult, shift)`.
    #[inline(always)]
    pub fn new(mult: i32, shift: i32) -> Self {
        let e = (-shift.clamp(-31, 30)).clamp(1, 31) as u32;
        let kpos = (1i64 << 30) + (1i64 << (30 + e));
        OutRq { kpos, m: mult, e1: e - 1, mult, shift, fast: mult >= 0 && shift < 0 }
    }

    /// `(kpos, m, e1)` of the 64-bit form when it applies: then [`OutRq::apply`] is
    /// `(((acc·m + kpos + (acc & i32::MIN)) >> 32) as i32) >> e1`.
    #[inline(always)]
    pub fn fast_parts(&self) -> Option<(i64, i32, u32)> {
        self.fast.then_some((self.kpos, self.m, self.e1))
    }

    /// `mbqm(acc, mult, shift)`.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i32 {
        if self.fast {
            // kneg = kpos − 2^31: add the sign bit of acc as a (negative) i32.
            let k = self.kpos + (acc & i32::MIN) as i64;
            (((acc as i64 * self.m as i64 + k) >> 32) as i32) >> self.e1
        } else {
            mbqm(acc, self.mult, self.shift)
        }
    }
}

/// `Σ w` (Armv7E-M: `USADA8`, four weights per instruction).
#[inline]
pub fn sum_weights(w: &[i8]) -> i32 {
    kern::sum_i8(w)
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

/// One pixel's raw window chunk: `[k0, k0 + len)` of its `[kh][kw][ic]` window,
/// padding filled with `in_zp`.
#[cfg_attr(ddpm_wide, inline(always))]
#[allow(clippy::too_many_arguments)]
fn gather(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    raw: &mut [i8],
) {
    let zp = p.in_zp as i8;
    let Some((iy0, ix0)) = pos else {
        raw.iter_mut().take(len).for_each(|v| *v = zp);
        return;
    };
    let row = p.kw * ic;
    let k1 = k0 + len;
    if iy0 >= 0 && iy0 as usize + p.kh <= h && ix0 >= 0 && ix0 as usize + p.kw <= wd {
        // The whole window is inside the input: one copy per kernel row.
        let base = (iy0 as usize * wd + ix0 as usize) * ic;
        let mut k = k0;
        let mut r = if k0 == 0 { 0 } else { k0 / row.max(1) };
        while k < k1 {
            let end = ((r + 1) * row).min(k1);
            if end <= k {
                break;
            }
            let off = base + r * wd * ic + (k - r * row);
            let dst = raw.get_mut(k - k0..end - k0).unwrap_or(&mut []);
            dst.iter_mut().zip(x.get(off..).unwrap_or(&[])).for_each(|(d, &v)| *d = v);
            (k, r) = (end, r + 1);
        }
        return;
    }
    let mut k = k0;
    // (kernel row, tap, channel) of k: divided once, then advanced run by run.
    let (mut ky, mut kx, mut i) = match k0 {
        0 => (0, 0, 0),
        _ => (k0 / row.max(1), (k0 % row.max(1)) / ic.max(1), k0 % ic.max(1)),
    };
    while k < k1 {
        let iy = iy0 + ky as isize;
        let ix = ix0 + kx as isize;
        let row_in = iy >= 0 && (iy as usize) < h;
        // Contiguous source run: the rest of this kernel row if all its taps are
        // inside the input, else the rest of this tap.
        let whole_row = row_in && ix0 >= 0 && ix0 as usize + p.kw <= wd;
        let end = if whole_row { (ky + 1) * row } else { k - i + ic }.min(k1);
        if end <= k {
            break;
        }
        let n = end - k;
        let dst = raw.get_mut(k - k0..k - k0 + n).unwrap_or(&mut []);
        let inside = row_in && ix >= 0 && (ix as usize) < wd;
        let src = if inside {
            let off = (iy as usize * wd + ix as usize) * ic + i;
            x.get(off..off + n)
        } else {
            None
        };
        match src {
            Some(s) => dst.copy_from_slice(s),
            None => dst.iter_mut().for_each(|v| *v = zp),
        }
        (kx, i) = if whole_row { (p.kw, 0) } else { (kx + 1, 0) };
        if kx >= p.kw {
            (ky, kx) = (ky + 1, 0);
        }
        k = end;
    }
}

/// Pixel `px`'s words of the groups in `col` (the pixel's pair in each group of
/// [`GW`] words).
#[inline(always)]
fn pixel_words(col: &mut [u32], px: usize) -> impl Iterator<Item = &mut [u32]> {
    col.get_mut(2 * px..).unwrap_or(&mut []).chunks_mut(GW)
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

/// Converts pixel `px`'s raw chunk (a multiple of 4 elements) into its column words.
#[inline]
fn columns(raw: &[i8], px: usize, col: &mut [u32]) {
    for (d, q) in pixel_words(col, px).zip(raw.chunks_exact(4)) {
        if let ([d0, d1, ..], &[q0, q1, q2, q3]) = (d, q) {
            let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
            (*d0, *d1) = kern::ext(word);
        }
    }
}

/// The convolution (same contract as [`super::conv2d::conv2d`]), for
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
    let y = super::as_u8_mut(y);
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
                        gather(x, in_shape, p, ps, k0, len, &mut raw);
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

/// [`conv2d_im2col`] for 64-bit hosts (x86_64, aarch64): the host engine
/// [`super::hostconv`] (contiguous i16 columns `x − in_zp`, widening dot products;
/// AVX2 chosen at run time with the `std` feature on x86_64, NEON on aarch64).
/// Same sums, same bits.
#[cfg(ddpm_wide)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_wide(
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
    if direct::<super::wide::E8>(
        x,
        in_shape,
        super::as_u8_mut(y),
        out_shape,
        p,
        w,
        bias,
        mult,
        shift,
    ) {
        return;
    }
    let oc = out_shape[2];
    wide(x, in_shape, out_shape, p, w, bias, mult, shift, |q, c0, v| {
        let ys = y.get_mut(q * oc + c0..q * oc + c0 + v.len()).unwrap_or(&mut []);
        for (yv, &r) in ys.iter_mut().zip(v) {
            *yv = super::sat8(p.out_zp.wrapping_add(r), p.act_min, p.act_max);
        }
    });
}

/// [`conv2d_im2col_wide`] with an int8 or int16 output `Y` (little-endian bytes),
/// clamped to the activation range and to `Y`'s range.
#[cfg(ddpm_wide)]
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_wide_to<Y: super::wide::Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) {
    if direct::<Y>(x, in_shape, y, out_shape, p, w, bias, mult, shift) {
        return;
    }
    let oc = out_shape[2];
    let mut buf = [0i32; super::hostconv::BLOCK];
    wide(x, in_shape, out_shape, p, w, bias, mult, shift, |q, c0, v| {
        let ys = y.get_mut((q * oc + c0) * Y::BYTES..(q * oc + c0 + v.len()) * Y::BYTES);
        for (o, &r) in buf.iter_mut().zip(v) {
            *o = p.out_zp.wrapping_add(r).max(p.act_min).min(p.act_max).clamp(Y::MIN, Y::MAX);
        }
        Y::put_all(ys.unwrap_or(&mut []), &buf);
    });
}

/// The AVX2 kernels of int8-input convolutions: dot products for one pixel
/// through a 1×1 kernel, Winograd ([`super::winograd`]) for 3×3 stride-1
/// windows, else the direct kernel ([`super::direct`]) for at least 16 output
/// channels and pixels; `false` (nothing written) otherwise.
#[cfg(ddpm_wide)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    not(all(feature = "std", target_arch = "x86_64")),
    allow(clippy::extra_unused_type_parameters)
)]
fn direct<Y: super::wide::Elem>(
    x: &[i8],
    in_shape: [usize; 3],
    y: &mut [u8],
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
) -> bool {
    // One pixel through a 1×1 kernel (the timestep MLP): dot products.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if out_shape[0] * out_shape[1] == 1
        && std::is_x86_feature_detected!("avx2")
        // SAFETY: the CPU supports AVX2 (checked just before).
        && unsafe {
            super::direct::run_matvec_avx2::<Y>(x, in_shape, out_shape, p, w, bias, mult, shift, y)
        }
    {
        return true;
    }
    // x86_64 with AVX2: 3×3 stride-1 windows by Winograd F(2×2, 3×3).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if super::winograd::applicable(in_shape, [out_shape[0], out_shape[1]], p) {
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        unsafe {
            super::winograd::run_avx2::<Y>(x, in_shape, out_shape, p, w, bias, mult, shift, y, None)
        };
        return true;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if out_shape[2] >= 16
        && out_shape[0] * out_shape[1] >= super::direct::MIN_PIXELS
        && super::direct::applicable::<super::wide::E8>(in_shape, out_shape, p)
    {
        // SAFETY: `applicable` checked that the CPU supports AVX2.
        unsafe {
            super::direct::run_avx2::<super::wide::E8, Y>(
                super::as_u8(x),
                in_shape,
                out_shape,
                p,
                w,
                bias,
                mult,
                shift,
                y,
            )
        };
        return true;
    }
    let _ = (x, in_shape, y, out_shape, p, w, bias, mult, shift);
    false
}

/// `d[i] = r[i] − zp` (a function of its own: its slices do not alias, so the
/// loop vectorizes).
#[cfg(ddpm_wide)]
#[inline(always)]
fn widen(d: &mut [i16], r: &[i8], zp: i16) {
    for (d, &r) in d.iter_mut().zip(r) {
        *d = r as i16 - zp;
    }
}

/// The int8 gather of the host engine; `store(q, c0, v)` gets the requantized sums
/// of channels `c0 ..` of pixel `q`.
#[cfg(ddpm_wide)]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn wide(
    x: &[i8],
    in_shape: [usize; 3],
    [oh, ow, oc]: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    store: impl FnMut(usize, usize, &[i32]),
) {
    use super::hostconv;
    let ksz = p.kh * p.kw * in_shape[2];
    let npix = oh * ow;
    let zp = p.in_zp as i16;
    let pos = |q: usize| {
        (q < npix).then(|| {
            let (oy, ox) = (q / ow.max(1), q % ow.max(1));
            ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
        })
    };
    let mut store = store;
    // CPUs with SDOT: raw int8 columns (padding in_zp), in_zp·Σw off the biases.
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    {
        let fill8 = |q: usize, k0: usize, len: usize, col: &mut [i8; hostconv::KC]| {
            gather(x, in_shape, p, pos(q), k0, len, col);
        };
        if hostconv::run_i8(npix, ksz, oc, w, bias, mult, shift, p.in_zp, fill8, &mut store) {
            return;
        }
    }
    let mut raw = [0i8; hostconv::KC];
    let fill = |q: usize, k0: usize, len: usize, col: &mut [i16; hostconv::KC]| {
        gather(x, in_shape, p, pos(q), k0, len, &mut raw);
        widen(col.get_mut(..len).unwrap_or(&mut []), raw.get(..len).unwrap_or(&[]), zp);
    };
    hostconv::run(npix, ksz, oc, w, bias, mult, shift, fill, &mut store);
}

/// Portable column kernel (hosts, and the reference for the DSP one).
#[allow(dead_code)]
mod generic {
    use super::{GW, KB, PIX, SENTINEL};

    /// `(x0, x2)` and `(x1, x3)` of a little-endian word of int8, as halfword pairs.
    #[inline]
    pub fn ext(word: u32) -> (u32, u32) {
        let [b0, b1, b2, b3] = word.to_le_bytes();
        let h = |b: u8| (b as i8 as i16 as u16) as u32;
        (h(b0) | h(b2) << 16, h(b1) | h(b3) << 16)
    }

    /// For `g < n`: words `g·GW` and `g·GW + 1` of `dst` are [`ext`] of word `g`
    /// of `src`.
    #[inline]
    pub fn ext_run(src: &[i8], dst: &mut [u32], n: usize) {
        for (d, q) in dst.chunks_mut(GW).zip(src.chunks_exact(4)).take(n) {
            if let ([d0, d1, ..], &[q0, q1, q2, q3]) = (d, q) {
                let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
                (*d0, *d1) = ext(word);
            }
        }
    }

    /// `Σ w`.
    #[inline]
    pub fn sum_i8(w: &[i8]) -> i32 {
        w.iter().map(|&v| v as i32).sum()
    }

    /// Adds `Σ_k col[p][k]·w[k]` over `nb` blocks of [`KB`] elements to `acc[p]`,
    /// stopping early at a block whose first word is the sentinel, as the DSP loop
    /// does.
    #[inline]
    pub fn dot5(col: &[u32], w: &[i8], nb: usize, acc: &mut [i32; PIX]) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (cb, wb) in col.chunks_exact(KB / 4 * GW).zip(w.chunks_exact(KB)).take(nb) {
            if cb.first() == Some(&SENTINEL) {
                return;
            }
            for (c, wq) in cb.chunks_exact(GW).zip(wb.chunks_exact(4)) {
                let &[w0, w1, w2, w3] = wq else { return };
                let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
                for (a, uv) in acc.iter_mut().zip(c.chunks_exact(2)) {
                    let &[u, v] = uv else { return };
                    *a += lo(u) * w0 + hi(u) * w2 + lo(v) * w1 + hi(v) * w3;
                }
            }
        }
    }

    /// [`dot5`] for pixel 0's column alone (a last group of one pixel), over
    /// `nb` blocks (no sentinel needed).
    pub fn dot1(col: &[u32], w: &[i8], nb: usize, acc: &mut i32) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (c, wq) in col.chunks(GW).zip(w.chunks_exact(4)).take(nb * KB / 4) {
            let (&[u, v, ..], &[w0, w1, w2, w3]) = (c, wq) else { return };
            let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
            *acc = acc.wrapping_add(lo(u) * w0 + hi(u) * w2 + lo(v) * w1 + hi(v) * w3);
        }
    }
}

#[cfg(not(ddpm_dsp))]
use generic as kern;

#[cfg(ddpm_dsp)]
use dsp as kern;

#[cfg(ddpm_dsp)]
mod dsp {
    use super::{GW, KB, PIX, SENTINEL};
    use core::arch::asm;

    /// `(x0, x2)` and `(x1, x3)` as halfword pairs (`SXTB16`, `SXTB16 ROR #8`).
    #[inline(always)]
    pub fn ext(word: u32) -> (u32, u32) {
        let (a, b): (u32, u32);
        // SAFETY: register-only Armv7E-M arithmetic; no memory, stack or flags.
        unsafe {
            asm!(
                "sxtb16 {a}, {v}",
                "sxtb16 {b}, {v}, ror #8",
                v = in(reg) word,
                a = out(reg) a,
                b = lateout(reg) b,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        (a, b)
    }

    /// As `generic::ext_run`: `LDR`, two `SXTB16`, `STRD` per word, two words
    /// per iteration (an odd first word on its own).
    #[inline(always)]
    pub fn ext_run(src: &[i8], dst: &mut [u32], n: usize) {
        const _: () = assert!(GW * 4 == 40);
        if n == 0 || src.len() < 4 * n || dst.len() < (n - 1) * GW + 2 {
            return super::generic::ext_run(src, dst, n);
        }
        if src.as_ptr() as usize % 4 == 0 && n >= 4 {
            // SAFETY: as below; `src` is 4-aligned (checked), as LDM needs: the
            // n % 4 single words first, then four words per LDM.
            unsafe {
                asm!(
                    "ands {r}, {n}, #3",
                    "beq 3f",
                    "2:",
                    "ldr r2, [{s}], #4",
                    "sxtb16 {a}, r2",
                    "sxtb16 r2, r2, ror #8",
                    "strd {a}, r2, [{d}], #40",
                    "subs {r}, {r}, #1",
                    "bne 2b",
                    "3:",
                    "lsr {n}, {n}, #2",
                    "4:",
                    "ldm {s}!, {{r2, r3, r4, r5}}",
                    "sxtb16 {a}, r2",
                    "sxtb16 r2, r2, ror #8",
                    "strd {a}, r2, [{d}], #40",
                    "sxtb16 {a}, r3",
                    "sxtb16 r3, r3, ror #8",
                    "strd {a}, r3, [{d}], #40",
                    "sxtb16 {a}, r4",
                    "sxtb16 r4, r4, ror #8",
                    "strd {a}, r4, [{d}], #40",
                    "sxtb16 {a}, r5",
                    "sxtb16 r5, r5, ror #8",
                    "strd {a}, r5, [{d}], #40",
                    "subs {n}, {n}, #1",
                    "bne 4b",
                    s = inout(reg) src.as_ptr() => _,
                    d = inout(reg) dst.as_mut_ptr() => _,
                    n = inout(reg) n => _,
                    r = out(reg) _,
                    a = out(reg) _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    options(nostack),
                )
            };
            return;
        }
        // SAFETY: reads 4·n bytes of `src` and writes words g·GW, g·GW + 1 for
        // g < n of `dst`, all in bounds (checked above; n ≥ 1, and the loop
        // counts n down to exactly 0); STRD needs 4-byte alignment, which `u32`
        // has; LDR may be unaligned on Armv7E-M.
        unsafe {
            asm!(
                "tst {n}, #1",
                "beq 3f",
                "ldr {t}, [{s}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "strd {a}, {t}, [{d}], #40",
                "subs {n}, {n}, #1",
                "beq 4f",
                "3:",
                "ldr {t}, [{s}], #4",
                "ldr {u}, [{s}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "strd {a}, {t}, [{d}], #40",
                "sxtb16 {a}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "strd {a}, {u}, [{d}], #40",
                "subs {n}, {n}, #2",
                "bne 3b",
                "4:",
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) dst.as_mut_ptr() => _,
                n = inout(reg) n => _,
                t = out(reg) _,
                u = out(reg) _,
                a = out(reg) _,
                options(nostack),
            )
        };
    }

    /// `Σ w`: per word, `USADA8` of the bytes flipped to unsigned (`b ^ 0x80 = b + 128`).
    #[inline(always)]
    pub fn sum_i8(w: &[i8]) -> i32 {
        if w.as_ptr() as usize % 4 == 0 && w.len() >= 16 {
            let n16 = w.len() / 16;
            let mut s: u32 = 0;
            // SAFETY: reads 16·n16 ≤ w.len() bytes from the 4-aligned `w` (both
            // checked), four words per LDM; r2-r5 are clobbered; flags are not
            // relied on outside the block.
            unsafe {
                asm!(
                    "2:",
                    "ldm {p}!, {{r2, r3, r4, r5}}",
                    "eor r2, r2, {m}",
                    "eor r3, r3, {m}",
                    "usada8 {s}, r2, {z}, {s}",
                    "eor r4, r4, {m}",
                    "usada8 {s}, r3, {z}, {s}",
                    "eor r5, r5, {m}",
                    "usada8 {s}, r4, {z}, {s}",
                    "subs {n}, {n}, #1",
                    "usada8 {s}, r5, {z}, {s}",
                    "bne 2b",
                    p = inout(reg) w.as_ptr() => _,
                    n = inout(reg) n16 => _,
                    s = inout(reg) s,
                    m = in(reg) 0x8080_8080u32,
                    z = in(reg) 0u32,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    options(nostack, readonly),
                )
            };
            let rest = w.get(16 * n16..).unwrap_or(&[]);
            return (s.wrapping_sub(128 * 16 * n16 as u32) as i32).wrapping_add(sum_i8_words(rest));
        }
        sum_i8_words(w)
    }

    /// [`sum_i8`] one word at a time (any alignment).
    #[inline]
    fn sum_i8_words(w: &[i8]) -> i32 {
        let mut q = w.chunks_exact(4);
        let mut s: u32 = 0;
        let mut n: u32 = 0;
        for c in &mut q {
            let &[b0, b1, b2, b3] = c else { continue };
            let v = u32::from_le_bytes([b0 as u8, b1 as u8, b2 as u8, b3 as u8]) ^ 0x8080_8080;
            // SAFETY: register-only Armv7E-M arithmetic; no memory, stack or flags.
            unsafe {
                asm!(
                    "usada8 {s}, {v}, {z}, {s}",
                    s = inout(reg) s,
                    v = in(reg) v,
                    z = in(reg) 0u32,
                    options(pure, nomem, nostack, preserves_flags),
                )
            };
            n += 4;
        }
        (s.wrapping_sub(128 * n) as i32) + super::generic::sum_i8(q.remainder())
    }

    /// One group of 4 window elements × 5 pixels: a weight word split into its
    /// even and odd bytes, 10 column words in two `LDM`s, 10 `SMLAD`s; ends with
    /// the `LDM` of the next group's first 5 words.
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

    /// As `generic::dot1`: per group of 4 elements one weight word, two
    /// `SXTB16`, one `LDRD` of the pixel's two column words and two `SMLAD`s.
    #[inline(always)]
    pub fn dot1(col: &[u32], w: &[i8], nb: usize, acc: &mut i32) {
        let ng = nb * KB / 4;
        if ng == 0 || col.len() < (ng - 1) * GW + 2 || w.len() < 4 * ng {
            return super::generic::dot1(col, w, nb, acc);
        }
        let mut a = *acc;
        // SAFETY: ng ≥ 1 iterations, reading 4 weight bytes (unaligned LDR) and
        // column words g·GW, g·GW + 1 (LDRD: `col` is word-aligned) for g < ng,
        // all in bounds (checked above); flags are not relied on outside.
        unsafe {
            asm!(
                "2:",
                "ldr {t}, [{w}], #4",
                "ldrd {x0}, {x1}, [{c}], #40",
                "sxtb16 {u}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a}, {x0}, {u}, {a}",
                "smlad {a}, {x1}, {t}, {a}",
                "subs {n}, {n}, #1",
                "bne 2b",
                w = inout(reg) w.as_ptr() => _,
                c = inout(reg) col.as_ptr() => _,
                n = inout(reg) ng => _,
                a = inout(reg) a,
                t = out(reg) _,
                u = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                options(nostack, readonly),
            )
        };
        *acc = a;
    }

    /// As `generic::dot5`: 16 elements × 5 pixels per iteration (4 groups), the
    /// loop ending at the sentinel block.
    #[inline(always)]
    pub fn dot5(col: &[u32], w: &[i8], nb: usize, acc: &mut [i32; PIX]) {
        // The loop reads nb·4·GW + 5 column words (through the sentinel group's
        // first LDM) and nb·KB weight bytes; it stops at the first sentinel, which
        // the caller wrote at word nb·4·GW (and which no earlier block can hold).
        let stop = nb * (KB / 4) * GW;
        if nb == 0 || col.len() < stop + GW || w.len() < nb * KB || col.get(stop) != Some(&SENTINEL)
        {
            return super::generic::dot5(col, w, nb, acc);
        }
        let [mut a0, mut a1, mut a2, mut a3, mut a4] = *acc;
        // SAFETY: reads stay inside `col` and `w` (checked above: the loop runs at
        // most nb times because word nb·4·GW is the sentinel). Every operand is an
        // explicit register, so r6 and r7 (which cannot be operands) hold no
        // operand; they are saved on the stack and restored. SMLAD's Q flag and
        // CMP's flags are not relied on outside the block.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "mov r7, r0",
                "ldm lr!, {{r0-r4}}",
                "2:",
                group!(),
                group!(),
                group!(),
                group!(),
                "cmp r0, #0x80008000",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("lr") col.as_ptr() => _,
                inout("r0") w.as_ptr() => _,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") a2,
                inout("r11") a3,
                inout("r12") a4,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                options(readonly),
            )
        };
        *acc = [a0, a1, a2, a3, a4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::Rng;

    #[test]
    fn ext_and_dot5_match_plain_sums() {
        let mut r = Rng(17);
        for nb in 1..6 {
            let raw: Vec<Vec<i8>> = (0..PIX).map(|_| r.vec_i8(nb * KB)).collect();
            let w = r.vec_i8(nb * KB);
            let mut col = vec![0u32; nb * KB / 4 * GW + GW];
            for (p, rp) in raw.iter().enumerate() {
                columns(rp, p, &mut col);
            }
            col[nb * KB / 4 * GW] = SENTINEL;
            let mut acc = [1, 2, 3, 4, 5];
            kern::dot5(&col, &w, nb, &mut acc);
            for p in 0..PIX {
                let want: i32 = raw[p].iter().zip(&w).map(|(&x, &v)| x as i32 * v as i32).sum();
                assert_eq!(acc[p], want + p as i32 + 1);
            }
            let sw: i32 = w.iter().map(|&v| v as i32).sum();
            assert_eq!(kern::sum_i8(&w), sw);
            assert_eq!(kern::sum_i8(&w[1..]), sw - w[0] as i32);
        }
    }

    #[test]
    fn out_rq_matches_mbqm() {
        let mut r = Rng(23);
        let edge = [0, 1, -1, 2, -2, 3, -3, i32::MAX, i32::MIN, 1 << 30, -(1 << 30), 12345];
        for i in 0..400_000u32 {
            let x = if i % 5 == 0 {
                edge[(r.next() % 12) as usize]
            } else {
                (r.next() as i32) >> (i % 32)
            };
            let m = match i % 7 {
                0 => edge[(r.next() % 12) as usize],
                1 => -((r.next() as i32) | 1 << 30),
                2 => 1 << 30,
                _ => (r.next() as i32 & i32::MAX) | 1 << 30,
            };
            let sh = (r.next() % 70) as i32 - 40;
            assert_eq!(OutRq::new(m, sh).apply(x), mbqm(x, m, sh), "x={x} m={m} sh={sh}");
        }
    }
}

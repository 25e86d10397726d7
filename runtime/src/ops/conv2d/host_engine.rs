//! The CONV2D column engine of 64-bit hosts (`cfg(ddpm_wide)`: x86_64, aarch64),
//! shared by the int8-input ([`super::host::conv2d_im2col_wide`]) and int16-input
//! ([`super::host::conv_i16`]) convolutions, whatever their output type.
//!
//! Per [`WPIX`] output pixels the caller's `fill` writes each pixel's window chunk
//! (`x − in_zp`, padding 0) as a contiguous i16 column; every output channel's
//! int8 weight row is then one widening i16 dot product against the four
//! columns, two channels at a time. The dot products are exact in i32 (the loader
//! bounds `|x|·|w|·kh·kw·ic` so that no partial sum overflows), so any summation
//! order gives the reference kernel's sums, and the requantization is [`OutRq`],
//! bit-identical to MBQM.
//!
//! Column kernels: AVX2 `VPMADDWD` (x86_64 with the `std` feature, chosen at run
//! time; the whole engine, the caller's gather included, is then compiled for
//! AVX2), NEON `SMLAL` (aarch64), else plain widening products that LLVM
//! vectorizes (SSE2 `PMADDWD`). With AVX2, short windows and 8–16-channel
//! layers of one chunk take an outer-product panel kernel (`panel_avx2`): the
//! sums come out channel-contiguous, without the pair kernels' reductions.
//!
//! Stack: `2·WPIX·KC` bytes of columns, `8·WPIX·BLOCK` of sums, `8·BLOCK` of
//! per-channel constants, and `BLOCK·KC` bytes of repacked weights (about
//! 25 KiB).

use crate::ops::numerics::{le_i32, OutRq};

/// Output pixels per column group.
pub const WPIX: usize = 4;
/// Window elements per chunk.
pub const KC: usize = 288;
/// Output channels whose sums are held at once.
pub const BLOCK: usize = 64;

/// The columns of one pixel group.
pub type Cols = [[i16; KC]; WPIX];

/// Sums of one pixel group for a pair of channels.
type Pair = [[i32; WPIX]; 2];

/// Runs the convolution over `npix` output pixels, `oc` channels and windows of
/// `ksz` elements: `fill(q, k0, len, col)` writes `col[..len]` for pixel `q`
/// (`q ≥ npix` only pads a group: any values), `w` holds `oc` rows of `ksz`
/// weights, and `store(q, c0, v)` receives, for pixel `q` and channels
/// `c0 .. c0 + v.len()` (at most [`BLOCK`]), `v[j] = mbqm(bias[o] + Σ, mult[o],
/// shift[o])` with `o = c0 + j` (wrapping bias add).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn run(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    fill: impl FnMut(usize, usize, usize, &mut [i16; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { run_avx2(npix, ksz, oc, w, bias, mult, shift, fill, store) };
    }
    #[cfg(target_arch = "aarch64")]
    return engine(npix, ksz, oc, w, bias, mult, shift, 0, fill, store, dot2_neon, NO_PANEL);
    #[cfg(not(target_arch = "aarch64"))]
    engine(npix, ksz, oc, w, bias, mult, shift, 0, fill, store, dot2_plain, NO_PANEL)
}

/// A panel kernel: `(panel, columns, pairs, sums)`, see [`panel_avx2`].
type PanelFn<T> = fn(&[i8], &[[T; KC]; WPIX], usize, &mut [[i32; BLOCK]; WPIX], usize);

/// No panel kernel: the engine runs the pair kernel only.
const NO_PANEL: Option<PanelFn<i16>> = None;

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

/// [`engine`] compiled for AVX2 with the AVX2 column kernel.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_avx2(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    fill: impl FnMut(usize, usize, usize, &mut [i16; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) {
    // SAFETY (of the kernel calls): AVX2 is enabled in this function.
    let panel = |p: &[i8], c: &Cols, n: usize, s: &mut [[i32; BLOCK]; WPIX], at: usize| unsafe {
        panel_avx2(p, c, n, s, at)
    };
    engine(
        npix,
        ksz,
        oc,
        w,
        bias,
        mult,
        shift,
        0,
        fill,
        store,
        |c, w0, w1, a| unsafe { dot2_avx2(c, w0, w1, a) },
        Some(panel),
    )
}

/// `(bias, kpos, m, e1)` slices of [`BlockRq::fast_consts`].
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) type FastConsts<'a> = (&'a [i32], &'a [i64], &'a [i32], &'a [u32]);

/// Requantization constants of a block of up to [`BLOCK`] output channels
/// ([`OutRq`] per channel, and its fast arm's constants as arrays for the
/// branch-free, vectorized form) with their biases.
pub(crate) struct BlockRq {
    rqs: [OutRq; BLOCK],
    kb: [i32; BLOCK],
    kp: [i64; BLOCK],
    km: [i32; BLOCK],
    ke: [u32; BLOCK],
    all_fast: bool,
}

impl BlockRq {
    /// Channels `c0 .. c0 + cn` (at most [`BLOCK`]); `adj[j]`, when given, is
    /// taken off channel `c0 + j`'s bias (wrapping).
    #[inline(always)]
    pub(crate) fn new(
        bias: &[u8],
        mult: &[u8],
        shift: &[u8],
        c0: usize,
        cn: usize,
        adj: &[i32],
    ) -> Self {
        let mut k = BlockRq {
            rqs: [OutRq::default(); BLOCK],
            kb: [0; BLOCK],
            kp: [0; BLOCK],
            km: [0; BLOCK],
            ke: [0; BLOCK],
            all_fast: true,
        };
        let consts = k.kp.iter_mut().zip(k.km.iter_mut()).zip(k.ke.iter_mut());
        for (j, ((rq, b), ((p, m), e))) in
            k.rqs.iter_mut().zip(k.kb.iter_mut()).zip(consts).enumerate().take(cn)
        {
            let o = c0 + j;
            *rq = OutRq::new(le_i32(mult, o), le_i32(shift, o));
            *b = le_i32(bias, o).wrapping_sub(adj.get(j).copied().unwrap_or(0));
            match rq.fast_parts() {
                Some(f) => (*p, *m, *e) = f,
                None => k.all_fast = false,
            }
        }
        k
    }

    /// The fast arm's constants of channels `j0 .. j0 + n`: `(bias, kpos, m, e1)`
    /// (`mbqm(bias + s) = ((a·m + kpos + (a & i32::MIN)) >> 32) >> e1` for
    /// `a = bias + s`), or `None` when a channel of the block needs the general
    /// arm or the range is out of the block.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[inline(always)]
    pub(crate) fn fast_consts(&self, j0: usize, n: usize) -> Option<FastConsts<'_>> {
        let r = j0..j0 + n;
        if !self.all_fast {
            return None;
        }
        Some((
            self.kb.get(r.clone())?,
            self.kp.get(r.clone())?,
            self.km.get(r.clone())?,
            self.ke.get(r)?,
        ))
    }

    /// `vals[i] = mbqm(bias + sums[i])` for the block's channels `j0 + i`, over
    /// `vals.len()` channels (the fast arm vectorizes: exact-length slices).
    #[inline(always)]
    pub(crate) fn apply(&self, j0: usize, sums: &[i32], vals: &mut [i32]) {
        let n = vals.len();
        let r = j0..j0 + n;
        let (ss, bs) = (sums.get(..n).unwrap_or(&[]), self.kb.get(r.clone()).unwrap_or(&[]));
        if self.all_fast {
            let (ps, ms) =
                (self.kp.get(r.clone()).unwrap_or(&[]), self.km.get(r.clone()).unwrap_or(&[]));
            let es = self.ke.get(r).unwrap_or(&[]);
            let consts = bs.iter().zip(ps).zip(ms.iter().zip(es));
            for ((v, &s), ((&b, &p), (&m, &e))) in vals.iter_mut().zip(ss).zip(consts) {
                // OutRq::apply's fast arm.
                let a = b.wrapping_add(s);
                let k = p + (a & i32::MIN) as i64;
                *v = (((a as i64 * m as i64 + k) >> 32) as i32) >> e;
            }
        } else {
            let rqs = self.rqs.get(r).unwrap_or(&[]);
            for ((v, &s), (rq, &b)) in vals.iter_mut().zip(ss).zip(rqs.iter().zip(bs)) {
                *v = rq.apply(b.wrapping_add(s));
            }
        }
    }
}

/// The engine over columns of `T` (i16 `x − in_zp` with `zp = 0`, or raw int8
/// with padding `in_zp` and `zp = in_zp`: then `zp·Σw` is taken off each
/// channel's bias, so the sums are the same). `dot2` is the pair kernel;
/// `panel`, when given, the outer-product kernel taken for short windows and
/// 8–16-channel layers of one chunk (see [`PANEL_KSZ`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn engine<T: Copy + Default>(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    zp: i32,
    mut fill: impl FnMut(usize, usize, usize, &mut [T; KC]),
    mut store: impl FnMut(usize, usize, &[i32]),
    dot2: impl Fn(&[[T; KC]; WPIX], &[i8], &[i8], &mut Pair),
    panel: Option<impl Fn(&[i8], &[[T; KC]; WPIX], usize, &mut [[i32; BLOCK]; WPIX], usize)>,
) {
    if oc == 0 || ksz == 0 || npix == 0 {
        return;
    }
    let chunks = ksz.div_ceil(KC);
    let panel = panel.filter(|_| ksz <= PANEL_KSZ || (ksz <= KC && (8..=PANEL).contains(&oc)));
    let pairs = ksz.div_ceil(2);
    let mut wbuf = [0i8; BLOCK * KC];
    let mut col = [[T::default(); KC]; WPIX];
    let row = |o: usize, k0: usize, len: usize| w.get(o * ksz + k0..o * ksz + k0 + len);
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        // zp·Σw per channel (raw int8 columns with padding zp).
        let mut adj = [0i32; BLOCK];
        if zp != 0 {
            for (j, a) in adj.iter_mut().enumerate().take(cn) {
                let sw = row(c0 + j, 0, ksz).unwrap_or(&[]).iter().fold(0i32, |a, &v| a + v as i32);
                *a = zp.wrapping_mul(sw);
            }
        }
        let brq = BlockRq::new(bias, mult, shift, c0, cn, &adj);
        let (mut sums, mut vals) = ([0i32; BLOCK], [0i32; BLOCK]);
        if panel.is_some() {
            repack(&mut wbuf, w, ksz, c0, cn);
        }
        // Panel kernels' sums, pixel-major (no transposition needed); every
        // group overwrites channels ..cn of each pixel.
        let mut pacc = [[0i32; BLOCK]; WPIX];
        let mut acc = [[0i32; WPIX]; BLOCK];
        let mut q0 = 0;
        while q0 < npix {
            if panel.is_none() {
                // The pair kernels accumulate.
                acc = [[0i32; WPIX]; BLOCK];
            }
            // One call site of `fill`, so that it is inlined.
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                for (i, c) in col.iter_mut().enumerate() {
                    fill(q0 + i, k0, len, c);
                }
                if let Some(kernel) = &panel {
                    // One chunk (ksz ≤ KC): the whole window.
                    let per = pairs * 2 * PANEL;
                    for (j, pan) in wbuf.chunks_exact(per).take(cn.div_ceil(PANEL)).enumerate() {
                        kernel(pan, &col, pairs, &mut pacc, j * PANEL);
                    }
                    continue;
                }
                for (j, pair) in acc.chunks_exact_mut(2).enumerate().take(cn.div_ceil(2)) {
                    let o = c0 + 2 * j;
                    let w0 = row(o, k0, len).unwrap_or(&[]);
                    // An odd last channel pairs with an empty row (sums unused).
                    let w1 = if 2 * j + 1 < cn { row(o + 1, k0, len).unwrap_or(&[]) } else { &[] };
                    if let Ok(pair) = <&mut Pair>::try_from(pair) {
                        dot2(&col, w0, w1, pair);
                    }
                }
            }
            for (i, q) in (q0..npix.min(q0 + WPIX)).enumerate() {
                let sums: &[i32] = match pacc.get(i) {
                    Some(p) if panel.is_some() => p,
                    _ => {
                        for (s, aj) in sums.iter_mut().zip(&acc).take(cn) {
                            *s = aj.get(i).copied().unwrap_or(0);
                        }
                        &sums
                    }
                };
                let vs = vals.get_mut(..cn).unwrap_or(&mut []);
                brq.apply(0, sums, vs);
                store(q, c0, vals.get(..cn).unwrap_or(&[]));
            }
            q0 += WPIX;
        }
        c0 += cn;
    }
}

/// Output channels per panel of the outer-product kernels.
const PANEL: usize = 16;

/// Windows up to this length run on a panel kernel whatever the channel count:
/// short windows, where the pair kernels' per-call reductions and tails weigh
/// most. Longer windows of one chunk do too when there are 8 to 16 output
/// channels (measured on AVX2: faster there, slower for 1 or 32+ channels).
const PANEL_KSZ: usize = 64;

/// Weights of channels `c0 .. c0 + cn` (windows of `ksz ≤ KC`) into panels of
/// [`PANEL`] channels: panel `j`, pair `k`, lane `l`, half `t` at
/// `(j·pairs + k)·2·PANEL + 2l + t` for window element `2k + t` (zero past the
/// window and past the channels).
#[inline(always)]
fn repack(wbuf: &mut [i8], w: &[i8], ksz: usize, c0: usize, cn: usize) {
    let pairs = ksz.div_ceil(2);
    for (j, pan) in wbuf.chunks_exact_mut(pairs * 2 * PANEL).take(cn.div_ceil(PANEL)).enumerate() {
        for (k, row) in pan.chunks_exact_mut(2 * PANEL).enumerate() {
            for (l, d) in row.chunks_exact_mut(2).enumerate() {
                let o = j * PANEL + l;
                for (t, v) in d.iter_mut().enumerate() {
                    let i = 2 * k + t;
                    *v = if o < cn && i < ksz {
                        w.get((c0 + o) * ksz + i).copied().unwrap_or(0)
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// AVX2 panel kernel, outer-product form: per pair `k` of the window, each
/// pixel's `col[2k], col[2k+1]` broadcast to every lane and `VPMADDWD` against the
/// panel's 16 channel pairs (sign-extended to i16) adds both products into eight
/// channel lanes; sums come out channel-contiguous, with no horizontal reduction.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn panel_avx2(
    pan: &[i8],
    cols: &Cols,
    pairs: usize,
    sums: &mut [[i32; BLOCK]; WPIX],
    at: usize,
) {
    use core::arch::x86_64::*;
    // Pairs within the panel and every column (2·pairs ≤ KC: KC is even).
    let pairs = pairs.min(pan.len() / (2 * PANEL)).min(KC / 2);
    let mut acc = [[_mm256_setzero_si256(); 2]; WPIX];
    let wp = pan.as_ptr();
    for k in 0..pairs {
        // SAFETY: k < pairs bounds the panel's rows (2·PANEL bytes each) and each
        // column's pairs.
        unsafe {
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(2 * PANEL * k).cast()));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(2 * PANEL * k + 16).cast()));
            for ([a0, a1], c) in acc.iter_mut().zip(cols) {
                let x = _mm256_set1_epi32(c.as_ptr().add(2 * k).cast::<i32>().read_unaligned());
                *a0 = _mm256_add_epi32(*a0, _mm256_madd_epi16(x, w0));
                *a1 = _mm256_add_epi32(*a1, _mm256_madd_epi16(x, w1));
            }
        }
    }
    for ([a0, a1], s) in acc.iter().zip(sums.iter_mut()) {
        if let Some(d) = s.get_mut(at..at + PANEL) {
            // SAFETY: d is PANEL = 16 i32; unaligned stores.
            unsafe {
                _mm256_storeu_si256(d.as_mut_ptr().cast(), *a0);
                _mm256_storeu_si256(d.as_mut_ptr().add(8).cast(), *a1);
            }
        }
    }
}

/// `Σ_k col[p][k]·w[k]` over `w.len()` (≤ [`KC`]) elements.
#[inline(always)]
#[cfg_attr(
    not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64", test)),
    allow(dead_code)
)]
fn dot_scalar(c: &[i16], w: &[i8]) -> i32 {
    c.iter().zip(w).map(|(&x, &v)| x as i32 * v as i32).fold(0i32, |s, v| s.wrapping_add(v))
}

/// Portable pair kernel: weights widened once per row, then four widening i16 dot
/// products per channel (vectorized by LLVM).
#[inline(always)]
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn dot2_plain(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
    for (a, wr) in acc.iter_mut().zip([w0, w1]) {
        let mut wbuf = [0i16; KC];
        for (d, &v) in wbuf.iter_mut().zip(wr) {
            *d = v as i16;
        }
        let wq = wbuf.get(..wr.len()).unwrap_or(&[]);
        for (ap, c) in a.iter_mut().zip(col) {
            let d = c
                .iter()
                .zip(wq)
                .map(|(&x, &v)| x as i32 * v as i32)
                .fold(0i32, |s, v| s.wrapping_add(v));
            *ap = ap.wrapping_add(d);
        }
    }
}

/// NEON pair kernel (baseline on aarch64): per 8 elements one weight load per row
/// sign-extended to i16 (`SXTL`), then `SMLAL`/`SMLAL2` widening products into i32
/// lanes, each column load feeding both rows.
#[cfg(target_arch = "aarch64")]
fn dot2_neon(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
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

/// `Σ_k col[k]·w[k]` over `w.len()` (≤ [`KC`]) int8 elements.
#[inline(always)]
#[cfg_attr(not(all(feature = "std", target_arch = "aarch64")), allow(dead_code))]
fn dot_scalar8(c: &[i8], w: &[i8]) -> i32 {
    c.iter().zip(w).map(|(&x, &v)| x as i32 * v as i32).fold(0i32, |s, v| s.wrapping_add(v))
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
unsafe fn dot2_sdot(col: &[[i8; KC]; WPIX], w0: &[i8], w1: &[i8], acc: &mut Pair) {
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

/// AVX2 pair kernel: per 16 elements one weight load per row sign-extended to
/// i16, then `VPMADDWD` of each pixel's column against both rows (8 accumulators,
/// each column load feeding two products); the eight lane sums are reduced
/// together by a `VPHADDD` tree.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot2_avx2(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
    use core::arch::x86_64::*;
    let n = w0.len().min(KC);
    let two = w1.len() == n;
    let n16 = n / 16 * 16;
    let mut va = [_mm256_setzero_si256(); WPIX];
    let mut vb = [_mm256_setzero_si256(); WPIX];
    let mut k = 0;
    if two {
        while k < n16 {
            // SAFETY: k + 16 ≤ n, which bounds both rows and every column (KC).
            unsafe {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w0.as_ptr().add(k).cast()));
                let wb = _mm256_cvtepi8_epi16(_mm_loadu_si128(w1.as_ptr().add(k).cast()));
                for ((a, b), c) in va.iter_mut().zip(vb.iter_mut()).zip(col) {
                    let xv = _mm256_loadu_si256(c.as_ptr().add(k).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wa));
                    *b = _mm256_add_epi32(*b, _mm256_madd_epi16(xv, wb));
                }
            }
            k += 16;
        }
    } else {
        while k < n16 {
            // SAFETY: k + 16 ≤ n, which bounds `w0` and every column.
            unsafe {
                let wa = _mm256_cvtepi8_epi16(_mm_loadu_si128(w0.as_ptr().add(k).cast()));
                for (a, c) in va.iter_mut().zip(col) {
                    let xv = _mm256_loadu_si256(c.as_ptr().add(k).cast());
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(xv, wa));
                }
            }
            k += 16;
        }
    }
    // Eight vectors to one vector of their eight totals: [v0 .. v7].
    let [a0, a1, a2, a3] = va;
    let [b0, b1, b2, b3] = vb;
    let t0 = _mm256_hadd_epi32(a0, a1);
    let t1 = _mm256_hadd_epi32(a2, a3);
    let t2 = _mm256_hadd_epi32(b0, b1);
    let t3 = _mm256_hadd_epi32(b2, b3);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    let s = _mm256_add_epi32(
        _mm256_permute2x128_si256(u0, u1, 0x20),
        _mm256_permute2x128_si256(u0, u1, 0x31),
    );
    // acc (8 contiguous i32: row 0's four pixels, then row 1's) += s; row 1 of a
    // single row gets zeros added.
    let s = if two { s } else { _mm256_blend_epi32(s, _mm256_setzero_si256(), 0xf0) };
    // SAFETY: `acc` is 8 contiguous i32 (32 bytes); unaligned load and store.
    unsafe {
        let p = acc.as_mut_ptr().cast::<__m256i>();
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), s));
    }
    if n16 < n {
        let rows: &[&[i8]] = if two { &[w0, w1] } else { &[w0] };
        for (ar, wr) in acc.iter_mut().zip(rows) {
            let tail = wr.get(n16..n).unwrap_or(&[]);
            for (a, c) in ar.iter_mut().zip(col) {
                *a = a.wrapping_add(dot_scalar(c.get(n16..n).unwrap_or(&[]), tail));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;

    /// Under a harness that knows the CPU (`tests/tests/aarch64.rs` runs these
    /// tests in `qemu-aarch64` as a Cortex-A76 and as a Cortex-A72 and sets
    /// `DDPM_EXPECT_SDOT` to 1 or 0), the dot-product extension is detected
    /// exactly when the CPU has it, so each run covers the kernel it names.
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    #[test]
    fn sdot_detected_as_the_harness_expects() {
        if let Ok(want) = std::env::var("DDPM_EXPECT_SDOT") {
            assert_eq!(std::arch::is_aarch64_feature_detected!("dotprod"), want == "1");
        }
    }

    /// Every pair kernel this host has gives the plain sums, for all lengths up to
    /// [`KC`], odd last channels included.
    #[test]
    fn pair_kernels_match_plain_sums() {
        let mut r = Rng(41);
        for case in 0..400 {
            let n = if case < KC { case + 1 } else { r.range(1, KC as i64) as usize };
            let mut col: Cols = [[0i16; KC]; WPIX];
            for c in col.iter_mut() {
                for v in c.iter_mut() {
                    *v = r.range(-32768, 32767) as i16;
                }
            }
            let w0: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let w1: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let single = case % 3 == 0;
            let w1s: &[i8] = if single { &[] } else { &w1 };
            let start: Pair = [[r.range(-1000, 1000) as i32; WPIX]; 2];
            let mut want = start;
            for (p, c) in col.iter().enumerate() {
                want[0][p] = want[0][p].wrapping_add(dot_scalar(&c[..n], &w0));
                if !single {
                    want[1][p] = want[1][p].wrapping_add(dot_scalar(&c[..n], &w1));
                }
            }
            let mut got = start;
            dot2_plain(&col, &w0, w1s, &mut got);
            assert_eq!(got, want, "plain, case {case}, n {n}");
            #[cfg(target_arch = "aarch64")]
            {
                let mut got = start;
                dot2_neon(&col, &w0, w1s, &mut got);
                assert_eq!(got, want, "neon, case {case}, n {n}");
            }
            #[cfg(all(feature = "std", target_arch = "aarch64"))]
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                // The same sums on int8 columns (each column's values halved
                // into int8 range).
                let col8: [[i8; KC]; WPIX] =
                    core::array::from_fn(|p| core::array::from_fn(|k| (col[p][k] >> 8) as i8));
                let mut want8 = start;
                for (p, c) in col8.iter().enumerate() {
                    want8[0][p] = want8[0][p].wrapping_add(dot_scalar8(&c[..n], &w0));
                    if !single {
                        want8[1][p] = want8[1][p].wrapping_add(dot_scalar8(&c[..n], &w1));
                    }
                }
                let mut got = start;
                // SAFETY: the CPU has the dot-product extension (checked).
                unsafe { dot2_sdot(&col8, &w0, w1s, &mut got) };
                assert_eq!(got, want8, "sdot, case {case}, n {n}");
            }
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if std::is_x86_feature_detected!("avx2") {
                let mut got = start;
                // SAFETY: AVX2 is present (checked).
                unsafe { dot2_avx2(&col, &w0, w1s, &mut got) };
                assert_eq!(got, want, "avx2, case {case}, n {n}");
            }
        }
    }
}
